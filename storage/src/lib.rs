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
mod attr_columns;
mod bitpack;
pub mod catalog;
mod clock;
mod config;
mod device;
mod dict;
mod dict_snapshot;
mod error;
mod event;
mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod io;
mod log_file;
mod memtable;
pub mod pictures;
mod prefetch;
mod row;
pub mod segment;
mod segment_cache;
mod shard;
pub mod stats;
mod store;
mod subject;
mod wal;

pub use attr_codec::{encode_attrs, visit_attrs, AttrRef};
pub use attr_columns::{AsciiDigits, AttrOut, Decimal, RowScratch, DIGIT_PAIRS};
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
pub use fsutil::write_file_atomic;
pub use log_file::TornTail;
pub use row::Row;
pub use segment_cache::{CacheStats, RemoteSegments, SegmentCache, SegmentSource};
pub use shard::{ShardKey, SpanLayout};
pub use store::{
    check, check_rows, AppendObserver, AppendOutcome, Appended, AttrsAt, CheckReport, DroppedShard,
    MaintenanceReport, RecoveryReport, Registration, Restore, ShardInfo, Store, StoredEvent,
    SubjectRun, SubjectSummary, SUBJECT_RUN_WHOLE_MAX,
};
pub use subject::{normalize_plate, normalize_subject};
