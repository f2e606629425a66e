//! A downstream receiver for subscriptions (of events and of alerts).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use super::wait_until;

/// A downstream receiver on 127.0.0.1: records every JSON body POSTed to it and
/// answers 200 while `up`, `down_status` (503) otherwise. As an upstream 视图库 it takes
/// registrations and keepalives (`/VIID/System/…`) while up, without recording them.
pub struct Receiver {
    pub addr: SocketAddr,
    pub up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub bodies: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    /// Every JSON body received, refused or taken, in order.
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    /// The heads (lower case) of the requests whose bodies were taken, in order.
    pub heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub attempts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Milliseconds to wait before answering (a slow receiver).
    pub delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Not 0: answer 200 with this GA/T 1400 `StatusCode` (a refusal), taking nothing.
    pub refuse_with: std::sync::Arc<std::sync::atomic::AtomicI64>,
    /// The HTTP status answered while not `up` (503).
    pub down_status: std::sync::Arc<std::sync::atomic::AtomicU16>,
}

impl Receiver {
    pub fn start() -> Receiver {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let r = Receiver {
            addr: listener.local_addr().unwrap(),
            up: Default::default(),
            bodies: Default::default(),
            seen: Default::default(),
            heads: Default::default(),
            attempts: Default::default(),
            delay_ms: Default::default(),
            refuse_with: Default::default(),
            down_status: std::sync::Arc::new(503.into()),
        };
        let (up, bodies, attempts) = (r.up.clone(), r.bodies.clone(), r.attempts.clone());
        let seen = r.seen.clone();
        let heads = r.heads.clone();
        let delay = r.delay_ms.clone();
        let refuse = r.refuse_with.clone();
        let down_status = r.down_status.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0usize;
                let mut line = String::new();
                let mut head = String::new();
                // A sender killed mid-request leaves a head cut short: not a delivery.
                let head_ended = loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break false;
                    }
                    if line == "\r\n" {
                        break true;
                    }
                    head.push_str(&line.to_ascii_lowercase());
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                };
                if !head_ended {
                    continue;
                }
                let mut body = vec![0u8; len];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                attempts.fetch_add(1, Ordering::SeqCst);
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    seen.lock().unwrap().push(v);
                }
                std::thread::sleep(Duration::from_millis(delay.load(Ordering::SeqCst)));
                let ok = up.load(Ordering::SeqCst);
                let refused = refuse.load(Ordering::SeqCst);
                if ok && head.contains(" /viid/system/") {
                    let answer = r#"{"ResponseStatusObject":{"Id":"x","StatusCode":0,"StatusString":"正常"}}"#;
                    let mut w = stream;
                    let _ = write!(
                        w,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    continue;
                }
                if ok && refused != 0 {
                    let text = match refused {
                        1 => "订阅不存在",
                        2 => "设备忙",
                        _ => "拒绝",
                    };
                    let answer = format!("{{\"ResponseStatusListObject\":{{\"ResponseStatusObject\":[{{\"Id\":\"x\",\"StatusCode\":{refused},\"StatusString\":\"{text}\"}}]}}}}");
                    let mut w = stream;
                    let _ = write!(
                        w,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/VIID+JSON\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    continue;
                }
                if ok {
                    // The head first: whoever sees a body sees its head too.
                    heads.lock().unwrap().push(head);
                    bodies
                        .lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                }
                let status = match ok {
                    true => "200 OK".to_string(),
                    false => match down_status.load(Ordering::SeqCst) {
                        500 => "500 Internal Server Error".to_string(),
                        other => format!("{other} Service Unavailable"),
                    },
                };
                let mut w = stream;
                let _ = write!(
                    w,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        r
    }

    /// Event ids received, in the order they came.
    pub fn ids(&self) -> Vec<u64> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b["events"].as_array().cloned().unwrap_or_default())
            .map(|e| e["id"].as_u64().unwrap())
            .collect()
    }

    /// GA/T 1400 notifications received (`SubscribeNotificationObject`s of every body,
    /// a list or one object), in the order they came.
    pub fn notifications(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| {
                match &b["SubscribeNotificationListObject"]["SubscribeNotificationObject"] {
                    Value::Array(a) => a.clone(),
                    Value::Null => Vec::new(),
                    one => vec![one.clone()],
                }
            })
            .collect()
    }

    /// Waits (30 s at most) until `n` event ids arrived.
    pub fn wait_for(&self, n: usize, what: &str) {
        assert!(
            wait_until(Duration::from_secs(30), || self.ids().len() >= n),
            "{what}: got {:?}",
            self.ids()
        );
    }
}
