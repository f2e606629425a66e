//! Sightline's storage engine: a durable, append-only store of gate events, sharded by
//! community and local day.
//!
//! ```no_run
//! use sightline_storage::{EventInput, Store, StoreConfig};
//!
//! let store = Store::open("/tmp/sightline-data", StoreConfig::default())?;
//! let event = store.validate(EventInput {
//!     ts_ms: 1_630_454_400_123,
//!     community: "3205080001".into(),
//!     device: "32050801011210000003".into(),
//!     kind: "vehicle".into(),
//!     subject: "苏E·12345".into(),
//!     direction: "in".into(),
//!     ..Default::default()
//! })?;
//! let outcome = store.append(&[event])?; // returns once durable
//! assert_eq!(outcome.stored(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See `ARCHITECTURE.md` for the map and `storage/FORMAT.md` for the bytes on disk.

mod attr_codec;
mod bitpack;
pub mod catalog;
mod clock;
mod config;
mod device;
mod dict;
mod error;
mod event;
mod fsutil;
pub mod io;
mod log_file;
mod memtable;
pub mod pictures;
mod row;
pub mod segment;
mod shard;
pub mod stats;
mod store;
mod subject;
mod wal;

/// Parsing entry points for the fuzzers (`fuzz/`): the record framing and payload
/// decoding that recovery runs over WAL and dictionary-log bytes, without a store
/// around them (opening a store per input is too slow to fuzz at length).
#[doc(hidden)]
pub mod fuzz_entry {
    use std::path::Path;

    /// Frames and decodes WAL bytes as recovery does; the number of events decoded.
    pub fn wal_records(bytes: &[u8]) -> crate::Result<usize> {
        let path = Path::new("fuzz.wal");
        let mut n = 0;
        crate::log_file::read_records(bytes, path, true, |off, payload| {
            let (_, events) = crate::wal::decode_batch(payload)
                .map_err(|r| crate::StorageError::corrupt(path, off, r))?;
            for e in &events {
                crate::store::source_id_of(&e.attrs)
                    .map_err(|r| crate::StorageError::corrupt(path, off, r))?;
            }
            n += events.len();
            Ok(())
        })?;
        Ok(n)
    }

    /// Opens the dictionary log and WAL files in `dir` as opening a store does (replay
    /// into shards, torn tails cut off, the logs reopened for appending), without the
    /// catalog around them, so nothing is sealed; then reads every replayed event back
    /// through the dictionaries and decodes its attributes. The events replayed.
    pub fn replay_logs(dir: &Path) -> crate::Result<usize> {
        let config = crate::StoreConfig::default();
        let mut shards = std::collections::BTreeMap::new();
        let mut report = crate::RecoveryReport::default();
        let r = crate::store::replay_logs(dir, &config, &mut shards, 0, &mut report)?;
        let mut n = 0;
        for (key, shard) in &shards {
            for row in shard.mem.rows() {
                let decoded = r.dicts.community(key.community).is_some()
                    && r.dicts.device(row.device).is_some()
                    && r.dicts.subject(row.subject).is_some()
                    && crate::attr_codec::decode_attrs(&row.attrs).is_ok();
                assert!(decoded, "a replayed event reads back: {row:?}");
                n += 1;
            }
        }
        Ok(n)
    }

    /// Frames and applies dictionary-log bytes as loading does; the entries read.
    pub fn dict_records(bytes: &[u8]) -> crate::Result<usize> {
        crate::dict::parse(bytes, Path::new("fuzz.dict"))
    }
}

pub use attr_codec::{visit_attrs, AttrRef};
pub use catalog::{
    ApiKeyRecord, Catalog, Community, Device, Gat1400Credential, Manifest, SegmentEntry,
    ShardState, SledCatalog,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{StoreConfig, MAX_RETENTION_DAYS};
pub use device::{DeviceCode, DeviceCodeError};
pub use dict::Dictionaries;
pub use error::{Result, StorageError};
pub use event::{
    AttrValue, Attrs, Direction, Event, EventInput, EventRef, Kind, ValidationError, Validator,
    SOURCE_ID,
};
pub use log_file::TornTail;
pub use row::Row;
pub use shard::{ShardKey, SpanLayout};
pub use store::{
    check, AppendObserver, AppendOutcome, Appended, AttrsAt, CheckReport, MaintenanceReport,
    RecoveryReport, Registration, ShardInfo, Store, StoredEvent, SubjectRun,
};
pub use subject::{normalize_plate, normalize_subject};
