//! What an ingest node's listener holds for a client: a body is read as `serve` reads
//! it (408 when it trickles in below the minimum rate, so a slow client cannot keep an
//! ingest slot), and a listener holds at most `max_connections` connections, taking
//! the next once one closes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{Env, SERIAL};

/// What `stream` answers within `within`, as text (empty: nothing came).
fn answer_within(stream: &mut TcpStream, within: Duration) -> String {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut got = vec![0u8; 4096];
    match stream.read(&mut got) {
        Ok(n) => String::from_utf8_lossy(&got[..n]).into_owned(),
        Err(_) => String::new(),
    }
}

fn health(on: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(on).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: ingest\r\n\r\n")
        .unwrap();
    s
}

#[test]
fn an_ingest_node_refuses_trickled_bodies_and_holds_at_most_max_connections() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    env.top_extra = "max_connections = 3".into();
    let (_i, ia) = env.ingest("ingest-1");

    // Three connections open (idle), the listener's limit: a fourth is queued by the
    // kernel, unanswered, until one of them closes.
    let mut first = health(ia);
    assert!(answer_within(&mut first, Duration::from_secs(5)).starts_with("HTTP/1.1 200"));
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(ia).unwrap()).collect();
    let mut waiting = health(ia);
    let early = answer_within(&mut waiting, Duration::from_millis(1500));
    assert_eq!(early, "", "answered past max_connections");
    drop(first);
    let later = answer_within(&mut waiting, Duration::from_secs(5));
    assert!(later.starts_with("HTTP/1.1 200"), "{later:?}");
    drop((idle, waiting));

    // A body announced whole and sent a few bytes at a time, far below the minimum
    // rate (1,024 B/s after 5 s): 408 once the grace is over, not a slot held.
    let mut slow = TcpStream::connect(ia).unwrap();
    slow.write_all(
        b"POST /v1/events HTTP/1.1\r\nHost: ingest\r\nContent-Type: application/x-ndjson\r\n\
          Content-Length: 100000\r\n\r\n{\"ts\":",
    )
    .unwrap();
    let asked = Instant::now();
    let answer = answer_within(&mut slow, Duration::from_secs(20));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("body_too_slow"), "{answer:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "{:?}",
        asked.elapsed()
    );
}
