//! One held partition: its store restored from the catalog, the log read from the
//! checkpoint, commits (seal, upload, fenced transaction, ack), lease renewals
//! (`indexer` module doc).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use bytes::Bytes;
use futures::StreamExt;
use sightline_storage::{Event, SegmentCache, SegmentEntry, ShardKey, Store, StoreConfig};
use tokio::sync::watch;

use super::{connect_meta, Shared};
use crate::config::ClusterConfig;
use crate::error::{ClusterError, Result};
use crate::log::ALERT_HEADER;
use crate::meta::{bounded, DictChunk, Lease, Meta, RowFacts, SegmentRow};
use crate::objects::{bundle_key, dict_key, index_key, upload_nonce};
use crate::partition::{event_id, partition_filter};
use crate::restore::ObjectSource;
use crate::{payload, restore};

/// A partition's local store may hold this much in memory parts before it seals
/// early (commits seal everything anyway; this bounds a long commit interval).
const PARTITION_MEMORY_BYTES: u64 = 256 << 20;
/// A commit's bundle is cut after the segment that takes it past this many bytes
/// (compaction of many closed days at once could otherwise make one object, held in
/// memory, of any size; S3 takes at most 5 GiB in one put).
const MAX_BUNDLE_BYTES: u64 = 256 << 20;
/// How long a fetch may take before it is given up and tried again.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause when the log had nothing new.
const IDLE: Duration = Duration::from_millis(100);
/// The first pause after a failed append (`index.append_attempts`), doubled after
/// each further failure up to [`APPEND_BACKOFF_MAX`].
const APPEND_BACKOFF_FIRST: Duration = Duration::from_millis(250);
const APPEND_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// An append fetches ahead at most this many bytes of old segments (held in memory
/// until the store takes them; the rest, if any, the store fetches itself one by one).
const MAX_FETCH_AHEAD_BYTES: u64 = 256 << 20;

/// One held partition.
struct Partition {
    shared: Arc<Shared>,
    lease: Lease,
    /// A connection of the node's pool while the task uses one; given back at the end
    /// of each turn of its loop ([`Partition::reconnect`] takes one again).
    meta: Option<Meta>,
    store: Store,
    /// Segment ids listed in the catalog.
    committed: HashSet<u64>,
    /// Bytes of the dictionary log the catalog holds.
    dict_committed: u64,
    /// Stream sequence of the last message appended (or skipped as invalid).
    last_seq: u64,
    /// The message at `last_seq`, acked (AckPolicy::All) after the commit covering it.
    last_msg: Option<jetstream::Message>,
    since_commit: u64,
    last_commit: Instant,
    /// A commit whose answer never came (a timeout, a broken connection): it may
    /// have taken effect. Settled by [`Partition::settle`] before the next commit.
    doubt: Option<Doubt>,
    /// No new connection is tried before this (one failed just before).
    connect_after: Option<Instant>,
    /// When the last commit failed, if the one after it has not succeeded yet.
    commit_failed: Option<Instant>,
    /// The retention policy the last commit applied (`None`: none yet), and when.
    retention_applied: Option<Option<u32>>,
    retention_at: Instant,
    /// Alerted events appended whose cluster ids are not recorded yet: (message id,
    /// event id) each ([`Partition::record_alert_ids`]).
    alert_ids: Vec<(String, u64)>,
    /// When recording them last failed (tried again at the next commit, which waits
    /// for it, or a lease later).
    alert_ids_failed: Option<Instant>,
    /// When this owner's last commit with its index took effect (`index.index_upload_ms`).
    index_uploaded: Option<Instant>,
    /// The local sequence the last index this owner uploaded covers (0: none yet).
    index_through: u64,
    /// Where the old segments of a partition restored lazily come from: an append
    /// fetches those it needs ahead, all at once ([`Ahead`]).
    source: Option<Arc<ObjectSource>>,
    /// Told at each step of the task (a turn of its loop, an append attempt, an
    /// upload): its keeper renews only while it hears.
    beat: Beat,
}

/// A task aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// When a partition's task last made progress, for its keeper: a task that made none
/// for [`Beat::stall_limit`] (stuck on a statement or a disk that never answers) is not
/// renewed, so its lease lapses to another indexer instead of being held for ever
/// by a keeper that only knows the task is alive.
#[derive(Clone)]
struct Beat {
    /// Tokio's clock (the wall clock but in tests that pause it).
    start: tokio::time::Instant,
    last_ms: Arc<std::sync::atomic::AtomicU64>,
}

/// A task may go this many leases without a step before its lease is let lapse (and
/// never less than twice the fetch-ahead bound plus a lease).
const STALL_LEASES: u32 = 20;

impl Beat {
    fn new() -> Beat {
        Beat {
            start: tokio::time::Instant::now(),
            last_ms: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// The task made progress now.
    fn beat(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long since the task last made progress.
    fn silent_for(&self) -> Duration {
        let last = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        self.start
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }

    /// Awaits `step`, a long step that is progress while it runs (a blocking seal,
    /// compaction, index attach or append that may fetch old segments one by one): the
    /// watchdog is for a task stuck between such steps, not inside a slow one.
    async fn while_running<T>(&self, step: impl std::future::Future<Output = T>) -> T {
        let beat = self.clone();
        let ticking = AbortOnDrop(tokio::spawn(async move {
            loop {
                beat.beat();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
        let out = step.await;
        drop(ticking);
        self.beat();
        out
    }

    fn stall_limit(cfg: &ClusterConfig) -> Duration {
        (cfg.lease() * STALL_LEASES)
            .max(Duration::from_millis(cfg.index.segment_fetch_timeout_ms) * 2 + cfg.lease())
    }
}

/// Whether the lease is still this task's, as its keeper ([`keep_lease`]) last found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseState {
    /// Renewed `renewals` times so far (none yet: as taken).
    Held { renewals: u64 },
    /// A renewal found another epoch: the partition is someone else's.
    Lost,
}

/// Renews a lease every `every` with `renew` (`Ok(true)`: renewed; `Ok(false)`: the
/// epoch is not ours any more) until `stop` is set or the lease is lost, telling
/// `state`. It runs on a task of its own beside the partition's, so renewals never
/// wait on the partition's work: an append fetching old segments from a slow S3, a
/// long seal or upload. A renewal that fails (PostgreSQL away) is logged and tried at
/// the next tick; the lease lapses only if they all fail for a lease.
pub(crate) async fn keep_lease<F, Fut>(
    partition: u32,
    every: Duration,
    mut renew: F,
    state: watch::Sender<LeaseState>,
    mut stop: watch::Receiver<bool>,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is now: the lease was just taken.
    tick.tick().await;
    let mut renewals = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        match renew().await {
            Ok(true) => {
                renewals += 1;
                state.send_replace(LeaseState::Held { renewals });
            }
            Ok(false) => {
                state.send_replace(LeaseState::Lost);
                return;
            }
            Err(e) => tracing::warn!(partition, error = %e, "lease not renewed"),
        }
    }
}

/// A partition's lease keeper on a task of its own ([`keep_lease`]).
struct Keeper {
    state: watch::Receiver<LeaseState>,
    stop: watch::Sender<bool>,
    join: Option<tokio::task::JoinHandle<()>>,
    beat: Beat,
}

impl Keeper {
    /// Renews `lease` every `renew_ms`, each renewal on a pooled connection of its
    /// own bounded by a lease.
    fn start(shared: &Arc<Shared>, lease: Lease) -> Keeper {
        let cfg = shared.config.clone();
        let (p, epoch) = (lease.partition, lease.epoch);
        let beat = Beat::new();
        let (heard, stall) = (beat.clone(), Beat::stall_limit(&cfg));
        // The wait for a connection, the connect and the statement together within a
        // lease (a connection dropped with its statement given up is closed by the
        // pool's check before it is lent again).
        let renew = move || {
            let cfg = cfg.clone();
            let within = cfg.lease();
            let silent = heard.silent_for();
            let renewing = async move {
                if silent > stall {
                    // Not renewed: reported lost, so the task (should it wake) stops.
                    tracing::error!(partition = p, silent_s = silent.as_secs(),
                        "the partition's task made no progress for too long: its lease is not renewed and lapses to another indexer");
                    return Ok(false);
                }
                // Its own pool: commits waiting on S3 with pooled connections never
                // starve a renewal.
                let meta = Meta::connect_for_leases(&cfg.postgres).await?;
                meta.renew(p, epoch, cfg.index.lease_ms).await
            };
            bounded(within, "renewing the lease", renewing)
        };
        let (state_tx, state) = watch::channel(LeaseState::Held { renewals: 0 });
        let (stop, stop_rx) = watch::channel(false);
        let every = shared.config.renew();
        let join = tokio::spawn(keep_lease(p, every, renew, state_tx, stop_rx));
        Keeper {
            state,
            stop,
            join: Some(join),
            beat,
        }
    }

    fn lost(&self) -> bool {
        *self.state.borrow() == LeaseState::Lost
    }

    /// Stops renewing before the lease is released (tidiness: a release clears the
    /// owner, which a late renewal does not restore), waiting for a renewal in
    /// flight (bounded by a lease).
    async fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(join) = self.join.take() {
            let _ = join.await;
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        if let Some(join) = self.join.take() {
            join.abort();
        }
    }
}

/// What an append fetches ahead ([`append_messages`]): the old segments of a lazily
/// restored partition its duplicate check will read, all at once (up to `budget`
/// bytes: the segment cache's bound, more would be evicted before it is read, and at
/// most [`MAX_FETCH_AHEAD_BYTES`], held in memory meanwhile),
/// within `within`.
pub(crate) struct Ahead<'a> {
    pub(crate) source: &'a ObjectSource,
    pub(crate) within: Duration,
    pub(crate) budget: u64,
}

/// An idle partition (nothing to commit) applies retention this often (days pass).
const RETENTION_IDLE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// What a commit in doubt would have changed ([`Partition::settle`]).
#[derive(Debug)]
struct Doubt {
    /// The segments it listed.
    rows: Vec<u64>,
    /// The segments it took out (compaction replaced them).
    replaced: Vec<u64>,
    checkpoint: u64,
    dict_bytes: u64,
}

impl Doubt {
    /// The segment whose listing tells whether the commit took effect: its first
    /// new segment (listed exactly when it did), or, with none (retention alone, or
    /// compaction whose merged rows were committed before), its first replaced one
    /// (no longer listed exactly when it did).
    fn probe(&self) -> Option<u64> {
        self.rows.first().or(self.replaced.first()).copied()
    }

    /// Whether the commit took effect, from the catalog as `Meta::commit_state` read
    /// it: the lease's checkpoint and dictionary length, and which of
    /// [`Doubt::probe`] is listed. Only this epoch commits, so the checkpoint and
    /// dictionary length are this commit's exactly when it or a commit changing
    /// neither took effect (a retention-only commit moves neither: its rows are
    /// empty and it only deletes, hence the probe); the probe tells them apart.
    fn landed(&self, checkpoint: u64, dict_bytes: u64, listed: &HashSet<u64>) -> bool {
        if checkpoint != self.checkpoint || dict_bytes != self.dict_bytes {
            return false;
        }
        match (self.rows.first(), self.replaced.first()) {
            (Some(new), _) => listed.contains(new),
            (None, Some(gone)) => !listed.contains(gone),
            // Neither lists nor deletes a segment: it moved the checkpoint or the
            // dictionary (`commit` sends nothing else).
            (None, None) => true,
        }
    }
}

pub(crate) fn partition_dir(data: &std::path::Path, partition: u32, epoch: i64) -> PathBuf {
    data.join(format!("p{partition}-e{epoch}"))
}

/// Removes the entries of `data` whose names start with `prefix` (a partition's local
/// stores of earlier epochs, a half-made one, their vocabularies): they are caches.
/// Their files fetched into `cache` leave it with them.
pub(crate) fn clear_local(
    data: &std::path::Path,
    prefix: &str,
    cache: Option<&SegmentCache>,
) -> Result<()> {
    let entries = match std::fs::read_dir(data) {
        Ok(e) => e,
        Err(_) => return Ok(()),
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(prefix) {
            if let Some(c) = cache {
                c.forget_under(&e.path());
            }
            std::fs::remove_dir_all(e.path()).map_err(|source| ClusterError::Io {
                context: format!("removing {}", e.path().display()),
                source,
            })?;
        }
    }
    Ok(())
}

pub(super) async fn run_partition(
    shared: Arc<Shared>,
    lease: Lease,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let cfg = &shared.config;
    let taken = Instant::now();
    // Renewed on a task of its own from now on (the restore and every append
    // included), stopped before the lease is released.
    let mut keeper = Keeper::start(&shared, lease);
    // A stop while PostgreSQL is away (or the restore runs) ends the task: nothing was
    // committed under this epoch, and the lease lapses to whoever comes next.
    let meta = tokio::select! {
        m = connect_meta(cfg) => m,
        _ = stop.changed() => return Ok(()),
    };
    let dir = partition_dir(&cfg.index.data, lease.partition, lease.epoch);
    let data = cfg.index.data.clone();
    let p = lease.partition;
    let cache = shared.cache.clone();
    tokio::task::spawn_blocking(move || clear_local(&data, &format!("p{p}-e"), cache.as_deref()))
        .await
        .expect("clear task panicked")?;
    let store_config = StoreConfig {
        memory_budget_bytes: PARTITION_MEMORY_BYTES,
        ..StoreConfig::default()
    };
    // The replicas' restore (`restore::restore_committed`): with the segment cache,
    // metadata and the last owner's uploaded index only, each old segment fetched on
    // first use (a query, the source-id duplicate check of its shard, a compaction, a
    // retention drop); without, every segment downloaded. No object of a segment this
    // store lists is removed while it holds the lease: only its own commits take rows
    // out (so no `gone` watch, as a replica has).
    let restoring = async {
        // Back to the pool once read: not held through the restore's downloads.
        let mut meta = meta;
        // Bounded: a half-open connection must not hold the task (and, by its keeper,
        // the lease) for ever.
        let committed = bounded(
            cfg.lease(),
            "reading the committed segments",
            meta.committed(p),
        )
        .await?;
        drop(meta);
        restore::restore_with_source(
            &shared.objects,
            p,
            &committed,
            &dir,
            store_config,
            shared.cache.clone(),
            None,
        )
        .await
    };
    // A restore (a whole partition downloaded without the segment cache) counts as
    // progress while it runs: the keeper's stall bound is for the steps after it.
    let beating = {
        let beat = keeper.beat.clone();
        tokio::spawn(async move {
            loop {
                beat.beat();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let beating = AbortOnDrop(beating);
    let (store, restored, source) = tokio::select! {
        r = restoring => r?,
        _ = stop.changed() => return Ok(()),
    };
    drop(beating);
    tracing::info!(
        partition = p,
        epoch = lease.epoch,
        segments = restored.segments,
        lazy_segments = restored.lazy_segments,
        events = restored.events,
        segment_bytes = restored.segment_bytes,
        index_bytes = restored.index_bytes,
        elapsed_ms = taken.elapsed().as_millis() as u64,
        "partition restored"
    );
    let committed: HashSet<u64> = store
        .catalog()
        .manifest()?
        .shards
        .values()
        .flat_map(|s| s.segments.iter().map(|e| e.id))
        .collect();
    let mut part = Partition {
        shared: shared.clone(),
        lease,
        meta: None,
        store,
        committed,
        dict_committed: lease.dict_bytes,
        last_seq: lease.checkpoint_seq,
        last_msg: None,
        since_commit: 0,
        last_commit: Instant::now(),
        doubt: None,
        connect_after: None,
        commit_failed: None,
        retention_applied: None,
        retention_at: Instant::now(),
        alert_ids: Vec::new(),
        alert_ids_failed: None,
        index_uploaded: None,
        index_through: 0,
        source,
        beat: keeper.beat.clone(),
    };
    let mut consumer = None;
    // Offered to query nodes once the log has been read to its end.
    let mut offered = false;
    loop {
        part.beat.beat();
        if keeper.lost() {
            return Err(part.fenced().await);
        }
        if *stop.borrow() {
            part.finish(&mut keeper).await;
            return Ok(());
        }
        if consumer.is_none() {
            consumer = match part.consumer().await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "no consumer yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    None
                }
            };
        }
        let fetched = match &consumer {
            Some(c) => match fetch(c, cfg.index.fetch_batch).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "fetch failed; a new consumer from the last sequence");
                    consumer = None;
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        if fetched.is_empty() && consumer.is_some() && !offered {
            let (held, store) = (shared.held.clone(), part.store.clone());
            let offering = tokio::task::spawn_blocking(move || held.offer(p, lease.epoch, &store));
            let served = part
                .beat
                .while_running(offering)
                .await
                .expect("offer task panicked");
            offered = true;
            // From the lease taken to serving (BENCHMARKS.md, "Lazy takeover").
            tracing::info!(
                partition = p,
                epoch = lease.epoch,
                served,
                since_lease_ms = taken.elapsed().as_millis() as u64,
                fetched_bytes = shared.cache.as_ref().map_or(0, |c| c.stats().fetched_bytes),
                "partition caught up"
            );
        }
        if fetched.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(IDLE) => {}
                _ = stop.changed() => {}
            }
        } else {
            match part.append_retrying(fetched, &keeper, &mut stop).await {
                Ok(()) => {}
                Err(e @ ClusterError::Fenced { .. }) => return Err(e),
                Err(e) => {
                    // Past `index.append_attempts`: what was appended is committed and
                    // the lease released (the commit taken or not), so the partition
                    // is taken again soon, by another indexer or by this one anew.
                    tracing::warn!(partition = p, error = %e, attempts = cfg.index.append_attempts,
                        "append failed every attempt; committing what is appended and releasing the lease");
                    part.finish(&mut keeper).await;
                    return Err(e);
                }
            }
        }
        // After a failed commit the next is tried a renewal interval later at the
        // soonest, however many events wait (no retry per fetched batch).
        let due = part.since_commit >= cfg.index.commit_events
            || part.last_commit.elapsed() >= cfg.commit_interval();
        let paused = part
            .commit_failed
            .is_some_and(|t| t.elapsed() < cfg.renew());
        if due && !paused {
            match part.commit().await {
                Ok(()) => part.commit_failed = None,
                Err(e @ ClusterError::Fenced { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "commit failed; trying again at the next interval");
                    part.last_commit = Instant::now();
                    part.commit_failed = Some(Instant::now());
                }
            }
        }
        part.idle();
    }
}

/// The test fault point: `SIGHTLINE_CLUSTER_FAULT=pause-before-commit[:MS]` makes the
/// first commit of the process that reaches it wait MS (default an hour) between its
/// uploads and its PostgreSQL transaction.
fn fault_pause_before_commit() -> Option<Duration> {
    static TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let spec = std::env::var("SIGHTLINE_CLUSTER_FAULT").ok()?;
    let rest = spec.strip_prefix("pause-before-commit")?;
    if TAKEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return None;
    }
    let ms = rest
        .strip_prefix(':')
        .and_then(|m| m.parse().ok())
        .unwrap_or(3_600_000);
    Some(Duration::from_millis(ms))
}

/// The test fault points of a commit's answer, each taken by the first commit of the
/// process that reaches it: `SIGHTLINE_CLUSTER_FAULT=lose-commit-answer` reports a
/// commit that took effect as timed out (the connection broke between PostgreSQL's
/// commit and its answer); `lose-commit` never sends the transaction and reports a
/// timeout all the same (it broke before the commit reached PostgreSQL). Either way
/// the commit is in doubt, and [`Partition::settle`] must tell which it was.
fn fault_commit(which: &str) -> bool {
    static TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    std::env::var("SIGHTLINE_CLUSTER_FAULT").is_ok_and(|f| f == which)
        && !TAKEN.swap(true, std::sync::atomic::Ordering::SeqCst)
}

/// The test fault point `SIGHTLINE_CLUSTER_FAULT=fail-index-upload`: every upload of
/// the index fails (the commits go on without it).
fn fault_index_upload() -> bool {
    std::env::var("SIGHTLINE_CLUSTER_FAULT").is_ok_and(|f| f == "fail-index-upload")
}

/// What [`append_messages`] appended.
pub(crate) struct Appended {
    /// The stream sequence of the last message taken (appended or refused).
    pub(crate) seq: u64,
    /// That message (the indexer acks it after the commit covering it).
    pub(crate) message: jetstream::Message,
    /// Events the store was given.
    pub(crate) events: u64,
    /// Each message taken, in order: its stream sequence and the store's next local
    /// sequence number once it was appended (the replica's consistency check).
    pub(crate) marks: Vec<(u64, u64)>,
    /// The messages marked as having raised a watchlist alert (`log::ALERT_HEADER`)
    /// that were stored (or were a duplicate of an event stored before): their
    /// message id and the cluster id of their event.
    pub(crate) alerted: Vec<(String, u64)>,
}

/// The time a log message was stored by the stream (epoch ms): the same for every
/// consumer, whenever it reads the message.
pub(crate) fn logged_at(info: &jetstream::message::Info<'_>) -> i64 {
    i64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The append path of an indexer and of a read replica: the events of `messages`
/// whose stream sequence is past `after` (a redelivery is skipped), decoded and
/// validated, appended in one local group commit. The bounds that depend on the time
/// (a timestamp too far in the future, older than retention) are checked against the
/// time the stream stored each message ([`logged_at`]), not the local clock, so
/// every store appending the same log to the same committed state (the owner, its
/// replicas, a later owner replaying it) stores and refuses the same events and
/// gives them the same local sequence numbers: a replica's event ids are its
/// owner's. An event refused is logged and skipped. `None` when no message was past
/// `after`.
pub(crate) async fn append_messages(
    store: &Store,
    partition: u32,
    after: u64,
    messages: Vec<jetstream::Message>,
    ahead: Option<Ahead<'_>>,
) -> Result<Option<Appended>> {
    let p = partition;
    let mut events: Vec<Event> = Vec::with_capacity(messages.len());
    let mut times: Vec<i64> = Vec::with_capacity(messages.len());
    // (stream sequence, its event's index in `events`, its message id if alerted)
    let mut taken: Vec<(u64, Option<usize>, Option<String>)> = Vec::with_capacity(messages.len());
    let mut last: Option<(u64, jetstream::Message)> = None;
    for m in messages {
        let (seq, at) = match m.info() {
            Ok(info) => (info.stream_sequence, logged_at(&info)),
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "a message without JetStream metadata");
                continue;
            }
        };
        if seq <= after || last.as_ref().is_some_and(|(s, _)| seq <= *s) {
            continue; // a redelivery
        }
        let alerted = m.headers.as_ref().and_then(|h| {
            h.get(ALERT_HEADER)?;
            Some(
                h.get(async_nats::header::NATS_MESSAGE_ID)?
                    .as_str()
                    .to_owned(),
            )
        });
        match payload::decode(&m.payload)
            .map_err(|e| e.to_string())
            .and_then(|input| store.validate_at(input, at).map_err(|e| e.to_string()))
        {
            Ok(e) => {
                taken.push((seq, Some(events.len()), alerted));
                events.push(e);
                times.push(at);
            }
            Err(e) => {
                taken.push((seq, None, None));
                tracing::warn!(partition = p, seq, error = %e, "an event the store refuses; skipped")
            }
        }
        last = Some((seq, m));
    }
    let Some((seq, message)) = last else {
        return Ok(None);
    };
    // The old segments the duplicate check will read, fetched all at once (not one
    // range read after another inside the append); a failure fails the append
    // before anything of it is stored.
    if let Some(ahead) = ahead.filter(|_| !events.is_empty()) {
        let mut total = 0u64;
        let files: Vec<String> = store
            .unfetched_for_append(&events)
            .into_iter()
            .filter(|(_, len)| {
                total = total.saturating_add(*len);
                total <= ahead.budget
            })
            .map(|(f, _)| f)
            .collect();
        if !files.is_empty() {
            let started = Instant::now();
            let got = ahead.source.prefetch(&files, ahead.within).await?;
            tracing::info!(
                partition = p,
                segments = got.segments,
                bytes = got.bytes,
                objects = got.objects,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "segments fetched ahead of an append"
            );
        }
    }
    let n = events.len() as u64;
    let s = store.clone();
    let (before, results) = tokio::task::spawn_blocking(move || {
        let before = s.next_seq();
        match events.is_empty() {
            true => Ok((before, Vec::new())),
            false => s.append_at(&events, &times).map(|o| (before, o.results)),
        }
    })
    .await
    .expect("append task panicked")?;
    let mut next = before;
    let mut marks = Vec::with_capacity(taken.len());
    let mut alerted = Vec::new();
    for (seq, i, msg_id) in taken {
        if let Some(i) = i {
            let local = match &results[i] {
                sightline_storage::Appended::Stored { seq } => {
                    next = seq + 1;
                    Some(*seq)
                }
                // A source id stored before (a re-send past the log's dedup window):
                // the event is the one stored then.
                sightline_storage::Appended::Duplicate { seq } => Some(*seq),
                sightline_storage::Appended::Rejected(e) => {
                    tracing::warn!(partition = p, seq, error = %e, "an event the store refuses; skipped");
                    None
                }
            };
            if let (Some(local), Some(msg_id)) = (local, msg_id) {
                alerted.push((msg_id, event_id(p, local)));
            }
        }
        marks.push((seq, next));
    }
    Ok(Some(Appended {
        seq,
        message,
        events: n,
        marks,
        alerted,
    }))
}

async fn fetch(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    max: usize,
) -> Result<Vec<jetstream::Message>> {
    let fetched = tokio::time::timeout(FETCH_TIMEOUT, async {
        let mut batch = consumer
            .fetch()
            .max_messages(max)
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(m) = batch.next().await {
            out.push(m.map_err(|e| e.to_string())?);
        }
        Ok::<_, String>(out)
    })
    .await
    .map_err(|_| "fetch timed out".to_string())
    .and_then(|r| r);
    fetched.map_err(ClusterError::log("fetch"))
}

impl Partition {
    /// A pull consumer of the partition's subjects from `last_seq + 1`.
    async fn consumer(&self) -> Result<jetstream::consumer::Consumer<pull::Config>> {
        let cfg = &self.shared.config;
        let mut stream = self
            .shared
            .js
            .get_stream(&cfg.stream)
            .await
            .map_err(|e| ClusterError::log("get stream")(e.to_string()))?;
        // The stream's age limit (`stream_max_age_s`) may have dropped messages this
        // partition never committed (its indexers down longer than that).
        if let Ok(info) = stream.info().await {
            if info.state.first_sequence > self.last_seq + 1 {
                tracing::warn!(
                    partition = self.lease.partition,
                    from_seq = self.last_seq + 1,
                    stream_first_seq = info.state.first_sequence,
                    "the log starts past this partition's checkpoint: any of its messages \
                     between were dropped by the stream's age limit (stream_max_age_s)"
                );
            }
        }
        stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: self.last_seq + 1,
                },
                ack_policy: AckPolicy::All,
                ack_wait: Duration::from_secs(600),
                max_ack_pending: 1_000_000,
                filter_subject: partition_filter(self.lease.partition),
                inactive_threshold: Duration::from_secs(300),
                // Its state is nothing to keep: the checkpoint is PostgreSQL's, and a
                // consumer lost with its NATS node is made again from the last
                // sequence read (a failed fetch). Kept in memory, not in the server's
                // file store (an ephemeral consumer is one replica already): NATS
                // spent 45 µs an event instead of 56 (BENCHMARKS.md, "Run 9").
                num_replicas: 1,
                memory_storage: true,
                ..Default::default()
            })
            .await
            .map_err(|e| ClusterError::log("create consumer")(e.to_string()))
    }

    /// The error of a lease found taken: the epoch now holding it, as read.
    async fn fenced(&mut self) -> ClusterError {
        let p = self.lease.partition;
        let within = self.shared.config.lease();
        let read = match self.reconnect().await {
            Ok(()) => {
                let reading = async { self.meta()?.lease(p).await };
                bounded(within, "reading the lease", reading).await
            }
            Err(e) => Err(e),
        };
        let (_, current, _, _) = read.unwrap_or((None, -1, 0, 0));
        ClusterError::Fenced {
            partition: p,
            ours: self.lease.epoch,
            current,
        }
    }

    /// A clean stop: commits what is appended, stops renewing, and releases the lease
    /// (each PostgreSQL call bounded by a lease: a stopping indexer never waits on a
    /// hung server longer than that). A last commit that fails leaves the lease to
    /// lapse.
    async fn finish(&mut self, keeper: &mut Keeper) {
        let (p, epoch) = (self.lease.partition, self.lease.epoch);
        let within = self.shared.config.lease();
        match self.commit().await {
            Err(e @ ClusterError::Fenced { .. }) => {
                keeper.stop().await;
                tracing::warn!(partition = p, error = %e, "last commit fenced: the lease is another's");
                return;
            }
            // Released all the same: the next owner replays from the checkpoint the
            // catalog holds (a commit is one transaction: in or out), so nothing
            // appended here is lost, and the partition does not wait a lease.
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "last commit failed; releasing the lease (the next owner replays from the checkpoint)")
            }
            Ok(()) => {}
        }
        keeper.stop().await;
        let released = match self.reconnect().await {
            Ok(()) => {
                let releasing = async { self.meta()?.release(p, epoch).await };
                bounded(within, "releasing the lease", releasing).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = released {
            tracing::warn!(partition = p, error = %e, "lease not released; it will lapse");
        }
    }

    /// [`Partition::append`], tried again after a failure (old segments not fetched:
    /// S3 away or slow) up to `index.append_attempts` times in all with a doubling
    /// backoff, each failure logged; the lease is kept meanwhile by its keeper. Ends
    /// early (`Ok`, nothing appended) on a stop, and with [`ClusterError::Fenced`]
    /// when the keeper found the lease taken.
    async fn append_retrying(
        &mut self,
        messages: Vec<jetstream::Message>,
        keeper: &Keeper,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<()> {
        let p = self.lease.partition;
        let attempts = self.shared.config.index.append_attempts.max(1);
        let mut backoff = APPEND_BACKOFF_FIRST;
        let mut attempt = 1;
        loop {
            self.beat.beat();
            let failed = match self.append(messages.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt >= attempts => return Err(e),
                Err(e) => e,
            };
            tracing::warn!(
                partition = p,
                attempt,
                attempts,
                backoff_ms = backoff.as_millis() as u64,
                error = %failed,
                "append failed; trying again, the lease kept"
            );
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return Ok(());
            }
            if keeper.lost() {
                return Err(self.fenced().await);
            }
            backoff = (backoff * 2).min(APPEND_BACKOFF_MAX);
            attempt += 1;
        }
    }

    /// Appends the events of `messages` past `last_seq` to the local store, the old
    /// segments its duplicate check reads fetched ahead ([`Ahead`]).
    async fn append(&mut self, messages: Vec<jetstream::Message>) -> Result<()> {
        let p = self.lease.partition;
        let cfg = &self.shared.config;
        let ahead = self.source.as_deref().map(|source| Ahead {
            source,
            within: cfg.segment_fetch_timeout(),
            budget: cfg.index.segment_cache_bytes.min(MAX_FETCH_AHEAD_BYTES),
        });
        let appending = append_messages(&self.store, p, self.last_seq, messages, ahead);
        let appended = self.beat.clone().while_running(appending).await;
        // What was fetched ahead and not read (a failed append) is not kept in memory.
        if let Some(source) = &self.source {
            source.clear_staged();
        }
        let Some(appended) = appended? else {
            return Ok(());
        };
        self.last_seq = appended.seq;
        self.last_msg = Some(appended.message);
        self.since_commit += appended.events.max(1);
        self.alert_ids.extend(appended.alerted);
        let retry = self
            .alert_ids_failed
            .is_none_or(|t| t.elapsed() >= self.shared.config.lease());
        if !self.alert_ids.is_empty() && retry {
            if let Err(e) = self.record_alert_ids().await {
                tracing::warn!(partition = p, error = %e,
                    "alerted events' ids not recorded; trying again at the commit");
            }
        }
        Ok(())
    }

    /// Records the cluster ids of the alerted events appended
    /// (`Meta::add_alert_events`),
    /// at once after their append so that readers of the alerts see them within a
    /// fetch, and before every commit: a commit goes ahead only once those of the
    /// messages it covers are recorded, so a successor replaying from the checkpoint
    /// never has one to record that it would not see again.
    async fn record_alert_ids(&mut self) -> Result<()> {
        if self.alert_ids.is_empty() {
            return Ok(());
        }
        let recorded = match self.reconnect().await {
            Ok(()) => {
                let writing = self.meta()?.add_alert_events(&self.alert_ids);
                let written = bounded(
                    self.shared.config.lease(),
                    "recording alerted events' ids",
                    writing,
                )
                .await;
                self.given_up(written)
            }
            Err(e) => Err(e),
        };
        match recorded {
            Ok(_) => {
                self.alert_ids.clear();
                self.alert_ids_failed = None;
                Ok(())
            }
            Err(e) => {
                self.alert_ids_failed = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Seal, upload, fenced commit, then ack (the module's doc).
    async fn commit(&mut self) -> Result<()> {
        let p = self.lease.partition;
        let epoch = self.lease.epoch;
        self.last_commit = Instant::now();
        self.reconnect().await?;
        self.settle().await?;
        self.record_alert_ids().await?;
        // The cluster's retention policy, applied at every commit (`crate::retention`),
        // and on an idle partition when it changed or once a minute.
        let reading = bounded(
            self.shared.config.lease(),
            "reading the retention policy",
            self.meta()?.retention_days(),
        )
        .await;
        // A failed or malformed read keeps the last policy applied (none before the
        // first): retention waits, the commit does not.
        let retention = match self.given_up(reading) {
            Ok(r) => r,
            Err(e) => {
                let kept = self.retention_applied.flatten();
                tracing::warn!(partition = p, error = %e, kept, "retention policy not read; the last one kept");
                kept
            }
        };
        let retention_due = retention.is_some()
            && (self.retention_applied != Some(retention)
                || self.retention_at.elapsed() >= RETENTION_IDLE_EVERY);
        let idle = self.last_seq == self.lease.checkpoint_seq && self.since_commit == 0;
        // The index goes with the commit when due and once the partition is served
        // (its index built): a replica, or a later owner, opens it rather than reading
        // every row (fetching every segment).
        let upload_ms = self.shared.config.index.index_upload_ms;
        // Also whenever retention dropped shards: a replica opening an index from
        // before the drop would find the shards' counts differ and rebuild it from
        // every row (fetching the whole partition).
        let index_due = self
            .index_uploaded
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(upload_ms));
        let index = self.shared.held.index_of(p, epoch);
        // An index past the last one uploaded goes up even with nothing else to
        // commit: a partition first served after its last commit (its offer came once
        // the log was read to its end, after a burst) would otherwise leave the
        // uploaded index behind its segments, and a later owner or replica would read
        // (fetch) every segment committed since.
        let index_behind = index_due
            && index
                .as_ref()
                .is_some_and(|i| i.view().through() > self.index_through);
        if idle && !retention_due {
            if let Some(index) = index.filter(|_| index_behind) {
                self.upload_index_alone(index).await;
            }
            return Ok(());
        }
        let store = self.store.clone();
        let committed = self.committed.clone();
        let dict_from = self.dict_committed;
        let beat = self.beat.clone();
        let (new, replaced, dict, index) = beat
            .while_running(tokio::task::spawn_blocking(move || -> Result<_> {
                store.seal_all()?;
                // Compaction of closed days (the store's own rule): the merged segment is
                // committed and the ones it replaces are taken out of the catalog in the
                // same transaction; their objects go to the janitor. Retention's dropped
                // shards leave the manifest alike.
                store.maintain()?;
                let dropped = crate::retention::apply_owned(&store, retention)?;
                if !dropped.is_empty() {
                    tracing::info!(
                        partition = p,
                        shards = dropped.len(),
                        "retention dropped shards"
                    );
                }
                let manifest = store.catalog().manifest()?;
                let current: HashSet<u64> = manifest
                    .shards
                    .values()
                    .flat_map(|s| s.segments.iter().map(|e| e.id))
                    .collect();
                let replaced: Vec<u64> = committed.difference(&current).copied().collect();
                let mut new: Vec<(ShardKey, SegmentEntry, u64, PathBuf)> = Vec::new();
                for (key, state) in &manifest.shards {
                    for e in state.segments.iter().filter(|e| !committed.contains(&e.id)) {
                        let path = store.dir().join(&e.file);
                        // The manifest's facts; a segment listed without them (a manifest
                        // older than the facts, not yet rewritten) is opened to learn it.
                        let max_seq = match e.facts {
                            Some(f) => f.max_seq,
                            None => store
                                .segments(*key)?
                                .iter()
                                .find(|s| s.path() == path)
                                .map(|s| s.meta().max_seq)
                                .ok_or_else(|| ClusterError::Catalog {
                                    partition: p,
                                    reason: format!("{} is in the manifest but not open", e.file),
                                })?,
                        };
                        new.push((*key, e.clone(), max_seq, path));
                    }
                }
                let dict = store.dictionary_log_from(dict_from)?;
                // After the seal: it covers every event appended, all in this commit's
                // segments or earlier ones (nothing appends while the task commits).
                let index = index.filter(|_| index_due || !dropped.is_empty());
                let index = match index.map(|i| i.checkpoint_bytes()).transpose() {
                    Ok(i) => i,
                    Err(e) => {
                        tracing::warn!(partition = p, error = %e, "index not uploaded");
                        None
                    }
                };
                Ok((new, replaced, dict, index))
            }))
            .await
            .expect("seal task panicked")?;
        if idle && new.is_empty() && replaced.is_empty() && dict.is_empty() {
            // Retention alone, and it dropped nothing: nothing to commit.
            self.retention_applied = Some(retention);
            self.retention_at = Instant::now();
            return Ok(());
        }
        let index_through = index.as_ref().map(|(through, _)| *through);
        // One object for the commit (more past MAX_BUNDLE_BYTES): its new segment
        // files one after another, each upload attempt under a key of its own
        // (`upload_nonce`); a failed commit's objects are left to the janitor.
        let mut rows: Vec<SegmentRow> = Vec::with_capacity(new.len());
        let mut bundle: Vec<u8> = Vec::new();
        let mut members: Vec<SegmentRow> = Vec::new();
        let mut pending = new.into_iter().peekable();
        while let Some((key, entry, max_seq, path)) = pending.next() {
            let offset = bundle.len() as u64;
            let read = async {
                use tokio::io::AsyncReadExt;
                tokio::fs::File::open(&path)
                    .await?
                    .read_to_end(&mut bundle)
                    .await
            };
            let len = read.await.map_err(|source| ClusterError::Io {
                context: format!("reading {}", path.display()),
                source,
            })? as u64;
            // The manifest's facts (a segment sealed or merged here has them): kept in
            // the row, so a replica lists the segment without downloading it.
            let facts = entry.facts.map(|f| RowFacts {
                min_seq: f.min_seq,
                min_ts_ms: f.min_ts_ms,
                max_ts_ms: f.max_ts_ms,
            });
            members.push(SegmentRow {
                facts,
                segment_id: entry.id,
                community: key.community,
                span: key.span,
                file: entry.file,
                events: entry.events,
                max_seq,
                object_key: String::new(),
                object_range: Some((offset, len)),
            });
            let full = bundle.len() as u64 >= MAX_BUNDLE_BYTES;
            if full || pending.peek().is_none() {
                let ids = members.iter().map(|r| r.segment_id);
                let (lo, hi) = (ids.clone().min(), ids.max());
                let (Some(lo), Some(hi)) = (lo, hi) else {
                    continue;
                };
                let object_key = bundle_key(p, epoch, (lo, hi), members.len(), upload_nonce());
                self.beat.beat();
                self.shared
                    .objects
                    .put_create(&object_key, Bytes::from(std::mem::take(&mut bundle)))
                    .await?;
                for mut r in members.drain(..) {
                    r.object_key = object_key.clone();
                    rows.push(r);
                }
            }
        }
        let chunk = match dict.is_empty() {
            true => None,
            false => {
                let len = dict.len() as u64;
                let object_key = dict_key(p, epoch, dict_from, len, upload_nonce());
                self.beat.beat();
                self.shared
                    .objects
                    .put_create(&object_key, Bytes::from(dict))
                    .await?;
                Some(DictChunk {
                    start: dict_from,
                    len,
                    object_key,
                })
            }
        };
        // The index is a help to replicas, not part of the commit: an upload that
        // fails or hangs (bounded by a lease) is logged and the commit goes on
        // without it (the next commit tries again).
        let index_key = match index {
            None => None,
            Some((through, bytes)) => {
                let key = index_key(p, epoch, through, upload_nonce());
                let objects = &self.shared.objects;
                let upload = async {
                    if fault_index_upload() {
                        return Err(ClusterError::Timeout("uploading the index (fault point)"));
                    }
                    objects.put_create(&key, Bytes::from(bytes)).await
                };
                match bounded(self.shared.config.lease(), "uploading the index", upload).await {
                    Ok(()) => Some(key),
                    Err(e) => {
                        tracing::warn!(partition = p, error = %e, "index not uploaded; committing without it");
                        // Owed: the next commit uploads it, whatever the interval.
                        self.index_uploaded = None;
                        None
                    }
                }
            }
        };
        if let Some(pause) = fault_pause_before_commit() {
            tracing::warn!(partition = p, "fault point: uploaded, not committed");
            tokio::time::sleep(pause).await;
        }
        let dict_bytes = dict_from + chunk.as_ref().map_or(0, |c| c.len);
        let checkpoint = self.last_seq;
        self.reconnect().await?;
        let lease_ms = self.shared.config.index.lease_ms;
        let within = self.shared.config.lease();
        let mut committed = if fault_commit("lose-commit") {
            tracing::warn!(
                partition = p,
                "fault point: the commit lost before it was sent"
            );
            Err(ClusterError::Timeout("the commit (fault point)"))
        } else {
            let transaction = self.meta_mut()?.commit(
                p,
                epoch,
                &rows,
                &replaced,
                chunk.as_ref(),
                checkpoint,
                dict_bytes,
                lease_ms,
                index_key.as_deref(),
            );
            let committed = bounded(within, "the commit", transaction).await;
            self.given_up(committed)
        };
        if committed.is_ok() && fault_commit("lose-commit-answer") {
            tracing::warn!(partition = p, "fault point: committed, the answer lost");
            committed = Err(ClusterError::Timeout("the commit (fault point)"));
        }
        let doubt = Doubt {
            rows: rows.iter().map(|r| r.segment_id).collect(),
            replaced,
            checkpoint,
            dict_bytes,
        };
        match committed {
            Ok(()) => {}
            Err(e @ ClusterError::Fenced { .. }) => {
                tracing::warn!(partition = p, error = %e, "commit refused by the epoch check");
                return Err(e);
            }
            Err(e) => {
                // The transaction may have committed with its answer lost.
                self.doubt = Some(doubt);
                return Err(e);
            }
        }
        let replaced = doubt.replaced.len();
        self.took_effect(doubt);
        if index_key.is_some() {
            self.index_uploaded = Some(Instant::now());
            self.index_through = index_through.unwrap_or(0);
        }
        tracing::info!(
            partition = p,
            epoch,
            checkpoint,
            segments = rows.len(),
            replaced,
            "committed"
        );
        self.ack().await;
        self.retention_applied = Some(retention);
        self.retention_at = Instant::now();
        Ok(())
    }

    /// Uploads `index` and names it the partition's (`Meta::set_index`, fenced by the
    /// epoch) with nothing else to commit: an idle partition whose index moved past
    /// the last one uploaded. A help to replicas and later owners, not part of any
    /// commit: a failure is logged (its object, if uploaded, is unnamed and goes to
    /// the janitor), and the next idle commit tries again.
    async fn upload_index_alone(&mut self, index: std::sync::Arc<sightline_index::StoreIndex>) {
        let (p, epoch) = (self.lease.partition, self.lease.epoch);
        let within = self.shared.config.lease();
        let encoded = self
            .beat
            .clone()
            .while_running(tokio::task::spawn_blocking(move || {
                index.checkpoint_bytes()
            }))
            .await
            .expect("index task panicked");
        let (through, bytes) = match encoded {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "index not uploaded");
                return;
            }
        };
        let key = index_key(p, epoch, through, upload_nonce());
        let objects = &self.shared.objects;
        let upload = async {
            if fault_index_upload() {
                return Err(ClusterError::Timeout("uploading the index (fault point)"));
            }
            objects.put_create(&key, Bytes::from(bytes)).await
        };
        if let Err(e) = bounded(within, "uploading the index", upload).await {
            tracing::warn!(partition = p, error = %e, "index not uploaded");
            return;
        }
        if let Err(e) = self.reconnect().await {
            tracing::warn!(partition = p, error = %e, "index uploaded, not named");
            return;
        }
        let naming = async { self.meta()?.set_index(p, epoch, &key).await };
        let named = bounded(within, "naming the index", naming).await;
        match self.given_up(named) {
            Ok(true) => {
                self.index_uploaded = Some(Instant::now());
                self.index_through = through;
                tracing::info!(partition = p, epoch, through, "index uploaded");
            }
            Ok(false) => tracing::warn!(partition = p, "index not named: the epoch is not ours"),
            Err(e) => tracing::warn!(partition = p, error = %e, "index uploaded, not named"),
        }
    }

    /// The bookkeeping of a commit that took effect: the catalog's segments, its
    /// dictionary length and checkpoint as this commit left them.
    fn took_effect(&mut self, done: Doubt) {
        for id in &done.replaced {
            self.committed.remove(id);
        }
        self.committed.extend(done.rows);
        self.dict_committed = done.dict_bytes;
        self.lease.checkpoint_seq = done.checkpoint;
        if self.last_seq == done.checkpoint {
            self.since_commit = 0;
        }
    }

    /// Acks the log through the checkpoint (`AckPolicy::All`) when the last message
    /// taken is the one it names.
    async fn ack(&mut self) {
        if self.last_seq != self.lease.checkpoint_seq {
            return;
        }
        if let Some(m) = self.last_msg.take() {
            if let Err(e) = m.ack().await {
                // The checkpoint is the truth; a lost ack only means a redelivery,
                // which `append` skips by sequence.
                let p = self.lease.partition;
                tracing::warn!(partition = p, error = %e, "ack after commit failed");
            }
        }
    }

    /// The connection [`Partition::reconnect`] took (an error without one).
    fn meta(&self) -> Result<&Meta> {
        self.meta
            .as_ref()
            .ok_or(ClusterError::Timeout("PostgreSQL connection (none taken)"))
    }

    fn meta_mut(&mut self) -> Result<&mut Meta> {
        self.meta
            .as_mut()
            .ok_or(ClusterError::Timeout("PostgreSQL connection (none taken)"))
    }

    /// [`Meta::given_up`] on the connection held, if any.
    fn given_up<T>(&self, r: Result<T>) -> Result<T> {
        match &self.meta {
            Some(m) => m.given_up(r),
            None => r,
        }
    }

    /// Gives the connection back to the node's pool (`postgres_pool_size`) between
    /// turns of the task's loop: a node's partitions share a bounded number of
    /// connections instead of holding one each.
    fn idle(&mut self) {
        self.meta = None;
    }

    /// A usable connection: the current one, or a new one when it broke or a call
    /// on it was given up (the connect bounded by a lease, tried at most once a
    /// lease). `Err` when there is none: the caller's call fails at once instead of
    /// waiting on a connection known to hang.
    async fn reconnect(&mut self) -> Result<()> {
        if self.meta.as_ref().is_some_and(Meta::is_open) {
            return Ok(());
        }
        // A broken one is closed as it drops (not given back to the pool).
        self.meta = None;
        let cfg = &self.shared.config;
        if self.connect_after.is_some_and(|t| Instant::now() < t) {
            return Err(ClusterError::Timeout(
                "PostgreSQL connect (tried a moment ago)",
            ));
        }
        match Meta::connect_within(&cfg.postgres, cfg.lease()).await {
            Ok(m) => {
                self.meta = Some(m);
                self.connect_after = None;
                Ok(())
            }
            Err(e) => {
                let p = self.lease.partition;
                tracing::warn!(partition = p, error = %e, "PostgreSQL not reachable");
                self.connect_after = Some(Instant::now() + cfg.lease());
                Err(e)
            }
        }
    }

    /// Settles a commit in doubt: whether it took effect is read from the catalog
    /// (the lease's checkpoint and dictionary length, which only this epoch moves, and
    /// whether its first new segment is listed or, with none, its first replaced one
    /// gone: [`Doubt::landed`]; `Meta::commit_state` waits for the doubtful
    /// transaction if it is still in flight on its abandoned connection), and its
    /// bookkeeping done if it did (a retention-only commit wrongly settled as landed
    /// would forget the replaced ids, their rows never deleted). Until it is settled nothing is committed again (a
    /// failed read keeps the doubt). Without this, a commit that took effect with its
    /// answer lost would be sent again: its segment rows refused as duplicates forever
    /// (sealing stopped), or segments compaction replaced meanwhile left listed.
    async fn settle(&mut self) -> Result<()> {
        let Some(doubt) = self.doubt.take() else {
            return Ok(());
        };
        let p = self.lease.partition;
        let within = self.shared.config.lease();
        let probe: Vec<u64> = doubt.probe().into_iter().collect();
        let reading = self.meta_mut()?.commit_state(p, &probe);
        let read = bounded(within, "reading the commit state", reading).await;
        let (epoch, checkpoint, dict_bytes, listed) = match self.given_up(read) {
            Ok(state) => state,
            Err(e) => {
                self.doubt = Some(doubt);
                return Err(e);
            }
        };
        if epoch != self.lease.epoch {
            return Err(ClusterError::Fenced {
                partition: p,
                ours: self.lease.epoch,
                current: epoch,
            });
        }
        let landed = doubt.landed(checkpoint, dict_bytes, &listed);
        tracing::info!(
            partition = p,
            landed,
            checkpoint = doubt.checkpoint,
            "commit in doubt settled"
        );
        if landed {
            self.took_effect(doubt);
            self.ack().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The keeper's watchdog (`Beat`): silence between steps grows with the wall
    /// clock (a task stuck in an await that never returns is found), a long step
    /// wrapped in `while_running` is heard as progress while it runs (a slow seal or
    /// fetch never lets the lease lapse), and its end is a beat.
    #[tokio::test(start_paused = true)]
    async fn the_watchdog_hears_a_long_step_as_progress_and_a_stuck_task_as_silence() {
        let beat = Beat::new();
        beat.beat();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            beat.silent_for() >= Duration::from_millis(300),
            "{:?}",
            beat.silent_for()
        );
        let inside = beat.clone();
        let loudest_silence = beat
            .while_running(async move {
                let mut worst = Duration::ZERO;
                for _ in 0..25 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    worst = worst.max(inside.silent_for());
                }
                worst
            })
            .await;
        // Beaten every second inside a 2.5 s step (tokio's paused clock: exactly).
        assert!(
            loudest_silence <= Duration::from_millis(1_000),
            "silent for {loudest_silence:?} inside a running step"
        );
        assert_eq!(beat.silent_for(), Duration::ZERO);
        // After the step nothing beats: silence grows again.
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        assert!(beat.silent_for() >= Duration::from_millis(1_300));
    }

    /// The keeper of a lease renewed while its partition is busy for ten leases (a
    /// slow fetch: here the test's own task asleep that long, on tokio's paused
    /// clock): renewed every `renew_ms`, never a gap past it, whatever the task does.
    #[tokio::test(start_paused = true)]
    async fn the_lease_is_renewed_every_interval_while_the_partition_task_is_busy() {
        let renew = Duration::from_millis(500);
        let lease = Duration::from_millis(3_000);
        let at: Arc<Mutex<Vec<tokio::time::Instant>>> = Arc::default();
        let seen = at.clone();
        let renewer = move || {
            let seen = seen.clone();
            async move {
                // A renewal takes a moment (a round trip).
                tokio::time::sleep(Duration::from_millis(20)).await;
                seen.lock().unwrap().push(tokio::time::Instant::now());
                Ok(true)
            }
        };
        let (state_tx, state) = watch::channel(LeaseState::Held { renewals: 0 });
        let (stop, stop_rx) = watch::channel(false);
        let started = tokio::time::Instant::now();
        let keeper = tokio::spawn(keep_lease(7, renew, renewer, state_tx, stop_rx));
        // The partition's task, busy with one fetch for ten leases.
        tokio::time::sleep(lease * 10).await;
        let renewals = at.lock().unwrap().clone();
        assert!(
            renewals.len() >= 58,
            "{} renewals in {:?}",
            renewals.len(),
            lease * 10
        );
        let mut last = started;
        for t in &renewals {
            assert!(
                *t - last <= renew + Duration::from_millis(50),
                "a gap of {:?}",
                *t - last
            );
            last = *t;
        }
        assert_eq!(
            *state.borrow(),
            LeaseState::Held {
                renewals: renewals.len() as u64
            }
        );
        // Stopped (before a release): no renewal after.
        stop.send(true).unwrap();
        keeper.await.unwrap();
        let n = at.lock().unwrap().len();
        tokio::time::sleep(lease).await;
        assert_eq!(at.lock().unwrap().len(), n);
    }

    /// Failed renewals (PostgreSQL away) are tried at every tick, the lease still
    /// held as far as the keeper knows; a renewal that finds another epoch ends the
    /// keeper with `Lost`.
    #[tokio::test(start_paused = true)]
    async fn a_keeper_tries_again_after_failures_and_ends_when_the_lease_is_taken() {
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let c = calls.clone();
        let renewer = move || {
            let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            async move {
                match n {
                    1..=3 => Err(ClusterError::Timeout("renewing the lease")),
                    4 => Ok(true),
                    _ => Ok(false),
                }
            }
        };
        let (state_tx, state) = watch::channel(LeaseState::Held { renewals: 0 });
        let (_stop, stop_rx) = watch::channel(false);
        let keeper = tokio::spawn(keep_lease(
            7,
            Duration::from_millis(500),
            renewer,
            state_tx,
            stop_rx,
        ));
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
        assert_eq!(*state.borrow(), LeaseState::Held { renewals: 1 });
        keeper.await.unwrap();
        assert_eq!(*state.borrow(), LeaseState::Lost);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 5);
    }

    fn doubt(rows: &[u64], replaced: &[u64]) -> Doubt {
        Doubt {
            rows: rows.to_vec(),
            replaced: replaced.to_vec(),
            checkpoint: 40,
            dict_bytes: 900,
        }
    }

    #[test]
    fn a_retention_only_commit_in_doubt_landed_only_when_its_dropped_segments_left_the_catalog() {
        // Rows empty, checkpoint and dictionary as before: only the deletes tell.
        let d = doubt(&[], &[7, 8]);
        assert_eq!(d.probe(), Some(7));
        let still_listed: HashSet<u64> = [7].into();
        assert!(
            !d.landed(40, 900, &still_listed),
            "lost: its segments are still listed"
        );
        assert!(
            d.landed(40, 900, &HashSet::new()),
            "committed: they are gone"
        );
    }

    #[test]
    fn a_commit_in_doubt_with_segments_landed_when_its_first_is_listed_at_its_checkpoint() {
        let d = doubt(&[11, 12], &[3]);
        assert_eq!(d.probe(), Some(11));
        assert!(d.landed(40, 900, &[11].into()));
        assert!(!d.landed(40, 900, &HashSet::new()));
        assert!(!d.landed(39, 900, &[11].into()));
        assert!(!d.landed(40, 800, &[11].into()));
        // Nothing listed or deleted: the checkpoint and dictionary alone.
        let d = doubt(&[], &[]);
        assert_eq!(d.probe(), None);
        assert!(d.landed(40, 900, &HashSet::new()));
        assert!(!d.landed(30, 900, &HashSet::new()));
    }
}
