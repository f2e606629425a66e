//! One HTTP/1.1 request on a fresh connection that the server closes after answering.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// How long a read may stall before the request fails: longer than any answer a test
/// waits for (long polls of 20 s, queries over a generated city in a debug build).
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// A whole answer: its status, its head (status line and headers, as sent) and its
/// body (as sent: a chunked body is not decoded).
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

/// Sends `request` (request line, headers with `Connection: close`, blank line, body)
/// on a fresh connection and reads the answer to the end.
pub fn send(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    // A server may answer before the whole request is written (413 on the
    // Content-Length alone) and close: the write then fails, the answer is read anyway.
    let written = s.write_all(request);
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        panic!("reading the answer: {e} (writing the request: {written:?})");
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            let raw = String::from_utf8_lossy(&raw);
            panic!("no response head (writing the request: {written:?}): {raw}")
        });
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Answer {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    }
}

/// A GET with extra header lines (each ending `\r\n`): the status, the head in lower
/// case, the body.
pub fn fetch(addr: SocketAddr, target: &str, headers: &str) -> (u16, String, Vec<u8>) {
    let a = send(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n")
            .as_bytes(),
    );
    (a.status, a.head.to_ascii_lowercase(), a.body)
}

/// Header `name` (lower case) of a head as [`fetch`] gives it; panics when absent.
pub fn header<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {head}"))
}

/// A JSON answer: its status and body.
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

/// One request whose answer must be JSON (every answer of the API but `/metrics`,
/// streams and GA/T 1400 is).
pub fn call(
    addr: SocketAddr,
    method: &str,
    target: &str,
    content_type: &str,
    body: &[u8],
) -> Reply {
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let answer = send(addr, &request);
    assert!(
        answer
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{}",
        answer.head
    );
    let body = String::from_utf8(answer.body).unwrap();
    Reply {
        status: answer.status,
        body: serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")),
    }
}

pub fn get(addr: SocketAddr, target: &str) -> Reply {
    call(addr, "GET", target, "application/json", b"")
}

pub fn post(addr: SocketAddr, target: &str, content_type: &str, body: &str) -> Reply {
    call(addr, "POST", target, content_type, body.as_bytes())
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
