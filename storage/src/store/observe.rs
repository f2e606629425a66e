//! Observers: code above the store (the indexes) that must see every event as it
//! becomes readable, so that derived structures stay exact without polling.
//!
//! Every row is delivered exactly once to an observer: rows already readable when it
//! registers are for it to read with a scan (`seq <= Registration::applied_through`);
//! later rows come through [`AppendObserver::appended`], in sequence order, before
//! the `append` that stored them returns.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::row::Row;

use super::{lock, write, Store};

/// Receives every event when it becomes readable.
pub trait AppendObserver: Send + Sync {
    /// Called with the rows of one group commit, in sequence order, while the store
    /// holds its shard lock: keep it short, and never call back into the store.
    fn appended(&self, rows: &[Row]);

    /// Called once per retention pass that dropped shards, after they are gone from
    /// the store and before [`Store::apply_retention`] returns, with no store lock
    /// held (the observer may read the store). `shards` sums up, by subject, every
    /// dropped event the observer was told of (or found by its own scan).
    fn dropped(&self, store: &Store, shards: &[DroppedShard]) {
        let _ = (store, shards);
    }
}

/// What retention removed from one shard: its events, by subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedShard {
    pub key: crate::ShardKey,
    /// Ascending by subject id.
    pub subjects: Vec<SubjectSummary>,
}

/// One subject's events in a dropped shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubjectSummary {
    pub subject: u32,
    pub count: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// What a new observer needs to catch up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registration {
    /// Rows with `seq <= applied_through` were readable before registration and will
    /// not be delivered; every later row will be.
    pub applied_through: u64,
}

impl Store {
    /// Registers `observer` for every event made readable from now on.
    pub fn observe(&self, observer: Arc<dyn AppendObserver>) -> Registration {
        // Under the shard lock no group commit is between applying rows and
        // delivering them, so the split at `applied_through` is exact.
        let _shards = write(&self.inner.shards);
        lock(&self.inner.observers).push(observer);
        Registration {
            applied_through: self.inner.applied_through.load(Ordering::Acquire),
        }
    }
}
