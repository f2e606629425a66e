//! Sealed segments: immutable, columnar, checksummed files read through mmap.
//! The byte layout is in `storage/FORMAT.md` and [`format`].

mod build;
pub mod format;
mod read;
mod source_index;

pub use build::build_segment;
pub(crate) use build::{block_data_len, write_segment, MemSorted, MergedSegments, SortedRows};
pub use read::{Segment, SegmentMeta};

#[cfg(test)]
mod golden;
