//! Dictionaries: community, device and subject strings as dense, permanent ids.
//!
//! Ids are assigned in first-seen order and never change. New entries are appended to
//! `dict.log` and fsynced before the WAL records that use them, so a durable event never
//! refers to an id the dictionary lost. Record framing is the WAL's (see FORMAT.md).

use std::hash::BuildHasher;
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::io::{FileIo, OpenMode, WriteFile};
use crate::log_file::{read_records, ReadOutcome, TornTail};
use crate::Kind;

/// Dictionary lookups run once per appended event: a fast hash with a per-process
/// random seed, so crafted subjects cannot force collisions.
type Hasher = foldhash::fast::RandomState;

const TAG_COMMUNITY: u8 = 0;
const TAG_DEVICE: u8 = 1;
const TAG_SUBJECT: u8 = 2;

/// Strings back to back in one buffer, by dense id: no allocation per string, so
/// loading millions of subjects at open costs a copy, not millions of `malloc`s.
#[derive(Debug, Default)]
struct Arena {
    bytes: String,
    /// By id: where its string ends in `bytes` (it starts where the previous ends).
    ends: Vec<usize>,
}

impl Arena {
    fn len(&self) -> usize {
        self.ends.len()
    }
    fn get(&self, id: usize) -> Option<&str> {
        let end = *self.ends.get(id)?;
        let start = if id == 0 { 0 } else { self.ends[id - 1] };
        Some(&self.bytes[start..end])
    }
    fn reserve(&mut self, entries: usize, bytes: usize) {
        self.ends.reserve(entries);
        self.bytes.reserve(bytes);
    }
    fn push(&mut self, s: &str) -> u32 {
        let id = u32::try_from(self.ends.len()).expect("fewer than 2^32 dictionary entries");
        self.bytes.push_str(s);
        self.ends.push(self.bytes.len());
        id
    }
}

/// Ids of the strings of an [`Arena`] (or of part of one), found by string: a hash
/// table of ids alone, the strings staying in the arena.
#[derive(Default)]
struct Index {
    ids: hashbrown::HashTable<u32>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("len", &self.ids.len())
            .finish()
    }
}

impl Index {
    fn reserve(&mut self, hasher: &Hasher, names: &Arena, entries: usize) {
        self.ids.reserve(entries, |&id| {
            hasher.hash_one(names.get(id as usize).expect("every id has a string"))
        });
    }
    fn get(&self, hasher: &Hasher, names: &Arena, s: &str) -> Option<u32> {
        let h = hasher.hash_one(s);
        self.ids
            .find(h, |&id| names.get(id as usize) == Some(s))
            .copied()
    }
    /// The id of `s`, or else the id `push` gives it (after adding it to `names`):
    /// one probe of the table either way.
    fn intern(
        &mut self,
        hasher: &Hasher,
        names: &mut Arena,
        s: &str,
        push: impl FnOnce(&mut Arena) -> u32,
    ) -> (u32, bool) {
        let h = hasher.hash_one(s);
        let entry = self.ids.entry(
            h,
            |&id| names.get(id as usize) == Some(s),
            |&other| hasher.hash_one(names.get(other as usize).expect("every id has a string")),
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(e) => (*e.get(), false),
            hashbrown::hash_table::Entry::Vacant(e) => {
                let id = push(names);
                e.insert(id);
                (id, true)
            }
        }
    }
}

/// One string-to-id table.
#[derive(Debug, Default)]
struct Table {
    names: Arena,
    ids: Index,
}

impl Table {
    fn get(&self, hasher: &Hasher, s: &str) -> Option<u32> {
        self.ids.get(hasher, &self.names, s)
    }
    /// The id of `s`, and whether it is new.
    fn intern(&mut self, hasher: &Hasher, s: &str) -> (u32, bool) {
        self.ids
            .intern(hasher, &mut self.names, s, |names| names.push(s))
    }

    fn reserve(&mut self, hasher: &Hasher, entries: usize, bytes: usize) {
        self.names.reserve(entries, bytes);
        self.ids.reserve(hasher, &self.names, entries);
    }
}

/// All dictionaries of a store.
#[derive(Debug, Default)]
pub struct Dictionaries {
    hasher: Hasher,
    communities: Table,
    devices: Table,
    /// Every subject string, by id.
    subjects: Arena,
    /// By id.
    subject_kinds: Vec<Kind>,
    /// One index per kind: a subject is `(kind, string)`.
    subjects_by_kind: [Index; Kind::ALL.len()],
}

impl Dictionaries {
    pub fn community_id(&self, code: &str) -> Option<u32> {
        self.communities.get(&self.hasher, code)
    }
    pub fn device_id(&self, code: &str) -> Option<u32> {
        self.devices.get(&self.hasher, code)
    }
    pub fn subject_id(&self, kind: Kind, subject: &str) -> Option<u32> {
        self.subjects_by_kind[kind as usize].get(&self.hasher, &self.subjects, subject)
    }
    pub fn community(&self, id: u32) -> Option<&str> {
        self.communities.names.get(id as usize)
    }
    pub fn device(&self, id: u32) -> Option<&str> {
        self.devices.names.get(id as usize)
    }
    pub fn subject(&self, id: u32) -> Option<(Kind, &str)> {
        let s = self.subjects.get(id as usize)?;
        Some((self.subject_kinds[id as usize], s))
    }
    pub fn len_communities(&self) -> usize {
        self.communities.names.len()
    }
    pub fn len_devices(&self) -> usize {
        self.devices.names.len()
    }
    pub fn len_subjects(&self) -> usize {
        self.subjects.len()
    }

    /// Id of `code`, assigning one (and appending its log record to `log`) if new.
    pub(crate) fn intern_community(&mut self, code: &str, log: &mut Vec<u8>) -> u32 {
        let (id, new) = self.communities.intern(&self.hasher, code);
        if !new {
            return id;
        }
        push_entry(log, TAG_COMMUNITY, id, 0, code);
        id
    }
    pub(crate) fn intern_device(&mut self, code: &str, log: &mut Vec<u8>) -> u32 {
        let (id, new) = self.devices.intern(&self.hasher, code);
        if !new {
            return id;
        }
        push_entry(log, TAG_DEVICE, id, 0, code);
        id
    }
    pub(crate) fn intern_subject(&mut self, kind: Kind, subject: &str, log: &mut Vec<u8>) -> u32 {
        let (id, new) = self.subject_entry(kind, subject);
        if new {
            push_entry(log, TAG_SUBJECT, id, kind.code(), subject);
        }
        id
    }

    /// The id of `(kind, subject)`, and whether it was added now.
    fn subject_entry(&mut self, kind: Kind, subject: &str) -> (u32, bool) {
        let kinds = &mut self.subject_kinds;
        self.subjects_by_kind[kind as usize].intern(
            &self.hasher,
            &mut self.subjects,
            subject,
            |names| {
                kinds.push(kind);
                names.push(subject)
            },
        )
    }

    /// Room for what a dictionary log holds, counted before it is applied: loading
    /// then neither regrows nor rehashes.
    fn reserve(&mut self, counts: &Counts) {
        let h = &self.hasher;
        self.communities
            .reserve(h, counts.entries[0], counts.bytes[0]);
        self.devices.reserve(h, counts.entries[1], counts.bytes[1]);
        self.subjects.reserve(counts.entries[2], counts.bytes[2]);
        self.subject_kinds.reserve(counts.entries[2]);
        for (k, n) in counts.by_kind.iter().enumerate() {
            self.subjects_by_kind[k].reserve(h, &self.subjects, *n);
        }
    }

    pub(crate) fn apply(&mut self, payload: &[u8], path: &Path, offset: u64) -> Result<()> {
        let bad = |reason: String| StorageError::corrupt(path, offset, reason);
        if payload.len() < 6 {
            return Err(bad("dictionary record shorter than its fixed fields".into()));
        }
        let tag = payload[0];
        let id = u32::from_le_bytes(payload[1..5].try_into().expect("4 bytes"));
        let kind_code = payload[5];
        let s = std::str::from_utf8(&payload[6..])
            .map_err(|_| bad("dictionary string is not UTF-8".into()))?;
        let expected = match tag {
            TAG_COMMUNITY => self.communities.names.len(),
            TAG_DEVICE => self.devices.names.len(),
            TAG_SUBJECT => self.subjects.len(),
            _ => return Err(bad(format!("unknown dictionary tag {tag}"))),
        };
        if id as usize != expected {
            return Err(bad(format!(
                "dictionary id {id} out of order, expected {expected}"
            )));
        }
        // Loading adds entries without encoding them again for the log.
        let new = match tag {
            TAG_COMMUNITY => self.communities.intern(&self.hasher, s).1,
            TAG_DEVICE => self.devices.intern(&self.hasher, s).1,
            _ => {
                let kind = Kind::from_code(kind_code)
                    .ok_or_else(|| bad(format!("unknown kind code {kind_code}")))?;
                self.subject_entry(kind, s).1
            }
        };
        if !new {
            return Err(bad(format!("duplicate dictionary string {s:?}")));
        }
        Ok(())
    }
}

/// Entries and string bytes of a dictionary log, by tag (and subjects by kind).
#[derive(Default)]
struct Counts {
    entries: [usize; 3],
    bytes: [usize; 3],
    by_kind: [usize; Kind::ALL.len()],
}

impl Counts {
    fn add(&mut self, payload: &[u8]) {
        let (Some(&tag), Some(&kind)) = (payload.first(), payload.get(5)) else {
            return;
        };
        if let Some(n) = self.entries.get_mut(tag as usize) {
            *n += 1;
            self.bytes[tag as usize] += payload.len() - 6;
        }
        if tag == TAG_SUBJECT {
            if let Some(n) = self.by_kind.get_mut(kind as usize) {
                *n += 1;
            }
        }
    }
}

fn push_entry(log: &mut Vec<u8>, tag: u8, id: u32, kind: u8, s: &str) {
    let mut payload = Vec::with_capacity(6 + s.len());
    payload.push(tag);
    payload.extend_from_slice(&id.to_le_bytes());
    payload.push(kind);
    payload.extend_from_slice(s.as_bytes());
    crate::log_file::frame(&payload, log);
}

/// Applies dictionary-log bytes to empty dictionaries (what loading does, without a
/// file); the number of entries.
pub(crate) fn parse(bytes: &[u8], path: &Path) -> Result<usize> {
    let mut dicts = Dictionaries::default();
    let mut n = 0;
    read_records(bytes, path, true, |off, payload| {
        n += 1;
        dicts.apply(payload, path, off)
    })?;
    Ok(n)
}

/// The append-only file behind the dictionaries.
pub(crate) struct DictLog {
    path: PathBuf,
    file: Box<dyn WriteFile>,
}

impl std::fmt::Debug for DictLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DictLog").field("path", &self.path).finish()
    }
}

impl DictLog {
    /// Loads `path` (creating it if missing). A torn last record is cut off and reported.
    pub fn open(io: &dyn FileIo, path: &Path) -> Result<(DictLog, Dictionaries, Option<TornTail>)> {
        let mut dicts = Dictionaries::default();
        let torn = if path.exists() {
            let bytes = io.read(path).map_err(|e| StorageError::io(path, e))?;
            // A first pass counts (framing and checksums only), so the tables are
            // sized once; damage found here is found again, and reported, below.
            let mut counts = Counts::default();
            let _ = read_records(&bytes, path, true, |_, payload| {
                counts.add(payload);
                Ok(())
            });
            dicts.reserve(&counts);
            let ReadOutcome { end, torn } = read_records(&bytes, path, true, |off, payload| {
                dicts.apply(payload, path, off)
            })?;
            if let Some(t) = &torn {
                crate::log_file::confirm_torn(io, path, &bytes, t)?;
                io.truncate(path, end)
                    .map_err(|e| StorageError::io(path, e))?;
            }
            torn
        } else {
            None
        };
        let file = io
            .open(path, OpenMode::AppendOrCreate)
            .map_err(|e| StorageError::io(path, e))?;
        Ok((
            DictLog {
                path: path.to_path_buf(),
                file,
            },
            dicts,
            torn,
        ))
    }

    /// Appends framed records and fsyncs. After an error the log must not be written
    /// again (the store refuses writes until reopened).
    pub fn append_durable(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| StorageError::io(&self.path, e))?;
        self.file
            .sync_data()
            .map_err(|e| StorageError::io(&self.path, e))
    }
}
