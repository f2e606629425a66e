//! Sightline's indexes over the storage engine.
//!
//! [`StoreIndex`] keeps, for the whole store, which shards contain each subject
//! (roaring bitmaps of shard numbers), which communities each device reports to, and
//! per-subject sighting statistics. It attaches to a [`Store`] as an
//! [`AppendObserver`], so it is exact at all times: an event is in the index before
//! the `append` that stored it returns.
//!
//! [`Vocabulary`] is the tantivy index of subject strings: exact, prefix, wildcard and
//! fuzzy search, current within its refresh interval.

mod bits;
mod checkpoint;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod store_index;
mod vocabulary;
mod wildcard;

pub use error::{IndexError, Result};
pub use store_index::{
    check_checkpoint_bytes, verify_checkpoint, CheckpointCheck, IndexView, OpenReport, StoreIndex,
    SubjectStats, CHECKPOINT_FILE,
};
pub use vocabulary::{
    ocr_distance, Refresher, SearchMode, Vocabulary, MAX_MATCHES, MAX_PATTERN_CHARS,
};
pub use wildcard::{Wildcard, WildcardQuery};
