//! Event ids in a cluster: a store's sequence numbers collide across partitions, so a
//! cluster names an event by its partition and its sequence number there.

use serde::{Deserialize, Serialize};

/// Bits of a cluster id that hold the partition's sequence number.
pub const SEQ_BITS: u32 = 48;
/// Most partitions a cluster may have (numbered in the id's high 16 bits, counted in a
/// `u16`).
pub const MAX_PARTITIONS: usize = u16::MAX as usize;

/// `(partition << 48) | seq`. Ids of one partition keep its arrival order, and ids of
/// a lower partition sort first.
pub fn cluster_id(partition: u16, seq: u64) -> u64 {
    assert!(
        seq < 1 << SEQ_BITS,
        "sequence number {seq} does not fit a cluster id"
    );
    (u64::from(partition) << SEQ_BITS) | seq
}

/// The partition and sequence number of a cluster id.
pub fn split_cluster_id(id: u64) -> (u16, u64) {
    ((id >> SEQ_BITS) as u16, id & ((1 << SEQ_BITS) - 1))
}

/// An event's position in event order across a cluster: (ts, device code, cluster id).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventKey {
    pub ts_ms: i64,
    pub device: String,
    pub id: u64,
}
