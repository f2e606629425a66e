//! Sightline's indexes over the storage engine.
//!
//! [`StoreIndex`] keeps, for the whole store, which shards contain each subject
//! (roaring bitmaps of shard numbers), which communities each device reports to, and
//! per-subject sighting statistics. It attaches to a [`Store`] as an
//! [`AppendObserver`], so it is exact at all times: an event is in the index before
//! the `append` that stored it returns.

mod store_index;

pub use store_index::{IndexView, StoreIndex, SubjectStats};
