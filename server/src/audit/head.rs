//! The chain head kept outside the log: the last synced entry's sequence number and
//! hash, in the catalog (sled, key-value tree `audit`, key `head`).
//!
//! The log is fsynced before the head is written, so the head never names an entry
//! the disk may not hold; a log that ends before the head, or whose entry at the head
//! has another hash, was truncated, deleted or rewritten.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sightline_storage::{Catalog, SledCatalog, StorageError, Store};

/// Where a chain stands: the last entry's sequence number and hash (0 and zeros for
/// an empty chain).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl Head {
    pub fn genesis() -> Head {
        Head {
            seq: 0,
            hash: GENESIS.to_string(),
        }
    }
}

/// Where the head is kept, durable when `save` returns.
pub trait HeadStore: Send + Sync {
    fn load(&self) -> Result<Option<Head>, StorageError>;
    fn save(&self, head: &Head) -> Result<(), StorageError>;
}

const TREE: &str = "audit";
const KEY: &str = "head";

fn load_from(c: &dyn Catalog) -> Result<Option<Head>, StorageError> {
    match c.kv_get(TREE, KEY)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            StorageError::Catalog(format!("the audit head in the catalog is not JSON: {e}"))
        }),
    }
}

fn save_to(c: &dyn Catalog, head: &Head) -> Result<(), StorageError> {
    c.kv_put(
        TREE,
        KEY,
        &serde_json::to_vec(head).expect("a head serializes"),
    )
}

impl HeadStore for Store {
    fn load(&self) -> Result<Option<Head>, StorageError> {
        load_from(self.catalog())
    }
    fn save(&self, head: &Head) -> Result<(), StorageError> {
        save_to(self.catalog(), head)
    }
}

impl HeadStore for SledCatalog {
    fn load(&self) -> Result<Option<Head>, StorageError> {
        load_from(self)
    }
    fn save(&self, head: &Head) -> Result<(), StorageError> {
        save_to(self, head)
    }
}

/// A head in memory (tests of the log alone).
#[derive(Default)]
pub struct MemoryHead(pub Mutex<Option<Head>>);

impl HeadStore for MemoryHead {
    fn load(&self) -> Result<Option<Head>, StorageError> {
        Ok(self.0.lock().expect("head lock").clone())
    }
    fn save(&self, head: &Head) -> Result<(), StorageError> {
        *self.0.lock().expect("head lock") = Some(head.clone());
        Ok(())
    }
}
