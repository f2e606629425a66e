//! A partition as a query node reaches it ([`RemotePartition`]): its owner's address
//! from the lease rows ([`Directory`]: `leases` joined with `members.address`, read
//! from PostgreSQL and cached), called with `POST /v1/partition`. When the call
//! fails (connection refused, timeout, a broken answer) or the owner answers
//! `NotHeld` (it gave the partition back, was fenced, or has not caught up yet), the
//! leases are read again and the owner found there is asked, with a growing pause
//! (50 ms doubling to 1 s), until `query.retry_ms` or the query's deadline, whichever
//! comes first. So a killed indexer's partitions answer again once another indexer
//! has taken them over (its lease lapsed, the new owner restored and caught up).
//!
//! The call is plain blocking HTTP/1.1 on a fresh connection (the federation asks
//! partitions from threads of its own), the answer bounded by
//! `serving::MAX_REPLY_BYTES`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sightline_cluster::meta::Meta;
use sightline_cluster::serving::{self, PartitionReply};
use sightline_cluster::ClusterConfig;
use sightline_query::federated::{Answer, Partition, Request};
use sightline_query::{QueryError, Result};

/// First pause before asking a failed partition again; it doubles up to
/// [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// Longest wait for a connection to an indexer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where partitions are answered, as the leases say.
pub(crate) struct Directory {
    rt: tokio::runtime::Handle,
    conninfo: String,
    meta: tokio::sync::Mutex<Option<Meta>>,
    /// partition → owner's address, as last read.
    owners: RwLock<HashMap<u32, String>>,
    call_timeout: Duration,
    retry: Duration,
}

impl Directory {
    pub fn new(rt: tokio::runtime::Handle, config: &ClusterConfig) -> Arc<Directory> {
        Arc::new(Directory {
            rt,
            conninfo: config.postgres.clone(),
            meta: tokio::sync::Mutex::new(None),
            owners: RwLock::new(HashMap::new()),
            call_timeout: Duration::from_millis(config.query.call_timeout_ms),
            retry: Duration::from_millis(config.query.retry_ms),
        })
    }

    /// Reads the leases again (blocking: call it from a thread outside the runtime).
    fn refresh(&self) -> std::result::Result<(), String> {
        let owners = self.rt.block_on(async {
            let mut meta = self.meta.lock().await;
            if meta.as_ref().is_none_or(|m| !m.is_open()) {
                *meta = Some(
                    Meta::connect(&self.conninfo)
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            let m = meta.as_ref().expect("connected just above");
            m.owners().await.map_err(|e| e.to_string())
        })?;
        *self.owners.write().expect("owners poisoned") = owners
            .into_iter()
            .map(|(p, (_, _, address))| (p, address))
            .collect();
        Ok(())
    }

    fn address(&self, partition: u32) -> Option<String> {
        self.owners
            .read()
            .expect("owners poisoned")
            .get(&partition)
            .cloned()
    }
}

/// Partition `id`, answered by whichever indexer holds it.
pub(crate) struct RemotePartition {
    pub id: u16,
    pub directory: Arc<Directory>,
}

impl Partition for RemotePartition {
    fn answer(&self, request: &Request) -> Result<Answer> {
        let dir = &self.directory;
        let p = u32::from(self.id);
        let started = Instant::now();
        let budget = request.budget_ms.map(Duration::from_millis);
        let (until, by_deadline) = match budget {
            Some(b) if b < dir.retry => (started + b, true),
            _ => (started + dir.retry, false),
        };
        let mut pause = FIRST_PAUSE;
        let mut last;
        if dir.address(p).is_none() {
            let _ = dir.refresh();
        }
        loop {
            last = match dir.address(p) {
                None => "no live lease with an indexer's address".to_string(),
                Some(addr) => {
                    let mut asked = request.clone();
                    asked.budget_ms = budget.map(|_| {
                        until.saturating_duration_since(Instant::now()).as_millis() as u64
                    });
                    let timeout = dir
                        .call_timeout
                        .min(until.saturating_duration_since(Instant::now()))
                        .max(Duration::from_millis(1));
                    match call(&addr, &serving::encode_request(&asked), timeout) {
                        Ok(PartitionReply::Answer(a)) => return Ok(a),
                        Ok(PartitionReply::Failed(f)) => return Err(f.into_error()),
                        Ok(PartitionReply::NotHeld { owner, .. }) => {
                            format!("{owner} at {addr} does not serve it")
                        }
                        Err(e) => format!("{addr}: {e}"),
                    }
                }
            };
            if Instant::now() + pause >= until {
                tracing::warn!(partition = p, last = %last, "no indexer answered the partition");
                return Err(match by_deadline {
                    true => QueryError::DeadlineExceeded,
                    false => QueryError::Remote {
                        message: format!(
                            "partition {p}: no indexer answered within {} ms ({last})",
                            dir.retry.as_millis()
                        ),
                    },
                });
            }
            tracing::info!(partition = p, last = %last, "asking the partition again");
            std::thread::sleep(pause);
            pause = (pause * 2).min(MAX_PAUSE);
            if let Err(e) = dir.refresh() {
                last = format!("reading the leases: {e}");
                tracing::warn!(partition = p, error = %last, "leases not read");
            }
        }
    }
}

/// One `POST /v1/partition` to `addr` on a fresh connection.
fn call(addr: &str, body: &[u8], timeout: Duration) -> std::result::Result<PartitionReply, String> {
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no such address")?;
    let mut s = TcpStream::connect_timeout(&sock, CONNECT_TIMEOUT.min(timeout))
        .map_err(|e| format!("connecting: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|_| s.set_write_timeout(Some(timeout)))
        .and_then(|_| s.set_nodelay(true))
        .map_err(|e| e.to_string())?;
    let head = format!(
        "POST /v1/partition HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        serving::CONTENT_TYPE,
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(body))
        .map_err(|e| format!("sending: {e}"))?;
    let mut raw = Vec::new();
    let cap = (serving::MAX_REPLY_BYTES + (64 << 10)) as u64;
    (&mut s)
        .take(cap)
        .read_to_end(&mut raw)
        .map_err(|e| format!("reading: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no response head")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = &raw[split + 4..];
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "200" {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).to_string();
        return Err(format!("HTTP {status}: {text}"));
    }
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    });
    if length != Some(body.len()) {
        return Err(format!(
            "an answer of {} bytes, {length:?} announced",
            body.len()
        ));
    }
    serving::decode_reply(body)
}
