//! Pictures (车辆大图, 车牌小图, 人脸图, 场景图): bytes, not events. They live in
//! append-only *pack* files beside the segments, one per shard (community, local day),
//! so retention drops them with their shard; identical bytes within a pack are stored
//! once; every record carries a checksum; [`PictureStore::put`] returns only after the
//! fsync that covers what it wrote, so an event referencing a picture is acknowledged
//! after its picture is durable. The format is in `storage/FORMAT.md` ("Picture packs").
//!
//! ```text
//! pack    := header record*
//! header  := "SLPACK" version:u16 LE                       (8 bytes)
//! record  := "PICT" len:u32 LE crc32(bytes):u32 LE sha256(bytes):[32] bytes
//! ```
//!
//! A picture's id names its pack and the offset of its record: `{community as hex}.
//! {span}.{offset}`. Recovery reads record headers only (the content hashes rebuild the
//! dedup index); the last record is checked whole, and a torn one — a crash mid-append,
//! never acknowledged — is cut off after the file reads the same a second time. Damage
//! anywhere else is found when a picture is read: an error naming the file and offset.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use sha2::{Digest, Sha256};

use crate::error::{Result, StorageError};
use crate::io::{FileIo, OpenMode};
use crate::log_file::TornTail;

const PACK_MAGIC: &[u8; 6] = b"SLPACK";
const PACK_VERSION: u16 = 1;
const PACK_HEADER: u64 = 8;
const RECORD_MAGIC: &[u8; 4] = b"PICT";
/// Magic, length, checksum, content hash.
pub const RECORD_HEADER: usize = 4 + 4 + 4 + 32;
/// Largest picture the store accepts; larger lengths read from disk are corruption.
pub const MAX_PICTURE_BYTES: usize = 16 << 20;

/// Where a picture is: its pack (community code, span) and its record's offset.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PictureId {
    pub community: String,
    pub span: i32,
    pub offset: u64,
}

impl fmt::Display for PictureId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            hex(self.community.as_bytes()),
            self.span,
            self.offset
        )
    }
}

/// Why a text is not a picture id.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a picture id")]
pub struct BadPictureId(String);

impl FromStr for PictureId {
    type Err = BadPictureId;
    fn from_str(s: &str) -> std::result::Result<PictureId, BadPictureId> {
        let bad = || BadPictureId(s.chars().take(80).collect());
        let mut parts = s.split('.');
        let (Some(c), Some(span), Some(offset), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let community = unhex(c)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(bad)?;
        Ok(PictureId {
            community,
            span: span.parse().map_err(|_| bad())?,
            offset: offset.parse().map_err(|_| bad())?,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// One shard's pack. Readers take only `durable` and a read lock of `starts` (never the
/// writer's lock); one writer at a time appends under `writer`, and publishes what it
/// made durable.
struct Pack {
    path: PathBuf,
    /// The length fsynced: what a reader may read.
    durable: AtomicU64,
    /// Where each durable record starts, rising: an id whose offset is not among them
    /// names no picture (a made-up or mistyped id), told apart from a record that is
    /// damaged (8 bytes a record, beside the writer's 40 of `by_hash`).
    starts: RwLock<Vec<u64>>,
    writer: Mutex<PackWriter>,
}

/// A pack's writing state: its length and where each content hash is.
struct PackWriter {
    len: u64,
    by_hash: HashMap<[u8; 32], u64>,
    /// A write or fsync failed: what the file holds past `len` is unknown, so nothing
    /// more is appended until the store is reopened (recovery cuts the torn tail).
    failed: bool,
}

impl Pack {
    fn new(path: PathBuf, len: u64, by_hash: HashMap<[u8; 32], u64>, starts: Vec<u64>) -> Pack {
        Pack {
            path,
            durable: AtomicU64::new(len),
            starts: RwLock::new(starts),
            writer: Mutex::new(PackWriter {
                len,
                by_hash,
                failed: false,
            }),
        }
    }
}

/// What [`PictureStore::get_cached`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// The picture's bytes, checked.
    Found(Vec<u8>),
    /// No such picture.
    Missing,
    /// Not all in memory: read it with [`PictureStore::get`] where blocking is fine.
    NotInMemory,
}

/// The picture packs of a store.
pub struct PictureStore {
    dir: PathBuf,
    io: Arc<dyn FileIo>,
    /// The packs by shard. Held only to look up or insert: never across I/O, so a
    /// reader never waits for a pack being created or written.
    packs: Mutex<HashMap<(String, i32), Arc<Pack>>>,
    /// Serialises pack creation (writers only).
    creating: Mutex<()>,
}

impl fmt::Debug for PictureStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PictureStore")
            .field("dir", &self.dir)
            .finish()
    }
}

fn pack_name(community: &str, span: i32) -> String {
    format!("{}.{span}.pack", hex(community.as_bytes()))
}

/// A pack being created is written under this suffix, then renamed into place.
const CREATING: &str = ".creating";

impl PictureStore {
    /// Opens (creating) the packs under `dir`, cutting off torn tails (reported).
    pub fn open(dir: &Path, io: Arc<dyn FileIo>) -> Result<(PictureStore, Vec<TornTail>)> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let mut packs = HashMap::new();
        let mut torn = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))?;
        for entry in entries {
            let path = entry.map_err(|e| StorageError::io(dir, e))?.path();
            if path.to_str().is_some_and(|p| p.ends_with(CREATING)) {
                // A creation a crash interrupted: it never held a picture.
                io.remove_file(&path)
                    .map_err(|e| StorageError::io(&path, e))?;
                continue;
            }
            let Some(key) = pack_key(&path) else {
                continue; // not a pack (a foreign file): left alone
            };
            if interrupted(io.as_ref(), &path)? {
                // Created under its own name by an older version and cut before its
                // header was whole: it never held a picture.
                io.remove_file(&path)
                    .map_err(|e| StorageError::io(&path, e))?;
                continue;
            }
            let (pack, cut) = recover(io.as_ref(), path)?;
            torn.extend(cut);
            packs.insert(key, Arc::new(pack));
        }
        let store = PictureStore {
            dir: dir.to_path_buf(),
            io,
            packs: Mutex::new(packs),
            creating: Mutex::new(()),
        };
        Ok((store, torn))
    }

    /// The pack of a shard, created if it has none.
    fn pack(&self, community: &str, span: i32) -> Result<Arc<Pack>> {
        let key = (community.to_string(), span);
        let known =
            |key: &(String, i32)| self.packs.lock().expect("pictures lock").get(key).cloned();
        if let Some(p) = known(&key) {
            return Ok(p);
        }
        // Created (fsyncs and a rename) outside the map's lock: readers of every other
        // pack go on meanwhile. Another writer may have created it while we waited.
        let _creating = self.creating.lock().expect("pictures creation lock");
        if let Some(p) = known(&key) {
            return Ok(p);
        }
        let p = Arc::new(self.create_pack(community, span)?);
        self.packs
            .lock()
            .expect("pictures lock")
            .insert(key, p.clone());
        Ok(p)
    }

    /// Stores pictures, each in the pack of its shard (`community`, `span`), and returns
    /// their ids in order once every byte is durable. Bytes already in that pack are not
    /// written again: the earlier id is returned. Hashing happens before any lock, and
    /// each pack is locked only while its records are appended and fsynced: readers
    /// never wait for writers.
    pub fn put(&self, pictures: &[(&str, i32, &[u8])]) -> Result<Vec<PictureId>> {
        let mut groups: BTreeMap<(&str, i32), Vec<usize>> = BTreeMap::new();
        for (i, &(community, span, bytes)) in pictures.iter().enumerate() {
            if bytes.is_empty() || bytes.len() > MAX_PICTURE_BYTES {
                return Err(StorageError::Setting {
                    what: "picture",
                    reason: format!("{} bytes; 1 to {MAX_PICTURE_BYTES}", bytes.len()),
                });
            }
            groups.entry((community, span)).or_default().push(i);
        }
        let hashes: Vec<[u8; 32]> = pictures
            .iter()
            .map(|(_, _, bytes)| Sha256::digest(bytes).into())
            .collect();
        let mut offsets = vec![0u64; pictures.len()];
        for ((community, span), members) in groups {
            let pack = self.pack(community, span)?;
            let mut w = pack.writer.lock().expect("pack lock");
            if w.failed {
                return Err(StorageError::Poisoned(format!(
                    "an earlier write to {} failed; reopen the store",
                    pack.path.display()
                )));
            }
            let mut buf = Vec::new();
            let (mut added, mut starts) = (Vec::new(), Vec::new());
            for i in members {
                let hash = hashes[i];
                offsets[i] = match w.by_hash.get(&hash) {
                    Some(&at) => at,
                    None => {
                        let at = w.len + buf.len() as u64;
                        record(pictures[i].2, &hash, &mut buf);
                        w.by_hash.insert(hash, at);
                        added.push(hash);
                        starts.push(at);
                        at
                    }
                };
            }
            if buf.is_empty() {
                continue;
            }
            if let Err(e) = self.append(&pack.path, &buf) {
                // Nothing of this batch is acknowledged: the index forgets it, and the
                // pack takes no more writes until reopened.
                for h in added {
                    w.by_hash.remove(&h);
                }
                w.failed = true;
                return Err(e);
            }
            w.len += buf.len() as u64;
            // Known as starts before they are readable.
            write_lock(&pack.starts).extend(starts);
            pack.durable.store(w.len, Ordering::Release);
        }
        Ok(pictures
            .iter()
            .zip(offsets)
            .map(|(&(community, span, _), offset)| PictureId {
                community: community.to_string(),
                span,
                offset,
            })
            .collect())
    }

    /// A new, empty pack: written under a temporary name, fsynced, renamed into place,
    /// its directory fsynced, so no crash leaves a pack without its header.
    fn create_pack(&self, community: &str, span: i32) -> Result<Pack> {
        let path = self.dir.join(pack_name(community, span));
        let temp = self
            .dir
            .join(format!("{}{CREATING}", pack_name(community, span)));
        let mut header = PACK_MAGIC.to_vec();
        header.extend_from_slice(&PACK_VERSION.to_le_bytes());
        let mut f = self
            .io
            .open(&temp, OpenMode::Truncate)
            .map_err(|e| StorageError::io(&temp, e))?;
        f.write_all(&header)
            .and_then(|()| f.sync_data())
            .map_err(|e| StorageError::io(&temp, e))?;
        drop(f);
        self.io
            .rename(&temp, &path)
            .map_err(|e| StorageError::io(&path, e))?;
        self.io
            .sync_dir(&self.dir)
            .map_err(|e| StorageError::io(&self.dir, e))?;
        Ok(Pack::new(path, PACK_HEADER, HashMap::new(), Vec::new()))
    }

    fn append(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let mut f = self
            .io
            .open(path, OpenMode::Append)
            .map_err(|e| StorageError::io(path, e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_data())
            .map_err(|e| StorageError::io(path, e))
    }

    /// A picture's bytes, checked against its checksum; `None` when there is no such
    /// picture (no pack, an offset past what is durable, or one where no record starts).
    pub fn get(&self, id: &PictureId) -> Result<Option<Vec<u8>>> {
        match self.fetch(id, false)? {
            Fetched::Found(bytes) => Ok(Some(bytes)),
            Fetched::Missing => Ok(None),
            Fetched::NotInMemory => unreachable!("a blocking fetch always reads"),
        }
    }

    /// [`PictureStore::get`] without waiting for a disk: [`Fetched::NotInMemory`] when
    /// some of the picture is not in the page cache (then [`PictureStore::get`] on a
    /// thread that may block). Serves a picture from an event loop.
    pub fn get_cached(&self, id: &PictureId) -> Result<Fetched> {
        self.fetch(id, true)
    }

    fn fetch(&self, id: &PictureId, cached_only: bool) -> Result<Fetched> {
        let pack = {
            let packs = self.packs.lock().expect("pictures lock");
            match packs.get(&(id.community.clone(), id.span)) {
                Some(p) => p.clone(),
                None => return Ok(Fetched::Missing),
            }
        };
        let (path, len) = (&pack.path, pack.durable.load(Ordering::Acquire));
        if id.offset < PACK_HEADER || id.offset + RECORD_HEADER as u64 > len {
            return Ok(Fetched::Missing);
        }
        // Not where a record starts: no picture has that id (a damaged record, at an
        // offset that is one, is an error below).
        if read_lock(&pack.starts).binary_search(&id.offset).is_err() {
            return Ok(Fetched::Missing);
        }
        let read = |offset, len| match cached_only {
            true => self
                .io
                .read_at_cached(path, offset, len)
                .map_err(|e| StorageError::io(path, e)),
            false => self.read_at(path, offset, len).map(Some),
        };
        let Some(head) = read(id.offset, RECORD_HEADER)? else {
            return Ok(Fetched::NotInMemory);
        };
        let (size, crc, _) = parse_header(path, id.offset, &head, len)?;
        let Some(bytes) = read(id.offset + RECORD_HEADER as u64, size)? else {
            return Ok(Fetched::NotInMemory);
        };
        if crc32fast::hash(&bytes) != crc {
            return Err(StorageError::corrupt(
                path,
                id.offset,
                "picture checksum mismatch",
            ));
        }
        Ok(Fetched::Found(bytes))
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.io
            .read_at(path, offset, len)
            .map_err(|e| StorageError::io(path, e))
    }

    /// Removes a shard's pack (retention).
    pub fn drop_shard(&self, community: &str, span: i32) -> Result<()> {
        let removed = self
            .packs
            .lock()
            .expect("pictures lock")
            .remove(&(community.to_string(), span));
        if let Some(p) = removed {
            self.io
                .remove_file(&p.path)
                .map_err(|e| StorageError::io(&p.path, e))?;
        }
        Ok(())
    }

    /// Bytes in packs, headers included.
    pub fn bytes(&self) -> u64 {
        let packs = self.packs.lock().expect("pictures lock");
        packs
            .values()
            .map(|p| p.durable.load(Ordering::Acquire))
            .sum()
    }

    /// Pictures stored (distinct within their pack).
    pub fn count(&self) -> usize {
        // Each pack's writer lock may be held across an fsync: wait for it without
        // holding the map's lock, which readers take.
        let packs: Vec<Arc<Pack>> = self
            .packs
            .lock()
            .expect("pictures lock")
            .values()
            .cloned()
            .collect();
        packs
            .iter()
            .map(|p| p.writer.lock().expect("pack lock").by_hash.len())
            .sum()
    }
}

/// A pack's record starts to read (a panic elsewhere leaves them whole: each change is
/// one `extend`).
fn read_lock(starts: &RwLock<Vec<u64>>) -> RwLockReadGuard<'_, Vec<u64>> {
    starts.read().unwrap_or_else(|p| p.into_inner())
}

/// A pack's record starts to add to.
fn write_lock(starts: &RwLock<Vec<u64>>) -> RwLockWriteGuard<'_, Vec<u64>> {
    starts.write().unwrap_or_else(|p| p.into_inner())
}

/// Appends one record for `bytes` to `out`.
fn record(bytes: &[u8], hash: &[u8; 32], out: &mut Vec<u8>) {
    out.extend_from_slice(RECORD_MAGIC);
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
    out.extend_from_slice(hash);
    out.extend_from_slice(bytes);
}

/// A record header's length, checksum and content hash, checked against the file's
/// length.
fn parse_header(
    path: &Path,
    offset: u64,
    head: &[u8],
    file_len: u64,
) -> Result<(usize, u32, [u8; 32])> {
    let bad = |why: &str| StorageError::corrupt(path, offset, why);
    if head.len() < RECORD_HEADER || &head[..4] != RECORD_MAGIC {
        return Err(bad("not a picture record"));
    }
    let size = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
    if size == 0 || size > MAX_PICTURE_BYTES {
        return Err(bad("picture length out of range"));
    }
    if offset + (RECORD_HEADER + size) as u64 > file_len {
        return Err(bad("picture runs past the end of the pack"));
    }
    let crc = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
    let hash: [u8; 32] = head[12..44].try_into().expect("32 bytes");
    Ok((size, crc, hash))
}

/// The shard a pack file's name says it holds.
fn pack_key(path: &Path) -> Option<(String, i32)> {
    let name = path.file_name()?.to_str()?.strip_suffix(".pack")?;
    let (c, span) = name.split_once('.')?;
    let community = String::from_utf8(unhex(c)?).ok()?;
    Some((community, span.parse().ok()?))
}

/// Whether `path` is shorter than a pack's header and a prefix of it (empty included).
fn interrupted(io: &dyn FileIo, path: &Path) -> Result<bool> {
    let len = std::fs::metadata(path)
        .map_err(|e| StorageError::io(path, e))?
        .len();
    if len >= PACK_HEADER {
        return Ok(false);
    }
    let bytes = io.read(path).map_err(|e| StorageError::io(path, e))?;
    let mut header = PACK_MAGIC.to_vec();
    header.extend_from_slice(&PACK_VERSION.to_le_bytes());
    Ok(header.starts_with(&bytes))
}

/// Reads a pack's record headers (rebuilding its hash index) and checks its last
/// record whole; a torn last record is cut off once the file reads the same twice.
/// Earlier records are checked when read ([`PictureStore::get`], `sightline check`).
fn recover(io: &dyn FileIo, path: PathBuf) -> Result<(Pack, Option<TornTail>)> {
    let file_len = std::fs::metadata(&path)
        .map_err(|e| StorageError::io(&path, e))?
        .len();
    let head = io
        .read_at(&path, 0, PACK_HEADER.min(file_len) as usize)
        .map_err(|e| StorageError::io(&path, e))?;
    if head.len() < PACK_HEADER as usize
        || &head[..6] != PACK_MAGIC
        || u16::from_le_bytes([head[6], head[7]]) != PACK_VERSION
    {
        return Err(StorageError::corrupt(
            &path,
            0,
            "not a picture pack (magic or version)",
        ));
    }
    let (mut by_hash, mut starts) = (HashMap::new(), Vec::new());
    let mut at = PACK_HEADER;
    while at < file_len {
        match next_record(io, &path, at, file_len)? {
            Some((size, hash)) => {
                by_hash.entry(hash).or_insert(at);
                starts.push(at);
                at += (RECORD_HEADER + size) as u64;
            }
            None => {
                let cut = TornTail {
                    path: path.clone(),
                    offset: at,
                    dropped_bytes: file_len - at,
                };
                let whole = io.read(&path).map_err(|e| StorageError::io(&path, e))?;
                crate::log_file::confirm_torn(io, &path, &whole, &cut)?;
                io.truncate(&path, at)
                    .map_err(|e| StorageError::io(&path, e))?;
                starts.shrink_to_fit();
                return Ok((Pack::new(path, at, by_hash, starts), Some(cut)));
            }
        }
    }
    starts.shrink_to_fit();
    Ok((Pack::new(path, file_len, by_hash, starts), None))
}

/// The record at `at`: its size and content hash, or `None` for a torn tail (an
/// incomplete last record, or a last record that fails its checksum). A bad header with
/// more of the file after it is corruption.
fn next_record(
    io: &dyn FileIo,
    path: &Path,
    at: u64,
    file_len: u64,
) -> Result<Option<(usize, [u8; 32])>> {
    let read = |offset: u64, len: usize| {
        io.read_at(path, offset, len)
            .map_err(|e| StorageError::io(path, e))
    };
    if at + RECORD_HEADER as u64 > file_len {
        return Ok(None);
    }
    let head = read(at, RECORD_HEADER)?;
    let (size, crc, hash) = match parse_header(path, at, &head, u64::MAX) {
        Ok(h) => h,
        // Zero fill after a crash (the file grew, the bytes did not land): torn.
        Err(_) if head.iter().all(|&b| b == 0) => return Ok(None),
        Err(e) => return Err(e),
    };
    let end = at + (RECORD_HEADER + size) as u64;
    if end > file_len {
        return Ok(None);
    }
    if end == file_len && crc32fast::hash(&read(at + RECORD_HEADER as u64, size)?) != crc {
        return Ok(None);
    }
    Ok(Some((size, hash)))
}

/// Reads every picture of every pack under `dir` and checks its checksum (`sightline
/// check`); the damaged ones, each naming its file and offset.
pub fn verify(dir: &Path, io: &dyn FileIo) -> Result<(usize, Vec<StorageError>)> {
    let mut checked = 0;
    let mut damaged = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok((0, damaged)); // no pictures yet
    };
    for entry in entries {
        let path = entry.map_err(|e| StorageError::io(dir, e))?.path();
        if pack_key(&path).is_none() {
            continue;
        }
        let file = io.read(&path).map_err(|e| StorageError::io(&path, e))?;
        let len = file.len() as u64;
        let mut at = PACK_HEADER;
        if file.len() < PACK_HEADER as usize || &file[..6] != PACK_MAGIC {
            damaged.push(StorageError::corrupt(
                &path,
                0,
                "not a picture pack (magic or version)",
            ));
            continue;
        }
        while at < len {
            let head = &file[at as usize..file.len().min(at as usize + RECORD_HEADER)];
            match parse_header(&path, at, head, len) {
                Ok((size, crc, _)) => {
                    let start = at as usize + RECORD_HEADER;
                    checked += 1;
                    if crc32fast::hash(&file[start..start + size]) != crc {
                        damaged.push(StorageError::corrupt(
                            &path,
                            at,
                            "picture checksum mismatch",
                        ));
                    }
                    at += (RECORD_HEADER + size) as u64;
                }
                Err(e) => {
                    damaged.push(e);
                    break;
                }
            }
        }
    }
    Ok((checked, damaged))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> (PictureStore, Vec<TornTail>) {
        PictureStore::open(&dir.join("pictures"), crate::io::os()).unwrap()
    }

    #[test]
    fn pictures_round_trip_dedupe_within_a_pack_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path());
        let a = vec![0xffu8, 0xd8, 1, 2, 3];
        let b = vec![0x89u8, b'P', b'N', b'G', 9];
        let ids = store
            .put(&[
                ("3205080001", 18871, &a),
                ("3205080001", 18871, &b),
                ("3205080001", 18871, &a),
                ("3205080002", 18871, &a),
            ])
            .unwrap();
        assert_eq!(
            ids[0], ids[2],
            "identical bytes in one pack are stored once"
        );
        assert_ne!(ids[0], ids[3], "another shard's pack keeps its own copy");
        assert_eq!(store.count(), 3);
        drop(store);
        let (store, torn) = open(dir.path());
        assert!(torn.is_empty());
        for (id, want) in ids.iter().zip([&a, &b, &a, &a]) {
            let parsed: PictureId = id.to_string().parse().unwrap();
            assert_eq!(&parsed, id);
            assert_eq!(store.get(id).unwrap().as_ref(), Some(want));
        }
        // Re-sent after reopening: still the first id.
        assert_eq!(store.put(&[("3205080001", 18871, &a)]).unwrap()[0], ids[0]);
        let nowhere = PictureId {
            offset: 3,
            ..ids[0].clone()
        };
        assert_eq!(store.get(&nowhere).unwrap(), None);
        // An offset inside the pack that is not where a record starts (a made-up or
        // mistyped id) names no picture: none, not a damaged file (the first record is
        // followed by a second, so each offset tried lies within the pack), after
        // reopening and after more pictures are added.
        let inside = |id: &PictureId, by: u64| PictureId {
            offset: id.offset + by,
            ..id.clone()
        };
        assert!(ids[1].offset > ids[0].offset + RECORD_HEADER as u64 + 2);
        for by in [1, 4, 9, RECORD_HEADER as u64, RECORD_HEADER as u64 + 2] {
            assert_eq!(store.get(&inside(&ids[0], by)).unwrap(), None, "{by}");
            assert_eq!(
                store.get_cached(&inside(&ids[0], by)).unwrap(),
                Fetched::Missing
            );
        }
        let c = vec![0x42u8, b'M', 7, 7];
        let more = store
            .put(&[("3205080001", 18871, &c), ("3205080001", 18871, &a[..4])])
            .unwrap();
        assert_eq!(store.get(&more[0]).unwrap().as_ref(), Some(&c));
        assert_eq!(store.get(&inside(&more[0], 1)).unwrap(), None);
        assert_eq!(store.get(&more[1]).unwrap().as_deref(), Some(&a[..4]));
        store.drop_shard("3205080001", 18871).unwrap();
        assert_eq!(store.get(&ids[0]).unwrap(), None);
        assert_eq!(store.get(&ids[3]).unwrap().as_ref(), Some(&a));
    }

    #[test]
    fn a_cached_read_gives_what_a_blocking_read_gives_or_says_it_would_wait() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path());
        let pic: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        let id = store.put(&[("c1", 5, &pic)]).unwrap().remove(0);
        // Just written, so in the page cache: served without a blocking read.
        assert_eq!(store.get_cached(&id).unwrap(), Fetched::Found(pic.clone()));
        let mut past = id.clone();
        past.offset += 1 << 30;
        assert_eq!(store.get_cached(&past).unwrap(), Fetched::Missing);
        let mut other = id.clone();
        other.community = "c2".into();
        assert_eq!(store.get_cached(&other).unwrap(), Fetched::Missing);
        // A file system that cannot say (here: fault injection, as any FileIo without
        // a cached read) sends the read to the blocking path, which still finds it.
        drop(store);
        let (store, _) =
            PictureStore::open(&dir.path().join("pictures"), crate::io::FaultyIo::new()).unwrap();
        assert_eq!(store.get_cached(&id).unwrap(), Fetched::NotInMemory);
        assert_eq!(store.get(&id).unwrap(), Some(pic));
    }

    #[test]
    fn a_torn_last_record_is_cut_and_damage_elsewhere_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path());
        let pics: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 1000]).collect();
        let ids: Vec<PictureId> = pics
            .iter()
            .map(|p| store.put(&[("c1", 5, p)]).unwrap()[0].clone())
            .collect();
        drop(store);
        let path = dir.path().join("pictures").join(pack_name("c1", 5));
        let full = std::fs::read(&path).unwrap();
        // Cut anywhere inside the last record: reopening drops just that record.
        for cut in [ids[2].offset + 1, ids[2].offset + 50, full.len() as u64 - 1] {
            std::fs::write(&path, &full[..cut as usize]).unwrap();
            let (store, torn) = open(dir.path());
            assert_eq!(torn.len(), 1, "cut at {cut}");
            assert_eq!(torn[0].offset, ids[2].offset);
            assert_eq!(store.get(&ids[1]).unwrap().as_deref(), Some(&pics[1][..]));
            assert_eq!(store.get(&ids[2]).unwrap(), None);
        }
        // A flipped byte inside an earlier picture: reading it is an error naming the
        // file and offset, and `verify` finds it; the others still read.
        let mut flipped = full.clone();
        flipped[ids[0].offset as usize + RECORD_HEADER + 10] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let (store, torn) = open(dir.path());
        assert!(torn.is_empty());
        let e = store.get(&ids[0]).unwrap_err().to_string();
        assert!(
            e.contains(&pack_name("c1", 5)) && e.contains("checksum"),
            "{e}"
        );
        assert_eq!(store.get(&ids[1]).unwrap().as_deref(), Some(&pics[1][..]));
        let (checked, damaged) =
            verify(&dir.path().join("pictures"), crate::io::os().as_ref()).unwrap();
        assert_eq!((checked, damaged.len()), (3, 1));
        // A creation a crash interrupted, under either name, never held a picture: it
        // is removed at open, not refused.
        let dir_p = dir.path().join("pictures");
        std::fs::write(dir_p.join(pack_name("c2", 5)), b"SLP").unwrap();
        std::fs::write(dir_p.join(format!("{}{CREATING}", pack_name("c3", 5))), b"").unwrap();
        drop(store);
        let (store, _) = open(dir.path());
        assert!(!dir_p.join(pack_name("c2", 5)).exists());
        assert!(!dir_p
            .join(format!("{}{CREATING}", pack_name("c3", 5)))
            .exists());
        assert_eq!(store.get(&ids[1]).unwrap().as_deref(), Some(&pics[1][..]));
        // Ids that are not ids are refused, not guessed at.
        for bad in ["", "x.1.2", "3132.1", "3132.a.2", "3132.1.2.3", "313.1.2"] {
            assert!(bad.parse::<PictureId>().is_err(), "{bad}");
        }
    }
}
