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
//! other events (a feed cursor past them would skip those). The drop waits for a
//! newer event elsewhere in the partition.

use sightline_storage::{ShardKey, Store};

/// Margin on the horizon when looking for the shard holding the highest sequence
/// number, so a shard that ends just as [`apply_owned`] runs counts as dropped.
const MARGIN_MS: i64 = 60_000;

use crate::error::Result;

/// Drops the shards of `store` past `days` (nothing when `None`); the store is left
/// without a policy of its own. Call it where appends to `store` are not running
/// (between them, on the task that appends), or an append meanwhile might refuse an
/// old event.
pub fn apply(store: &Store, days: Option<u32>) -> Result<Vec<ShardKey>> {
    let Some(days) = days else {
        return Ok(Vec::new());
    };
    store.set_retention_days(Some(days))?;
    let dropped = store.apply_retention();
    let cleared = store.set_retention_days(None);
    let dropped = dropped?;
    cleared?;
    Ok(dropped)
}

/// [`apply`] on a partition's owner: nothing when the shard holding the highest
/// sequence number would go (the module's doc). Call it after `Store::seal_all`.
pub fn apply_owned(store: &Store, days: Option<u32>) -> Result<Vec<ShardKey>> {
    let Some(d) = days else {
        return Ok(Vec::new());
    };
    let last = store.next_seq().saturating_sub(1);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_millis() as i64);
    let horizon = now_ms + MARGIN_MS - i64::from(d) * 86_400_000;
    let layout = store.layout();
    for info in store.shards() {
        if last == 0 || layout.end_ms(info.key.span) > horizon {
            continue;
        }
        // Memory rows (not sealed yet) may hold it: wait for the next commit.
        let holds_last = info.memory_events > 0
            || store
                .segments(info.key)?
                .iter()
                .any(|s| s.meta().max_seq >= last);
        if holds_last {
            tracing::info!(
                community = info.key.community,
                span = info.key.span,
                "retention waits: this shard holds the partition's highest sequence number"
            );
            return Ok(Vec::new());
        }
    }
    apply(store, days)
}
