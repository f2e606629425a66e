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

/// The unsealed events of a shard in sequence order, with their postings: subject →
/// positions, kept as rows arrive, so a subject's in-memory events are found without
/// looking at the others (the in-memory counterpart of a segment's postings).
#[derive(Debug, Default)]
pub struct MemRows {
    rows: Vec<StoredRow>,
    by_subject: HashMap<u32, Vec<u32>>,
}

impl MemRows {
    pub fn from_rows(rows: Vec<StoredRow>) -> MemRows {
        let mut m = MemRows {
            rows: Vec::with_capacity(rows.len()),
            by_subject: HashMap::default(),
        };
        for r in rows {
            m.push(r);
        }
        m
    }

    pub fn push(&mut self, row: StoredRow) {
        let at =
            u32::try_from(self.rows.len()).expect("a shard's memory part stays below 2^32 rows");
        self.by_subject.entry(row.subject).or_default().push(at);
        self.rows.push(row);
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
    pub fn rows(&self) -> &[StoredRow] {
        &self.rows
    }

    /// The rows of `subject`, in sequence order.
    pub fn of_subject(&self, subject: u32) -> impl Iterator<Item = &StoredRow> + '_ {
        self.by_subject
            .get(&subject)
            .into_iter()
            .flatten()
            .map(|&i| &self.rows[i as usize])
    }

    /// Takes every row out, leaving this empty.
    pub fn take(&mut self) -> Vec<StoredRow> {
        self.by_subject.clear();
        std::mem::take(&mut self.rows)
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
