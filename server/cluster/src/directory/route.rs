//! The query side: which partitions to ask about one subject over a range of days,
//! from the directories registered for those days (their rows read per query by the
//! caller, with the late notes) and their objects' buckets (range reads, kept in a
//! bounded LRU cache).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use super::catalog::DirectoryRow;
use super::format::{bucket_of, subject_hash, Bucket, DirectoryError, Header};
use crate::error::{ClusterError, Result};
use crate::objects::Objects;

/// Longest range, in days, a directory answers for (a longer one asks every
/// partition; the query API refuses ranges past 400 days anyway).
pub const MAX_ROUTED_DAYS: i64 = 400;

/// Headers kept (each is 8 bytes a bucket: 2 KiB at 256).
const HEADERS_KEPT: usize = 4_096;

/// The days `first ..= last` a query over `[from_ms, to_ms)` touches.
pub fn days_of_range(from_ms: i64, to_ms: i64) -> (i32, i32) {
    (
        super::day_of(from_ms),
        super::day_of(to_ms.saturating_sub(1).max(from_ms)),
    )
}

/// The directories that cover `first ..= last`, the widest first where several
/// cover a day (a month, then a week, then the day): `None` when a day has none.
pub fn cover(rows: &[DirectoryRow], first: i32, last: i32) -> Option<Vec<&DirectoryRow>> {
    if i64::from(last) - i64::from(first) >= MAX_ROUTED_DAYS {
        return None;
    }
    let mut chosen = Vec::new();
    let mut day = i64::from(first);
    while day <= i64::from(last) {
        let d = day as i32;
        let widest = rows
            .iter()
            .filter(|r| r.covers(d))
            .max_by_key(|r| (r.days, r.start_day))?;
        chosen.push(widest);
        day = i64::from(widest.start_day) + i64::from(widest.days);
    }
    Some(chosen)
}

/// Directory buckets (and headers) as read from object storage, within a bound.
pub struct Router {
    objects: Objects,
    headers: Mutex<LruCache<String, Arc<Header>>>,
    buckets: Mutex<Buckets>,
}

struct Buckets {
    lru: LruCache<(String, u32), Arc<Bucket>>,
    bytes: usize,
    max_bytes: usize,
}

impl Router {
    /// A router reading `objects`, keeping at most `cache_bytes` of buckets.
    pub fn new(objects: Objects, cache_bytes: u64) -> Router {
        Router {
            objects,
            headers: Mutex::new(LruCache::new(
                std::num::NonZeroUsize::new(HEADERS_KEPT).expect("positive"),
            )),
            buckets: Mutex::new(Buckets {
                lru: LruCache::unbounded(),
                bytes: 0,
                max_bytes: usize::try_from(cache_bytes).unwrap_or(usize::MAX),
            }),
        }
    }

    /// The partitions that may hold `(kind, subject)` (its stored, normalised name)
    /// within days `first ..= last`: those the directories covering them name, and
    /// `late` (partitions noted late on any of those days). `None`: a day has no
    /// directory, so every partition may.
    pub async fn partitions(
        &self,
        rows: &[DirectoryRow],
        late: &[u32],
        first: i32,
        last: i32,
        kind: u8,
        subject: &str,
    ) -> Result<Option<Vec<u16>>> {
        let Some(chosen) = cover(rows, first, last) else {
            return Ok(None);
        };
        let hash = subject_hash(kind, subject);
        let mut out: BTreeSet<u16> = BTreeSet::new();
        for &p in late {
            out.insert(u16::try_from(p).map_err(|_| ClusterError::Catalog {
                partition: p,
                reason: "a late note names a partition beyond 65535".into(),
            })?);
        }
        for row in chosen {
            let bucket = self.bucket(row, hash).await?;
            out.extend(bucket.partitions(hash));
        }
        Ok(Some(out.into_iter().collect()))
    }

    /// The bucket of `hash` in `row`'s object (cached, else read and checked).
    async fn bucket(&self, row: &DirectoryRow, hash: u64) -> Result<Arc<Bucket>> {
        let header = self.header(row).await?;
        let b = bucket_of(hash, header.buckets);
        let id = (row.object_key.clone(), b);
        if let Some(hit) = self.lock_buckets().lru.get(&id) {
            return Ok(hit.clone());
        }
        let (from, to) = header.bucket_range(b);
        let bytes = self.objects.get_range(&row.object_key, from, to).await?;
        if bytes.len() as u64 != to - from {
            return Err(directory_error(
                &row.object_key,
                format!("{} bytes for {from}..{to}", bytes.len()),
            ));
        }
        let bucket = Arc::new(Bucket::decode(
            &row.object_key,
            b,
            &bytes,
            header.partitions,
        )?);
        let mut cache = self.lock_buckets();
        cache.bytes += bucket.weight();
        if let Some(old) = cache.lru.put(id, bucket.clone()) {
            cache.bytes -= old.weight();
        }
        while cache.bytes > cache.max_bytes {
            match cache.lru.pop_lru() {
                Some((_, gone)) => cache.bytes -= gone.weight(),
                None => break,
            }
        }
        Ok(bucket)
    }

    async fn header(&self, row: &DirectoryRow) -> Result<Arc<Header>> {
        if let Some(h) = self
            .headers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&row.object_key)
        {
            return Ok(h.clone());
        }
        if row.buckets == 0 || row.buckets > super::MAX_BUCKETS {
            return Err(directory_error(
                &row.object_key,
                format!("{} buckets listed", row.buckets),
            ));
        }
        let len = Header::len_for(row.buckets) as u64;
        if len > row.object_bytes {
            return Err(directory_error(
                &row.object_key,
                "shorter than its header".into(),
            ));
        }
        let bytes = self.objects.get_range(&row.object_key, 0, len).await?;
        let header = Header::decode(&row.object_key, &bytes, row.object_bytes)?;
        if header.buckets != row.buckets {
            return Err(directory_error(
                &row.object_key,
                format!("{} buckets, listed with {}", header.buckets, row.buckets),
            ));
        }
        let header = Arc::new(header);
        self.headers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(row.object_key.clone(), header.clone());
        Ok(header)
    }

    fn lock_buckets(&self) -> std::sync::MutexGuard<'_, Buckets> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes of buckets held now.
    pub fn cached_bytes(&self) -> usize {
        self.lock_buckets().bytes
    }
}

fn directory_error(key: &str, reason: String) -> ClusterError {
    ClusterError::Directory(DirectoryError {
        key: key.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, start_day: i32, days: i32) -> DirectoryRow {
        DirectoryRow {
            kind: kind.into(),
            start_day,
            days,
            object_key: format!("{kind}{start_day}"),
            object_bytes: 100,
            buckets: 1,
        }
    }

    #[test]
    fn a_range_is_covered_by_the_widest_directories_or_not_at_all() {
        let rows = vec![
            row("day", 10, 1),
            row("day", 11, 1),
            row("week", 11, 7),
            row("day", 18, 1),
        ];
        let keys = |c: Option<Vec<&DirectoryRow>>| {
            c.map(|c| c.iter().map(|r| r.object_key.clone()).collect::<Vec<_>>())
        };
        assert_eq!(
            keys(cover(&rows, 10, 18)),
            Some(vec!["day10".into(), "week11".into(), "day18".into()])
        );
        assert_eq!(keys(cover(&rows, 12, 12)), Some(vec!["week11".into()]));
        // Day 19 has none: every partition.
        assert_eq!(keys(cover(&rows, 10, 19)), None);
        assert_eq!(keys(cover(&rows, 9, 10)), None);
        assert_eq!(keys(cover(&rows, 0, 500)), None);
    }

    #[test]
    fn a_range_ends_on_the_day_before_its_exclusive_end() {
        let day0 = super::super::day_end_ms(99);
        assert_eq!(days_of_range(day0, day0 + 86_400_000), (100, 100));
        assert_eq!(days_of_range(day0, day0 + 86_400_001), (100, 101));
        assert_eq!(days_of_range(day0 - 1, day0 + 1), (99, 100));
    }
}
