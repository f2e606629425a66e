//! Retention on a cluster: the policy (days, or keep everything) is one row of
//! PostgreSQL's `cluster_meta` (`Meta::retention_days`), set on any query node with
//! `PUT /v1/admin/retention`. Each indexer applies it to its partitions' stores at
//! every commit (the dropped shards' segments leave the manifest, so the commit takes
//! their rows out of the catalog in its transaction, and the janitor sweeps objects no
//! row names); each read replica at its maintenance.
//!
//! The policy is applied as a drop only, never kept in the store's configuration:
//! a store with retention refuses events older than it on append, and whether a
//! message is refused must not depend on when (under which policy) an owner, a
//! replica or a later owner reads it, or their sequence numbers would disagree
//! ("Event ids agree whoever answers"). An event older than the policy that arrives
//! later is appended as any other, and dropped with its shard by the next pass.
//!
//! An owner never drops the shard holding its partition's highest sequence number
//! ([`apply_owned`]): a later owner restores from the committed segments and numbers
//! on from the highest it finds, so dropping that shard would hand its numbers to
//! other events (a feed cursor past them would skip those). That shard waits for a
//! newer event elsewhere in the partition; the other expired shards go.

use sightline_storage::{ShardKey, Store};

/// Margin on the horizon when looking for the shard holding the highest sequence
/// number, so a shard that ends just as [`apply_owned`] runs counts as dropped.
const MARGIN_MS: i64 = 60_000;

use crate::error::Result;

/// Drops the shards of `store` past `days` (nothing when `None`), the store's own
/// policy neither read nor changed ([`Store::drop_expired`]), so appends meanwhile
/// accept old events as always.
pub fn apply(store: &Store, days: Option<u32>) -> Result<Vec<ShardKey>> {
    match days {
        Some(days) => Ok(store.drop_expired(days, &[])?),
        None => Ok(Vec::new()),
    }
}

/// [`apply`] on a partition's owner: every expired shard but the one holding the
/// highest sequence number (the module's doc), which waits for a newer event in the
/// partition. Call it after `Store::seal_all`.
pub fn apply_owned(store: &Store, days: Option<u32>) -> Result<Vec<ShardKey>> {
    let Some(d) = days else {
        return Ok(Vec::new());
    };
    let keep = holding_last(store, d)?;
    Ok(store.drop_expired(d, &keep)?)
}

/// The expired (or about to be) shards that hold, or may hold, the partition's
/// highest sequence number: the one whose segment reaches it, and any with memory
/// rows (not sealed yet: they wait for the next commit).
fn holding_last(store: &Store, days: u32) -> Result<Vec<ShardKey>> {
    let last = store.next_seq().saturating_sub(1);
    if last == 0 {
        return Ok(Vec::new());
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_millis() as i64);
    let horizon = now_ms + MARGIN_MS - i64::from(days) * 86_400_000;
    let layout = store.layout();
    let mut keep = Vec::new();
    for info in store.shards() {
        if layout.end_ms(info.key.span) > horizon {
            continue;
        }
        let holds_last = info.memory_events > 0
            || store
                .segments(info.key)?
                .iter()
                .any(|s| s.meta().max_seq >= last);
        if holds_last {
            tracing::info!(
                community = info.key.community,
                span = info.key.span,
                "retention keeps this shard: it holds the partition's highest sequence number"
            );
            keep.push(info.key);
        }
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_storage::{EventInput, StoreConfig, Validator};

    const DAY: i64 = 86_400_000;

    fn event(ts_ms: i64, community: &str) -> sightline_storage::Event {
        let input = EventInput {
            ts_ms,
            community: community.to_string(),
            device: "32050801011210000001".to_string(),
            kind: "vehicle".to_string(),
            subject: "苏E12345".to_string(),
            direction: "in".to_string(),
            attrs: Default::default(),
        };
        Validator::default()
            .validate(input, i64::MAX / 2)
            .expect("a valid test event")
    }

    #[test]
    fn an_owner_drops_every_expired_shard_but_the_one_holding_the_highest_sequence_number() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        // Three expired shards; the last appended (the highest number) is in "c3".
        let old = [
            (now - 10 * DAY, "c1"),
            (now - 9 * DAY, "c2"),
            (now - 8 * DAY, "c3"),
        ];
        for (ts, c) in old {
            store.append(&[event(ts, c)]).unwrap();
        }
        store.seal_all().unwrap();
        let dropped = apply_owned(&store, Some(2)).unwrap();
        let c3 = store.dictionaries().community_id("c3").unwrap();
        assert_eq!(dropped.len(), 2, "{dropped:?}");
        assert!(dropped.iter().all(|k| k.community != c3));
        let left: Vec<u32> = store
            .shards()
            .iter()
            .filter(|s| s.sealed_events > 0)
            .map(|s| s.key.community)
            .collect();
        assert_eq!(left, vec![c3]);
        // The store's own policy is untouched: old events are still accepted.
        assert_eq!(store.retention_days(), None);
        store.append(&[event(now - 20 * DAY, "c1")]).unwrap();
        // A newer event elsewhere: the kept shard goes at the next pass.
        store.append(&[event(now, "c1")]).unwrap();
        store.seal_all().unwrap();
        let dropped = apply_owned(&store, Some(2)).unwrap();
        assert!(dropped.iter().any(|k| k.community == c3), "{dropped:?}");
        assert_eq!(store.retention_days(), None);
    }
}
