//! A partition's statistics (`/v1/admin/stats` on a cluster), added up by the query
//! node.

use serde::{Deserialize, Serialize};
use sightline_storage::Store;

/// One partition's figures, as `serve`'s statistics count a store's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionStats {
    pub events: u64,
    pub events_in_memory: u64,
    pub shards: u64,
    pub segments: u64,
    pub sealed_bytes: u64,
    pub subjects: u64,
    pub devices: u64,
    pub communities: u64,
    pub wal_files: u64,
    /// The last sequence number appended (the feed's position at its end).
    pub applied_through: u64,
}

impl PartitionStats {
    pub(crate) fn of(store: &Store) -> PartitionStats {
        let shards = store.shards();
        let events_in_memory: u64 = shards.iter().map(|s| s.memory_events as u64).sum();
        let d = store.dictionaries();
        PartitionStats {
            events: shards.iter().map(|s| s.sealed_events).sum::<u64>() + events_in_memory,
            events_in_memory,
            shards: shards.len() as u64,
            segments: shards.iter().map(|s| s.segments as u64).sum(),
            sealed_bytes: shards.iter().map(|s| s.sealed_bytes).sum(),
            subjects: d.len_subjects() as u64,
            devices: d.len_devices() as u64,
            communities: d.len_communities() as u64,
            wal_files: store.wal_file_count() as u64,
            applied_through: store.applied_through(),
        }
    }

    /// The sum of `self` and `other` (`applied_through`: the largest).
    pub fn add(&mut self, o: &PartitionStats) {
        self.events += o.events;
        self.events_in_memory += o.events_in_memory;
        self.shards += o.shards;
        self.segments += o.segments;
        self.sealed_bytes += o.sealed_bytes;
        self.subjects += o.subjects;
        self.devices += o.devices;
        self.communities += o.communities;
        self.wal_files += o.wal_files;
        self.applied_through = self.applied_through.max(o.applied_through);
    }
}
