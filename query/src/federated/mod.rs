//! Federated queries: one question asked of every partition of a cluster, answered
//! exactly as one store holding all their events would answer it.
//!
//! A cluster splits its events by community: community → partition =
//! [`partition_of`]`(code, P)`, so partitions are community-disjoint, and each is a
//! [`Store`](sightline_storage::Store) with its own index and dictionaries. A query node
//! sends each partition a [`Request`] (through a [`Partition`]: in process,
//! [`LocalPartition`]; over the network, the server's `RemotePartition`) and merges
//! the partial [`Answer`]s in a [`Federation`]. Dictionary ids differ between
//! partitions, so partial answers speak in names; event ids are cluster ids
//! ([`cluster_id`]). Where a family's answer is not a concatenation, the partial
//! carries what the merge needs (sets rather than counts, untruncated lists), and
//! where it needs figures only the whole cluster knows, it asks in rounds
//! (co-occurrence: passes, then hits, then lift counts; trajectory stays: runs, then
//! the events where runs of partitions interleave).
//! `ARCHITECTURE.md` ("Federated queries") has the design per family.

pub(crate) mod check;
mod collision;
mod cooccurrence;
mod federation;
mod feed;
mod id;
mod local;
mod objects;
mod patterns;
mod search;
mod stats;
mod trajectory;
mod wire;

pub use cooccurrence::{CandidatePartial, Pass};
pub use federation::{Call, Federation, Placement};
pub use feed::{FeedAsk, FeedCursor, FeedPage, FeedPartial};
pub use id::{cluster_id, split_cluster_id, EventKey, MAX_PARTITIONS, SEQ_BITS};
pub use local::LocalPartition;
pub use objects::{
    FederatedObjects, ObjectKey, ObjectKeys, ObjectsPartial, ROUNDS as OBJECT_PAGE_ROUNDS,
};
pub use patterns::{NightPartial, NocturnalPartial};
pub use search::MatchPartial;
pub(crate) use search::SearchModeDef;
pub use stats::PartitionStats;
pub use trajectory::{FederatedTrajectory, PagePartial, StayEvent, StayRun};
pub use wire::{Answer, Ask, Failure, Partition, Request};

/// The partition of `community` in a cluster of `partitions`: FNV-1a of its code,
/// modulo the count. Stable across versions and machines (it places data).
pub fn partition_of(community: &str, partitions: u16) -> u16 {
    assert!(partitions > 0, "a cluster has at least one partition");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in community.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(partitions)) as u16
}
