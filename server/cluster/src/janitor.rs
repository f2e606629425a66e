//! Objects uploaded but never committed (an indexer killed or fenced between its
//! upload and its commit) are removed once older than an age far past any
//! upload-to-commit window, so an upload whose commit is still on its way is never
//! taken. Objects a commit stopped naming (`released_objects`: segments compaction or
//! retention took out, an index replaced) are removed once unnamed that long, counted
//! from their release, not their upload: a read replica restored before the commit
//! lists them and fetches them on first use. The catalog is read after the listing:
//! a key committed meanwhile is kept.
//! Only indexers' keys (`p{partition}/…`, listed partition by partition) and the
//! subject directories (`dir/…`, registered in `directories`) are considered there: the GA/T 1400 gateway's pictures and objects (`gat1400/…`) are
//! named by events, not by commits. Those go by their retention instead
//! ([`sweep_gat1400`]): whole days of them, as shards go for events.

use crate::error::Result;
use crate::gat1400::{day_of_prefix, days_prefix, local_day, Blob};
use crate::meta::Meta;
use crate::objects::{Listed, Objects};

/// The most indexer objects one sweep deletes (the rest at the next), in batches of
/// up to 1,000 a request (S3 `DeleteObjects`, `Objects::delete_batched`): 20,000 are
/// 20 requests, well inside a sweep's bound ([`JANITOR_SWEEP_LEASES`] leases).
pub const JANITOR_DELETES_PER_SWEEP: usize = 20_000;

/// A sweep (its listings, its deletes, its catalog reads and writes) is given up after
/// this many leases; one cut short loses nothing (the next lists what is left).
pub const JANITOR_SWEEP_LEASES: u32 = 4;

/// Removes objects no commit names that have been unnamed for `min_age_ms` at
/// `now_ms` (released ones since their release, others since their upload), at most
/// [`JANITOR_DELETES_PER_SWEEP`], in batches. Returns the keys removed.
///
/// A released object (`released_objects`) is forgotten only once a delete of its key
/// succeeded: the object is gone for certain. One no listing showed (a listing that
/// missed it, an object removed by an earlier sweep whose forgetting failed) is
/// deleted all the same once past its age (a key already gone counts as deleted),
/// never forgotten on the listing's word alone: an object a listing missed would
/// otherwise stay in the bucket with nothing left to say it should go.
pub async fn sweep(
    meta: &Meta,
    objects: &Objects,
    now_ms: i64,
    min_age_ms: i64,
) -> Result<Vec<String>> {
    // Listed partition by partition (`p{n}/`), never the whole bucket: the gateway's
    // pictures (`sweep_gat1400` goes by their days) would make every sweep longer.
    let mut listed = Vec::new();
    for p in 0..meta.partitions().await? {
        let under = partition_prefix(p);
        let keys = objects.list(Some(&under)).await?;
        listed.extend(keys.into_iter().filter(|o| is_indexer_key(&o.key)));
    }
    // The subject directories (`dir/…`): one a builder put and never registered (it
    // died or lost its lease in between) goes as an upload no commit named.
    listed.extend(objects.list(Some(crate::directory::OBJECT_PREFIX)).await?);
    // The names first, then the releases: a key released in between is in `released`
    // with its time, one released after is still in `committed`.
    let committed = meta.committed_keys().await?;
    let released = meta.released_objects().await?;
    let listed_keys: std::collections::HashSet<&str> =
        listed.iter().map(|o| o.key.as_str()).collect();
    let doomed: Vec<String> = listed
        .iter()
        .filter(|o| {
            !committed.contains(&o.key) && unnamed_long_enough(o, &released, now_ms, min_age_ms)
        })
        .map(|o| o.key.clone())
        .chain(
            released
                .iter()
                .filter(|(k, at)| {
                    !listed_keys.contains(k.as_str())
                        && !committed.contains(*k)
                        && now_ms - **at >= min_age_ms
                })
                .map(|(k, _)| k.clone()),
        )
        .take(JANITOR_DELETES_PER_SWEEP)
        .collect();
    if doomed.is_empty() {
        return Ok(Vec::new());
    }
    let (deleted, failed) = objects.delete_batched(doomed).await;
    // What was deleted before a failure is forgotten all the same.
    let gone: Vec<String> = deleted
        .iter()
        .filter(|k| released.contains_key(*k))
        .cloned()
        .collect();
    meta.forget_released(&gone).await?;
    let removed: Vec<String> = deleted
        .into_iter()
        .filter(|k| listed_keys.contains(k.as_str()))
        .collect();
    if !removed.is_empty() || !gone.is_empty() {
        tracing::info!(
            removed = removed.len(),
            forgotten = gone.len(),
            "janitor removed objects no commit names"
        );
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(removed),
    }
}

/// Sweeps the indexers' objects ([`sweep`]) every `every` until the process ends,
/// each within [`JANITOR_SWEEP_LEASES`] leases of `lease`, on a connection of its own
/// (made again when broken). Runs on a task of its own (an indexer's `run` spawns
/// it): the supervisor's heartbeats and balancing never wait on a listing or a
/// delete.
pub async fn sweep_every(
    objects: Objects,
    postgres: String,
    lease: std::time::Duration,
    min_age_ms: i64,
    every: std::time::Duration,
) {
    let within = lease * JANITOR_SWEEP_LEASES;
    let mut meta: Option<Meta>;
    loop {
        // Borrowed from the node's pool for a sweep only (`postgres_pool_size`).
        meta = None;
        tokio::time::sleep(every).await;
        if !meta.as_ref().is_some_and(Meta::is_open) {
            match Meta::connect_within(&postgres, lease).await {
                Ok(m) => meta = Some(m),
                Err(e) => {
                    tracing::warn!(error = %e, "janitor skipped: PostgreSQL unreachable");
                    continue;
                }
            }
        }
        let m = meta.as_ref().expect("connected above");
        let swept = crate::meta::bounded(
            within,
            "the janitor",
            sweep(m, &objects, now_ms(), min_age_ms),
        )
        .await;
        if let Err(e) = m.given_up(swept) {
            tracing::warn!(error = %e, "janitor failed; the next sweep goes on");
        }
    }
}

/// How long one sweep of the GA/T 1400 gateway's days may take (its own bound, on a
/// task of its own: never the indexer's supervisor's, whose heartbeat must not wait
/// on a bucket of millions of pictures).
pub const GAT1400_SWEEP_BOUND: std::time::Duration = std::time::Duration::from_secs(60);

/// The most GA/T 1400 pictures and objects one sweep deletes (the rest of a day at the
/// next), sized to [`GAT1400_SWEEP_BOUND`]: deleted 1,000 to a request (S3
/// `DeleteObjects`, `ObjectStore::delete_stream`) after listing them 1,000 to a page,
/// 20,000 are 40 requests, each well under the second an S3 API answers one in; a
/// sweep cut short by its bound loses nothing (the next lists what is left).
pub const GAT1400_DELETES_PER_SWEEP: usize = 20_000;

/// How many days the gateway's pictures are kept: `index.gat1400_retention_days`
/// when set, else the cluster's event retention (`cluster_meta` `retention_days`,
/// `None`: kept forever, 0), so a picture goes with its event's shard.
pub fn gat1400_keep_days(configured: u32, events: Option<u32>) -> u32 {
    match configured {
        0 => events.unwrap_or(0),
        days => days,
    }
}

/// The first day (`YYYYMMDD`, Asia/Shanghai) whose pictures are kept at `now_ms`
/// with `keep_days` (`None`: all are, 0 days); the days before it are swept, and an
/// ingest node refuses an object of one of them (its pictures would be deleted at
/// the next sweep after it was acknowledged).
pub fn gat1400_first_kept_day(now_ms: i64, keep_days: u32) -> Option<String> {
    (keep_days > 0).then(|| local_day(now_ms - i64::from(keep_days) * 86_400_000))
}

/// Deletes the GA/T 1400 gateway's pictures and objects of the days more than
/// `keep_days` before `now_ms`'s day (Asia/Shanghai), whole day prefixes
/// (`gat1400/{pictures|objects}/d{YYYYMMDD}/`), at most
/// [`GAT1400_DELETES_PER_SWEEP`] objects, in batches (`Objects::delete_all`);
/// `keep_days` 0 keeps them forever. A picture uploaded again by an event of a later
/// day is a copy under that day (the day is in its key), so no later event loses one.
/// Blobs of before days are never listed. Returns the keys removed.
pub async fn sweep_gat1400(objects: &Objects, now_ms: i64, keep_days: u32) -> Result<Vec<String>> {
    // Days before this one go (compared as YYYYMMDD text).
    let Some(first_kept) = gat1400_first_kept_day(now_ms, keep_days) else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for what in [Blob::Picture, Blob::Object] {
        for dir in objects.dirs(&days_prefix(what)).await? {
            let past = day_of_prefix(what, &dir).is_some_and(|day| day < first_kept.as_str());
            let room = GAT1400_DELETES_PER_SWEEP - removed.len();
            if !past || room == 0 {
                continue;
            }
            let keys: Vec<String> = (objects.list_at_most(&dir, room).await?)
                .into_iter()
                .map(|o| o.key)
                .collect();
            removed.extend(objects.delete_all(keys).await?);
        }
    }
    if !removed.is_empty() {
        tracing::info!(
            removed = removed.len(),
            first_kept,
            "janitor removed GA/T 1400 pictures and objects past their retention"
        );
    }
    Ok(removed)
}

/// Sweeps the gateway's days every `every` until the process ends, each sweep within
/// [`GAT1400_SWEEP_BOUND`], keeping `configured` days (`index.gat1400_retention_days`)
/// or, when 0, the cluster's event retention as read then from PostgreSQL (on a
/// connection of its own; unread, that sweep is skipped). Runs on a task of its own
/// (an indexer's `run` spawns it): nothing of it is awaited by the supervisor.
pub async fn sweep_gat1400_every(
    objects: Objects,
    postgres: String,
    within: std::time::Duration,
    configured: u32,
    every: std::time::Duration,
) {
    let mut meta: Option<Meta> = None;
    loop {
        tokio::time::sleep(every).await;
        let events = match configured {
            0 => match retention_policy(&mut meta, &postgres, within).await {
                Ok(days) => days,
                Err(e) => {
                    tracing::warn!(error = %e, "GA/T 1400 sweep skipped: the retention policy is unread");
                    continue;
                }
            },
            _ => None,
        };
        // Given back to the node's pool before the S3 sweep (`postgres_pool_size`).
        meta = None;
        let keep_days = gat1400_keep_days(configured, events);
        let sweep = sweep_gat1400(&objects, now_ms(), keep_days);
        match tokio::time::timeout(GAT1400_SWEEP_BOUND, sweep).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "GA/T 1400 sweep failed"),
            Err(_) => tracing::warn!(
                bound_s = GAT1400_SWEEP_BOUND.as_secs(),
                "GA/T 1400 sweep cut short by its bound; the next goes on"
            ),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The cluster's event retention, on `meta` (connected, again when broken).
async fn retention_policy(
    meta: &mut Option<Meta>,
    postgres: &str,
    within: std::time::Duration,
) -> Result<Option<u32>> {
    if !meta.as_ref().is_some_and(Meta::is_open) {
        *meta = Some(Meta::connect_within(postgres, within).await?);
    }
    let m = meta.as_ref().expect("connected above");
    m.given_up(crate::meta::bounded(within, "read the retention policy", m.retention_days()).await)
}

/// Where partition `p`'s indexer uploads live.
fn partition_prefix(p: u32) -> String {
    format!("p{p}/")
}

/// Whether `key` is one an indexer uploads (`p{digits}/…`).
fn is_indexer_key(key: &str) -> bool {
    key.strip_prefix('p')
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether an object no commit names has been unnamed for `min_age_ms`: one a commit
/// released (its rows taken out by compaction or retention, an index replaced)
/// counts from its release, since a replica restored before may still read it; one
/// never named (an upload whose commit failed) from its upload.
fn unnamed_long_enough(
    o: &Listed,
    released: &std::collections::HashMap<String, i64>,
    now_ms: i64,
    min_age_ms: i64,
) -> bool {
    let since = released.get(&o.key).copied().unwrap_or(o.last_modified_ms);
    now_ms - since >= min_age_ms
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_partitions_prefix_names_only_its_keys() {
        assert_eq!(super::partition_prefix(3), "p3/");
        assert!(super::is_indexer_key(&format!(
            "{}e1/x",
            super::partition_prefix(12)
        )));
    }

    #[test]
    fn only_indexer_keys_are_swept() {
        assert!(super::is_indexer_key("p3/e1/bundle/1-2-1-00.segs"));
        assert!(super::is_indexer_key("p12/e4/dict/0-10-ab"));
        for other in [
            "gat1400/pictures/33/ab",
            "p/e1/x",
            "px/e1",
            "pictures/p1/x",
            "p1",
        ] {
            assert!(!super::is_indexer_key(other), "{other}");
        }
    }
}
