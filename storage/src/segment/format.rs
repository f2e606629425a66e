//! Byte layout of a segment file. `storage/FORMAT.md` is the prose version of this
//! file; keep the two in step.

pub const MAGIC: [u8; 8] = *b"SLSEGMNT";
/// Written by this build; versions 1 (attributes row by row), 2 (32-bit source-id
/// hashes, kind and direction codes stored as they are) and 3 (attribute chunks
/// without a column directory, walked to reach a value; 14 spare fingerprint bits)
/// are still read.
pub const VERSION: u32 = 4;

/// Fixed header: 80 bytes of fields, the section table, the header checksum.
pub const HEADER_FIELDS: usize = 80;
pub const SECTION_ENTRY: usize = 24;
pub const SECTION_COUNT: usize = 8;
pub const HEADER_CRC_AT: usize = HEADER_FIELDS + SECTION_COUNT * SECTION_ENTRY; // 272
pub const HEADER_LEN: usize = HEADER_CRC_AT + 8; // 280

/// Events per block. Every block but the last of a device's run is full.
pub const BLOCK_ROWS: usize = 128;
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
