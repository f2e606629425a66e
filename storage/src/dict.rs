//! Dictionaries: community, device and subject strings as dense, permanent ids.
//!
//! Ids are assigned in first-seen order and never change. New entries are appended to
//! `dict.log` and fsynced before the WAL records that use them, so a durable event never
//! refers to an id the dictionary lost. Record framing is the WAL's (see FORMAT.md).

use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::io::{FileIo, OpenMode, WriteFile};
use crate::log_file::{read_records, ReadOutcome, TornTail};
use crate::Kind;

/// Dictionary lookups run once per appended event: a fast hash with a per-process
/// random seed, so crafted subjects cannot force collisions.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

const TAG_COMMUNITY: u8 = 0;
const TAG_DEVICE: u8 = 1;
const TAG_SUBJECT: u8 = 2;

/// One string-to-id table.
#[derive(Debug, Default)]
struct Table {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Table {
    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }
    fn insert(&mut self, s: &str) -> u32 {
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 dictionary entries");
        self.names.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }
}

/// All dictionaries of a store.
#[derive(Debug, Default)]
pub struct Dictionaries {
    communities: Table,
    devices: Table,
    /// One table per kind: a subject is `(kind, string)`.
    subjects_by_kind: [HashMap<Box<str>, u32>; Kind::ALL.len()],
    subjects: Vec<(Kind, Box<str>)>,
}

impl Dictionaries {
    pub fn community_id(&self, code: &str) -> Option<u32> {
        self.communities.get(code)
    }
    pub fn device_id(&self, code: &str) -> Option<u32> {
        self.devices.get(code)
    }
    pub fn subject_id(&self, kind: Kind, subject: &str) -> Option<u32> {
        self.subjects_by_kind[kind as usize].get(subject).copied()
    }
    pub fn community(&self, id: u32) -> Option<&str> {
        self.communities.names.get(id as usize).map(|s| &**s)
    }
    pub fn device(&self, id: u32) -> Option<&str> {
        self.devices.names.get(id as usize).map(|s| &**s)
    }
    pub fn subject(&self, id: u32) -> Option<(Kind, &str)> {
        self.subjects.get(id as usize).map(|(k, s)| (*k, &**s))
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
        if let Some(id) = self.communities.get(code) {
            return id;
        }
        let id = self.communities.insert(code);
        push_entry(log, TAG_COMMUNITY, id, 0, code);
        id
    }
    pub(crate) fn intern_device(&mut self, code: &str, log: &mut Vec<u8>) -> u32 {
        if let Some(id) = self.devices.get(code) {
            return id;
        }
        let id = self.devices.insert(code);
        push_entry(log, TAG_DEVICE, id, 0, code);
        id
    }
    pub(crate) fn intern_subject(&mut self, kind: Kind, subject: &str, log: &mut Vec<u8>) -> u32 {
        if let Some(id) = self.subject_id(kind, subject) {
            return id;
        }
        let id = u32::try_from(self.subjects.len()).expect("fewer than 2^32 subjects");
        self.subjects.push((kind, subject.into()));
        self.subjects_by_kind[kind as usize].insert(subject.into(), id);
        push_entry(log, TAG_SUBJECT, id, kind.code(), subject);
        id
    }

    fn apply(&mut self, payload: &[u8], path: &Path, offset: u64) -> Result<()> {
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
        let mut sink = Vec::new();
        match tag {
            TAG_COMMUNITY => {
                self.intern_community(s, &mut sink);
            }
            TAG_DEVICE => {
                self.intern_device(s, &mut sink);
            }
            _ => {
                let kind = Kind::from_code(kind_code)
                    .ok_or_else(|| bad(format!("unknown kind code {kind_code}")))?;
                self.intern_subject(kind, s, &mut sink);
            }
        }
        if sink.is_empty() {
            return Err(bad(format!("duplicate dictionary string {s:?}")));
        }
        Ok(())
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
