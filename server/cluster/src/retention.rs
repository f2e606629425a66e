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

use sightline_storage::{ShardKey, Store};

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
