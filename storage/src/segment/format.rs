//! Byte layout of a segment file. `storage/FORMAT.md` is the prose version of this
//! file; keep the two in step.

pub const MAGIC: [u8; 8] = *b"SLSEGMNT";
/// Written by this build; versions 1 (attributes row by row), 2 (32-bit source-id
/// hashes, kind and direction codes stored as they are), 3 (attribute chunks
/// without a column directory, walked to reach a value; 14 spare fingerprint bits)
/// and 4 (source-id entries naming each event's ordinal) are still read.
pub const VERSION: u32 = 5;

/// Fixed header: 80 bytes of fields, the section table, the header checksum.
pub const HEADER_FIELDS: usize = 80;
pub const SECTION_ENTRY: usize = 24;
pub const SECTION_COUNT: usize = 8;
pub const HEADER_CRC_AT: usize = HEADER_FIELDS + SECTION_COUNT * SECTION_ENTRY; // 272
pub const HEADER_LEN: usize = HEADER_CRC_AT + 8; // 280

/// Events per block. Every block but the last of a device's run is full.
pub const BLOCK_ROWS: usize = 128;
/// The widest a block's columns may be, in bits: ts, subject, seq, kd (the reader
/// refuses wider).
pub const MAX_BLOCK_BITS: [u8; 4] = [32, 32, crate::bitpack::MAX_BITS, 5];
/// Size of a block directory entry.
pub const BLOCK_ENTRY: usize = 56;
/// Size of the small header in front of a packed array: bits (u8), 7 zero bytes, base (u64).
pub const PACKED_HEADER: usize = 16;
/// Size of one version 1 source-id index entry: hash (u64), ordinal (u32).
pub const SOURCE_ENTRY: usize = 12;

/// The sections, in file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Section {
    Blocks = 0,
    Data = 1,
    Subjects = 2,
    PostingOffsets = 3,
    PostingOrdinals = 4,
    SourceIds = 5,
    AttrOffsets = 6,
    AttrData = 7,
}

impl Section {
    pub const ALL: [Section; SECTION_COUNT] = [
        Section::Blocks,
        Section::Data,
        Section::Subjects,
        Section::PostingOffsets,
        Section::PostingOrdinals,
        Section::SourceIds,
        Section::AttrOffsets,
        Section::AttrData,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Section::Blocks => "block directory",
            Section::Data => "block data",
            Section::Subjects => "subjects",
            Section::PostingOffsets => "posting offsets",
            Section::PostingOrdinals => "posting ordinals",
            Section::SourceIds => "source ids",
            Section::AttrOffsets => "attr offsets",
            Section::AttrData => "attr data",
        }
    }
}

/// Field offsets inside a block directory entry.
pub mod block {
    pub const DEVICE: usize = 0; // u32
    pub const FIRST_ORDINAL: usize = 4; // u32
    pub const COUNT: usize = 8; // u16
    pub const TS_BITS: usize = 10; // u8
    pub const SUBJ_BITS: usize = 11; // u8
    pub const SEQ_BITS: usize = 12; // u8
    pub const KD_BITS: usize = 13; // u8
    /// Version 5: u8, 1 when the ts column holds each row's residual from the block's
    /// line ([`super::ts_line`]), 0 when its offset from `ts_min`. Zero before.
    pub const TS_LINE: usize = 14;
    pub const TS_MIN: usize = 16; // u32, offset from span start
    pub const TS_MAX: usize = 20; // u32
    pub const SUBJ_MIN: usize = 24; // u32, local subject rank
    pub const DATA_LEN: usize = 28; // u32
    pub const SEQ_MIN: usize = 32; // u64
    pub const DATA_OFF: usize = 40; // u64, from the start of the data section
    pub const CRC: usize = 48; // u32, CRC-32 (IEEE) of the block's data
    /// Version 3: u32, the set of kind and direction codes in the block (bit `c` for
    /// code `c`); the kd column holds each row's position in it. Zero before.
    pub const KD_CODES: usize = 52;
}

/// Fixed-point bits of a block's ts line slope.
const SLOPE_BITS: u32 = 20;

/// Version 5: the slope of a block's ts line, from its first time (`ts_min`, row 0) to
/// its last (`ts_max`, row `count − 1`), in 2^-20 ms a row: a line row `i` lies
/// [`ts_line`]`(slope, i)` ms after `ts_min`. Zero for a block of one row. Writer and
/// reader compute it alike, so it is not stored.
#[inline]
pub fn ts_slope(ts_min: u32, ts_max: u32, count: usize) -> u64 {
    match (u64::from(ts_max.saturating_sub(ts_min)), count as u64) {
        (_, 0 | 1) => 0,
        // Most blocks are full: a division by a constant, which compiles to a
        // multiply (a reader computes this for each block it visits).
        (span, c) if c == BLOCK_ROWS as u64 => (span << SLOPE_BITS) / (BLOCK_ROWS as u64 - 1),
        // Below 2^52 / 1: the product in `ts_line` stays below 2^59 for 128 rows.
        (span, c) => (span << SLOPE_BITS) / (c - 1),
    }
}

/// How far row `i` of a block's ts line lies after its first time, in ms (at most
/// `ts_max − ts_min` for rows of the block).
#[inline(always)]
pub fn ts_line(slope: u64, i: usize) -> u64 {
    (i as u64).wrapping_mul(slope) >> SLOPE_BITS
}

pub fn put_u16(out: &mut [u8], at: usize, v: u16) {
    out[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
pub fn put_u32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
pub fn put_u64(out: &mut [u8], at: usize, v: u64) {
    out[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
/// Little-endian reads; callers have checked `at + N <= b.len()`.
pub fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}
pub fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
pub fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
