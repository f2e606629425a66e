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
//! or a message with nothing pending after it; and withdrawn when its task ends.
//!
//! A replica's store gives each event the local sequence number its owner's gives
//! (both start from the same committed segments and append the same log in the same
//! order), so event ids agree wherever a query is answered.
//!
//! **Handing over.** A partition no longer assigned here (a member joined) is kept
//! until every member it is now assigned to serves it, then dropped.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::{self, Context};
use futures::{FutureExt, StreamExt};
use sightline_storage::{Store, StoreConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ClusterConfig;
use crate::error::{ClusterError, Result};
use crate::indexer::connect_meta;
use crate::indexer::partition::{append_messages, clear_local};
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
}

struct Running {
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

/// Runs this query node's replicas until `shutdown` completes: heartbeats
/// `query_members` (advertising `address`, where `held` is answered), replicates the
/// partitions of `0..partitions` the rendezvous assigns it, offers each in `held`
/// once caught up. Then stops them and leaves the members.
pub async fn run(
    config: ClusterConfig,
    partitions: u32,
    held: Arc<Held>,
    address: Option<String>,
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
    tokio::task::spawn_blocking(move || clear_local(&d, "r"))
        .await
        .expect("clear task panicked")?;
    let shared = Arc::new(Shared {
        objects: Objects::new(&config.s3)?,
        js: log::connect(&config).await?,
        held,
        config: config.clone(),
    });
    let mut meta = connect_meta(&config).await;
    tracing::info!(member, replicas = config.query.replicas, "replicas started");
    let mut running: HashMap<u32, Running> = HashMap::new();
    let mut generation = 0i64;
    let mut tick = tokio::time::interval(config.renew());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        running.retain(|_, r| !r.join.is_finished());
        if !meta.is_open() {
            match Meta::connect(&config.postgres).await {
                Ok(m) => meta = m,
                Err(e) => {
                    tracing::warn!(error = %e, "PostgreSQL unreachable; replicas stay as they are");
                    continue;
                }
            }
        }
        let served = shared.held.served();
        let members = match meta
            .query_heartbeat(&member, config.index.lease_ms, address.as_deref(), &served)
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "query heartbeat failed; trying at the next tick");
                continue;
            }
        };
        let plan = assign(&member, &members, partitions, config.query.replicas);
        for p in &plan.take {
            if running.contains_key(p) {
                continue;
            }
            generation += 1;
            let (stop, stop_rx) = watch::channel(false);
            let (task_shared, partition, g) = (shared.clone(), *p, generation);
            let join = tokio::spawn(async move {
                let held = task_shared.held.clone();
                match run_replica(task_shared, partition, g, stop_rx).await {
                    Ok(()) => tracing::info!(partition, "replica ended"),
                    Err(e) => tracing::warn!(partition, error = %e, "replica stopped"),
                }
                held.withdraw(partition, g);
            });
            running.insert(*p, Running { stop, join });
        }
        for p in &plan.drop {
            if let Some(r) = running.remove(p) {
                tracing::info!(partition = p, "replica handed over");
                let _ = r.stop.send(true);
            }
        }
    }
    tracing::info!(member, "replicas stopping");
    for r in running.values() {
        let _ = r.stop.send(true);
    }
    for (_, r) in running.drain() {
        let _ = r.join.await;
    }
    let _ = meta.leave_query(&member).await;
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
        move || remove_replica(&dir)
    };
    tokio::task::spawn_blocking(clear.clone())
        .await
        .expect("clear task panicked")?;
    let started = Instant::now();
    let restoring = async {
        let committed = {
            let mut meta = connect_meta(cfg).await;
            meta.committed(p).await?
        };
        let store_config = StoreConfig {
            memory_budget_bytes: REPLICA_MEMORY_BYTES,
            ..StoreConfig::default()
        };
        let (store, restored) =
            restore::restore_committed(&shared.objects, p, &committed, &dir, store_config).await?;
        Ok::<_, ClusterError>((committed, store, restored))
    };
    // A stop while PostgreSQL or S3 is away ends the restore too.
    let (committed, store, restored) = tokio::select! {
        r = restoring => r?,
        _ = stop.changed() => {
            let _ = tokio::task::spawn_blocking(clear).await;
            return Ok(());
        }
    };
    tracing::info!(
        partition = p,
        segments = restored.segments,
        events = restored.events,
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
    )
    .await;
    shared.held.withdraw(p, generation);
    drop(store);
    // The replica is a cache: its files go with it.
    let _ = tokio::task::spawn_blocking(clear).await;
    ran
}

/// Appends the log from `checkpoint + 1` to `store`, offering it once caught up,
/// until `stop`.
async fn follow(
    shared: &Shared,
    p: u32,
    generation: i64,
    store: &Store,
    checkpoint: u64,
    stop: &mut watch::Receiver<bool>,
) -> Result<()> {
    let cfg = &shared.config;
    let mut last_seq = checkpoint;
    let mut offered = false;
    let mut last_maintained = Instant::now();
    let offer = |offered: &mut bool, last_seq: u64| {
        let (held, store) = (shared.held.clone(), store.clone());
        *offered = true;
        tracing::info!(partition = p, last_seq, "replica caught up with the log");
        async move {
            tokio::task::spawn_blocking(move || held.offer(p, generation, &store))
                .await
                .expect("offer task panicked")
        }
    };
    'consumer: loop {
        if *stop.borrow() {
            return Ok(());
        }
        let consumer = match ordered_consumer(shared, p, last_seq).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "no replica consumer yet");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_PAUSE) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        };
        // Messages the log held past `last_seq` when the consumer was made: once this
        // many have come, the replica has read the log to its end as of then.
        let mut behind = consumer.cached_info().num_pending;
        if !offered && behind == 0 {
            offer(&mut offered, last_seq).await;
        }
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "replica consumer did not start");
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        loop {
            if last_maintained.elapsed() >= MAINTAIN_EVERY {
                last_maintained = Instant::now();
                let s = store.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || s.maintain())
                    .await
                    .expect("maintenance task panicked")
                {
                    tracing::warn!(partition = p, error = %e, "replica maintenance failed");
                }
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
                    tracing::warn!(partition = p, "replica consumer ended; a new one");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue 'consumer;
                }
                Ok(Some(Err(e))) => {
                    tracing::warn!(partition = p, error = %e, "replica consumer failed; a new one");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue 'consumer;
                }
                Ok(Some(Ok(m))) => m,
            };
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
            let pending = batch
                .last()
                .and_then(|m| m.info().ok())
                .map_or(u64::MAX, |i| i.pending);
            // Only messages past what was appended count (a consumer the client made
            // again before its first message starts from the stream's beginning).
            let fresh = batch
                .iter()
                .filter(|m| m.info().is_ok_and(|i| i.stream_sequence > last_seq))
                .count();
            behind = behind.saturating_sub(fresh as u64);
            if let Some(a) = append_messages(store, p, last_seq, batch).await? {
                last_seq = a.seq;
            }
            if !offered && (pending == 0 || behind == 0) {
                offer(&mut offered, last_seq).await;
            }
            if broken {
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

    #[test]
    fn a_replica_removes_its_own_files_only() {
        let data = tempfile::tempdir().unwrap();
        for name in ["r1-g1", "r1-g1-vocabulary", "r1-g10", "r1-g10-vocabulary"] {
            std::fs::create_dir_all(data.path().join(name).join("segments")).unwrap();
        }
        remove_replica(&replica_dir(data.path(), 1, 1)).unwrap();
        remove_replica(&replica_dir(data.path(), 1, 1)).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(data.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["r1-g10", "r1-g10-vocabulary"]);
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
