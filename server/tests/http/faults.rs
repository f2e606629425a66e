//! Failures: a disk that fails under the store, a shutdown with requests in flight.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{enc, ev, get, post, start, wait_until, GATE, RANGE};

#[test]
fn acknowledged_events_survive_a_restart_and_in_flight_requests_finish_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), |_| {});
    let a = server.addr;
    // Eight clients ingest concurrently while the server is told to stop.
    let acks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let acks = acks.clone();
            std::thread::spawn(move || {
                let body: Vec<String> = (0..200)
                    .map(|i| {
                        ev(
                            &format!("2021-09-01T{:02}:{:02}:{:02}+08:00", 8 + c, i / 60, i % 60),
                            GATE,
                            "vehicle",
                            &format!("苏E{c}0000"),
                            "in",
                        )
                    })
                    .collect();
                let mut acked = 0;
                for chunk in body.chunks(20) {
                    let Ok(mut s) = TcpStream::connect(a) else { break };
                    let payload = chunk.join("\n");
                    let req = format!(
                        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
                        payload.len()
                    );
                    if s.write_all(req.as_bytes()).is_err() {
                        break;
                    }
                    let mut out = String::new();
                    if s.read_to_string(&mut out).is_err() || !out.starts_with("HTTP/1.1 200") {
                        break;
                    }
                    acked += 20;
                    acks.fetch_add(20, std::sync::atomic::Ordering::SeqCst);
                }
                acked
            })
        })
        .collect();
    // Stop once some batches are acknowledged, while others are in flight.
    wait_until(Duration::from_secs(30), || {
        acks.load(std::sync::atomic::Ordering::SeqCst) >= 40
    });
    server.stop();
    let acked: Vec<usize> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(acked.iter().sum::<usize>() >= 40, "{acked:?}");

    let server = start(dir.path(), |_| {});
    for (c, &n) in acked.iter().enumerate() {
        let r = get(
            server.addr,
            &format!(
                "/v1/trajectory?kind=vehicle&subject={}&{RANGE}&limit=1000",
                enc(&format!("苏E{c}0000"))
            ),
        );
        let stored = r.body["events"].as_array().unwrap().len();
        assert!(stored >= n, "client {c}: {n} acknowledged, {stored} stored");
    }
}

#[test]
fn a_disk_failure_is_503_naming_the_file_writes_stay_refused_and_a_restart_recovers() {
    use sightline_storage::io::{Fault, FaultKind, FaultyIo, Op, EIO, ENOSPC};
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let batch = |tag: &str| -> String {
        (0..5)
            .map(|i| {
                ev(
                    &format!("2021-09-01T08:00:0{i}+08:00"),
                    GATE,
                    "face",
                    &format!("{tag}{i}"),
                    "in",
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    // How many of a batch's five faces have their event stored.
    let faces = |addr, tag: &str| -> usize {
        (0..5)
            .map(|i| {
                let r = get(
                    addr,
                    &format!("/v1/trajectory?kind=face&subject={tag}{i}&{RANGE}"),
                );
                assert_eq!(r.status, 200, "{}", r.body);
                r.body["events"].as_array().unwrap().len()
            })
            .sum()
    };
    for (n, (op, file, kind)) in [
        (Op::Sync, ".wal", FaultKind::Errno(EIO)),
        (Op::Write, "dict.log", FaultKind::Errno(ENOSPC)),
        (Op::Write, ".wal", FaultKind::ShortWrite),
    ]
    .into_iter()
    .enumerate()
    {
        let case = format!("{op:?} {kind:?} on {file}");
        let mut server = start(dir.path(), |c| c.store.io = io.clone());
        let a = server.addr;
        let ok = post(
            a,
            "/v1/events",
            "application/x-ndjson",
            &batch(&format!("OK{n}x")),
        );
        assert_eq!(ok.status, 200, "{case}: {}", ok.body);
        assert_eq!(get(a, "/health").status, 200);

        io.inject(Fault::new(op, file, kind).once());
        let r = post(
            a,
            "/v1/events",
            "application/x-ndjson",
            &batch(&format!("LOST{n}x")),
        );
        assert_eq!(r.status, 503, "{case}: {}", r.body);
        assert_eq!(
            r.body["error"]["code"], "storage_unavailable",
            "{case}: {}",
            r.body
        );
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(file) && msg.contains("os error"),
            "{case}: {msg}"
        );
        // The fault is spent, but writes stay refused, saying why and what to do.
        let r = post(
            a,
            "/v1/events",
            "application/x-ndjson",
            &batch(&format!("AFTER{n}x")),
        );
        assert_eq!(r.status, 503, "{case}: {}", r.body);
        assert_eq!(
            r.body["error"]["code"], "store_failed",
            "{case}: {}",
            r.body
        );
        assert!(r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("restart"));
        let h = get(a, "/health");
        assert_eq!(h.status, 503, "{case}: {}", h.body);
        assert_eq!(h.body["status"], "failed");
        // Queries still answer, with what was acknowledged only.
        assert_eq!(faces(a, &format!("OK{n}x")), 5, "{case}");
        assert_eq!(faces(a, &format!("LOST{n}x")), 0, "{case}");
        server.stop();

        // The disk works again; a restart recovers and takes writes.
        io.clear();
        let server = start(dir.path(), |c| c.store.io = io.clone());
        let a = server.addr;
        assert_eq!(get(a, "/health").status, 200, "{case}");
        let r = post(
            a,
            "/v1/events",
            "application/x-ndjson",
            &batch(&format!("NEW{n}x")),
        );
        assert_eq!(r.status, 200, "{case}: {}", r.body);
        for tag in ["OK", "NEW"] {
            assert_eq!(faces(a, &format!("{tag}{n}x")), 5, "{case}: {tag}");
        }
        for tag in ["LOST", "AFTER"] {
            assert_eq!(faces(a, &format!("{tag}{n}x")), 0, "{case}: {tag}");
        }
    }
}
