//! The unit a scan yields.

use crate::event::{Direction, Kind};

/// One stored event without its attributes, with strings as dictionary ids
/// (resolve them with [`crate::Store::dictionaries`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Row {
    /// Store-wide sequence number: the event's id, assigned in commit order.
    pub seq: u64,
    pub ts_ms: i64,
    pub community: u32,
    pub device: u32,
    pub subject: u32,
    pub kind: Kind,
    pub direction: Direction,
}

/// Packs kind and direction into one small column value.
pub(crate) fn kd_pack(kind: Kind, direction: Direction) -> u8 {
    (kind.code() << 2) | direction.code()
}

pub(crate) fn kd_unpack(kd: u8) -> (Kind, Direction) {
    let kind = Kind::from_code(kd >> 2);
    let dir = Direction::from_code(kd & 3);
    debug_assert!(
        kind.is_some() && dir.is_some(),
        "kd value {kd} out of range"
    );
    (
        kind.unwrap_or(Kind::Vehicle),
        dir.unwrap_or(Direction::Unknown),
    )
}

/// A stable 64-bit FNV-1a hash, used for source-id lookups on disk.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
