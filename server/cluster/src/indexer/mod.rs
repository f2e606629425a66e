//! The index role: hold partitions by lease, feed each one's local store from the
//! log, and commit sealed segments to object storage and the catalog.
//!
//! **Supervisor** ([`run`]): every `renew_ms` it says it is alive (`members`), works
//! out its fair share ⌈P / live indexers⌉, gives back partitions above it (each
//! commits, then releases) and takes free or expired ones below it (bumping the
//! epoch). The janitors run on tasks of their own (`janitor::sweep_every`,
//! `janitor::sweep_gat1400_every`), never awaited by it.
//!
//! **Partition task**: restores the partition's store from the catalog into
//! `data/p{partition}-e{epoch}` (a cache: the truth is S3 + PostgreSQL) as a read
//! replica does (`restore::restore_committed`): with the segment cache
//! (`index.segment_cache_bytes`), only metadata and the last owner's uploaded index,
//! each old segment fetched on first use (an append's source-id check into its shard,
//! a compaction, a retention drop, a query); without, every segment. It reads the
//! log from `checkpoint_seq + 1` with a pull consumer (`ev.{partition}.>`,
//! `AckPolicy::All`), appends what it fetches (the old segments an append's source-id
//! check reads fetched ahead at once, a failed append tried again with backoff up to
//! `index.append_attempts`, then the lease released), its lease renewed by a keeper
//! on a task of its own (`partition::keep_lease`: no append, restore or upload
//! delays a renewal), and every
//! `commit_interval_ms` or `commit_events`:
//! 1. seals every memory part (`Store::seal_all`): everything fetched is in segments;
//!    then compacts closed days as a single node does (`Store::maintain`);
//! 2. uploads the segments and the dictionary-log increment not yet committed
//!    (create-only puts, keys with the epoch);
//! 3. commits their rows (and removes the rows of segments compaction replaced) and
//!    `checkpoint_seq` = the last stream sequence appended, in one transaction fenced
//!    by the epoch (`Meta::commit`);
//! 4. only then acks the log through that sequence.
//!
//! So after a commit, every event with stream seq ≤ checkpoint is in committed
//! segments and none after it is: a new owner restores the committed state and
//! replays from checkpoint + 1. A fenced commit (another owner's epoch) stops the task
//! without acking; its uploads are never listed and the janitor removes them.
//!
//! Fault point for tests: with `SIGHTLINE_CLUSTER_FAULT=pause-before-commit[:MS]`, the
//! process's first commit prints `fault point: partition P uploaded, not committed` to
//! stderr after its uploads and waits there MS (default an hour): a test kills or
//! stops the process at that moment. With `SIGHTLINE_CLUSTER_FAULT=lose-commit-answer`
//! the first commit that takes effect is reported as timed out (its answer lost); with
//! `lose-commit` the first commit is never sent and reported as timed out.
//!
//! **PostgreSQL away or hung**: every call a running indexer makes is bounded by a
//! lease (`meta::bounded`); a connection whose call was given up is replaced. A
//! commit whose answer never came is *in doubt*: before the next one, the lease row
//! (checkpoint and dictionary length, which only this epoch moves) and one of its
//! segments say whether it took effect, and its bookkeeping is done if it did
//! (otherwise it is sent again, whole); nothing is committed while it is unsettled. A
//! stopping indexer's PostgreSQL calls (its last commits and releases, leaving the
//! members) are bounded the same way, so a hung PostgreSQL delays its exit by a few
//! leases at most (the leases lapse to the next owner). Its last seals and uploads are
//! not bounded here: uploads by the object store client's own timeouts and retries.

pub(crate) mod partition;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::Context;
use sightline_storage::SegmentCache;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ClusterConfig;
use crate::error::{ClusterError, Result};
use crate::meta::{bounded, Meta};
use crate::objects::Objects;
use crate::serving::Held;
use crate::{janitor, log};
use partition::run_partition;

/// The janitors (the indexers' objects, the gateway's pictures) sweep every this
/// many supervisor ticks, each on a task of its own.
const JANITOR_EVERY_TICKS: u64 = 20;

/// What every partition task shares.
pub(crate) struct Shared {
    pub(crate) config: ClusterConfig,
    pub(crate) owner: String,
    pub(crate) objects: Objects,
    pub(crate) js: Context,
    /// The partitions offered to query nodes.
    pub(crate) held: Arc<Held>,
    /// Where query nodes reach this indexer (`members.address`).
    pub(crate) address: Option<String>,
    /// Old segments of partitions taken over, fetched on first use
    /// (`index.segment_cache_bytes`; `None`: partitions are downloaded whole).
    pub(crate) cache: Option<Arc<SegmentCache>>,
}

struct Running {
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
    stopping: bool,
}

/// A connection to PostgreSQL, tried until it is made.
pub(crate) async fn connect_meta(config: &ClusterConfig) -> Meta {
    let mut wait = Duration::from_millis(100);
    loop {
        match Meta::connect(&config.postgres).await {
            Ok(m) => return m,
            Err(e) => {
                tracing::warn!(error = %e, "PostgreSQL not reachable; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// The segment cache of an indexer's partitions taken over
/// (`index.segment_cache_bytes`; `None` when 0: partitions are downloaded whole).
pub fn segment_cache(config: &ClusterConfig) -> Option<Arc<SegmentCache>> {
    (config.index.segment_cache_bytes > 0)
        .then(|| SegmentCache::new(config.index.segment_cache_bytes))
}

/// Runs the index role until `shutdown` completes, then commits and releases every
/// partition it holds. Each partition, once caught up with the log, is offered in
/// `held`; `address` (where `held` is answered) is advertised to query nodes. With
/// `cache` ([`segment_cache`]), a partition taken is restored without its segment
/// files, each fetched into `cache` on first use (the `partition` module's doc).
pub async fn run(
    config: ClusterConfig,
    held: Arc<Held>,
    address: Option<String>,
    cache: Option<Arc<SegmentCache>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let owner = config.owner();
    let objects = Objects::new(&config.s3)?;
    let js = log::connect(&config).await?;
    log::ensure_stream(&js, &config).await?;
    std::fs::create_dir_all(&config.index.data).map_err(|source| ClusterError::Io {
        context: format!("creating {}", config.index.data.display()),
        source,
    })?;
    tokio::pin!(shutdown);
    // PostgreSQL away at start: a shutdown meanwhile ends the role at once.
    let starting = async {
        let mut meta = connect_meta(&config).await;
        let partitions = meta.create(config.partitions).await?;
        Ok::<_, ClusterError>((meta, partitions))
    };
    let (meta, partitions) = tokio::select! {
        r = starting => r?,
        _ = &mut shutdown => return Ok(()),
    };
    tracing::info!(owner, partitions, "indexer started");
    let shared = Arc::new(Shared {
        config: config.clone(),
        owner: owner.clone(),
        objects,
        js,
        held,
        address,
        cache,
    });
    // The gateway's pictures go by day on a task of their own, within a bound of
    // their own: the supervisor's heartbeat never waits on a bucket of millions.
    let gat1400_sweeper = tokio::spawn(janitor::sweep_gat1400_every(
        shared.objects.clone(),
        config.postgres.clone(),
        config.lease(),
        config.index.gat1400_retention_days,
        config.renew() * JANITOR_EVERY_TICKS as u32,
    ));
    // Objects no commit names, on a task of its own within a bound of its own
    // (`janitor::JANITOR_SWEEP_LEASES`): deletes in batches, never awaited here.
    let janitor = tokio::spawn(janitor::sweep_every(
        shared.objects.clone(),
        config.postgres.clone(),
        config.lease(),
        (config.index.janitor_age_s * 1000) as i64,
        config.renew() * JANITOR_EVERY_TICKS as u32,
    ));
    // The subject → partitions directory of sealed days: one indexer at a time
    // builds (its own lease), on a task of its own.
    let directories = config.directory.build.then(|| {
        tokio::spawn(crate::directory::build::run_every(
            config.clone(),
            shared.objects.clone(),
            shared.js.clone(),
            owner.clone(),
        ))
    });
    // Given back to the pool (`postgres_pool_size`) after the first tick: each tick
    // borrows one for its balance.
    let mut first = Some(meta);
    let mut running: HashMap<u32, Running> = HashMap::new();
    let mut tick = tokio::time::interval(config.renew());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        running.retain(|_, r| !r.join.is_finished());
        let meta = match first.take().filter(Meta::is_open) {
            Some(m) => m,
            None => match Meta::connect_within(&config.postgres, config.lease()).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "PostgreSQL unreachable; leases wait");
                    continue;
                }
            },
        };
        // Bounded like every PostgreSQL call of a running indexer (`meta::bounded`).
        // A shutdown meanwhile is not kept waiting either. (A balance cut short after
        // a lease was taken leaves that lease unrenewed: it lapses to the next taker.)
        let balancing = bounded(
            config.lease(),
            "balancing partitions",
            balance(&shared, &meta, partitions, &mut running),
        );
        let balanced = tokio::select! {
            b = balancing => b,
            _ = &mut shutdown => break,
        };
        if let Err(e) = meta.given_up(balanced) {
            tracing::warn!(error = %e, "balancing partitions failed; trying at the next tick");
        }
    }
    gat1400_sweeper.abort();
    janitor.abort();
    if let Some(d) = directories {
        d.abort();
    }
    tracing::info!(
        owner,
        "indexer stopping: committing and releasing its partitions"
    );
    for r in running.values() {
        let _ = r.stop.send(true);
    }
    // Each partition's last commit and release are bounded (a lease per PostgreSQL
    // call; uploads by the object store client's own timeouts).
    for (_, r) in running.drain() {
        let _ = r.join.await;
    }
    let leaving = async {
        let meta = Meta::connect_within(&config.postgres, config.lease()).await?;
        meta.leave(&owner).await
    };
    let _ = bounded(config.lease(), "leaving the members", leaving).await;
    Ok(())
}

/// Takes or gives back partitions toward this indexer's fair share.
async fn balance(
    shared: &Arc<Shared>,
    meta: &Meta,
    partitions: u32,
    running: &mut HashMap<u32, Running>,
) -> Result<()> {
    let cfg = &shared.config;
    let live = meta
        .heartbeat(&shared.owner, cfg.index.lease_ms, shared.address.as_deref())
        .await?;
    let target = partitions.div_ceil(live) as usize;
    let held: Vec<u32> = {
        let mut v: Vec<u32> = running
            .iter()
            .filter(|(_, r)| !r.stopping)
            .map(|(p, _)| *p)
            .collect();
        v.sort_unstable();
        v
    };
    if held.len() > target {
        for p in held.iter().rev().take(held.len() - target) {
            tracing::info!(
                partition = p,
                target,
                "giving a partition back (fair share)"
            );
            if let Some(r) = running.get_mut(p) {
                r.stopping = true;
                let _ = r.stop.send(true);
            }
        }
        return Ok(());
    }
    let mut want = target - held.len();
    if want == 0 {
        return Ok(());
    }
    for p in meta.free_partitions().await? {
        if want == 0 {
            break;
        }
        if running.contains_key(&p) {
            continue;
        }
        if let Some(lease) = meta.acquire(p, &shared.owner, cfg.index.lease_ms).await? {
            tracing::info!(
                owner = shared.owner,
                partition = p,
                epoch = lease.epoch,
                checkpoint = lease.checkpoint_seq,
                "lease taken"
            );
            let (stop, stop_rx) = watch::channel(false);
            let task_shared = shared.clone();
            let join = tokio::spawn(async move {
                let held = task_shared.held.clone();
                match run_partition(task_shared, lease, stop_rx).await {
                    Ok(()) => tracing::info!(partition = lease.partition, "partition task ended"),
                    Err(e) => {
                        tracing::warn!(partition = lease.partition, error = %e, "partition task stopped");
                    }
                }
                held.withdraw(lease.partition, lease.epoch);
            });
            running.insert(
                p,
                Running {
                    stop,
                    join,
                    stopping: false,
                },
            );
            want -= 1;
        }
    }
    Ok(())
}
