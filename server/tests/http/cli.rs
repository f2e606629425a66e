//! The binary: `serve` (settings, SIGTERM, loopback only with `--no-auth`), `keys`,
//! `check`, `gen` and `demo`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{enc, ev, get, post, sample, start, Reply, GATE, RANGE};

#[test]
fn the_binary_prints_its_address_serves_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // Settings from a file, an environment variable and a flag, in that precedence.
    let config = dir.path().join("sightline.toml");
    std::fs::write(
        &config,
        format!(
            "data = {:?}\nlisten = \"127.0.0.1:9\"\nmax_batch_records = 3\nmax_result_rows = 50\n",
            dir.path().join("store")
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("SIGHTLINE_MAX_RESULT_ROWS", "2")
        .env("SIGHTLINE_NO_AUTH", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("first line: {line:?}"))
        .parse()
        .unwrap();
    assert_eq!(get(addr, "/health").body["status"], "ok");
    let r = post(addr, "/v1/events", "application/x-ndjson", &sample());
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (413, Some("too_many_records")),
        "the file's max_batch_records"
    );
    let first_three = sample().lines().take(3).collect::<Vec<_>>().join("\n");
    let r = post(addr, "/v1/events", "application/x-ndjson", &first_three);
    assert_eq!(r.body["stored"], 3);
    assert!(dir.path().join("store").join("catalog").exists());
    let traj = format!(
        "/v1/trajectory?kind=vehicle&subject={}&{RANGE}",
        enc("苏E12345")
    );
    assert_eq!(get(addr, &format!("{traj}&limit=2")).status, 200);
    let r = get(addr, &format!("{traj}&limit=3"));
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (400, Some("limit")),
        "the environment's max_result_rows: {}",
        r.body
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn with_no_auth_the_binary_refuses_to_listen_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["serve", "--no-auth", "--listen", "0.0.0.0:0", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only loopback"), "{err}");

    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "data = \"x\"\nmax_body_byte = 5\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("max_body_byte"),
        "{err}"
    );
}

#[test]
fn the_keys_command_creates_lists_and_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(args)
            .arg("--data")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = run(&[
        "keys",
        "create",
        "--role",
        "investigate",
        "--communities",
        "3205080001,3205080002",
        "--name",
        "gusu",
    ]);
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("sl_"), "{token}");
    let id = token.split('_').nth(1).unwrap().to_string();
    let list = String::from_utf8(run(&["keys", "list"]).stdout).unwrap();
    assert!(
        list.contains(&id)
            && list.contains("investigate")
            && list.contains("3205080001,3205080002")
            && list.contains("active"),
        "{list}"
    );
    assert!(!list.contains(&token), "tokens are never shown again");
    assert!(run(&["keys", "revoke", &id]).status.success());
    assert!(String::from_utf8(run(&["keys", "list"]).stdout)
        .unwrap()
        .contains("revoked"));
    assert!(!run(&["keys", "revoke", "nope"]).status.success());
    assert_eq!(
        run(&["keys", "create", "--role", "boss"]).status.code(),
        Some(2)
    );
}

#[test]
fn the_check_command_verifies_a_stopped_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut server = start(dir.path(), |_| {});
        // Two requests: two WAL records, so damage to the first is not a torn tail.
        assert_eq!(
            post(server.addr, "/v1/events", "application/x-ndjson", &sample()).status,
            200
        );
        let more = ev(
            "2021-09-03T08:00:00+08:00",
            GATE,
            "vehicle",
            "苏E55555",
            "in",
        );
        assert_eq!(
            post(server.addr, "/v1/events", "application/x-ndjson", &more).status,
            200
        );
        server.stop();
    }
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_sightline"))
            .arg("check")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("every checksum verified"), "{text}");
    // The server left an index checkpoint at its stop; check compares it with the
    // events of the segments and the WAL.
    assert!(
        text.contains("index checkpoint agrees with the events"),
        "{text}"
    );
    let checkpoint = dir.path().join("index/subjects.idx");
    let good = std::fs::read(&checkpoint).unwrap();
    let mut bad = good.clone();
    let at = bad.len() - 3;
    bad[at] ^= 0x40;
    std::fs::write(&checkpoint, &bad).unwrap();
    let out = run();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("DAMAGED") && text.contains("subjects.idx"),
        "{text}"
    );
    std::fs::write(&checkpoint, &good).unwrap();
    assert!(run().status.success());
    // Flip a byte inside the WAL's first record: damage, named.
    let wal_dir = dir.path().join("wal");
    let wal = std::fs::read_dir(&wal_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[12] ^= 0xFF;
    std::fs::write(&wal, &bytes).unwrap();
    let out = run();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("DAMAGED") && text.contains(".wal"), "{text}");
}

#[test]
fn the_gen_command_writes_ndjson_gat1400_and_the_planted_truth() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args([
            "gen",
            "--communities",
            "3",
            "--days",
            "2",
            "--households",
            "50",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    let n: usize = said.split(' ').next().unwrap().parse().unwrap();
    let mut lines = 0;
    for d in 0..2 {
        let text =
            std::fs::read_to_string(dir.path().join(format!("events/day-{d:03}.ndjson"))).unwrap();
        for l in text.lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            assert!(
                v["ts"].is_i64() && v["device"].as_str().unwrap().len() == 20,
                "{l}"
            );
            lines += 1;
        }
        let v: Value = serde_json::from_str(
            &std::fs::read_to_string(
                dir.path()
                    .join(format!("gat1400/day-{d:03}-motorvehicles.json")),
            )
            .unwrap(),
        )
        .unwrap();
        assert!(!v["MotorVehicleListObject"]["MotorVehicleObject"]
            .as_array()
            .unwrap()
            .is_empty());
    }
    assert_eq!(lines, n);
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("truth.json")).unwrap())
            .unwrap();
    assert_eq!(truth["companions"].as_array().unwrap().len(), 2);
    assert_eq!(truth["pairs"].as_array().unwrap().len(), 3 * 30);

    // The NDJSON files are ingest bodies as they are.
    let server = start(&dir.path().join("store"), |_| {});
    let body = std::fs::read_to_string(dir.path().join("events/day-000.ndjson")).unwrap();
    let r = post(server.addr, "/v1/events", "application/x-ndjson", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["rejected"], 0, "{}", r.body);

    let bad = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["gen", "--format", "csv", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// Runs a `curl` line as `sightline demo` prints it, without curl: `-sG URL` with
/// `--data-urlencode 'k=v'` pairs, or `-s URL [-H …] -d|--data-binary 'body'`.
fn run_curl(line: &str, addr: SocketAddr) -> Reply {
    // Split on single quotes: odd pieces are the quoted arguments.
    let pieces: Vec<&str> = line.split('\'').collect();
    let quoted: Vec<&str> = pieces.iter().skip(1).step_by(2).copied().collect();
    let url = quoted[0];
    let path = url.split_once(&addr.to_string()).unwrap().1;
    if line.starts_with("curl -sG") {
        let query: Vec<String> = quoted[1..]
            .iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                format!("{k}={}", enc(v))
            })
            .collect();
        get(addr, &format!("{path}?{}", query.join("&")))
    } else if line.contains("-H 'Content-Type:") {
        let content_type = quoted[1].trim_start_matches("Content-Type: ");
        post(addr, path, content_type, quoted[2])
    } else {
        get(addr, path)
    }
}

#[test]
fn the_demo_serves_a_synthetic_month_and_its_printed_examples_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--days",
            "3",
            "--communities",
            "2",
            "--data",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // The first line sends a person to the console.
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("open http://")
        .and_then(|l| l.strip_suffix("/ in a browser (the investigator console)"))
        .unwrap_or_else(|| panic!("first line: {line:?}"))
        .parse()
        .unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), format!("listening on http://{addr}"));
    let mut commands = Vec::new();
    loop {
        line.clear();
        out.read_line(&mut line).unwrap();
        if line.starts_with("curl ") {
            commands.push(line.trim().to_string());
        }
        if line.contains("/v1/events") {
            break; // the last example
        }
    }
    assert!(commands.len() >= 7, "{commands:?}");
    for cmd in &commands {
        let r = run_curl(cmd, addr);
        assert_eq!(r.status, 200, "{cmd}\n{}", r.body);
    }
    let health = get(addr, "/health").body;
    assert!(health["events"].as_u64().unwrap() > 10_000, "{health}");
    // The association example finds the vehicle's driver first.
    let assoc = commands
        .iter()
        .find(|c| c.contains("cooccurrence"))
        .unwrap();
    let r = run_curl(assoc, addr);
    assert_eq!(r.body["candidates"][0]["kind"], "face", "{}", r.body);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// Police data about residents: everything the server creates in its data directory is
/// its own user's only (directories 0700, files 0600), the directory itself too.
#[test]
fn the_data_directory_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let (mut child, addr) = crate::support::spawn_server(&data);
    let r = crate::support::post(
        addr,
        "/v1/events",
        "application/x-ndjson",
        &crate::support::sample(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let _ = child.kill();
    let _ = child.wait();
    let mut checked = 0;
    let mut stack = vec![data.clone()];
    while let Some(p) = stack.pop() {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is {:o}", p.display(), mode & 0o777);
        checked += 1;
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    assert!(checked > 5, "{checked} paths");
}
