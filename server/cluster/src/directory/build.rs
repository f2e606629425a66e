//! The builder: one indexer at a time (the `directory_builder` lease) freezes a day,
//! waits until every acknowledging ingest node sees the freeze and every partition's
//! commits cover the log's end as it then was, then writes the day's directory from
//! its committed segments (the module doc of `super` says why that is enough).
//!
//! One step ([`step`]) does at most one thing for the oldest day without a directory
//! (freeze it, record the log's end, or build it), or when every ripe day has one,
//! builds the next weekly or monthly roll-up (`super::rollup`); first it drops the
//! directories retention dropped the days of; [`run_every`] repeats it every `directory.every_ms` on a task
//! of its own, each within its own bound.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::context::Context;
use sightline_storage::{ShardKey, StoreConfig};

use super::catalog::DirectoryRow;
use super::format::{subject_hash, DirectoryBuilder};
use crate::config::ClusterConfig;
use crate::error::{ClusterError, Result};
use crate::meta::{Committed, Meta};
use crate::objects::Objects;

/// One step may take this many `directory.every_ms` (restoring a day's segments of
/// every partition), and never less than this.
const STEP_BOUND_MIN: Duration = Duration::from_secs(600);

/// What one step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do, or waiting (for the freeze to be seen, for commits).
    Idle,
    /// Froze this day.
    Froze(i32),
    /// Read the log's end for this frozen day.
    Marked(i32),
    /// Built and registered this day's directory (its key and subjects).
    Built(i32, String, usize),
    /// Built and registered a roll-up (its kind, first day and key).
    Rolled(&'static str, i32, String),
}

/// Does the next thing for the oldest day without a directory, at `now_ms`; first
/// drops the directories of days the cluster's retention dropped.
pub async fn step(
    meta: &mut Meta,
    objects: &Objects,
    js: &Context,
    config: &ClusterConfig,
    scratch: &Path,
    now_ms: i64,
) -> Result<Step> {
    let d = &config.directory;
    let today = super::day_of(now_ms);
    let kept_from = match meta.retention_days().await? {
        Some(days) => {
            // A day before the shards retention keeps (one day more: dropping late
            // only keeps a directory naming partitions that no longer hold the day).
            let from = today
                .saturating_sub(i32::try_from(days).unwrap_or(i32::MAX))
                .saturating_sub(1);
            let released = meta.drop_directories_before(from).await?;
            if !released.is_empty() {
                tracing::info!(
                    days_before = from,
                    objects = released.len(),
                    "directories dropped with their days"
                );
            }
            from
        }
        None => i32::MIN,
    };
    let frozen = meta.directory_days().await?;
    let ripe = meta
        .days_without_directory()
        .await?
        .into_iter()
        .find(|&day| {
            day >= kept_from && super::day_end_ms(day).saturating_add(d.min_age_ms as i64) <= now_ms
        });
    let Some(day) = ripe else {
        // Every ripe day built: a week or month whose days all are is merged.
        let days = meta.directories_of("day").await?;
        let mut rollups = meta.directories_of("week").await?;
        rollups.extend(meta.directories_of("month").await?);
        let Some(period) = super::rollup::next_rollup(&days, &rollups) else {
            return Ok(Step::Idle);
        };
        let partitions = meta.partitions().await?;
        let (key, subjects) =
            super::rollup::build(meta, objects, &days, period, partitions, d.buckets).await?;
        tracing::info!(kind = period.0, start_day = period.1, key = %key, subjects, "directory roll-up built");
        return Ok(Step::Rolled(period.0, period.1, key));
    };
    let Some(f) = frozen.iter().find(|f| f.day == day) else {
        meta.freeze_day(day).await?;
        tracing::info!(day, "day frozen for its directory");
        return Ok(Step::Froze(day));
    };
    // Measured from a statement after the freeze's commit (a slow commit would let
    // an ingest node read "not frozen" after `frozen_at`).
    let Some(frozen_ms) = f.frozen_ms else {
        meta.saw_freeze(day).await?;
        return Ok(Step::Idle);
    };
    // Every node acknowledging now read the frozen days after the freeze: the wait is
    // the largest bound any ingest node says it keeps (its own configuration, not
    // this builder's), and a renewal.
    let bound = d.frozen_view_ms.max(meta.largest_view_bound().await?);
    let seen_after = i64::try_from(bound.saturating_add(config.index.renew_ms)).unwrap_or(i64::MAX);
    if frozen_ms < seen_after {
        return Ok(Step::Idle);
    }
    let partitions = meta.partitions().await?;
    let Some(through) = &f.through_seqs else {
        let seqs = log_ends(js, config, partitions).await?;
        meta.set_through_seqs(day, &seqs).await?;
        return Ok(Step::Marked(day));
    };
    if through.len() != partitions as usize {
        return Err(ClusterError::Catalog {
            partition: 0,
            reason: format!(
                "day {day}: {} sequences for {partitions} partitions",
                through.len()
            ),
        });
    }
    let checkpoints = meta.checkpoints().await?;
    if let Some(p) =
        (0..partitions as usize).find(|&p| checkpoints.get(p).copied().unwrap_or(0) < through[p])
    {
        tracing::debug!(
            day,
            partition = p,
            "directory waits for the partition's commits"
        );
        return Ok(Step::Idle);
    }
    let mut built = DirectoryBuilder::new();
    for p in 0..partitions {
        let committed = meta.committed(p).await?;
        for hash in day_subjects(objects, p, &committed, day, scratch).await? {
            built.add(hash, p as u16);
        }
    }
    let bytes = built.encode(partitions, d.buckets, day, 1);
    let key = super::object_key("day", day, crate::objects::upload_nonce());
    let row = DirectoryRow {
        kind: "day".into(),
        start_day: day,
        days: 1,
        object_key: key.clone(),
        object_bytes: bytes.len() as u64,
        buckets: d.buckets,
    };
    objects.put_create(&key, bytes.into()).await?;
    meta.register_directory(&row, built.len() as u64).await?;
    tracing::info!(day, key = %key, subjects = built.len(), "day directory built");
    Ok(Step::Built(day, key, built.len()))
}

/// Each partition's last stream sequence now (0: none of its messages is in the log).
async fn log_ends(js: &Context, config: &ClusterConfig, partitions: u32) -> Result<Vec<u64>> {
    let stream = js
        .get_stream_no_info(&config.stream)
        .await
        .map_err(|e| ClusterError::log("get stream")(e.to_string()))?;
    let mut out = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        let subject = crate::partition::partition_filter(p);
        match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => out.push(m.sequence),
            Err(e)
                if e.kind()
                    == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
            {
                out.push(0)
            }
            Err(e) => {
                return Err(ClusterError::log("read a partition's last message")(
                    e.to_string(),
                ))
            }
        }
    }
    Ok(out)
}

/// The subject hashes of `partition`'s committed segments of `day`: those segments
/// (and the dictionary) restored into a scratch directory through the read
/// replicas' restore path, each segment's subjects named by the dictionary.
async fn day_subjects(
    objects: &Objects,
    partition: u32,
    committed: &Committed,
    day: i32,
    scratch: &Path,
) -> Result<HashSet<u64>> {
    let segments: Vec<_> = committed
        .segments
        .iter()
        .filter(|s| s.span == day)
        .cloned()
        .collect();
    if segments.is_empty() {
        return Ok(HashSet::new());
    }
    let only_day = Committed {
        checkpoint_seq: committed.checkpoint_seq,
        index_key: None,
        dict_chunks: committed.dict_chunks.clone(),
        segments,
    };
    std::fs::create_dir_all(scratch).map_err(|source| ClusterError::Io {
        context: format!("creating {}", scratch.display()),
        source,
    })?;
    let dir = scratch.join(format!(
        "p{partition}-d{day}-{:x}",
        crate::objects::upload_nonce()
    ));
    let (store, _) = crate::restore::restore_committed(
        objects,
        partition,
        &only_day,
        &dir,
        StoreConfig::default(),
        None,
        None,
    )
    .await?;
    let hashes = tokio::task::spawn_blocking(move || -> Result<HashSet<u64>> {
        let mut out = HashSet::new();
        let keys: Vec<ShardKey> = store
            .shards()
            .into_iter()
            .map(|s| s.key)
            .filter(|k| k.span == day)
            .collect();
        for key in keys {
            for seg in store.segments(key)? {
                let dict = store.dictionaries();
                for id in seg.subjects() {
                    let (kind, name) = dict.subject(id).ok_or_else(|| ClusterError::Catalog {
                        partition,
                        reason: format!(
                            "segment {} names subject {id}, unknown to the dictionary",
                            seg.path().display()
                        ),
                    })?;
                    out.insert(subject_hash(kind as u8, name));
                }
            }
        }
        drop(store);
        Ok(out)
    })
    .await
    .map_err(|e| ClusterError::Io {
        context: format!("reading partition {partition}'s subjects of day {day}"),
        source: std::io::Error::other(e.to_string()),
    })?;
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a directory build's scratch");
    }
    hashes
}

/// Runs [`step`] every `directory.every_ms` while this node holds the builder's lease
/// (on a connection of its own, made again when broken), until the process ends.
pub async fn run_every(config: ClusterConfig, objects: Objects, js: Context, owner: String) {
    let d = config.directory.clone();
    let every = Duration::from_millis(d.every_ms);
    let bound = (every * 3).max(STEP_BOUND_MIN);
    let scratch = config.index.data.join("directory-scratch");
    let mut meta: Option<Meta> = None;
    loop {
        tokio::time::sleep(every).await;
        if !meta.as_ref().is_some_and(Meta::is_open) {
            match Meta::connect_within(&config.postgres, config.lease()).await {
                Ok(m) => meta = Some(m),
                Err(e) => {
                    tracing::warn!(error = %e, "directory builder skipped: PostgreSQL unreachable");
                    continue;
                }
            }
        }
        let m = meta.as_mut().expect("connected above");
        match m
            .take_directory_builder(&owner, (d.every_ms * 3).max(bound.as_millis() as u64))
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "directory builder's lease not read");
                meta = None;
                continue;
            }
        }
        let _ = std::fs::remove_dir_all(&scratch);
        let done = crate::meta::bounded(
            bound,
            "the directory builder",
            step(m, &objects, &js, &config, &scratch, now_ms()),
        )
        .await;
        match done {
            Ok(Step::Idle) => {}
            Ok(s) => tracing::debug!(step = ?s, "directory builder"),
            Err(e) => {
                tracing::warn!(error = %e, "directory builder failed; the next step goes on");
                meta = None;
            }
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
