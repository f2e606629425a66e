//! The subject → partitions directory of sealed days (issue 22, "queries fan out"):
//! for each day long enough past, which partitions hold events of each subject, so a
//! question about one subject (a trajectory, co-occurrence's first round) asks only
//! those instead of all P.
//!
//! **Why it stays right although events of any age are accepted.**
//! 1. One indexer at a time (`directory_builder`, a lease) *freezes* a day D once it
//!    ended `directory.min_age_ms` ago (`directory_days`).
//! 2. Ingest nodes read the frozen days with the watchlists every renewal, and before
//!    acknowledging an event of a frozen day they note `late_days (day, partition)`
//!    (once per pair while they remember it). A node whose reading is older than
//!    `directory.frozen_view_ms` refuses ingest (503), so once the builder has waited
//!    that long (and a renewal) after freezing, every node that acknowledges sees
//!    the freeze.
//! 3. The builder then reads each partition's last log sequence
//!    (`ev.{partition}.>`), waits until each partition's committed checkpoint covers
//!    it (every event of D acknowledged without a note is then in committed
//!    segments), restores D's committed segments of each partition (with the
//!    dictionary: the restore path of read replicas, `crate::restore`), collects
//!    their subjects, and writes one object ([`format`]) registered in `directories`.
//! 4. A query node, for a subject and a range of days that all have a directory,
//!    asks the union of the partitions the directories name and those `late_days`
//!    names for those days (read per query: a note made a moment ago counts); any
//!    day without one (today, recent days) means every partition. A directory that
//!    cannot be read means every partition, logged: never a wrong answer.
//! 5. Weekly and monthly roll-ups ([`rollup`]) merge the days' directories once
//!    every day of the week or month has one.
//! 6. Retention drops the directories, frozen days and notes of days it drops,
//!    releasing the objects to the janitor.

pub mod build;
pub mod catalog;
pub mod format;
pub mod rollup;
pub mod route;

pub use catalog::{DirectoryRow, FrozenDay};
pub use format::{
    bucket_of, subject_hash, Bucket, DirectoryBuilder, DirectoryError, Header, MAX_BUCKETS,
};

/// The day (shard span: Asia/Shanghai, as the partitions' stores cut shards) of
/// `ts_ms`.
pub fn day_of(ts_ms: i64) -> i32 {
    sightline_storage::StoreConfig::default()
        .layout()
        .span_of(ts_ms)
}

/// The first millisecond after `day`.
pub fn day_end_ms(day: i32) -> i64 {
    sightline_storage::StoreConfig::default()
        .layout()
        .end_ms(day)
}

/// Where every directory object's key begins (the janitor lists it).
pub const OBJECT_PREFIX: &str = "dir/";

/// The object key of a directory of `kind` starting at `start_day` (`nonce`: a
/// rebuilt one never overwrites one a reader may hold).
pub fn object_key(kind: &str, start_day: i32, nonce: u64) -> String {
    format!("{OBJECT_PREFIX}{kind}/{start_day}-{nonce:016x}")
}
