//! Read replicas of partitions on query nodes (GreptimeDB's follower regions,
//! Quickwit's searchers over object storage): a query node answers most partition
//! requests itself or from another query node, and the indexers keep the log and the
//! commits.
//!
//! **Membership.** Every query node with `query.replicas > 0` heartbeats
//! `query_members` (its name, where it answers partition requests, the replicas it
//! serves) every `index.renew_ms`, alive for `index.lease_ms` (the indexers' lease
//! rhythm: a dead query node's partitions move once its row expires, as a dead
//! indexer's do). Each node works out the same assignment from the live members:
//! partition P goes to the `query.replicas` members of highest
//! [`score`]`(P, member)` (rendezvous hashing: a member joining or leaving moves only
//! the partitions it gains or held).
//!
//! **A replica** ([`run_replica`]): the committed state read in one snapshot
//! ([`Meta::committed`]: segments, dictionary chunks, checkpoint), restored from
//! object storage into `query.data/r{P}-g{n}` ([`restore::restore_committed`]), then
//! an ephemeral *ordered* JetStream consumer on `ev.{P}.>` from `checkpoint_seq + 1`
//! (no acks; the client re-creates it from the last sequence seen after a gap)
//! whose messages go through the indexer's append path
//! ([`append_messages`]). It never acks, commits or uploads: the owner does. It is
//! offered in [`Held`] (and advertised in `query_members.serving`) once it has read
//! the log to its end, as the server counts it (the indexer's empty fetch): nothing
//! pending when its consumer was made, as many messages come as were pending then,
//! or a message with nothing pending after it. It stops answering
//! ([`Held::suspend`]) while it may be missing recent events: its consumer failed,
//! ended or could not be made, or it has not been known caught up for a while (a
//! silent consumer is replaced by one of its own, which says what is pending); it
//! answers again once caught up, and is withdrawn when its task ends.
//!
//! A replica's store gives each event the local sequence number its owner's gives:
//! both start from the same committed segments and append the same log in the same
//! order, with the time-dependent bounds checked against the time the stream stored
//! each message, not the local clock ([`append_messages`]). Each commit of the
//! owner is checked: once the replica has appended through its checkpoint, its next
//! local sequence must be the catalog's highest plus one, else it is restored again.
//! A failed replica (restore, check) is made again after an exponential pause.
//!
//! **Handing over.** A partition no longer assigned here (a member joined) is kept
//! until every member it is now assigned to serves it, then dropped.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::{self, Context};
use futures::{FutureExt, StreamExt};
use sightline_storage::{SegmentCache, Store, StoreConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ClusterConfig;
use crate::error::{ClusterError, Result};
use crate::indexer::partition::append_messages;
use crate::log;
use crate::meta::{Meta, QueryMember};
use crate::objects::Objects;
use crate::partition::{fnv1a64, partition_filter};
use crate::restore;
use crate::serving::Held;

/// A replica's store may hold this much in memory parts before it seals (as an
/// indexer's partition store).
const REPLICA_MEMORY_BYTES: u64 = 256 << 20;
/// How long the replica waits for a message before it looks at its maintenance.
const IDLE: Duration = Duration::from_millis(200);
/// A replica's store is maintained (due seals, compaction of closed days, retention)
/// this often, as a single node's.
const MAINTAIN_EVERY: Duration = Duration::from_secs(30);
/// Pause before a failed replica's consumer is made again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// The rendezvous weight of `member` for `partition`: FNV-1a 64 of
/// `"{partition}/{member}"`, mixed by SplitMix64's finaliser (FNV alone leaves
/// strings that differ in a last digit too close).
pub fn score(partition: u32, member: &str) -> u64 {
    let mut z = fnv1a64(format!("{partition}/{member}").as_bytes());
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The members `partition` is assigned to: the `n` of highest [`score`] (ties by
/// name), best first.
pub fn rendezvous<'a>(partition: u32, members: &[&'a str], n: usize) -> Vec<&'a str> {
    let mut ranked: Vec<(u64, &str)> = members.iter().map(|m| (score(partition, m), *m)).collect();
    ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked.into_iter().take(n).map(|(_, m)| m).collect()
}

/// What every replica task of a query node shares.
struct Shared {
    config: ClusterConfig,
    objects: Objects,
    js: Context,
    held: Arc<Held>,
    status: Status,
    /// The owners' last commits of the partitions replicated here (read by the
    /// supervisor every `index.renew_ms`): partition → (checkpoint, max local seq).
    commits: watch::Sender<HashMap<u32, (u64, u64)>>,
    /// The node's segment cache (`query.segment_cache_bytes` > 0): replicas restore
    /// without their segment files and fetch each on first use into it.
    cache: Option<Arc<SegmentCache>>,
    /// The cluster's retention policy as last read (`crate::retention`), applied by
    /// every replica at its maintenance, and at once when it changes.
    retention: watch::Sender<Option<u32>>,
}

/// How far one replica has read the log (reported by the query node's `/health`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Lag {
    /// The replica's generation on this node.
    pub generation: i64,
    /// The last stream sequence appended.
    pub appended: u64,
    /// The partition's last stream sequence as last seen from the log (`appended`
    /// plus what its consumer said was pending); `None` before the first look.
    pub log_last: Option<u64>,
    /// Whether it answers queries now (caught up, its consumer healthy).
    pub serving: bool,
    /// Milliseconds since it was last known caught up with the log.
    pub caught_up_ms_ago: Option<u64>,
}

/// Every replica's [`Lag`] by partition, shared with whoever reports it.
pub type Status = Arc<std::sync::Mutex<std::collections::BTreeMap<u32, Lag>>>;

struct Running {
    stop: watch::Sender<bool>,
    join: JoinHandle<Result<()>>,
    started: Instant,
}

/// First pause before a replica that failed (its restore, its consumer, its
/// consistency check) is made again; it doubles per failure in a row up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(120);
/// A replica that ran this long before failing starts its backoff afresh.
const RAN_WELL: Duration = Duration::from_secs(300);

/// The pause before a replica is made again after `failures` failures in a row.
fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

/// Whether `name` is a replica's directory in `query.data`: `r{P}-g{n}` or
/// `r{P}-g{n}-vocabulary` (and nothing else an operator may keep there).
fn is_replica_dir(name: &str) -> bool {
    let name = name.strip_suffix("-vocabulary").unwrap_or(name);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    name.strip_prefix('r')
        .and_then(|rest| rest.split_once("-g"))
        .is_some_and(|(p, g)| digits(p) && digits(g))
}

/// Removes every replica directory in `data` ([`is_replica_dir`]).
fn clear_replicas(data: &std::path::Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(data) else {
        return Ok(());
    };
    for e in entries.flatten() {
        if is_replica_dir(&e.file_name().to_string_lossy()) {
            std::fs::remove_dir_all(e.path()).map_err(|source| ClusterError::Io {
                context: format!("removing {}", e.path().display()),
                source,
            })?;
        }
    }
    Ok(())
}

/// Runs this query node's replicas until `shutdown` completes: heartbeats
/// `query_members` (advertising `address`, where `held` is answered), replicates the
/// partitions of `0..partitions` the rendezvous assigns it, offers each in `held`
/// once caught up, and reports how far each has read in `status`. Then stops them
/// and leaves the members.
pub async fn run(
    config: ClusterConfig,
    partitions: u32,
    held: Arc<Held>,
    status: Status,
    address: Option<String>,
    cache: Option<Arc<SegmentCache>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let member = config.owner();
    let data = config.query.data.clone();
    std::fs::create_dir_all(&data).map_err(|source| ClusterError::Io {
        context: format!("creating {}", data.display()),
        source,
    })?;
    // Replicas of an earlier run are caches: made again from the catalog.
    let d = data.clone();
    tokio::task::spawn_blocking(move || clear_replicas(&d))
        .await
        .expect("clear task panicked")?;
    let shared = Arc::new(Shared {
        objects: Objects::new(&config.s3)?,
        js: log::connect(&config).await?,
        held,
        status,
        commits: watch::channel(HashMap::new()).0,
        retention: watch::channel(None).0,
        config: config.clone(),
        cache,
    });
    // Every PostgreSQL call bounded (a hung server must not stop the supervisor).
    let mut meta: Option<Meta>;
    tracing::info!(member, replicas = config.query.replicas, "replicas started");
    let mut running: HashMap<u32, Running> = HashMap::new();
    // Replicas handed over and told to stop: still awaited (at shutdown too, for a
    // lease at most; one stuck longer leaves its files to the next start's clearing).
    let mut stopping: Vec<JoinHandle<Result<()>>> = Vec::new();
    // partition → (failures in a row, not to be made again before)
    let mut failed: HashMap<u32, (u32, Instant)> = HashMap::new();
    let mut generation = 0i64;
    let mut tick = tokio::time::interval(config.renew());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        // Given back to the node's pool (`postgres_pool_size`) between ticks; each
        // tick borrows one.
        meta = None;
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        // Their ends were logged by their tasks (`replica ended` / `replica stopped`).
        stopping.retain(|j| !j.is_finished());
        let ended: Vec<u32> = running
            .iter()
            .filter(|(_, r)| r.join.is_finished())
            .map(|(p, _)| *p)
            .collect();
        for p in ended {
            let r = running.remove(&p).expect("listed just above");
            let ran = r.started.elapsed();
            match r.join.await {
                Ok(Ok(())) => {
                    failed.remove(&p);
                }
                Ok(Err(_)) | Err(_) => {
                    let before = failed.get(&p).map_or(0, |f| f.0);
                    let n = if ran >= RAN_WELL { 1 } else { before + 1 };
                    let pause = backoff(n);
                    tracing::info!(
                        partition = p,
                        failures = n,
                        pause_ms = pause.as_millis() as u64,
                        "replica failed; made again after a pause"
                    );
                    failed.insert(p, (n, Instant::now() + pause));
                }
            }
        }
        if meta.as_ref().is_none_or(|m| !m.is_open()) {
            match Meta::connect_within(&config.postgres, config.lease()).await {
                Ok(m) => meta = Some(m),
                Err(e) => {
                    tracing::warn!(error = %e, "PostgreSQL unreachable; replicas stay as they are");
                    continue;
                }
            }
        }
        let m = meta.as_ref().expect("connected just above");
        let served = shared.held.served();
        let heartbeat =
            m.query_heartbeat(&member, config.index.lease_ms, address.as_deref(), &served);
        let members = match tokio::time::timeout(config.lease(), heartbeat).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "query heartbeat failed; trying at the next tick");
                continue;
            }
            Err(_) => {
                tracing::warn!("query heartbeat timed out; a new connection at the next tick");
                m.abandon();
                continue;
            }
        };
        match tokio::time::timeout(config.lease(), m.retention_days()).await {
            Ok(Ok(days)) => {
                shared
                    .retention
                    .send_if_modified(|d| std::mem::replace(d, days) != days);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "retention policy not read"),
            Err(_) => {
                tracing::warn!(
                    "reading the retention policy timed out; a new connection at the next tick"
                );
                m.abandon();
                continue;
            }
        }
        let plan = assign(&member, &members, partitions, config.query.replicas);
        if !plan.take.is_empty() {
            let take: Vec<u32> = plan.take.iter().copied().collect();
            match tokio::time::timeout(config.lease(), m.commit_marks(&take)).await {
                Ok(Ok(marks)) => {
                    shared.commits.send_replace(marks);
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "commits not read"),
                Err(_) => {
                    tracing::warn!("reading commits timed out; a new connection at the next tick");
                    m.abandon();
                }
            }
        }
        for p in &plan.take {
            if running.contains_key(p) {
                continue;
            }
            if failed
                .get(p)
                .is_some_and(|(_, until)| Instant::now() < *until)
            {
                continue;
            }
            generation += 1;
            let (stop, stop_rx) = watch::channel(false);
            let (task_shared, partition, g) = (shared.clone(), *p, generation);
            let join = tokio::spawn(async move {
                let held = task_shared.held.clone();
                let status = task_shared.status.clone();
                let ran = run_replica(task_shared, partition, g, stop_rx).await;
                match &ran {
                    Ok(()) => tracing::info!(partition, "replica ended"),
                    Err(e) => tracing::warn!(partition, error = %e, "replica stopped"),
                }
                held.withdraw(partition, g);
                let mut status = status.lock().expect("replica status poisoned");
                if status.get(&partition).is_some_and(|l| l.generation == g) {
                    status.remove(&partition);
                }
                ran
            });
            running.insert(
                *p,
                Running {
                    stop,
                    join,
                    started: Instant::now(),
                },
            );
        }
        for p in &plan.drop {
            if let Some(r) = running.remove(p) {
                tracing::info!(partition = p, "replica handed over");
                let _ = r.stop.send(true);
                stopping.push(r.join);
            }
        }
        failed.retain(|p, _| plan.take.contains(p));
    }
    tracing::info!(member, "replicas stopping");
    for r in running.values() {
        let _ = r.stop.send(true);
    }
    // A replica stops at its next message or pause; one stuck in a call to S3 or
    // PostgreSQL is given up after a lease (its files are emptied at the next start).
    let joins = running.drain().map(|(_, r)| r.join).chain(stopping);
    let all = futures::future::join_all(joins);
    if tokio::time::timeout(config.lease(), all).await.is_err() {
        tracing::warn!("replicas not stopped within a lease; leaving them");
    }
    drop(meta);
    let leaving = async {
        let m = Meta::connect_within(&config.postgres, config.lease()).await?;
        m.leave_query(&member).await
    };
    let _ = tokio::time::timeout(config.lease(), leaving).await;
    Ok(())
}

/// What a query node should replicate now.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// Partitions assigned to it.
    take: BTreeSet<u32>,
    /// Partitions not assigned to it whose every assigned member serves them already
    /// (a replica held here is dropped then, not before).
    drop: BTreeSet<u32>,
}

fn assign(me: &str, members: &[QueryMember], partitions: u32, replicas: usize) -> Plan {
    let names: Vec<&str> = members.iter().map(|m| m.member.as_str()).collect();
    let mut plan = Plan::default();
    for p in 0..partitions {
        let chosen = rendezvous(p, &names, replicas);
        if chosen.contains(&me) {
            plan.take.insert(p);
            continue;
        }
        let covered = chosen.iter().all(|c| {
            members
                .iter()
                .any(|m| m.member == *c && m.serving.contains(&p))
        });
        if covered {
            plan.drop.insert(p);
        }
    }
    plan
}

fn replica_dir(data: &std::path::Path, partition: u32, generation: i64) -> PathBuf {
    data.join(format!("r{partition}-g{generation}"))
}

/// Removes a replica's store directory and its vocabulary beside it
/// (`serving::Held::offer` keeps it at `{dir}-vocabulary`).
fn remove_replica(dir: &std::path::Path) -> Result<()> {
    let mut vocabulary = dir.as_os_str().to_owned();
    vocabulary.push("-vocabulary");
    for path in [dir.to_path_buf(), PathBuf::from(vocabulary)] {
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ClusterError::Io {
                    context: format!("removing {}", path.display()),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// One replica: restore, then follow the log (module doc) until `stop`.
async fn run_replica(
    shared: Arc<Shared>,
    partition: u32,
    generation: i64,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let cfg = &shared.config;
    let p = partition;
    let data = cfg.query.data.clone();
    let dir = replica_dir(&data, p, generation);
    // Only this generation's files: an earlier replica of the partition may still be
    // stopping beside it (the supervisor empties the directory when it starts).
    let clear = {
        let dir = dir.clone();
        let cache = shared.cache.clone();
        move || {
            // Its fetched files go with the directory.
            if let Some(c) = &cache {
                c.forget_under(&dir);
            }
            remove_replica(&dir)
        }
    };
    tokio::task::spawn_blocking(clear.clone())
        .await
        .expect("clear task panicked")?;
    let started = Instant::now();
    // Told by the store's fetches when an object of a segment it lists is gone.
    let (gone, gone_rx) = watch::channel(None);
    let gone = Arc::new(gone);
    let restoring = async {
        let committed = {
            let mut meta = Meta::connect_within(&cfg.postgres, cfg.lease()).await?;
            tokio::time::timeout(cfg.lease(), meta.committed(p))
                .await
                .map_err(|_| ClusterError::Timeout("reading the committed state"))??
        };
        let store_config = StoreConfig {
            memory_budget_bytes: REPLICA_MEMORY_BYTES,
            // A cache: made again from S3 and the log whenever lost (and emptied at
            // start), so its writes skip fsync and leave the disk to the log's nodes
            // and the indexers.
            io: std::sync::Arc::new(sightline_storage::io::CacheIo),
            ..StoreConfig::default()
        };
        let (store, restored) = restore::restore_committed(
            &shared.objects,
            p,
            &committed,
            &dir,
            store_config,
            shared.cache.clone(),
            Some(gone),
        )
        .await?;
        Ok::<_, ClusterError>((committed, store, restored))
    };
    // A stop while PostgreSQL or S3 is away ends the restore too; a failed restore
    // (an object the janitor removed meanwhile, S3 or PostgreSQL away) leaves nothing
    // behind: the supervisor makes the replica again after a pause.
    let (committed, store, restored) = tokio::select! {
        r = restoring => match r {
            Ok(r) => r,
            Err(e) => {
                let _ = tokio::task::spawn_blocking(clear).await;
                return Err(e);
            }
        },
        _ = stop.changed() => {
            let _ = tokio::task::spawn_blocking(clear).await;
            return Ok(());
        }
    };
    tracing::info!(
        partition = p,
        segments = restored.segments,
        events = restored.events,
        lazy_segments = restored.lazy_segments,
        segment_bytes = restored.segment_bytes,
        index_bytes = restored.index_bytes,
        checkpoint = committed.checkpoint_seq,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "replica restored"
    );
    let ran = follow(
        &shared,
        p,
        generation,
        &store,
        committed.checkpoint_seq,
        &mut stop,
        &gone_rx,
    )
    .await;
    shared.held.withdraw(p, generation);
    drop(store);
    // The replica is a cache: its files go with it.
    let _ = tokio::task::spawn_blocking(clear).await;
    ran
}

/// Marks kept for the consistency check: (stream sequence, the store's next local
/// sequence once it was appended); older ones are dropped beyond this many.
const MAX_MARKS: usize = 100_000;

/// A following replica's state (module doc).
struct Follower<'a> {
    shared: &'a Shared,
    p: u32,
    generation: i64,
    store: &'a Store,
    /// The last stream sequence appended.
    last_seq: u64,
    /// Offered in `held` once (its index built); `serving` while it answers.
    offered: bool,
    serving: bool,
    /// When it was last known to have read the log to its end.
    proof: Option<Instant>,
    /// Messages of the partition past `last_seq` as the log last said.
    pending: Option<u64>,
    marks: VecDeque<(u64, u64)>,
    /// The last commit of the owner not checked yet: (checkpoint, max local seq).
    check: Option<(u64, u64)>,
    checked: Option<(u64, u64)>,
    /// A commit was checked and agreed (said once in the log).
    agreed: bool,
}

impl Follower<'_> {
    fn report(&self) {
        let lag = Lag {
            generation: self.generation,
            appended: self.last_seq,
            log_last: self.pending.map(|n| self.last_seq + n),
            serving: self.serving,
            caught_up_ms_ago: self.proof.map(|t| t.elapsed().as_millis() as u64),
        };
        self.shared
            .status
            .lock()
            .expect("replica status poisoned")
            .insert(self.p, lag);
    }

    /// It has read the log to its end: answers queries (offered the first time). An
    /// offer that fails (its index could not be opened: S3 away while it read a
    /// segment) or a resume of a partition no longer held is an error: the replica
    /// ends and is made again, never left listed as serving while it is not.
    async fn caught_up(&mut self, stop: &watch::Receiver<bool>) -> Result<()> {
        self.proof = Some(Instant::now());
        self.pending = Some(0);
        if *stop.borrow() || self.serving {
            self.report();
            return Ok(());
        }
        let (p, g) = (self.p, self.generation);
        if !self.offered {
            tracing::info!(
                partition = p,
                last_seq = self.last_seq,
                "replica caught up with the log"
            );
            let (held, store) = (self.shared.held.clone(), self.store.clone());
            let offered = tokio::task::spawn_blocking(move || {
                !fault_first_offer() && held.offer(p, g, &store)
            })
            .await
            .expect("offer task panicked");
            if !offered {
                return Err(ClusterError::Catalog {
                    partition: p,
                    reason: "the replica could not be offered (its index not opened, or a newer generation served)".into(),
                });
            }
            self.offered = true;
        } else {
            tracing::info!(
                partition = p,
                last_seq = self.last_seq,
                "replica caught up again"
            );
            if !self.shared.held.resume(p, g) {
                return Err(ClusterError::Catalog {
                    partition: p,
                    reason: "the replica is no longer held".into(),
                });
            }
        }
        self.serving = true;
        self.report();
        Ok(())
    }

    /// It may be missing recent events: stops answering until caught up again.
    fn suspend(&mut self, why: &str) {
        if self.serving {
            tracing::warn!(
                partition = self.p,
                last_seq = self.last_seq,
                why,
                "replica not answering queries"
            );
            self.shared.held.suspend(self.p, self.generation);
            self.serving = false;
            self.report();
        }
    }

    /// Checks the owner's last commit against what this store numbered: appended
    /// through the commit's checkpoint, its next local sequence must be the
    /// catalog's highest plus one.
    fn check_commit(&mut self) -> Result<()> {
        let commit = self.shared.commits.borrow().get(&self.p).copied();
        if commit.is_some() && commit != self.checked {
            self.checked = commit;
            self.check = commit;
        }
        let Some(commit) = self.check else {
            return Ok(());
        };
        match check_marks(&mut self.marks, self.last_seq, commit) {
            Checked::NotYet => Ok(()),
            Checked::Agrees => {
                if !self.agreed {
                    self.agreed = true;
                    tracing::info!(
                        partition = self.p,
                        checkpoint = commit.0,
                        "replica numbering agrees with its owner's commit"
                    );
                }
                self.check = None;
                Ok(())
            }
            Checked::Differs(reason) => Err(ClusterError::Diverged {
                partition: self.p,
                reason,
            }),
        }
    }
}

/// The test fault point `SIGHTLINE_CLUSTER_FAULT=fail-first-offer`: the first offer
/// of the process fails (as when its index cannot be opened: S3 away meanwhile).
fn fault_first_offer() -> bool {
    static TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    std::env::var("SIGHTLINE_CLUSTER_FAULT").is_ok_and(|f| f == "fail-first-offer")
        && !TAKEN.swap(true, std::sync::atomic::Ordering::SeqCst)
}

/// What [`check_marks`] found.
#[derive(Debug, PartialEq, Eq)]
enum Checked {
    /// Not appended through the checkpoint yet.
    NotYet,
    /// The numbering agrees (or the checkpoint is older than the marks kept).
    Agrees,
    Differs(String),
}

/// Checks the owner's commit `(checkpoint, max_seq)` against `marks` (each message
/// appended: its stream sequence, the next local sequence after it) of a replica that
/// has appended through `last_seq`: through the checkpoint, its next local sequence
/// must be `max_seq + 1`. Marks before the one checked are dropped.
fn check_marks(marks: &mut VecDeque<(u64, u64)>, last_seq: u64, commit: (u64, u64)) -> Checked {
    let (checkpoint, max_seq) = commit;
    if last_seq < checkpoint {
        return Checked::NotYet;
    }
    // The state after the last message of the partition at or before the checkpoint.
    let Some(i) = marks.iter().rposition(|(s, _)| *s <= checkpoint) else {
        return Checked::Agrees; // older than the marks kept
    };
    let next = marks[i].1;
    marks.drain(..i);
    match next == max_seq + 1 {
        true => Checked::Agrees,
        false => Checked::Differs(format!(
            "through stream sequence {checkpoint} its next local sequence is {next}, the owner committed up to {max_seq}"
        )),
    }
}

/// Appends the log from `checkpoint + 1` to `store`, answering queries while caught
/// up (module doc), until `stop`.
async fn follow(
    shared: &Shared,
    p: u32,
    generation: i64,
    store: &Store,
    checkpoint: u64,
    stop: &mut watch::Receiver<bool>,
    gone: &watch::Receiver<Option<String>>,
) -> Result<()> {
    let cfg = &shared.config;
    // An object a listed segment needs is gone (the commits since the restore
    // stopped naming it and the janitor removed it): every read of it would fail
    // for ever, so the replica ends and is restored from the current catalog.
    let ensure_objects = || match gone.borrow().as_ref() {
        None => Ok(()),
        Some(key) => Err(ClusterError::Catalog {
            partition: p,
            reason: format!("{key} is gone from object storage; the replica is restored again"),
        }),
    };
    // Without proof of being caught up for this long, a consumer silent as long is
    // made again (it says how much is pending); for twice as long, the replica stops
    // answering.
    let recheck = cfg.lease().max(Duration::from_secs(2));
    let give_up = recheck * 2;
    let mut f = Follower {
        shared,
        p,
        generation,
        store,
        last_seq: checkpoint,
        offered: false,
        serving: false,
        proof: None,
        pending: None,
        marks: VecDeque::from([(checkpoint, store.next_seq())]),
        check: None,
        checked: None,
        agreed: false,
    };
    f.report();
    let mut last_maintained = Instant::now();
    let mut retention_applied = None;
    'consumer: loop {
        if *stop.borrow() {
            return Ok(());
        }
        let consumer = match ordered_consumer(shared, p, f.last_seq).await {
            Ok(c) => c,
            Err(e) => {
                f.suspend("no consumer");
                tracing::warn!(partition = p, error = %e, "no replica consumer yet");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_PAUSE) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        };
        let made = Instant::now();
        let mut last_message = made;
        // Messages the log held past `last_seq` when the consumer was made: once this
        // many have come, the replica has read the log to its end as of then.
        let mut behind = consumer.cached_info().num_pending;
        f.pending = Some(behind);
        if behind == 0 {
            f.caught_up(stop).await?;
        }
        f.report();
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                f.suspend("consumer did not start");
                tracing::warn!(partition = p, error = %e, "replica consumer did not start");
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        loop {
            let retention = *shared.retention.borrow();
            if last_maintained.elapsed() >= MAINTAIN_EVERY || retention != retention_applied {
                last_maintained = Instant::now();
                retention_applied = retention;
                let s = store.clone();
                // Retention between appends, on this task (`crate::retention::apply`).
                let maintain = move || {
                    s.maintain()?;
                    crate::retention::apply(&s, retention).map(|_| ())
                };
                if let Err(e) = tokio::task::spawn_blocking(maintain)
                    .await
                    .expect("maintenance task panicked")
                {
                    tracing::warn!(partition = p, error = %e, "replica maintenance failed");
                }
                f.report();
            }
            f.check_commit()?;
            ensure_objects()?;
            // An index that fails every read (a segment retention's recomputation
            // could not read): made again rather than failing over for ever.
            if shared
                .held
                .index_of(p, generation)
                .is_some_and(|i| i.is_broken())
            {
                return Err(ClusterError::Catalog {
                    partition: p,
                    reason: "its index is broken; the replica is restored again".into(),
                });
            }
            let proof_age = f.proof.map_or(made.elapsed(), |t| t.elapsed());
            if proof_age > give_up {
                f.suspend("not known to be caught up with the log");
            }
            if proof_age > recheck && last_message.elapsed() > recheck {
                // Silent and not known caught up: a consumer of our own from
                // `last_seq + 1` says how far the log goes.
                continue 'consumer;
            }
            let next = tokio::select! {
                _ = stop.changed() => return Ok(()),
                n = tokio::time::timeout(IDLE, messages.next()) => n,
            };
            let first = match next {
                // Nothing came for a while (which alone says nothing of the log's end:
                // a consumer may be slow to start).
                Err(_) => continue,
                Ok(None) => {
                    f.suspend("consumer ended");
                    tracing::warn!(partition = p, "replica consumer ended; a new one");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue 'consumer;
                }
                Ok(Some(Err(e))) => {
                    f.suspend("consumer failed");
                    tracing::warn!(partition = p, error = %e, "replica consumer failed; a new one");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue 'consumer;
                }
                Ok(Some(Ok(m))) => m,
            };
            last_message = Instant::now();
            // Whatever else has arrived, without waiting, up to a batch.
            let mut batch = vec![first];
            let mut broken = false;
            while batch.len() < cfg.index.fetch_batch {
                match messages.next().now_or_never() {
                    Some(Some(Ok(m))) => batch.push(m),
                    Some(Some(Err(_))) | Some(None) => {
                        broken = true;
                        break;
                    }
                    None => break,
                }
            }
            // A consumer the client made again before its first message reads the
            // stream from its beginning: make our own from `last_seq + 1` instead.
            if batch
                .iter()
                .any(|m| m.info().map_or(true, |i| i.stream_sequence <= f.last_seq))
            {
                tracing::info!(
                    partition = p,
                    last_seq = f.last_seq,
                    "replica consumer went back in the log; a new one"
                );
                continue 'consumer;
            }
            let pending = batch
                .last()
                .and_then(|m| m.info().ok())
                .map_or(u64::MAX, |i| i.pending);
            behind = behind.saturating_sub(batch.len() as u64);
            if let Some(a) = append_messages(store, p, f.last_seq, batch, None).await? {
                f.last_seq = a.seq;
                f.marks.extend(a.marks);
                if f.marks.len() > MAX_MARKS {
                    let over = f.marks.len() - MAX_MARKS;
                    f.marks.drain(..over);
                }
            }
            f.pending = (pending != u64::MAX).then_some(pending);
            if pending == 0 || behind == 0 {
                f.caught_up(stop).await?;
            } else {
                f.report();
            }
            f.check_commit()?;
            if broken {
                f.suspend("consumer failed");
                continue 'consumer;
            }
        }
    }
}

/// An ordered consumer of `ev.{p}.>` from `after + 1`.
async fn ordered_consumer(
    shared: &Shared,
    p: u32,
    after: u64,
) -> Result<jetstream::consumer::Consumer<pull::OrderedConfig>> {
    let stream = shared
        .js
        .get_stream(&shared.config.stream)
        .await
        .map_err(|e| ClusterError::log("get stream")(e.to_string()))?;
    stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
            filter_subject: partition_filter(p),
            ..Default::default()
        })
        .await
        .map_err(|e| ClusterError::log("create replica consumer")(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, serving: &[u32]) -> QueryMember {
        QueryMember {
            member: name.into(),
            address: Some("127.0.0.1:1".into()),
            serving: serving.to_vec(),
        }
    }

    #[test]
    fn rendezvous_is_stable_spread_and_moves_only_a_leavers_partitions() {
        let four = ["q-a", "q-b", "q-c", "q-d"];
        let three = ["q-a", "q-b", "q-d"];
        let mut load: HashMap<&str, usize> = HashMap::new();
        for p in 0..256 {
            let chosen = rendezvous(p, &four, 1);
            assert_eq!(chosen, rendezvous(p, &["q-d", "q-c", "q-b", "q-a"], 1));
            *load.entry(chosen[0]).or_default() += 1;
            let after = rendezvous(p, &three, 1);
            if chosen[0] != "q-c" {
                assert_eq!(
                    after, chosen,
                    "partition {p} moved though its member stayed"
                );
            }
            let two = rendezvous(p, &four, 2);
            assert_eq!(two[0], chosen[0]);
            assert_ne!(two[0], two[1]);
        }
        for m in four {
            assert!((40..=90).contains(&load[m]), "{m}: {load:?}");
        }
        assert_eq!(rendezvous(3, &["q-a"], 2), vec!["q-a"]);
        assert!(rendezvous(3, &[], 1).is_empty());
    }

    /// The names in `dir`, sorted.
    fn names_in(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_replica_removes_its_own_files_only() {
        let data = tempfile::tempdir().unwrap();
        for name in ["r1-g1", "r1-g1-vocabulary", "r1-g10", "r1-g10-vocabulary"] {
            std::fs::create_dir_all(data.path().join(name).join("segments")).unwrap();
        }
        remove_replica(&replica_dir(data.path(), 1, 1)).unwrap();
        remove_replica(&replica_dir(data.path(), 1, 1)).unwrap();
        let left = names_in(data.path());
        assert_eq!(left, ["r1-g10", "r1-g10-vocabulary"]);
    }

    #[test]
    fn only_replica_directories_are_cleared_at_start() {
        for name in ["r0-g1", "r12-g345", "r3-g7-vocabulary"] {
            assert!(is_replica_dir(name), "{name}");
        }
        for name in [
            "r",
            "r1",
            "r1-g",
            "r-g1",
            "rx-g1",
            "r1-g1x",
            "r1-g1-vocabularyx",
            "reports",
            "r1-g1-old",
            "p1-e1",
        ] {
            assert!(!is_replica_dir(name), "{name}");
        }
        let data = tempfile::tempdir().unwrap();
        for name in ["r1-g1", "r1-g1-vocabulary", "reports", "r1-g2.keep"] {
            std::fs::create_dir_all(data.path().join(name)).unwrap();
        }
        clear_replicas(data.path()).unwrap();
        let left = names_in(data.path());
        assert_eq!(left, ["r1-g2.keep", "reports"]);
    }

    #[test]
    fn a_replica_numbering_unlike_its_owners_commit_is_caught() {
        // Restored at checkpoint 10 (next seq 5), then messages 12, 15 (refused), 20.
        let mut marks = VecDeque::from([(10, 5), (12, 6), (15, 6), (20, 7)]);
        // The owner committed through 30: not appended that far yet.
        assert_eq!(check_marks(&mut marks, 20, (30, 6)), Checked::NotYet);
        // Through 16 (the owner's last message was 15): next is 6 there, as committed.
        assert_eq!(check_marks(&mut marks, 20, (16, 5)), Checked::Agrees);
        assert_eq!(marks, [(15, 6), (20, 7)]);
        // The owner stored the event of 15 (this replica refused it): caught.
        assert!(matches!(
            check_marks(&mut marks, 20, (15, 6)),
            Checked::Differs(_)
        ));
        // Older than the marks kept: nothing to say.
        assert_eq!(check_marks(&mut marks, 20, (3, 1)), Checked::Agrees);
        assert_eq!(check_marks(&mut marks, 20, (20, 6)), Checked::Agrees);
        assert_eq!(marks, [(20, 7)]);
    }

    #[test]
    fn failed_replicas_back_off_exponentially_to_a_bound() {
        assert_eq!(backoff(1), FIRST_BACKOFF);
        assert_eq!(backoff(2), FIRST_BACKOFF * 2);
        assert_eq!(backoff(4), FIRST_BACKOFF * 8);
        assert_eq!(backoff(40), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn a_partition_is_dropped_only_once_its_new_members_serve_it() {
        let names = ["q-a", "q-b"];
        let mine: BTreeSet<u32> = (0..8)
            .filter(|p| rendezvous(*p, &names, 1) == ["q-a"])
            .collect();
        let theirs: Vec<u32> = (0..8).filter(|p| !mine.contains(p)).collect();
        assert!(!mine.is_empty() && !theirs.is_empty());
        // q-b just joined: serves nothing yet, so q-a drops nothing.
        let plan = assign("q-a", &[member("q-a", &[]), member("q-b", &[])], 8, 1);
        assert_eq!(plan.take, mine);
        assert!(plan.drop.is_empty());
        // q-b serves one of its partitions: that one is dropped here.
        let plan = assign(
            "q-a",
            &[member("q-a", &[]), member("q-b", &theirs[..1])],
            8,
            1,
        );
        assert_eq!(plan.drop, theirs[..1].iter().copied().collect());
        // Alone, q-a takes every partition.
        let plan = assign("q-a", &[member("q-a", &[])], 8, 1);
        assert_eq!(plan.take, (0..8).collect());
    }
}
