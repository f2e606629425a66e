//! Another 视图库 on 127.0.0.1 for cascade tests (`serve`'s and the cluster's): a
//! real HTTP server that records every request and answers as its closure says.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// A request the platform took: method, path (with query), head (lower case), body.
#[derive(Clone, Debug)]
pub struct Taken {
    pub method: String,
    pub path: String,
    pub head: String,
    pub body: Value,
}

/// The nonce of a platform's digest challenge (on every 401 it answers).
pub const NONCE: &str = "0a4f113b";

/// Whether `t` carries a digest answering the platform's challenge as `user` with
/// `password` (realm `Sightline`, `qop=auth`, MD5) for its own method and path.
pub fn digest_ok(t: &Taken, user: &str, password: &str) -> bool {
    let Some(line) = t.head.lines().find(|l| l.starts_with("authorization:")) else {
        return false;
    };
    let field = |k: &str| -> String {
        let Some(at) = line.find(&format!(" {k}=")) else {
            return String::new();
        };
        let rest = &line[at + k.len() + 2..];
        match rest.strip_prefix('"') {
            Some(q) => q.split('"').next().unwrap_or("").to_string(),
            None => rest.split(',').next().unwrap_or("").trim().to_string(),
        }
    };
    let expected = crate::gat1400::digest_response(
        user,
        password,
        NONCE,
        &field("nc"),
        &field("cnonce"),
        &t.method,
        &t.path,
    );
    field("username") == user && field("nonce") == NONCE && field("response") == expected
}

type Answer = Box<dyn Fn(&Taken) -> (u16, String) + Send + Sync>;

/// Another 视图库 on 127.0.0.1: every request recorded, answered by `answer`.
pub struct Platform {
    pub addr: SocketAddr,
    pub taken: Arc<Mutex<Vec<Taken>>>,
}

impl Platform {
    pub fn start(answer: impl Fn(&Taken) -> (u16, String) + Send + Sync + 'static) -> Platform {
        Platform::start_on("127.0.0.1", answer)
    }

    /// As [`Platform::start`], listening on `ip` (another loopback address).
    pub fn start_on(
        ip: &str,
        answer: impl Fn(&Taken) -> (u16, String) + Send + Sync + 'static,
    ) -> Platform {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let taken: Arc<Mutex<Vec<Taken>>> = Arc::default();
        let (log, answer): (_, Answer) = (taken.clone(), Box::new(answer));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let path = parts.next().unwrap_or("").to_string();
                let (mut head, mut len) = (String::new(), 0usize);
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&lower);
                }
                let mut body = vec![0u8; len];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let t = Taken {
                    method,
                    path,
                    head,
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                };
                let (status, text) = answer(&t);
                // A 401 challenges as a digest-checking 视图库 does ([`digest_ok`]).
                let challenge = match status {
                    401 => format!(
                        "WWW-Authenticate: Digest realm=\"Sightline\", nonce=\"{NONCE}\", qop=\"auth\", algorithm=MD5\r\n"
                    ),
                    _ => String::new(),
                };
                log.lock().unwrap().push(t);
                let mut w = stream;
                let _ = write!(
                    w,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/VIID+JSON;charset=UTF-8\r\n{challenge}Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        Platform { addr, taken }
    }

    /// The requests taken with `method` to a path starting with `path`.
    pub fn taken(&self, method: &str, path: &str) -> Vec<Taken> {
        self.taken
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.method == method && t.path.starts_with(path))
            .cloned()
            .collect()
    }
}

/// `{"ResponseStatusObject":{…}}`, as wvp answers a register or a single change.
pub fn one(code: i64, text: &str) -> String {
    json!({"ResponseStatusObject": {"Id": "", "RequestURL": "/VIID", "StatusCode": code,
        "StatusString": text, "LocalTime": "20210901080000"}})
    .to_string()
}

/// A `ResponseStatusListObject` of one status per object of a list body (at least
/// one), each `code`/`text`.
pub fn per_object(t: &Taken, code: i64, text: &str) -> String {
    let n = t
        .body
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(|l| l.as_object())
        .and_then(|l| l.values().next())
        .and_then(Value::as_array)
        .map_or(1, |a| a.len().max(1));
    let statuses: Vec<Value> = (0..n)
        .map(|i| {
            json!({"Id": i.to_string(), "RequestURL": t.path, "StatusCode": code,
                        "StatusString": text, "LocalTime": "20210901080000"})
        })
        .collect();
    json!({"ResponseStatusListObject": {"ResponseStatusObject": statuses}}).to_string()
}
