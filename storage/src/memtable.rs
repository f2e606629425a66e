//! The in-memory part of a shard: events appended since its last seal.

use crate::row::{kd_pack, kd_unpack, Row};
use crate::{Direction, Kind};

/// One event as the store keeps it before sealing, and as compaction reads it back.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRow {
    pub seq: u64,
    pub ts_ms: i64,
    pub device: u32,
    pub subject: u32,
    /// Kind and direction packed: `kind << 2 | direction`.
    pub kd: u8,
    /// Attributes encoded with [`crate::attr_codec::encode_attrs`]; empty for none.
    /// Shared, so reads can hold on to them without copying.
    pub attrs: std::sync::Arc<[u8]>,
    pub source_id: Option<Box<str>>,
}

impl StoredRow {
    pub fn row(&self, community: u32) -> Row {
        let (kind, direction) = kd_unpack(self.kd);
        Row {
            seq: self.seq,
            ts_ms: self.ts_ms,
            community,
            device: self.device,
            subject: self.subject,
            kind,
            direction,
        }
    }

    pub fn from_row(
        r: &Row,
        attrs: std::sync::Arc<[u8]>,
        source_id: Option<Box<str>>,
    ) -> StoredRow {
        StoredRow {
            seq: r.seq,
            ts_ms: r.ts_ms,
            device: r.device,
            subject: r.subject,
            kd: kd_pack(r.kind, r.direction),
            attrs,
            source_id,
        }
    }

    pub fn kind(&self) -> Kind {
        kd_unpack(self.kd).0
    }
    pub fn direction(&self) -> Direction {
        kd_unpack(self.kd).1
    }
}

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Rows per chunk of a memory part: 8,192 rows of 64 bytes, 512 KiB.
const CHUNK: usize = 8192;

/// The unsealed events of a shard in sequence order, with their postings: subject →
/// positions, kept as rows arrive, so a subject's in-memory events are found without
/// looking at the others (the in-memory counterpart of a segment's postings).
///
/// Rows live in fixed-size chunks, so a growing memory part never reallocates and
/// copies what it holds (with one growing vector that copying, and the fresh pages it
/// touched, were a fifth of the server's ingest CPU).
#[derive(Debug, Default)]
pub struct MemRows {
    chunks: Vec<Vec<StoredRow>>,
    len: usize,
    by_subject: HashMap<u32, Vec<u32>>,
    /// What the rows hold in memory, as [`row_bytes`] estimates it.
    bytes: usize,
}

/// The memory one row of a memory part takes: the row itself, its attributes, its
/// source id and its posting entry (hash-map and chunk slack not counted). What the
/// store-wide memory budget (`StoreConfig::memory_budget_bytes`) counts.
pub(crate) fn row_bytes(row: &StoredRow) -> usize {
    std::mem::size_of::<StoredRow>()
        + row.attrs.len()
        + row.source_id.as_ref().map_or(0, |s| s.len())
        + std::mem::size_of::<u32>()
}

impl MemRows {
    pub fn from_rows(rows: Vec<StoredRow>) -> MemRows {
        let mut m = MemRows::default();
        for r in rows {
            m.push(r);
        }
        m
    }

    pub fn push(&mut self, row: StoredRow) {
        let at = u32::try_from(self.len).expect("a shard's memory part stays below 2^32 rows");
        self.by_subject.entry(row.subject).or_default().push(at);
        self.bytes += row_bytes(&row);
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK => c.push(row),
            _ => {
                let mut c = Vec::with_capacity(CHUNK);
                c.push(row);
                self.chunks.push(c);
            }
        }
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Memory the rows take, as [`row_bytes`] estimates it.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    /// Every row, in sequence order.
    pub fn rows(&self) -> impl DoubleEndedIterator<Item = &StoredRow> + '_ {
        self.chunks.iter().flatten()
    }
    pub fn first(&self) -> Option<&StoredRow> {
        self.chunks.first().and_then(|c| c.first())
    }
    pub fn last(&self) -> Option<&StoredRow> {
        self.chunks.last().and_then(|c| c.last())
    }
    /// The row at position `i` (in sequence order).
    pub(crate) fn get(&self, i: u32) -> &StoredRow {
        let i = i as usize;
        &self.chunks[i / CHUNK][i % CHUNK]
    }

    /// The rows of `subject`, in sequence order.
    pub fn of_subject(&self, subject: u32) -> impl Iterator<Item = &StoredRow> + '_ {
        self.by_subject
            .get(&subject)
            .into_iter()
            .flatten()
            .map(|&i| self.get(i))
    }

    /// The distinct subjects of these rows, ascending.
    pub fn subjects(&self) -> Vec<u32> {
        let mut s: Vec<u32> = self.by_subject.keys().copied().collect();
        s.sort_unstable();
        s
    }

    /// Takes every row out, leaving this empty.
    pub fn take(&mut self) -> Vec<StoredRow> {
        self.by_subject.clear();
        self.len = 0;
        self.bytes = 0;
        let chunks = std::mem::take(&mut self.chunks);
        match chunks.len() {
            1 => chunks.into_iter().next().expect("one chunk"),
            _ => chunks.into_iter().flatten().collect(),
        }
    }

    /// Keeps only the rows for which `keep` holds.
    pub fn retain(&mut self, keep: impl FnMut(&StoredRow) -> bool) {
        let mut rows = self.take();
        rows.retain(keep);
        *self = MemRows::from_rows(rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u64, subject: u32) -> StoredRow {
        StoredRow {
            seq,
            ts_ms: seq as i64,
            device: 1,
            subject,
            kd: 0,
            attrs: std::sync::Arc::new([]),
            source_id: None,
        }
    }

    #[test]
    fn postings_follow_pushes_takes_and_retains() {
        // Across chunk boundaries too.
        let mut big = MemRows::default();
        let n = 2 * CHUNK as u64 + 5;
        for seq in 0..n {
            big.push(row(seq, (seq % 7) as u32));
        }
        assert_eq!(big.len(), n as usize);
        assert_eq!(
            big.rows().map(|r| r.seq).collect::<Vec<_>>(),
            (0..n).collect::<Vec<_>>()
        );
        assert_eq!(
            (big.first().unwrap().seq, big.last().unwrap().seq),
            (0, n - 1)
        );
        let sevens: Vec<u64> = big.of_subject(3).map(|r| r.seq).collect();
        assert_eq!(sevens, (0..n).filter(|s| s % 7 == 3).collect::<Vec<_>>());
        assert_eq!(big.take().len(), n as usize);
        assert!(big.is_empty() && big.first().is_none());

        let mut m = MemRows::default();
        for seq in 0..20 {
            m.push(row(seq, (seq % 3) as u32));
        }
        let seqs = |m: &MemRows, s| m.of_subject(s).map(|r| r.seq).collect::<Vec<_>>();
        assert_eq!(seqs(&m, 1), [1, 4, 7, 10, 13, 16, 19]);
        assert!(seqs(&m, 9).is_empty());
        m.retain(|r| r.seq >= 10);
        assert_eq!(seqs(&m, 1), [10, 13, 16, 19]);
        assert_eq!(m.len(), 10);
        let taken = m.take();
        assert_eq!(taken.len(), 10);
        assert!(m.is_empty() && seqs(&m, 1).is_empty());
        let m = MemRows::from_rows(taken);
        assert_eq!(seqs(&m, 2), [11, 14, 17]);
    }
}
