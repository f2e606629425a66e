//! A partition as a query node reaches it ([`RemotePartition`]). Who may answer it
//! ([`Directory`], read from PostgreSQL by a task of its own every `index.renew_ms`,
//! and early (at most every [`MIN_READ_GAP`]) when a query found nobody answering;
//! every connect and statement bounded by `index.lease_ms`, so a hung PostgreSQL only
//! ages the view: queries never wait on PostgreSQL): this node's own read replica (asked in process), the live
//! replicas other query nodes advertise (`query_members.serving`, in rendezvous
//! order), then the indexer holding its lease (`leases` joined with
//! `members.address`). A call that fails (connection refused, reset, timeout, a
//! broken answer), is answered `NotHeld`, or that a replica answers with a failure of
//! its own (its store, its vocabulary: not the caller's mistake, a limit or the
//! deadline, which any other would answer alike) moves to the next of them at once; an
//! address that failed is asked last for a lease's length. When none answered, an
//! early read of the directory is asked for and they are asked again, with a growing pause (50 ms
//! doubling to 1 s), until `query.retry_ms` or the query's deadline, whichever comes
//! first. So a query node killed mid-query costs its callers only the calls it was
//! answering, re-sent elsewhere; a killed indexer's partitions answer from replicas,
//! or again once another indexer has taken them over.
//!
//! The call is plain blocking HTTP/1.1 on a fresh connection (the federation asks
//! partitions from threads of its own), the answer bounded by
//! `serving::MAX_REPLY_BYTES`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sightline_cluster::meta::Meta;
use sightline_cluster::replica::score;
use sightline_cluster::serving::{self, Held, PartitionReply};
use sightline_cluster::ClusterConfig;
use sightline_query::federated::{Answer, Failure, Partition, Request};
use sightline_query::{QueryError, Result};

/// First pause before asking a failed partition again; it doubles up to
/// [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// Longest wait for a connection to an indexer or a query node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Early reads of the directory (after failed calls) are this far apart at least.
pub(crate) const MIN_READ_GAP: Duration = Duration::from_millis(250);

/// Who answered partition calls of this query node, by kind.
#[derive(Default)]
pub(crate) struct Answered {
    /// This node's own replicas, in process.
    pub local: AtomicU64,
    /// Other query nodes' replicas.
    pub replica: AtomicU64,
    /// Indexers (the lease holders).
    pub indexer: AtomicU64,
}

/// What the directory last read.
#[derive(Default)]
struct View {
    /// partition → its owner's address.
    owners: HashMap<u32, String>,
    /// partition → other query nodes serving a replica of it: (member, address), in
    /// rendezvous order.
    replicas: HashMap<u32, Vec<(String, String)>>,
    read_at: Option<Instant>,
}

/// Where partitions are answered, as PostgreSQL says.
pub(crate) struct Directory {
    conninfo: String,
    /// The cluster's shared secret, sent with every partition request.
    partition_token: Option<String>,
    /// With `[tls]`: partition calls over TLS, the listener checked against the
    /// cluster's CA and the address dialled, this node's certificate presented.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Only the reading task uses it.
    meta: tokio::sync::Mutex<Option<Meta>>,
    view: RwLock<View>,
    call_timeout: Duration,
    retry: Duration,
    /// The view is read again this often.
    fresh: Duration,
    /// Bound of each PostgreSQL connect and statement.
    pg_timeout: Duration,
    /// Wakes the reading task early.
    early: Arc<tokio::sync::Notify>,
    /// A failed address is asked last for this long.
    suspect_for: Duration,
    suspects: Mutex<HashMap<String, Instant>>,
    /// This query node's name among the query members, and its own replicas.
    me: String,
    local: Option<Arc<Held>>,
    pub answered: Answered,
}

/// One place a partition may be asked.
enum Target {
    Local(Arc<Held>),
    Replica { member: String, address: String },
    Owner { address: String },
}

impl Target {
    fn address(&self) -> Option<&str> {
        match self {
            Target::Local(_) => None,
            Target::Replica { address, .. } | Target::Owner { address } => Some(address),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Local(_) => write!(f, "this node's replica"),
            Target::Replica { member, address } => write!(f, "{member}'s replica at {address}"),
            Target::Owner { address } => write!(f, "the indexer at {address}"),
        }
    }
}

impl Directory {
    /// A directory whose view is read at once (bounded) and then kept current by a
    /// task of its own on the current runtime, which ends when the directory drops.
    pub async fn start(config: &ClusterConfig, local: Option<Arc<Held>>) -> Arc<Directory> {
        let dir = Arc::new(Directory {
            conninfo: config.postgres.clone(),
            partition_token: config.partition_token.clone(),
            tls: sightline_cluster::tls::client_config(),
            meta: tokio::sync::Mutex::new(None),
            view: RwLock::new(View::default()),
            call_timeout: Duration::from_millis(config.query.call_timeout_ms),
            retry: Duration::from_millis(config.query.retry_ms),
            fresh: Duration::from_millis(config.index.renew_ms),
            pg_timeout: Duration::from_millis(config.index.lease_ms),
            early: Arc::new(tokio::sync::Notify::new()),
            suspect_for: Duration::from_millis(config.index.lease_ms),
            suspects: Mutex::new(HashMap::new()),
            me: config.owner(),
            local,
            answered: Answered::default(),
        });
        if let Err(e) = dir.read().await {
            tracing::warn!(error = %e, "directory not read; reading it again in the background");
        }
        let weak = Arc::downgrade(&dir);
        let (fresh, early) = (dir.fresh, dir.early.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(fresh) => {}
                    _ = early.notified() => tokio::time::sleep(MIN_READ_GAP).await,
                }
                let Some(dir) = weak.upgrade() else { return };
                if let Err(e) = dir.read().await {
                    tracing::warn!(error = %e, "directory not read; queries ask as last read");
                }
            }
        });
        dir
    }

    /// Asks the reading task for a read now (it reads at most every [`MIN_READ_GAP`]).
    pub fn read_soon(&self) {
        self.early.notify_one();
    }

    /// How old the view is (`None`: never read).
    pub fn age(&self) -> Option<Duration> {
        self.view
            .read()
            .expect("view poisoned")
            .read_at
            .map(|t| t.elapsed())
    }

    /// Reads owners and replicas again, each PostgreSQL call bounded.
    async fn read(&self) -> std::result::Result<(), String> {
        let mut meta = self.meta.lock().await;
        let within = self.pg_timeout;
        if meta.as_ref().is_none_or(|m| !m.is_open()) {
            *meta = Some(
                Meta::connect_within(&self.conninfo, within)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let m = meta.as_ref().expect("connected just above");
        let read = async {
            let owners = m.owners().await.map_err(|e| e.to_string())?;
            let members = m.query_members().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((owners, members))
        };
        let (owners, members) = match tokio::time::timeout(within, read).await {
            Ok(r) => r?,
            Err(_) => {
                // The connection may be stuck: a new one next time.
                *meta = None;
                return Err(format!(
                    "PostgreSQL did not answer in {} ms",
                    within.as_millis()
                ));
            }
        };
        let mut replicas: HashMap<u32, Vec<(u64, String, String)>> = HashMap::new();
        for q in members.into_iter().filter(|q| q.member != self.me) {
            let Some(address) = q.address else { continue };
            for p in q.serving {
                replicas.entry(p).or_default().push((
                    score(p, &q.member),
                    q.member.clone(),
                    address.clone(),
                ));
            }
        }
        let replicas = replicas
            .into_iter()
            .map(|(p, mut v)| {
                v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
                (p, v.into_iter().map(|(_, m, a)| (m, a)).collect())
            })
            .collect();
        *self.view.write().expect("view poisoned") = View {
            owners: owners
                .into_iter()
                .map(|(p, (_, _, address))| (p, address))
                .collect(),
            replicas,
            read_at: Some(Instant::now()),
        };
        Ok(())
    }

    /// Partitions other query nodes serve, as last read.
    pub fn replicated(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .view
            .read()
            .expect("view poisoned")
            .replicas
            .keys()
            .copied()
            .collect();
        v.sort_unstable();
        v
    }

    fn suspected(&self, address: &str) -> bool {
        let mut s = self.suspects.lock().expect("suspects poisoned");
        match s.get(address) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                s.remove(address);
                false
            }
            None => false,
        }
    }

    fn suspect(&self, address: &str) {
        self.suspects
            .lock()
            .expect("suspects poisoned")
            .insert(address.to_string(), Instant::now() + self.suspect_for);
    }

    /// Who may answer `partition`, in the order they are asked: this node's replica,
    /// other replicas, the owner; addresses that failed lately last.
    fn targets(&self, partition: u32) -> Vec<Target> {
        let mut out = Vec::new();
        if let Some(held) = &self.local {
            if held.holds(partition) {
                out.push(Target::Local(held.clone()));
            }
        }
        let view = self.view.read().expect("view poisoned");
        for (member, address) in view.replicas.get(&partition).into_iter().flatten() {
            out.push(Target::Replica {
                member: member.clone(),
                address: address.clone(),
            });
        }
        if let Some(address) = view.owners.get(&partition) {
            out.push(Target::Owner {
                address: address.clone(),
            });
        }
        drop(view);
        // A stable sort: the suspected go last, in their order.
        out.sort_by_key(|t| t.address().is_some_and(|a| self.suspected(a)));
        out
    }

    /// Asks `target` once.
    fn ask(
        &self,
        target: &Target,
        request: &Request,
        timeout: Duration,
    ) -> std::result::Result<PartitionReply, String> {
        let reply = match target {
            Target::Local(held) => Ok(held.answer(request)),
            Target::Replica { address, .. } | Target::Owner { address } => {
                let token = self.partition_token.as_deref();
                let body = serving::encode_request(request);
                call(address, token, self.tls.as_ref(), &body, timeout)
            }
        };
        if let Ok(PartitionReply::Answer(_)) = reply {
            let counter = match target {
                Target::Local(_) => &self.answered.local,
                Target::Replica { .. } => &self.answered.replica,
                Target::Owner { .. } => &self.answered.indexer,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        reply
    }
}

/// Partition `id`, answered by a replica or by the indexer holding it.
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
        let mut last = String::new();
        loop {
            let targets = dir.targets(p);
            if targets.is_empty() {
                last = "no live replica and no live lease with an indexer's address".into();
            }
            for target in &targets {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let mut asked = request.clone();
                asked.budget_ms = budget.map(|_| left.as_millis() as u64);
                let timeout = dir.call_timeout.min(left).max(Duration::from_millis(1));
                match dir.ask(target, &asked, timeout) {
                    Ok(PartitionReply::Answer(a)) => return Ok(a),
                    // A replica's own failure (its store, its vocabulary) is asked
                    // elsewhere; the caller's mistakes, limits and the deadline are
                    // answers (anyone would answer them alike).
                    Ok(PartitionReply::Failed(Failure::Failed { message }))
                        if !matches!(target, Target::Owner { .. }) && replica_fault(&message) =>
                    {
                        last = format!("{target} failed: {message}");
                        tracing::warn!(partition = p, last = %last, "a replica failed; asking the next");
                    }
                    Ok(PartitionReply::Failed(f)) => return Err(f.into_error()),
                    Ok(PartitionReply::NotHeld { owner, .. }) => {
                        last = format!("{target} ({owner}) does not serve it");
                    }
                    Err(e) => {
                        if let Some(a) = target.address() {
                            dir.suspect(a);
                        }
                        last = format!("{target}: {e}");
                        tracing::info!(partition = p, last = %last, "a partition call failed; asking the next");
                    }
                }
            }
            if Instant::now() + pause >= until {
                tracing::warn!(partition = p, last = %last, "nobody answered the partition");
                return Err(match by_deadline {
                    true => QueryError::DeadlineExceeded,
                    false => QueryError::Remote {
                        message: format!(
                            "partition {p}: nobody answered within {} ms ({last})",
                            dir.retry.as_millis()
                        ),
                    },
                });
            }
            tracing::info!(partition = p, last = %last, "asking the partition again");
            dir.read_soon();
            std::thread::sleep(pause);
            pause = (pause * 2).min(MAX_PAUSE);
            if dir.age().is_none_or(|a| a > dir.fresh * 4) {
                last = format!(
                    "{last}; the directory of who serves what is {}",
                    dir.age().map_or("not read yet".to_string(), |a| format!(
                        "{} ms old (PostgreSQL unreachable?)",
                        a.as_millis()
                    ))
                );
            }
        }
    }
}

/// Whether a replica's failure `message` is its own (its store or vocabulary failed,
/// or it is unavailable), so that another replica or the owner may answer: a
/// storage or vocabulary I/O, corruption or catalog failure, a store failed by an
/// earlier error. Anything else (a limit, a refused value) any of them would answer
/// alike: it is the answer, not asked again.
fn replica_fault(message: &str) -> bool {
    const OWN: &[&str] = &[
        "vocabulary",
        "I/O error",
        "corrupt file",
        "catalog error",
        "store is failed",
        // A segment the replica fetches on first use (object storage away, or the
        // object failed verification: `storage::SegmentCache`).
        "fetching segment",
    ];
    OWN.iter().any(|p| message.starts_with(p))
}

/// One `POST /v1/partition` to `addr` on a fresh connection, with the cluster's
/// `partition_token` as a bearer token when it has one; over TLS with `tls` (the
/// listener's certificate must name `addr`'s host and chain to the cluster's CA).
fn call(
    addr: &str,
    token: Option<&str>,
    tls: Option<&Arc<rustls::ClientConfig>>,
    body: &[u8],
    timeout: Duration,
) -> std::result::Result<PartitionReply, String> {
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no such address")?;
    let until = Instant::now() + timeout;
    let s = TcpStream::connect_timeout(&sock, CONNECT_TIMEOUT.min(timeout))
        .map_err(|e| format!("connecting: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    // The whole call within `timeout`, however the peer paces its bytes.
    let s = Bounded { s, until };
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "POST /v1/partition HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{authorization}Connection: close\r\n\r\n",
        serving::CONTENT_TYPE,
        body.len()
    );
    let raw = match tls {
        None => exchange(s, head.as_bytes(), body)?,
        Some(config) => {
            let host = addr
                .rsplit_once(':')
                .map_or(addr, |(h, _)| h)
                .trim_start_matches('[')
                .trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| format!("{host:?} is no TLS server name: {e}"))?;
            let conn = rustls::ClientConnection::new(config.clone(), name)
                .map_err(|e| format!("TLS: {e}"))?;
            exchange(rustls::StreamOwned::new(conn, s), head.as_bytes(), body)?
        }
    };
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
    let length = content_length(&head);
    if length != Some(body.len()) {
        return Err(format!(
            "an answer of {} bytes, {length:?} announced",
            body.len()
        ));
    }
    serving::decode_reply(body)
}

fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    })
}

/// Sends the request and reads the whole answer (the server closes the connection
/// after it), at most `serving::MAX_REPLY_BYTES` and a head. A TLS peer that closes
/// without `close_notify` after a complete answer is taken as finished: the answer's
/// length is checked against its `Content-Length` by the caller.
fn exchange(
    mut s: impl Read + Write,
    head: &[u8],
    body: &[u8],
) -> std::result::Result<Vec<u8>, String> {
    s.write_all(head)
        .and_then(|_| s.write_all(body))
        .and_then(|_| s.flush())
        .map_err(|e| format!("sending: {e}"))?;
    let mut raw = Vec::new();
    let cap = (serving::MAX_REPLY_BYTES + (64 << 10)) as u64;
    match (&mut s).take(cap).read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && complete(&raw) => Ok(raw),
        Err(e) => Err(format!("reading: {e}")),
    }
}

/// A connection whose every read and write waits at most until `until`: a peer
/// sending a byte just inside each socket timeout cannot hold a call past its own.
struct Bounded {
    s: TcpStream,
    until: Instant,
}

impl Bounded {
    fn left(&self) -> std::io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        match left.is_zero() {
            true => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the call's time is up",
            )),
            false => Ok(left),
        }
    }
}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.left()?;
        self.s.set_read_timeout(Some(left))?;
        self.s.read(buf)
    }
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let left = self.left()?;
        self.s.set_write_timeout(Some(left))?;
        self.s.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.s.flush()
    }
}

/// Whether `raw` holds a head and as many body bytes as it announced.
fn complete(raw: &[u8]) -> bool {
    raw.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .is_some_and(|split| {
            let head = String::from_utf8_lossy(&raw[..split]);
            content_length(&head) == Some(raw.len() - split - 4)
        })
}

#[cfg(test)]
mod tests {
    use super::replica_fault;

    #[test]
    fn only_a_replicas_own_failures_are_asked_elsewhere() {
        assert!(replica_fault("vocabulary: I/O error on /x: gone"));
        assert!(replica_fault("I/O error on /data/r1-g2/seg: No such file"));
        assert!(replica_fault("corrupt file /a at offset 3: bad"));
        assert!(replica_fault(
            "fetching segment /q/r1-g1/segments/20000/1-7.seg: partition 1: get range p1/e1/bundle/x"
        ));
        assert!(replica_fault(
            "store is failed after an earlier I/O error (x); reopen it to recover"
        ));
        assert!(!replica_fault(
            "limit exceeded: rows is 20000, the maximum is 10000"
        ));
        assert!(!replica_fault("invalid setting window: too long"));
    }
}
