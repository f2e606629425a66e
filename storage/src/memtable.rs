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
    pub attrs: Box<[u8]>,
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

    pub fn from_row(r: &Row, attrs: Box<[u8]>, source_id: Option<Box<str>>) -> StoredRow {
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
