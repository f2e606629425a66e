//! The catalog: communities, devices and the shard manifest. [`Catalog`] is the seam;
//! [`SledCatalog`] the implementation. Values are bincode-2 encoded.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::Transactional;

use crate::error::{Result, StorageError};
use crate::shard::ShardKey;
use crate::Direction;

/// A residential community.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Community {
    pub code: String,
    pub name: String,
    pub district: String,
}

/// A device at a community gate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// 20-digit GB/T 28181 code.
    pub code: String,
    /// Code of the community it belongs to.
    pub community: String,
    /// What it is: "checkpoint_camera", "face_camera", "access_door", …
    pub device_kind: String,
    /// Which way the gate it watches faces.
    pub direction: Direction,
    pub name: String,
}

/// What a GA/T 1400 pusher authenticates with: HTTP Digest (RFC 2617, MD5) keyed by
/// `HA1 = MD5(username:realm:password)`, so the password itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gat1400Credential {
    /// The 20-digit code it registers with (`User-Identify`, `RegisterObject.DeviceID`).
    pub code: String,
    pub realm: String,
    /// Lower-case hex of `MD5(username:realm:password)`.
    pub ha1: String,
    /// The digest user name the pusher is configured with: its code unless the vendor's
    /// configuration names another (`admin`, …).
    pub username: String,
    /// Lower-case hex of `SHA-256(username:realm:password)`, for clients answering
    /// with RFC 7616's `algorithm=SHA-256`; empty when unknown (older credentials).
    pub ha1_sha256: String,
}

/// A credential as catalogs before the user name existed kept it (the user name was
/// the code).
#[derive(Deserialize)]
struct Gat1400CredentialV1 {
    code: String,
    realm: String,
    ha1: String,
}

/// An API key as the catalog keeps it: never the secret, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public id, also the first part of the token (`sl_<id>_<secret>`).
    pub id: String,
    pub name: String,
    /// `ingest`, `investigate` or `admin`.
    pub role: String,
    /// Community codes the key may see; all when `None`.
    pub communities: Option<Vec<String>>,
    /// Hex SHA-256 of the whole token.
    pub token_sha256: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// One sealed segment file of a shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    pub id: u64,
    /// Path relative to the store's directory.
    pub file: String,
    pub events: u32,
    /// What opening the store needs to know of the file without reading it (copied
    /// from its header when it was written). `None` in manifests written before the
    /// facts were kept: opening reads those files once and records their facts.
    pub facts: Option<SegmentFacts>,
}

/// A sealed segment's header facts, kept in the manifest so that opening a store reads
/// nothing per segment: a segment is mapped on its first use, and checked then against
/// these (a file that disagrees is corruption naming it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentFacts {
    pub min_seq: u64,
    pub max_seq: u64,
    pub min_ts_ms: i64,
    pub max_ts_ms: i64,
    /// The file's length in bytes.
    pub file_bytes: u64,
}

/// What the manifest knows of one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    pub segments: Vec<SegmentEntry>,
    /// Every event of this shard with a sequence number up to this one is sealed (or,
    /// after retention, dropped); WAL replay skips them.
    pub sealed_through_seq: u64,
}

/// A segment entry as manifests before [`SegmentFacts`] kept it.
#[derive(Deserialize)]
struct SegmentEntryV1 {
    id: u64,
    file: String,
    events: u32,
}

/// A shard state as manifests before [`SegmentFacts`] kept it (stored without a tag).
#[derive(Deserialize)]
struct ShardStateV1 {
    segments: Vec<SegmentEntryV1>,
    sealed_through_seq: u64,
}

/// The first byte of a tagged shard state: never the first byte of an untagged
/// (version 1) one, whose first value is a bincode varint (a vector's length), and
/// bincode's varints never start with 255.
const SHARD_STATE_TAG: u8 = 0xFF;
/// The version of the shard state after [`SHARD_STATE_TAG`]: 2 added [`SegmentFacts`].
const SHARD_STATE_VERSION: u8 = 2;

fn encode_shard_state(state: &ShardState) -> Vec<u8> {
    let mut out = vec![SHARD_STATE_TAG, SHARD_STATE_VERSION];
    out.extend(enc(state));
    out
}

fn decode_shard_state(bytes: &[u8]) -> Result<ShardState> {
    match bytes {
        [SHARD_STATE_TAG, SHARD_STATE_VERSION, rest @ ..] => dec("shard state", rest),
        [SHARD_STATE_TAG, v, ..] => Err(StorageError::Catalog(format!(
            "shard state of version {v}; this build reads versions 1 and {SHARD_STATE_VERSION}"
        ))),
        _ => {
            let old: ShardStateV1 = dec("shard state (version 1)", bytes)?;
            Ok(ShardState {
                segments: old
                    .segments
                    .into_iter()
                    .map(|e| SegmentEntry {
                        id: e.id,
                        file: e.file,
                        events: e.events,
                        facts: None,
                    })
                    .collect(),
                sealed_through_seq: old.sealed_through_seq,
            })
        }
    }
}

/// The whole manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    pub shards: BTreeMap<ShardKey, ShardState>,
    pub next_segment_id: u64,
}

/// Storage for the catalog. Every method is durable when it returns.
pub trait Catalog: Send + Sync {
    /// Registers `c`, or replaces the community of its code: `true` when it created
    /// one (no community of that code before), known from the write itself, so of two
    /// puts of a new code exactly one says so.
    fn put_community(&self, c: &Community) -> Result<bool>;
    /// Registers `c`, or replaces the community of its code, if `allow` says so of the
    /// community registered then (`None`: none), as one step, as
    /// [`Catalog::put_device_if`] does for devices.
    fn put_community_if(
        &self,
        c: &Community,
        allow: &mut dyn FnMut(Option<&Community>) -> bool,
    ) -> Result<Option<bool>>;
    fn community(&self, code: &str) -> Result<Option<Community>>;
    fn communities(&self) -> Result<Vec<Community>>;
    /// Registers `d`, or replaces the device of its code: `true` when it created one,
    /// as [`Catalog::put_community`] tells.
    fn put_device(&self, d: &Device) -> Result<bool>;
    fn device(&self, code: &str) -> Result<Option<Device>>;
    /// Registers `d`, or replaces the device of its code, if `allow` says so of the
    /// device registered then (`None`: none), as one step: no other write of the code
    /// comes between the device `allow` saw and `d` (a write that does is seen, and
    /// `allow` asked again). `Some(created)` when written, `None` when `allow` said no.
    fn put_device_if(
        &self,
        d: &Device,
        allow: &mut dyn FnMut(Option<&Device>) -> bool,
    ) -> Result<Option<bool>>;
    fn devices(&self) -> Result<Vec<Device>>;
    fn manifest(&self) -> Result<Manifest>;
    /// Atomically sets the state of one shard and the next segment id.
    fn commit_shard(&self, key: ShardKey, state: &ShardState, next_segment_id: u64) -> Result<()>;
    /// Sets the states of several shards at once (one durable write), leaving the next
    /// segment id as it is: opening records the facts of segments listed without them.
    fn put_shard_states(&self, states: &[(ShardKey, ShardState)]) -> Result<()>;
    /// Creates or replaces an API key record.
    fn put_api_key(&self, key: &ApiKeyRecord) -> Result<()>;
    fn api_keys(&self) -> Result<Vec<ApiKeyRecord>>;
    /// The retention policy set with [`Catalog::set_retention_days`] (`None`: keep
    /// everything, or never set).
    /// A device's (or upstream platform's) GA/T 1400 digest credential, by its code.
    fn put_gat1400_credential(&self, c: &Gat1400Credential) -> Result<()>;
    fn gat1400_credential(&self, code: &str) -> Result<Option<Gat1400Credential>>;
    /// Every GA/T 1400 credential (to find one by its user name's hash, RFC 7616
    /// `userhash`).
    fn gat1400_credentials(&self) -> Result<Vec<Gat1400Credential>>;
    /// Records of the layers above (subscriptions, their cursors …), durable when the
    /// call returns: `tree` names a namespace of their own.
    fn kv_put(&self, tree: &str, key: &str, value: &[u8]) -> Result<()>;
    /// Several entries at once, durable together when the call returns.
    fn kv_put_many(&self, tree: &str, entries: &[(String, Vec<u8>)]) -> Result<()>;
    fn kv_get(&self, tree: &str, key: &str) -> Result<Option<Vec<u8>>>;
    fn kv_delete(&self, tree: &str, key: &str) -> Result<()>;
    fn kv_list(&self, tree: &str) -> Result<Vec<(String, Vec<u8>)>>;
    /// The entry with the greatest key (byte order), if any.
    fn kv_last(&self, tree: &str) -> Result<Option<(String, Vec<u8>)>>;
    /// Entries with keys after `key` (byte order), at most `limit`.
    fn kv_after(&self, tree: &str, key: &str, limit: usize) -> Result<Vec<(String, Vec<u8>)>>;
    fn retention_days(&self) -> Result<Option<u32>>;
    fn set_retention_days(&self, days: Option<u32>) -> Result<()>;
}

/// The sled-backed catalog.
pub struct SledCatalog {
    db: sled::Db,
    communities: sled::Tree,
    devices: sled::Tree,
    shards: sled::Tree,
    meta: sled::Tree,
    gat1400: sled::Tree,
    api_keys: sled::Tree,
}

const NEXT_SEGMENT_ID: &[u8] = b"next_segment_id";
const RETENTION_DAYS: &[u8] = b"retention_days";

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard())
        .expect("catalog values always encode")
}

fn dec<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| StorageError::Catalog(format!("undecodable {what}: {e}")))
}

fn shard_key_bytes(k: ShardKey) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&k.community.to_be_bytes());
    // Flip the sign bit so spans sort as unsigned big-endian.
    b[4..].copy_from_slice(&((k.span as u32) ^ 0x8000_0000).to_be_bytes());
    b
}

fn shard_key_from(b: &[u8]) -> Result<ShardKey> {
    if b.len() != 8 {
        return Err(StorageError::Catalog(format!(
            "shard key of {} bytes",
            b.len()
        )));
    }
    Ok(ShardKey {
        community: u32::from_be_bytes(b[..4].try_into().expect("4")),
        span: (u32::from_be_bytes(b[4..].try_into().expect("4")) ^ 0x8000_0000) as i32,
    })
}

impl SledCatalog {
    pub fn open(dir: &Path) -> Result<SledCatalog> {
        // The store opens its catalog holding the store's `LOCK`, so a catalog lock held
        // elsewhere is this process's previous store, dropped a moment ago, whose sled
        // threads are still letting go: wait for them (up to 2 s) rather than fail.
        let mut waited = 0;
        let db = loop {
            match sled::Config::new()
                .path(dir)
                .cache_capacity(32 << 20)
                .open()
            {
                // sled reports it as `Other` with this text.
                Err(sled::Error::Io(e))
                    if e.to_string().starts_with("could not acquire lock") && waited < 200 =>
                {
                    waited += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                r => break r?,
            }
        };
        Ok(SledCatalog {
            communities: db.open_tree("communities")?,
            devices: db.open_tree("devices")?,
            shards: db.open_tree("shards")?,
            meta: db.open_tree("meta")?,
            api_keys: db.open_tree("api_keys")?,
            gat1400: db.open_tree("gat1400_credentials")?,
            db,
        })
    }

    /// Writes `v` under `key`, durably: whether `key` was new (sled's insert gives
    /// the value it replaced, atomically with the write).
    fn put<T: Serialize>(&self, tree: &sled::Tree, key: &str, v: &T) -> Result<bool> {
        let before = tree.insert(key.as_bytes(), enc(v))?;
        self.db.flush()?;
        Ok(before.is_none())
    }

    /// Writes `v` under `key` if `allow` says so of the record there then (`None`:
    /// none), as one step: written only over the bytes `allow` saw (a write between is
    /// seen, and `allow` asked again). `Some(created)` when written, `None` when
    /// `allow` said no.
    fn put_if<T: Serialize + DeserializeOwned>(
        &self,
        what: &str,
        tree: &sled::Tree,
        key: &str,
        v: &T,
        allow: &mut dyn FnMut(Option<&T>) -> bool,
    ) -> Result<Option<bool>> {
        let value = enc(v);
        loop {
            let before = tree.get(key)?;
            let existing = before.as_ref().map(|b| dec::<T>(what, b)).transpose()?;
            if !allow(existing.as_ref()) {
                return Ok(None);
            }
            if tree
                .compare_and_swap(key, before.as_ref(), Some(value.as_slice()))?
                .is_ok()
            {
                self.db.flush()?;
                return Ok(Some(before.is_none()));
            }
        }
    }

    fn all<T: DeserializeOwned>(&self, what: &str, tree: &sled::Tree) -> Result<Vec<T>> {
        tree.iter().map(|kv| dec(what, &kv?.1)).collect()
    }
}

impl Catalog for SledCatalog {
    fn put_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        self.put(&self.api_keys, &key.id, key).map(|_| ())
    }
    fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        self.all("api key", &self.api_keys)
    }
    fn put_gat1400_credential(&self, c: &Gat1400Credential) -> Result<()> {
        self.put(&self.gat1400, &c.code, c).map(|_| ())
    }
    fn gat1400_credential(&self, code: &str) -> Result<Option<Gat1400Credential>> {
        let Some(v) = self.gat1400.get(code.as_bytes())? else {
            return Ok(None);
        };
        match dec::<Gat1400Credential>("GA/T 1400 credential", &v) {
            Ok(c) => Ok(Some(c)),
            Err(e) => match dec::<Gat1400CredentialV1>("GA/T 1400 credential", &v) {
                Ok(old) => Ok(Some(Gat1400Credential {
                    username: old.code.clone(),
                    code: old.code,
                    realm: old.realm,
                    ha1: old.ha1,
                    ha1_sha256: String::new(),
                })),
                Err(_) => Err(e),
            },
        }
    }
    fn gat1400_credentials(&self) -> Result<Vec<Gat1400Credential>> {
        let mut out = Vec::new();
        for key in self.gat1400.iter().keys() {
            let key = key?;
            let code = String::from_utf8_lossy(&key);
            // One record that does not decode is that device's problem (its own login
            // names it), not every other's: skipped here, logged.
            match self.gat1400_credential(&code) {
                Ok(Some(c)) => out.push(c),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(code = %code, error = %e,
                        "a GA/T 1400 credential in the catalog does not decode: left out of the list");
                }
            }
        }
        Ok(out)
    }
    fn kv_put(&self, tree: &str, key: &str, value: &[u8]) -> Result<()> {
        self.db
            .open_tree(format!("kv.{tree}"))?
            .insert(key.as_bytes(), value)?;
        self.db.flush()?;
        Ok(())
    }
    fn kv_put_many(&self, tree: &str, entries: &[(String, Vec<u8>)]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (k, v) in entries {
            batch.insert(k.as_bytes(), v.as_slice());
        }
        self.db
            .open_tree(format!("kv.{tree}"))?
            .apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }
    fn kv_get(&self, tree: &str, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .db
            .open_tree(format!("kv.{tree}"))?
            .get(key.as_bytes())?
            .map(|v| v.to_vec()))
    }
    fn kv_delete(&self, tree: &str, key: &str) -> Result<()> {
        self.db
            .open_tree(format!("kv.{tree}"))?
            .remove(key.as_bytes())?;
        self.db.flush()?;
        Ok(())
    }
    fn kv_list(&self, tree: &str) -> Result<Vec<(String, Vec<u8>)>> {
        self.db
            .open_tree(format!("kv.{tree}"))?
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }
    fn kv_last(&self, tree: &str) -> Result<Option<(String, Vec<u8>)>> {
        Ok(self
            .db
            .open_tree(format!("kv.{tree}"))?
            .last()?
            .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v.to_vec())))
    }
    fn kv_after(&self, tree: &str, key: &str, limit: usize) -> Result<Vec<(String, Vec<u8>)>> {
        use std::ops::Bound;
        self.db
            .open_tree(format!("kv.{tree}"))?
            .range::<&[u8], _>((Bound::Excluded(key.as_bytes()), Bound::Unbounded))
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }
    fn retention_days(&self) -> Result<Option<u32>> {
        match self.meta.get(RETENTION_DAYS)? {
            Some(v) => dec("retention policy", &v),
            None => Ok(None),
        }
    }
    fn set_retention_days(&self, days: Option<u32>) -> Result<()> {
        self.meta.insert(RETENTION_DAYS, enc(&days))?;
        self.db.flush()?;
        Ok(())
    }
    fn put_community(&self, c: &Community) -> Result<bool> {
        self.put(&self.communities, &c.code, c)
    }
    fn put_community_if(
        &self,
        c: &Community,
        allow: &mut dyn FnMut(Option<&Community>) -> bool,
    ) -> Result<Option<bool>> {
        self.put_if("community", &self.communities, &c.code, c, allow)
    }
    fn community(&self, code: &str) -> Result<Option<Community>> {
        self.communities
            .get(code)?
            .map(|v| dec("community", &v))
            .transpose()
    }
    fn communities(&self) -> Result<Vec<Community>> {
        self.all("community", &self.communities)
    }
    fn put_device(&self, d: &Device) -> Result<bool> {
        self.put(&self.devices, &d.code, d)
    }
    fn device(&self, code: &str) -> Result<Option<Device>> {
        self.devices
            .get(code)?
            .map(|v| dec("device", &v))
            .transpose()
    }
    fn put_device_if(
        &self,
        d: &Device,
        allow: &mut dyn FnMut(Option<&Device>) -> bool,
    ) -> Result<Option<bool>> {
        self.put_if("device", &self.devices, &d.code, d, allow)
    }
    fn devices(&self) -> Result<Vec<Device>> {
        self.all("device", &self.devices)
    }

    fn manifest(&self) -> Result<Manifest> {
        let mut m = Manifest::default();
        for kv in self.shards.iter() {
            let (k, v) = kv?;
            m.shards
                .insert(shard_key_from(&k)?, decode_shard_state(&v)?);
        }
        m.next_segment_id = match self.meta.get(NEXT_SEGMENT_ID)? {
            Some(v) => dec("next segment id", &v)?,
            None => 1,
        };
        Ok(m)
    }

    fn commit_shard(&self, key: ShardKey, state: &ShardState, next_segment_id: u64) -> Result<()> {
        let k = shard_key_bytes(key);
        let v = encode_shard_state(state);
        let n = enc(&next_segment_id);
        (&self.shards, &self.meta).transaction(
            |(shards, meta): &(TransactionalTree, TransactionalTree)| {
                shards.insert(&k, v.as_slice())?;
                meta.insert(NEXT_SEGMENT_ID, n.as_slice())?;
                Ok::<_, ConflictableTransactionError<StorageError>>(())
            },
        )?;
        self.db.flush()?;
        Ok(())
    }

    fn put_shard_states(&self, states: &[(ShardKey, ShardState)]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (key, state) in states {
            batch.insert(&shard_key_bytes(*key), encode_shard_state(state));
        }
        self.shards.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
impl SledCatalog {
    /// Writes `state` as manifests before [`SegmentFacts`] did (untagged, no facts):
    /// a store "written the old way", for the compatibility tests.
    pub(crate) fn put_shard_state_v1(&self, key: ShardKey, state: &ShardState) -> Result<()> {
        #[derive(Serialize)]
        struct EntryV1<'a> {
            id: u64,
            file: &'a str,
            events: u32,
        }
        #[derive(Serialize)]
        struct StateV1<'a> {
            segments: Vec<EntryV1<'a>>,
            sealed_through_seq: u64,
        }
        let old = StateV1 {
            segments: state
                .segments
                .iter()
                .map(|e| EntryV1 {
                    id: e.id,
                    file: &e.file,
                    events: e.events,
                })
                .collect(),
            sealed_through_seq: state.sealed_through_seq,
        };
        self.shards.insert(shard_key_bytes(key), enc(&old))?;
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, facts: Option<SegmentFacts>) -> SegmentEntry {
        SegmentEntry {
            id,
            file: format!("segments/18871/3-{id}.seg"),
            events: 40 + id as u32,
            facts,
        }
    }

    #[test]
    fn shard_states_of_both_versions_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let c = SledCatalog::open(dir.path()).unwrap();
        let facts = SegmentFacts {
            min_seq: 7,
            max_seq: 300,
            min_ts_ms: -5,
            max_ts_ms: 1_630_425_600_000,
            file_bytes: 4096,
        };
        let key = |community| ShardKey {
            community,
            span: 18871,
        };
        // Version 1 (no tag, no facts), with more than 250 entries so its first byte
        // is a multi-byte varint's marker, and with none.
        let many = ShardState {
            segments: (0..300).map(|id| entry(id, None)).collect(),
            sealed_through_seq: 99,
        };
        c.put_shard_state_v1(key(1), &many).unwrap();
        c.put_shard_state_v1(key(2), &ShardState::default())
            .unwrap();
        // Version 2, with and without facts.
        let new = ShardState {
            segments: vec![entry(1, Some(facts)), entry(2, None)],
            sealed_through_seq: 300,
        };
        c.commit_shard(key(3), &new, 7).unwrap();
        let m = c.manifest().unwrap();
        assert_eq!(m.shards[&key(1)], many);
        assert_eq!(m.shards[&key(2)], ShardState::default());
        assert_eq!(m.shards[&key(3)], new);
        assert_eq!(m.next_segment_id, 7);
        // A version 2 state is rewritten over a version 1 one.
        c.put_shard_states(&[(key(1), new.clone())]).unwrap();
        assert_eq!(c.manifest().unwrap().shards[&key(1)], new);
        // An unknown version is refused, not read as something else.
        let mut v9 = encode_shard_state(&new);
        v9[1] = 9;
        c.shards.insert(shard_key_bytes(key(4)), v9).unwrap();
        let e = c.manifest().unwrap_err().to_string();
        assert!(e.contains("version 9"), "{e}");
    }

    #[test]
    fn credentials_from_before_user_names_read_with_the_code_as_user_name() {
        #[derive(Serialize)]
        struct V1<'a> {
            code: &'a str,
            realm: &'a str,
            ha1: &'a str,
        }
        let dir = tempfile::tempdir().unwrap();
        let c = SledCatalog::open(dir.path()).unwrap();
        let old = V1 {
            code: "32050801011210000001",
            realm: "Sightline",
            ha1: "ab",
        };
        c.gat1400.insert(old.code.as_bytes(), enc(&old)).unwrap();
        let read = c.gat1400_credential(old.code).unwrap().unwrap();
        assert_eq!(read.username, old.code);
        assert_eq!(read.ha1, "ab");
        let new = Gat1400Credential {
            username: "admin".into(),
            ..read
        };
        c.put_gat1400_credential(&new).unwrap();
        assert_eq!(c.gat1400_credential(old.code).unwrap(), Some(new.clone()));
        assert_eq!(c.gat1400_credentials().unwrap(), vec![new]);
        c.gat1400.insert(b"junk", b"\x01".to_vec()).unwrap();
        assert!(c.gat1400_credential("junk").is_err());
    }

    /// `put_device_if` writes only over the device `allow` saw: of threads that each
    /// register one new code only if none is, exactly one creates and the rest see its
    /// device; a refusal writes nothing.
    #[test]
    fn a_checked_device_put_is_one_step_with_its_look() {
        let dir = tempfile::tempdir().unwrap();
        let c = std::sync::Arc::new(SledCatalog::open(dir.path()).unwrap());
        let device = |community: &str| Device {
            code: "32050801011210000001".into(),
            community: community.into(),
            device_kind: "gate".into(),
            direction: crate::Direction::In,
            name: community.into(),
        };
        let outcomes: Vec<(Option<bool>, Option<Device>)> = std::thread::scope(|s| {
            let racers: Vec<_> = (0..8)
                .map(|i| {
                    let (c, d) = (c.clone(), device(&format!("320508000{i}")));
                    s.spawn(move || {
                        let mut seen = None;
                        let written = c
                            .put_device_if(&d, &mut |existing| {
                                seen = existing.cloned();
                                existing.is_none()
                            })
                            .unwrap();
                        (written, seen)
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let winner = c.device("32050801011210000001").unwrap().unwrap();
        let created: Vec<_> = outcomes.iter().filter(|(w, _)| *w == Some(true)).collect();
        assert_eq!(created.len(), 1, "{outcomes:?}");
        for (written, seen) in &outcomes {
            if written.is_none() {
                assert_eq!(seen.as_ref(), Some(&winner), "{outcomes:?}");
            }
        }
        // Refused: nothing written; allowed over one: a replacement (not created).
        let other = device("3205080099");
        assert_eq!(c.put_device_if(&other, &mut |_| false).unwrap(), None);
        assert_eq!(c.device(&other.code).unwrap().unwrap(), winner);
        assert_eq!(c.put_device_if(&other, &mut |_| true).unwrap(), Some(false));
        assert_eq!(c.device(&other.code).unwrap().unwrap(), other);
    }
}
