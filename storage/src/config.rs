//! Every bound and tunable of the store, in one place, with its default and why.

use crate::error::{Result, StorageError};
use crate::event::Validator;

/// Configuration of a [`crate::Store`].
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Bounds on single events (timestamps, lengths, attributes).
    pub validator: Validator,
    /// Length of a shard's time span. Default one day; at most `u32::MAX` ms because
    /// sealed segments store timestamps as 32-bit offsets from the span's start.
    pub shard_span_ms: i64,
    /// Offset of local time from UTC used to cut spans. Default +8 h (Asia/Shanghai, no DST).
    pub tz_offset_ms: i64,
    /// How long after a span ends its shard stays open for late events before it is
    /// due for sealing. Default 2 h: cameras buffer during network outages.
    pub seal_grace_ms: i64,
    /// An open shard with more events than this is due for sealing even if its span
    /// has not ended. Bounds memory. Default 4 M (≈ 300 MB of in-memory rows at most).
    pub memtable_max_events: usize,
    /// Store-wide bound on the memory parts of all open shards together, in bytes (as
    /// `memtable::row_bytes` counts them: row, attributes, source id, posting). When an
    /// append leaves them above it, the largest memory part is sealed early, then the
    /// next largest, until they fit (the append that crossed it does the sealing, so
    /// ingest slows instead of memory growing). Default 1 GiB: a day of a busy
    /// community is ~300 MB at the per-shard cap, and the 60 s maintenance interval
    /// alone let late events pile up to ~650 MiB at 110 k events/s. At least 1 MiB.
    pub memory_budget_bytes: u64,
    /// The WAL moves to a new file past this many bytes, so checkpoints can drop old
    /// files. Default 64 MiB.
    pub wal_file_bytes: u64,
    /// Most events in one `append` call. Default 100,000.
    pub max_batch_events: usize,
    /// Whole shards whose span ended more than this many days ago are dropped by
    /// [`crate::Store::apply_retention`], and events that old are refused. Given, it
    /// becomes the store's policy (kept in its catalog); `None` keeps the policy the
    /// catalog holds (set by [`crate::Store::set_retention_days`]), by default to keep
    /// everything. Default `None`.
    pub retention_days: Option<u32>,
    /// The file system the store's own files are read and written through: the
    /// operating system's, or a [`crate::io::FaultyIo`] in tests that inject disk faults.
    pub io: std::sync::Arc<dyn crate::io::FileIo>,
    /// Where segments listed without their files come from, and the cache that keeps
    /// them once fetched (`crate::Restore::add_remote_segment`; a cluster's read
    /// replica). `None` (the default): every segment is the store's own file.
    pub remote_segments: Option<crate::RemoteSegments>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            validator: Validator::default(),
            shard_span_ms: 86_400_000,
            tz_offset_ms: 8 * 3_600_000,
            seal_grace_ms: 2 * 3_600_000,
            memtable_max_events: 4_000_000,
            memory_budget_bytes: 1 << 30,
            wal_file_bytes: 64 << 20,
            max_batch_events: 100_000,
            retention_days: None,
            io: crate::io::os(),
            remote_segments: None,
        }
    }
}

/// The longest retention a store accepts, in days (a century).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// Checks a retention policy: `None` (keep everything) or 1..=[`MAX_RETENTION_DAYS`].
pub(crate) fn check_retention(days: Option<u32>) -> Result<()> {
    match days {
        Some(d) if d == 0 || d > MAX_RETENTION_DAYS => Err(StorageError::Setting {
            what: "retention_days",
            reason: format!("{d} is not between 1 and {MAX_RETENTION_DAYS} days"),
        }),
        _ => Ok(()),
    }
}

impl StoreConfig {
    /// How timestamps map to shard spans under this configuration.
    pub fn layout(&self) -> crate::SpanLayout {
        crate::SpanLayout {
            span_ms: self.shard_span_ms,
            tz_offset_ms: self.tz_offset_ms,
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        check_retention(self.retention_days)?;
        let bad = |what: &'static str, actual: i64, max: i64| StorageError::Limit {
            what,
            actual: actual.max(0) as u64,
            max: max as u64,
        };
        if self.shard_span_ms <= 0 || self.shard_span_ms > u32::MAX as i64 {
            return Err(bad("shard_span_ms", self.shard_span_ms, u32::MAX as i64));
        }
        if self.tz_offset_ms.abs() >= self.shard_span_ms.max(86_400_000) {
            return Err(bad("tz_offset_ms", self.tz_offset_ms.abs(), 86_400_000));
        }
        if self.memory_budget_bytes < 1 << 20 {
            return Err(StorageError::Setting {
                what: "memory_budget_bytes",
                reason: format!(
                    "{} is below the least budget of 1 MiB",
                    self.memory_budget_bytes
                ),
            });
        }
        if self.seal_grace_ms < 0 {
            return Err(bad("seal_grace_ms", self.seal_grace_ms, i64::MAX));
        }
        Ok(())
    }
}
