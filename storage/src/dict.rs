//! Dictionaries: community, device and subject strings as dense, permanent ids.
//!
//! Ids are assigned in first-seen order and never change. New entries are appended to
//! `dict.log` and fsynced before the WAL records that use them, so a durable event never
//! refers to an id the dictionary lost. Record framing is the WAL's (see FORMAT.md).

use std::hash::BuildHasher;
use std::path::{Path, PathBuf};

use std::sync::{Arc, OnceLock};

use crate::dict_snapshot::{DictSnapshot, Part};
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

/// A mapped snapshot and, once a read found one of its chunks damaged, the same
/// entries loaded from the first `log_len` bytes of the log (which the snapshot is a
/// copy of), which every later read of those entries asks instead (storage/FORMAT.md,
/// "Dictionary snapshot": a damaged chunk found by a read).
struct Snap {
    file: DictSnapshot,
    io: Arc<dyn FileIo>,
    log: PathBuf,
    from_log: OnceLock<Dictionaries>,
    /// Held while the entries are loaded from the log: one reader loads them, the
    /// others wait for it (a failed load is tried again by the next read).
    loading: std::sync::Mutex<()>,
    /// Why the snapshot was set aside (the damage found), once it was.
    damage: OnceLock<String>,
    /// Whether a snapshot was written again since the damage was found.
    rewritten: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Snap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snap")
            .field("file", &self.file)
            .field("damage", &self.damage.get())
            .finish()
    }
}

/// How long a lookup after open keeps trying to read `dict.log` when a damaged chunk
/// of the snapshot sends it there and the read fails with an I/O error (not damage):
/// a passing error (EMFILE, EINTR, a busy disk) costs that lookup a wait, never a
/// wrong answer, an abort or a removed file. Past it the process stops, removing
/// nothing (storage/FORMAT.md, "Dictionary snapshot").
pub const LOG_READ_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

impl Snap {
    /// The snapshot's entries from the log, loaded now if a read has just found
    /// `damage` (and no read loaded them before). `Err` is the log's: `Corrupt` naming
    /// it when its prefix cannot give the entries (the dictionaries are lost), or an
    /// I/O error (nothing is kept, the next read tries again). Opening a store passes
    /// these up; lookups after open go through [`Snap::set_aside`].
    fn try_set_aside(&self, damage: &StorageError) -> Result<&Dictionaries> {
        if let Some(d) = self.from_log.get() {
            return Ok(d);
        }
        let _loading = self
            .loading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(d) = self.from_log.get() {
            return Ok(d);
        }
        if self.damage.set(damage.to_string()).is_ok() {
            tracing::error!(
                error = %damage,
                log = %self.log.display(),
                "dictionary snapshot damaged; loading its entries from the log (written again by the next WAL checkpoint: a seal, a retention drop, or close)"
            );
        }
        let d = self.load_log()?;
        Ok(self.from_log.get_or_init(|| d))
    }

    /// [`Snap::try_set_aside`] for lookups after open, which have no error to give:
    /// an I/O error is tried again for up to [`LOG_READ_RETRY`] (the lookup waits);
    /// `Corrupt` — the log's prefix cannot give the entries — means the store's
    /// dictionaries are lost and no answer can be right, so the process stops after
    /// moving the snapshot aside to `dict.snap.damaged` (the next open then loads the
    /// log and refuses it, naming it, the moved header still proving how long it was).
    fn set_aside(&self, damage: StorageError) -> &Dictionaries {
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(10);
        loop {
            let e = match self.try_set_aside(&damage) {
                Ok(d) => return d,
                Err(e) => e,
            };
            if matches!(e, StorageError::Corrupt { .. }) {
                self.lost(&damage, &e);
            }
            if started.elapsed() >= LOG_READ_RETRY {
                stop(&format!(
                    "sightline: the dictionary snapshot is damaged ({damage}) and {} could not be read for {LOG_READ_RETRY:?}: {e}; nothing removed",
                    self.log.display()
                ));
            }
            tracing::warn!(error = %e, retry_in = ?pause, "dictionary log unreadable after a damaged snapshot chunk; trying again");
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_secs(1));
        }
    }

    /// The dictionaries are lost (the snapshot damaged, the log's prefix too): moves
    /// the snapshot to `dict.snap.damaged` (durably) and stops the process.
    fn lost(&self, damage: &StorageError, e: &StorageError) -> ! {
        let from = self.file.path();
        let to = from.with_file_name(DAMAGED_SNAPSHOT_FILE);
        let moved = self
            .io
            .rename(from, &to)
            .and_then(|()| self.io.sync_dir(from.parent().unwrap_or(Path::new("."))));
        let moved = match moved {
            Ok(()) => format!("{} moved to {}", from.display(), to.display()),
            Err(m) => format!("{} could not be moved aside: {m}", from.display()),
        };
        stop(&format!(
            "sightline: the dictionaries are lost: {damage}, and the log cannot give its entries: {e}; {moved}, the next open will refuse the store"
        ))
    }

    fn load_log(&self) -> Result<Dictionaries> {
        let bytes = self
            .io
            .read_at(&self.log, 0, self.file.log_len as usize)
            .map_err(|e| StorageError::io(&self.log, e))?;
        let mut counts = Counts::default();
        let _ = read_records(&bytes, &self.log, false, |_, payload| {
            counts.add(payload);
            Ok(())
        });
        let mut d = Dictionaries::default();
        d.reserve(&counts);
        d.load(&bytes, &self.log, false)?;
        let got = [d.len_communities(), d.len_devices(), d.len_subjects()];
        let want =
            [Part::Communities, Part::Devices, Part::Subjects].map(|p| self.file.len(p) as usize);
        if got != want {
            return Err(StorageError::corrupt(
                &self.log,
                0,
                format!(
                    "its first {} bytes hold {got:?} entries, the snapshot {want:?}",
                    self.file.log_len
                ),
            ));
        }
        Ok(d)
    }

    fn try_find(&self, part: Part, kind: u8, s: &str) -> Result<Option<u32>> {
        if let Some(d) = self.from_log.get() {
            return Ok(d.find_in(part, kind, s));
        }
        match self.file.try_find(part, kind, s) {
            Ok(id) => Ok(id),
            Err(e) => Ok(self.try_set_aside(&e)?.find_in(part, kind, s)),
        }
    }

    fn find(&self, part: Part, kind: u8, s: &str) -> Option<u32> {
        if let Some(d) = self.from_log.get() {
            return d.find_in(part, kind, s);
        }
        match self.file.try_find(part, kind, s) {
            Ok(id) => id,
            Err(e) => self.set_aside(e).find_in(part, kind, s),
        }
    }

    fn try_get(&self, part: Part, id: u32) -> Result<Option<&str>> {
        if let Some(d) = self.from_log.get() {
            return Ok(d.get_in(part, id));
        }
        match self.file.try_get(part, id) {
            Ok(s) => Ok(s),
            Err(e) => Ok(self.try_set_aside(&e)?.get_in(part, id)),
        }
    }

    fn get(&self, part: Part, id: u32) -> Option<&str> {
        if let Some(d) = self.from_log.get() {
            return d.get_in(part, id);
        }
        match self.file.try_get(part, id) {
            Ok(s) => s,
            Err(e) => self.set_aside(e).get_in(part, id),
        }
    }

    /// The subject `id` as the snapshot file holds it (`Err`: a damaged chunk).
    fn file_subject(&self, id: u32) -> Result<Option<(Kind, &str)>> {
        let kind = self.file.try_subject_kind(id)?;
        Ok(match kind.and_then(Kind::from_code) {
            Some(kind) => self.file.try_get(Part::Subjects, id)?.map(|s| (kind, s)),
            None => None,
        })
    }

    fn try_subject(&self, id: u32) -> Result<Option<(Kind, &str)>> {
        if let Some(d) = self.from_log.get() {
            return Ok(d.subject(id));
        }
        match self.file_subject(id) {
            Ok(v) => Ok(v),
            Err(e) => Ok(self.try_set_aside(&e)?.subject(id)),
        }
    }

    fn subject(&self, id: u32) -> Option<(Kind, &str)> {
        if let Some(d) = self.from_log.get() {
            return d.subject(id);
        }
        match self.file_subject(id) {
            Ok(v) => v,
            Err(e) => self.set_aside(e).subject(id),
        }
    }
}

/// Stops the process: `msg` logged and printed, then an abort (no unwinding: no
/// thread may go on answering from dictionaries known lost).
fn stop(msg: &str) -> ! {
    tracing::error!("{msg}");
    eprintln!("{msg}");
    std::process::abort();
}

/// All dictionaries of a store: the entries of a mapped snapshot (`dict.snap`, ids
/// from 0), if one was loaded, then the entries added after it (in memory; their
/// tables hold ids counted from the snapshot's end).
#[derive(Debug, Default)]
pub struct Dictionaries {
    hasher: Hasher,
    snapshot: Option<Arc<Snap>>,
    /// Entries in the snapshot: communities, devices, subjects (0 without one).
    base: [u32; 3],
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
    /// Dictionaries holding a snapshot's entries, for the log records after it.
    /// `log` is the dictionary log the snapshot copies (read if a chunk of the
    /// snapshot is found damaged).
    fn from_snapshot(snapshot: DictSnapshot, io: Arc<dyn FileIo>, log: &Path) -> Dictionaries {
        Dictionaries {
            base: [
                snapshot.len(Part::Communities),
                snapshot.len(Part::Devices),
                snapshot.len(Part::Subjects),
            ],
            snapshot: Some(Arc::new(Snap {
                file: snapshot,
                io,
                log: log.to_path_buf(),
                from_log: OnceLock::new(),
                loading: Default::default(),
                damage: OnceLock::new(),
                rewritten: Default::default(),
            })),
            ..Dictionaries::default()
        }
    }

    /// The damage a read found in the snapshot, if one did (its entries are then
    /// read from the log's copy, and the snapshot is written again by the next WAL
    /// checkpoint: after a seal or a retention drop, or at the clean close).
    pub fn snapshot_damage(&self) -> Option<&str> {
        self.snapshot.as_ref()?.damage.get().map(String::as_str)
    }

    /// Whether the snapshot was found damaged and not yet written again.
    pub(crate) fn snapshot_rewrite_due(&self) -> bool {
        self.snapshot.as_ref().is_some_and(|s| {
            s.damage.get().is_some() && !s.rewritten.load(std::sync::atomic::Ordering::Acquire)
        })
    }

    /// Records that a snapshot was written again (after damage was found).
    pub(crate) fn snapshot_rewritten(&self) {
        if let Some(s) = &self.snapshot {
            s.rewritten
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }

    fn snap_find(&self, part: Part, kind: u8, s: &str) -> Option<u32> {
        self.snapshot.as_ref()?.find(part, kind, s)
    }

    /// [`Dictionaries::snap_find`] for opening: the log's error (if a damaged chunk
    /// sends the lookup there and the log cannot answer) is returned, not fatal.
    fn snap_try_find(&self, part: Part, kind: u8, s: &str) -> Result<Option<u32>> {
        match &self.snapshot {
            Some(snap) => snap.try_find(part, kind, s),
            None => Ok(None),
        }
    }

    /// [`Dictionaries::community`] and the others for opening and writing a snapshot:
    /// the log's error (see [`Dictionaries::snap_try_find`]) is returned.
    fn try_community(&self, id: u32) -> Result<Option<&str>> {
        match (id.checked_sub(self.base[0]), &self.snapshot) {
            (None, Some(snap)) => snap.try_get(Part::Communities, id),
            _ => Ok(self.community(id)),
        }
    }
    fn try_device(&self, id: u32) -> Result<Option<&str>> {
        match (id.checked_sub(self.base[1]), &self.snapshot) {
            (None, Some(snap)) => snap.try_get(Part::Devices, id),
            _ => Ok(self.device(id)),
        }
    }
    fn try_subject(&self, id: u32) -> Result<Option<(Kind, &str)>> {
        match (id.checked_sub(self.base[2]), &self.snapshot) {
            (None, Some(snap)) => snap.try_subject(id),
            _ => Ok(self.subject(id)),
        }
    }

    /// [`Dictionaries::community_id`] and the others by part (kind code for subjects).
    fn find_in(&self, part: Part, kind: u8, s: &str) -> Option<u32> {
        match part {
            Part::Communities => self.community_id(s),
            Part::Devices => self.device_id(s),
            Part::Subjects => self.subject_id(Kind::from_code(kind)?, s),
        }
    }
    fn get_in(&self, part: Part, id: u32) -> Option<&str> {
        match part {
            Part::Communities => self.community(id),
            Part::Devices => self.device(id),
            Part::Subjects => self.subject(id).map(|(_, s)| s),
        }
    }

    pub fn community_id(&self, code: &str) -> Option<u32> {
        self.snap_find(Part::Communities, 0, code).or_else(|| {
            let local = self.communities.get(&self.hasher, code)?;
            Some(local + self.base[0])
        })
    }
    pub fn device_id(&self, code: &str) -> Option<u32> {
        self.snap_find(Part::Devices, 0, code).or_else(|| {
            let local = self.devices.get(&self.hasher, code)?;
            Some(local + self.base[1])
        })
    }
    pub fn subject_id(&self, kind: Kind, subject: &str) -> Option<u32> {
        self.snap_find(Part::Subjects, kind.code(), subject)
            .or_else(|| {
                let local = self.subjects_by_kind[kind as usize].get(
                    &self.hasher,
                    &self.subjects,
                    subject,
                )?;
                Some(local + self.base[2])
            })
    }
    pub fn community(&self, id: u32) -> Option<&str> {
        match id.checked_sub(self.base[0]) {
            None => self.snapshot.as_ref()?.get(Part::Communities, id),
            Some(local) => self.communities.names.get(local as usize),
        }
    }
    pub fn device(&self, id: u32) -> Option<&str> {
        match id.checked_sub(self.base[1]) {
            None => self.snapshot.as_ref()?.get(Part::Devices, id),
            Some(local) => self.devices.names.get(local as usize),
        }
    }
    pub fn subject(&self, id: u32) -> Option<(Kind, &str)> {
        match id.checked_sub(self.base[2]) {
            None => self.snapshot.as_ref()?.subject(id),
            Some(local) => {
                let s = self.subjects.get(local as usize)?;
                Some((self.subject_kinds[local as usize], s))
            }
        }
    }
    pub fn len_communities(&self) -> usize {
        self.base[0] as usize + self.communities.names.len()
    }
    pub fn len_devices(&self) -> usize {
        self.base[1] as usize + self.devices.names.len()
    }
    pub fn len_subjects(&self) -> usize {
        self.base[2] as usize + self.subjects.len()
    }

    /// Id of `code`, assigning one (and appending its log record to `log`) if new.
    pub(crate) fn intern_community(&mut self, code: &str, log: &mut Vec<u8>) -> u32 {
        let found = self.snap_find(Part::Communities, 0, code);
        let (id, new) = self.community_entry(code, found);
        if new {
            push_entry(log, TAG_COMMUNITY, id, 0, code);
        }
        id
    }
    pub(crate) fn intern_device(&mut self, code: &str, log: &mut Vec<u8>) -> u32 {
        let found = self.snap_find(Part::Devices, 0, code);
        let (id, new) = self.device_entry(code, found);
        if new {
            push_entry(log, TAG_DEVICE, id, 0, code);
        }
        id
    }
    pub(crate) fn intern_subject(&mut self, kind: Kind, subject: &str, log: &mut Vec<u8>) -> u32 {
        let found = self.snap_find(Part::Subjects, kind.code(), subject);
        let (id, new) = self.subject_entry(kind, subject, found);
        if new {
            push_entry(log, TAG_SUBJECT, id, kind.code(), subject);
        }
        id
    }

    /// The id of `code` (`found`: its id in the snapshot, looked up by the caller),
    /// and whether it is new.
    fn community_entry(&mut self, code: &str, found: Option<u32>) -> (u32, bool) {
        if let Some(id) = found {
            return (id, false);
        }
        let (local, new) = self.communities.intern(&self.hasher, code);
        (local + self.base[0], new)
    }
    fn device_entry(&mut self, code: &str, found: Option<u32>) -> (u32, bool) {
        if let Some(id) = found {
            return (id, false);
        }
        let (local, new) = self.devices.intern(&self.hasher, code);
        (local + self.base[1], new)
    }

    /// The id of `(kind, subject)`, and whether it was added now.
    fn subject_entry(&mut self, kind: Kind, subject: &str, found: Option<u32>) -> (u32, bool) {
        if let Some(id) = found {
            return (id, false);
        }
        let kinds = &mut self.subject_kinds;
        let (local, new) = self.subjects_by_kind[kind as usize].intern(
            &self.hasher,
            &mut self.subjects,
            subject,
            |names| {
                kinds.push(kind);
                names.push(subject)
            },
        );
        (local + self.base[2], new)
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
        self.apply_record(payload, path, offset, true)
            .map_err(Applied::into_error)
    }

    /// Applies one record; with `index_subjects` false a subject goes into the arena
    /// only, for [`Dictionaries::index_subjects`] to index with the others at the end
    /// of loading (which then finds duplicates).
    fn apply_record(
        &mut self,
        payload: &[u8],
        path: &Path,
        offset: u64,
        index_subjects: bool,
    ) -> std::result::Result<(), Applied> {
        let bad = |reason: String| Applied::Record(StorageError::corrupt(path, offset, reason));
        if payload.len() < 6 {
            return Err(bad("dictionary record shorter than its fixed fields".into()));
        }
        let tag = payload[0];
        let id = u32::from_le_bytes(payload[1..5].try_into().expect("4 bytes"));
        let kind_code = payload[5];
        let s = std::str::from_utf8(&payload[6..])
            .map_err(|_| bad("dictionary string is not UTF-8".into()))?;
        let expected = match tag {
            TAG_COMMUNITY => self.len_communities(),
            TAG_DEVICE => self.len_devices(),
            TAG_SUBJECT => self.len_subjects(),
            _ => return Err(bad(format!("unknown dictionary tag {tag}"))),
        };
        if id as usize != expected {
            return Err(bad(format!(
                "dictionary id {id} out of order, expected {expected}"
            )));
        }
        // Loading adds entries without encoding them again for the log.
        let new = match tag {
            TAG_COMMUNITY => {
                let found = self
                    .snap_try_find(Part::Communities, 0, s)
                    .map_err(Applied::Log)?;
                self.community_entry(s, found).1
            }
            TAG_DEVICE => {
                let found = self
                    .snap_try_find(Part::Devices, 0, s)
                    .map_err(Applied::Log)?;
                self.device_entry(s, found).1
            }
            _ => {
                let kind = Kind::from_code(kind_code)
                    .ok_or_else(|| bad(format!("unknown kind code {kind_code}")))?;
                if !index_subjects {
                    self.subject_kinds.push(kind);
                    self.subjects.push(s);
                    return Ok(());
                }
                let found = self
                    .snap_try_find(Part::Subjects, kind_code, s)
                    .map_err(Applied::Log)?;
                self.subject_entry(kind, s, found).1
            }
        };
        if !new {
            return Err(bad(format!("duplicate dictionary string {s:?}")));
        }
        Ok(())
    }
}

impl Dictionaries {
    /// Applies the records of a dictionary log (`bytes`, read from `path`) to empty
    /// dictionaries, as [`read_records`] reads them: subjects are put in the arena as
    /// they come and indexed together at the end ([`Dictionaries::index_subjects`]),
    /// which is several times faster than one by one for millions of them.
    fn load(&mut self, bytes: &[u8], path: &Path, tail_may_be_torn: bool) -> Result<ReadOutcome> {
        self.load_at(bytes, 0, path, tail_may_be_torn)
    }

    /// [`Dictionaries::load`] of the log's bytes from offset `start` on (the records
    /// after a snapshot): offsets in errors and in the outcome are the file's.
    fn load_at(
        &mut self,
        bytes: &[u8],
        start: u64,
        path: &Path,
        tail_may_be_torn: bool,
    ) -> Result<ReadOutcome> {
        // The log's error met by a lookup in a damaged snapshot chunk: its offset is
        // the whole log's already (not shifted like the records' below).
        let mut from_log = None;
        let read = read_records(bytes, path, tail_may_be_torn, |off, payload| {
            self.apply_record(payload, path, off, false)
                .map_err(|e| match e {
                    Applied::Record(e) => e,
                    Applied::Log(e) => {
                        let stop = StorageError::corrupt(path, off, "stopped");
                        from_log = Some(e);
                        stop
                    }
                })
        });
        if let Some(e) = from_log {
            return Err(e);
        }
        let mut outcome = read.map_err(|e| shift_offset(e, start))?;
        outcome.end += start;
        if let Some(t) = &mut outcome.torn {
            t.offset += start;
        }
        if let Some(id) = self.index_subjects()? {
            let (kind, s) = self.subject(id).expect("a duplicate is a subject");
            // Where its record is: a second walk, only on this error.
            let mut offset = 0;
            let mut seen = u64::from(self.base[2]);
            let _ = read_records(bytes, path, tail_may_be_torn, |off, payload| {
                if payload.first() == Some(&TAG_SUBJECT) {
                    if seen == u64::from(id) {
                        offset = start + off;
                    }
                    seen += 1;
                }
                Ok(())
            });
            return Err(StorageError::corrupt(
                path,
                offset,
                format!("duplicate dictionary string {s:?} ({kind:?})"),
            ));
        }
        Ok(outcome)
    }

    /// Indexes every subject of the arena (none indexed yet) by kind. The inserts go
    /// in the order of the hash table's buckets (a counting sort of the hashes by
    /// the bucket's top 10 bits: 1,024 groups, few enough for the scatter to stay in
    /// cache), so they sweep the table instead of missing the cache
    /// once each. The id of a duplicate `(kind, string)`, if there is one; `Err` is
    /// the log's error when a damaged snapshot chunk sends a probe there and the log
    /// cannot answer.
    fn index_subjects(&mut self) -> Result<Option<u32>> {
        let base = self.base[2];
        if let Some(snap) = &self.snapshot {
            // A subject of the log's tail that the snapshot holds is a duplicate.
            for (local, &kind) in self.subject_kinds.iter().enumerate() {
                let s = self.subjects.get(local).expect("every id has a string");
                if snap.try_find(Part::Subjects, kind.code(), s)?.is_some() {
                    return Ok(Some(base + local as u32));
                }
            }
        }
        let hasher = &self.hasher;
        let names = &self.subjects;
        for kind in Kind::ALL {
            let index = &mut self.subjects_by_kind[kind as usize];
            let mut hashed: Vec<(u64, u32)> = self
                .subject_kinds
                .iter()
                .enumerate()
                .filter(|(_, &k)| k == kind)
                .map(|(id, _)| {
                    let s = names.get(id).expect("every id has a string");
                    (hasher.hash_one(s), id as u32)
                })
                .collect();
            if hashed.is_empty() {
                continue;
            }
            index.reserve(hasher, names, hashed.len());
            // hashbrown probes from `hash & (buckets - 1)`; buckets are a power of two
            // holding capacity × 8/7.
            let buckets = (index.ids.capacity().max(1) * 8 / 7 + 1).next_power_of_two();
            let bits = buckets.trailing_zeros();
            let shift = bits.saturating_sub(10);
            let group = |h: u64| ((h as usize) & (buckets - 1)) >> shift;
            let mut starts = vec![0usize; (buckets >> shift) + 1];
            for &(h, _) in &hashed {
                starts[group(h) + 1] += 1;
            }
            for i in 1..starts.len() {
                starts[i] += starts[i - 1];
            }
            let mut sorted = vec![(0u64, 0u32); hashed.len()];
            for &(h, id) in &hashed {
                let g = group(h);
                sorted[starts[g]] = (h, id);
                starts[g] += 1;
            }
            hashed = sorted;
            for (h, id) in hashed {
                // The strings are read only to compare candidates of equal hash tags:
                // in this order their ids are random, and each read a cache miss.
                let entry = index.ids.entry(
                    h,
                    |&other| names.get(other as usize) == names.get(id as usize),
                    |&other| {
                        hasher.hash_one(names.get(other as usize).expect("every id has a string"))
                    },
                );
                match entry {
                    hashbrown::hash_table::Entry::Occupied(e) => {
                        return Ok(Some(base + id.max(*e.get())))
                    }
                    hashbrown::hash_table::Entry::Vacant(e) => {
                        e.insert(id);
                    }
                }
            }
        }
        Ok(None)
    }
}

/// Why a dictionary record was not applied.
enum Applied {
    /// The record is bad (its offset is within the bytes being read).
    Record(StorageError),
    /// A lookup in the snapshot met a damaged chunk and the log (from offset 0)
    /// could not answer either.
    Log(StorageError),
}

impl Applied {
    fn into_error(self) -> StorageError {
        match self {
            Applied::Record(e) | Applied::Log(e) => e,
        }
    }
}

/// `e` with its offset moved by `start` (an error about bytes read from there).
fn shift_offset(e: StorageError, start: u64) -> StorageError {
    match e {
        StorageError::Corrupt {
            path,
            offset,
            reason,
        } => StorageError::Corrupt {
            path,
            offset: offset + start,
            reason,
        },
        other => other,
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
    dicts.load(bytes, path, true)?;
    Ok(dicts.len_communities() + dicts.len_devices() + dicts.len_subjects())
}

/// The snapshot file beside `dict.log` (storage/FORMAT.md, "Dictionary snapshot").
pub(crate) const SNAPSHOT_FILE: &str = "dict.snap";

/// Where a snapshot found damaged goes when the log cannot replace it either: kept
/// for inspection, and its header still proves how long the log was
/// ([`proven_log_len`]).
pub(crate) const DAMAGED_SNAPSHOT_FILE: &str = "dict.snap.damaged";

/// A snapshot is rewritten by maintenance once the log has grown past what it covers
/// by this many bytes and by a sixteenth of the log: opening then applies at most
/// that much of the log, and writing snapshots costs, spread over the entries added,
/// at most sixteen copies of each.
const SNAPSHOT_MIN_TAIL_BYTES: u64 = 256 << 10;

/// The catalog tree and key of the dictionary's counts (communities, devices,
/// subjects) recorded before WAL files are removed: every event no longer in the WAL
/// uses ids below them, so a `dict.log` holding fewer entries at open has lost entries
/// that sealed events use, and is refused (storage/FORMAT.md, "Dictionary log payload").
pub(crate) const COUNTS_TREE: &str = "storage.dictionary";
pub(crate) const COUNTS_KEY: &str = "counts_behind_removed_wal";

/// The counts recorded in `catalog` (zeros before any were).
pub(crate) fn recorded_counts(catalog: &dyn crate::catalog::Catalog) -> Result<[u32; 3]> {
    match catalog.kv_get(COUNTS_TREE, COUNTS_KEY)? {
        None => Ok([0; 3]),
        Some(b) if b.len() == 12 => {
            Ok([0, 1, 2]
                .map(|i| u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().expect("4 bytes"))))
        }
        Some(b) => Err(StorageError::Catalog(format!(
            "{COUNTS_TREE}/{COUNTS_KEY}: {} bytes, expected 12",
            b.len()
        ))),
    }
}

/// Records `counts` in `catalog` (durable when it returns).
pub(crate) fn record_counts(catalog: &dyn crate::catalog::Catalog, counts: [u32; 3]) -> Result<()> {
    let bytes: Vec<u8> = counts.iter().flat_map(|c| c.to_le_bytes()).collect();
    catalog.kv_put(COUNTS_TREE, COUNTS_KEY, &bytes)
}

/// The longest length of `dict.log` a snapshot header beside it proves durable
/// (`dict.snap` or `dict.snap.damaged`, any version), and that file.
fn proven_length(io: &dyn FileIo, path: &Path) -> Option<(u64, PathBuf)> {
    [SNAPSHOT_FILE, DAMAGED_SNAPSHOT_FILE]
        .into_iter()
        .filter_map(|f| {
            let p = path.with_file_name(f);
            crate::dict_snapshot::proven_log_len(io, &p).map(|n| (n, p))
        })
        .max_by_key(|(n, _)| *n)
}

/// `Corrupt` naming the log when what looks like a torn tail starts below a proven
/// durable length: the record is damaged, and cutting it off would reuse its id.
fn damaged_not_torn(path: &Path, t: &TornTail, proven: Option<&(u64, PathBuf)>) -> Result<()> {
    match proven {
        Some((n, snap)) if t.offset < *n => Err(StorageError::corrupt(
            path,
            t.offset,
            format!(
                "the record here is damaged, not torn: {} shows the log reached {n} bytes durably (refusing to cut off entries sealed events may use; if that file is not this store's, remove it)",
                snap.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// What opening would refuse in `dict.log` (its `bytes`) beyond its records'
/// checksums, for `sightline check`: a bad last record below a length a snapshot
/// header proves durable, or fewer entries than the catalog `recorded`.
pub(crate) fn check_log(path: &Path, bytes: &[u8], recorded: [u32; 3]) -> Vec<String> {
    let mut dicts = Dictionaries::default();
    // Damage that is not at the end is reported by the checksum pass already.
    let Ok(ReadOutcome { end, torn }) = dicts.load(bytes, path, true) else {
        return Vec::new();
    };
    let io = crate::io::os();
    let proven = proven_length(io.as_ref(), path);
    let torn_refused = torn
        .as_ref()
        .and_then(|t| damaged_not_torn(path, t, proven.as_ref()).err());
    let short = check_recorded(&dicts, recorded, path, end).err();
    torn_refused
        .into_iter()
        .chain(short)
        .map(|e| e.to_string())
        .collect()
}

/// `Corrupt` naming the log when `dicts` holds fewer entries than `recorded`.
fn check_recorded(dicts: &Dictionaries, recorded: [u32; 3], path: &Path, end: u64) -> Result<()> {
    let got = [
        dicts.len_communities() as u32,
        dicts.len_devices() as u32,
        dicts.len_subjects() as u32,
    ];
    if got.iter().zip(recorded).any(|(&g, r)| g < r) {
        return Err(StorageError::corrupt(
            path,
            end,
            format!(
                "the log holds {got:?} entries (communities, devices, subjects) up to here, fewer than the {recorded:?} the catalog recorded before WAL files were removed: entries sealed events use are lost"
            ),
        ));
    }
    Ok(())
}

/// The append-only file behind the dictionaries.
pub(crate) struct DictLog {
    path: PathBuf,
    file: Box<dyn WriteFile>,
    /// The log's length: every byte written and fsynced.
    len: u64,
    /// Entries in those bytes: communities, devices, subjects.
    counts: [u32; 3],
    /// Bytes of the log the snapshot on disk covers (0 for none usable).
    snapshot_covers: u64,
    /// Why a snapshot on disk was not used at open, if one was not.
    snapshot_ignored: Option<String>,
    /// The counts last recorded in the catalog ([`COUNTS_KEY`]).
    recorded: [u32; 3],
}

impl std::fmt::Debug for DictLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DictLog").field("path", &self.path).finish()
    }
}

/// The snapshot beside the log `path` if it is usable for a log of `log_len` bytes:
/// `Ok(Ok(None))` when there is none, `Ok(Err(why))` when it is damaged, of another
/// version, or made from another (or longer) log; `Err` when the log cannot be read.
fn usable_snapshot(
    io: &dyn FileIo,
    path: &Path,
    log_len: u64,
) -> Result<std::result::Result<Option<DictSnapshot>, String>> {
    let snap_path = path.with_file_name(SNAPSHOT_FILE);
    if !snap_path.exists() {
        return Ok(Ok(None));
    }
    let snap = match DictSnapshot::open(io, &snap_path) {
        Ok(snap) => snap,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if snap.log_len > log_len {
        return Ok(Err(format!(
            "{} covers {} bytes of a {log_len}-byte dict.log",
            snap_path.display(),
            snap.log_len
        )));
    }
    let tail_len = snap.log_len.min(crate::dict_snapshot::TAIL_CHECK_BYTES);
    let tail = io
        .read_at(path, snap.log_len - tail_len, tail_len as usize)
        .map_err(|e| StorageError::io(path, e))?;
    if tail_len != u64::from(snap.tail_len) || crc32fast::hash(&tail) != snap.tail_crc {
        return Ok(Err(format!(
            "{} was made from another dict.log (its last bytes differ)",
            snap_path.display()
        )));
    }
    Ok(Ok(Some(snap)))
}

/// Encodes a snapshot of the first `counts` entries of `dicts` (communities, devices,
/// subjects), which are those of the first `log_len` bytes of the log at `path`.
/// `Err` if the log cannot be read, or if a damaged chunk of the snapshot in use sends
/// a read to the log and it cannot answer (`Corrupt` naming it: the dictionaries are
/// lost).
pub(crate) fn encode_snapshot(
    io: &dyn FileIo,
    path: &Path,
    dicts: &Dictionaries,
    log_len: u64,
    counts: [u32; 3],
) -> Result<Vec<u8>> {
    let tail_len = log_len.min(crate::dict_snapshot::TAIL_CHECK_BYTES);
    let tail = io
        .read_at(path, log_len - tail_len, tail_len as usize)
        .map_err(|e| StorageError::io(path, e))?;
    let seed = dicts.hasher.hash_one(log_len);
    // The first error a read met (the encoding then goes on with empty strings and
    // is thrown away).
    let failed = std::cell::RefCell::new(None);
    fn kept<'a>(
        failed: &std::cell::RefCell<Option<StorageError>>,
        got: Result<Option<(u8, &'a str)>>,
    ) -> (u8, &'a str) {
        match got {
            Ok(v) => v.expect("every durable id has an entry"),
            Err(e) => {
                failed.borrow_mut().get_or_insert(e);
                (0, "")
            }
        }
    }
    let keep = |got| kept(&failed, got);
    // After the first error no entry is looked up again (each lookup meeting a
    // damaged chunk would read the whole log once more).
    let stopped = || failed.borrow().is_some();
    let mut communities = (0..counts[0]).map(|id| match stopped() {
        true => (0, ""),
        false => keep(dicts.try_community(id).map(|s| s.map(|s| (0, s)))),
    });
    let mut devices = (0..counts[1]).map(|id| match stopped() {
        true => (0, ""),
        false => keep(dicts.try_device(id).map(|s| s.map(|s| (0, s)))),
    });
    let mut subjects = (0..counts[2]).map(|id| match stopped() {
        true => (0, ""),
        false => keep(
            dicts
                .try_subject(id)
                .map(|v| v.map(|(kind, s)| (kind.code(), s))),
        ),
    });
    let bytes = crate::dict_snapshot::encode(
        log_len,
        (crc32fast::hash(&tail), tail_len as u32),
        seed,
        [
            crate::dict_snapshot::TableIn {
                strings: &mut communities,
                len: counts[0] as usize,
            },
            crate::dict_snapshot::TableIn {
                strings: &mut devices,
                len: counts[1] as usize,
            },
            crate::dict_snapshot::TableIn {
                strings: &mut subjects,
                len: counts[2] as usize,
            },
        ],
    );
    match failed.into_inner() {
        Some(e) => Err(e),
        None => Ok(bytes),
    }
}

/// For `sightline check`: the snapshot beside the dictionary log `path` (if any)
/// verified whole against the log: every checksum, and every entry's string and
/// lookup the same as loading the log gives. A problem found, if any.
pub(crate) fn check_snapshot(path: &Path) -> Option<String> {
    let io = crate::io::OsIo;
    let log_len = std::fs::metadata(path).map_or(0, |m| m.len());
    let snap = match usable_snapshot(&io, path, log_len) {
        Ok(Ok(Some(snap))) => snap,
        Ok(Ok(None)) => return None,
        Ok(Err(why)) => return Some(format!("{why} (opening ignores it and writes it again)")),
        Err(e) => return Some(e.to_string()),
    };
    let bytes = match io.read_at(path, 0, snap.log_len as usize) {
        Ok(b) => b,
        Err(e) => return Some(StorageError::io(path, e).to_string()),
    };
    let mut full = Dictionaries::default();
    if let Err(e) = full.load(&bytes, path, false) {
        return Some(e.to_string());
    }
    if let Err(e) = snap.check_all() {
        return Some(format!(
            "{e} (reads of that chunk load the entries from {} instead; the snapshot is written again)",
            path.display()
        ));
    }
    let bad = |what: String| Some(format!("{}: {what}", snap.path().display()));
    let lens = [
        full.len_communities(),
        full.len_devices(),
        full.len_subjects(),
    ];
    for (part, n) in [Part::Communities, Part::Devices, Part::Subjects]
        .into_iter()
        .zip(lens)
    {
        if snap.len(part) as usize != n {
            return bad(format!(
                "{part:?}: {} entries, the log has {n}",
                snap.len(part)
            ));
        }
        for id in 0..n as u32 {
            let (kind, s) = match part {
                Part::Communities => (0, full.community(id)),
                Part::Devices => (0, full.device(id)),
                Part::Subjects => match full.subject(id) {
                    Some((k, s)) => (k.code(), Some(s)),
                    None => (0, None),
                },
            };
            let s = s.expect("ids below the length have strings");
            if snap.try_get(part, id).ok().flatten() != Some(s)
                || (part == Part::Subjects
                    && snap.try_subject_kind(id).ok().flatten() != Some(kind))
            {
                return bad(format!("{part:?} {id} differs from the log's"));
            }
            if snap.try_find(part, kind, s).ok().flatten() != Some(id) {
                return bad(format!("{part:?} {s:?} is not found under its id {id}"));
            }
        }
    }
    None
}

impl DictLog {
    /// Loads `path` (creating it if missing): from the snapshot beside it and the
    /// records after it when the snapshot is usable, else every record. A torn last
    /// record is cut off and reported. `recorded`: the counts the catalog recorded
    /// ([`recorded_counts`]); a log holding fewer entries is refused before anything
    /// is cut off.
    pub fn open(
        io: &Arc<dyn FileIo>,
        path: &Path,
        recorded: [u32; 3],
    ) -> Result<(DictLog, Dictionaries, Option<TornTail>)> {
        let io_arc = io;
        let io: &dyn FileIo = &**io;
        let mut dicts = Dictionaries::default();
        let mut snapshot_covers = 0;
        let mut snapshot_ignored = None;
        let (torn, len) = if path.exists() {
            let log_len = std::fs::metadata(path)
                .map_err(|e| StorageError::io(path, e))?
                .len();
            // A bad last record below a length a snapshot header proves durable is
            // damage, not a torn tail: cutting it off would give its id to the next
            // new entry, and sealed events that use it would read as that one.
            let proven = proven_length(io, path);
            let refuse_torn = |t: &TornTail| damaged_not_torn(path, t, proven.as_ref());
            let snapshot = match usable_snapshot(io, path, log_len)? {
                Ok(s) => s,
                Err(why) => {
                    tracing::warn!(reason = %why, "dictionary snapshot ignored; loading the whole log");
                    snapshot_ignored = Some(why);
                    None
                }
            };
            if let Some(snap) = snapshot {
                let start = snap.log_len;
                snapshot_covers = start;
                dicts = Dictionaries::from_snapshot(snap, Arc::clone(io_arc), path);
                let bytes = io
                    .read_at(path, start, (log_len - start) as usize)
                    .map_err(|e| StorageError::io(path, e))?;
                let ReadOutcome { end, torn } = dicts.load_at(&bytes, start, path, true)?;
                if let Some(t) = &torn {
                    refuse_torn(t)?;
                }
                check_recorded(&dicts, recorded, path, end)?;
                if let Some(t) = &torn {
                    let again = io
                        .read_at(path, start, (log_len - start) as usize)
                        .map_err(|e| StorageError::io(path, e))?;
                    if again != bytes {
                        return Err(StorageError::corrupt(
                            path,
                            t.offset,
                            "the file reads differently each time (failing disk or memory); refusing to cut off what looks like a torn tail",
                        ));
                    }
                    io.truncate(path, end)
                        .map_err(|e| StorageError::io(path, e))?;
                }
                (torn, end)
            } else {
                let bytes = io.read(path).map_err(|e| StorageError::io(path, e))?;
                // A first pass counts (framing and checksums only), so the tables are
                // sized once; damage found here is found again, and reported, below.
                let mut counts = Counts::default();
                let _ = read_records(&bytes, path, true, |_, payload| {
                    counts.add(payload);
                    Ok(())
                });
                dicts.reserve(&counts);
                let ReadOutcome { end, torn } = dicts.load(&bytes, path, true)?;
                if let Some(t) = &torn {
                    refuse_torn(t)?;
                }
                check_recorded(&dicts, recorded, path, end)?;
                if let Some(t) = &torn {
                    crate::log_file::confirm_torn(io, path, &bytes, t)?;
                    io.truncate(path, end)
                        .map_err(|e| StorageError::io(path, e))?;
                }
                (torn, end)
            }
        } else {
            check_recorded(&dicts, recorded, path, 0)?;
            (None, 0)
        };
        let existed = path.exists();
        let mut file = io
            .open(path, OpenMode::AppendOrCreate)
            .map_err(|e| StorageError::io(path, e))?;
        // What a process that died before its fsync wrote may still be only in the
        // page cache: it is made durable now, before a snapshot's length or the
        // catalog's counts can vouch for it, and before new WAL events use its ids.
        file.sync_data().map_err(|e| StorageError::io(path, e))?;
        if !existed {
            io.sync_dir(path.parent().unwrap_or(Path::new(".")))
                .map_err(|e| StorageError::io(path, e))?;
        }
        let counts = [
            dicts.len_communities() as u32,
            dicts.len_devices() as u32,
            dicts.len_subjects() as u32,
        ];
        Ok((
            DictLog {
                path: path.to_path_buf(),
                file,
                len,
                counts,
                snapshot_covers,
                snapshot_ignored,
                recorded,
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
            .map_err(|e| StorageError::io(&self.path, e))?;
        self.len += bytes.len() as u64;
        // Count the entries by tag: the records are the ones `push_entry` framed.
        let mut off = 0;
        while off + crate::log_file::FRAME_HEADER < bytes.len() {
            let len = u32::from_le_bytes(bytes[off..off + 4].try_into().expect("4 bytes"));
            if let Some(n) = self
                .counts
                .get_mut(bytes[off + crate::log_file::FRAME_HEADER] as usize)
            {
                *n += 1;
            }
            off += crate::log_file::FRAME_HEADER + len as usize;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log's durable length and the entries it holds (communities, devices,
    /// subjects): what a snapshot written now covers.
    pub fn durable(&self) -> (u64, [u32; 3]) {
        (self.len, self.counts)
    }

    /// The durable counts if they grew past those last recorded in the catalog.
    pub fn counts_to_record(&self) -> Option<[u32; 3]> {
        (self.counts != self.recorded).then_some(self.counts)
    }

    /// Records that the catalog now holds `counts`.
    pub fn counts_recorded(&mut self, counts: [u32; 3]) {
        self.recorded = counts;
    }

    /// Whether a snapshot is worth writing: the log has grown past the one on disk
    /// (at all when `clean_close`, else by [`SNAPSHOT_MIN_TAIL_BYTES`] and a sixteenth).
    pub fn snapshot_due(&self, clean_close: bool) -> bool {
        let tail = self.len.saturating_sub(self.snapshot_covers);
        tail > 0 && (clean_close || (tail >= SNAPSHOT_MIN_TAIL_BYTES && tail * 16 >= self.len))
    }

    /// Records that the snapshot on disk now covers `len` bytes.
    pub fn snapshot_written(&mut self, len: u64) {
        self.snapshot_covers = self.snapshot_covers.max(len);
    }

    /// Why the snapshot on disk was not used at open (damaged, stale, other version).
    pub fn snapshot_ignored(&self) -> Option<&str> {
        self.snapshot_ignored.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(entries: &[(u8, u32, u8, &str)]) -> Vec<u8> {
        let mut log = Vec::new();
        for &(tag, id, kind, s) in entries {
            push_entry(&mut log, tag, id, kind, s);
        }
        log
    }

    #[test]
    fn loading_indexes_every_subject_by_kind_as_interning_does() {
        // Enough subjects of two kinds for many buckets, interned one by one and
        // loaded in bulk: the same ids for the same strings.
        let mut interned = Dictionaries::default();
        let mut log = Vec::new();
        interned.intern_community("c", &mut log);
        for i in 0..20_000u32 {
            let kind = if i % 3 == 0 {
                Kind::Face
            } else {
                Kind::Vehicle
            };
            interned.intern_subject(kind, &format!("S{}", i / 2), &mut log);
        }
        let mut loaded = Dictionaries::default();
        loaded.load(&log, Path::new("dict.log"), true).unwrap();
        assert_eq!(loaded.len_subjects(), interned.len_subjects());
        for id in 0..interned.len_subjects() as u32 {
            let (kind, s) = interned.subject(id).unwrap();
            assert_eq!(loaded.subject(id), Some((kind, s)));
            assert_eq!(loaded.subject_id(kind, s), Some(id), "{kind:?} {s}");
        }
        assert_eq!(loaded.subject_id(Kind::Person, "S1"), None);
        assert_eq!(loaded.subject_id(Kind::Vehicle, "S99999"), None);
        // Interning after a load finds the loaded strings and adds new ones.
        let mut more = Vec::new();
        let s1 = interned.subject_id(Kind::Vehicle, "S1").unwrap();
        assert_eq!(loaded.intern_subject(Kind::Vehicle, "S1", &mut more), s1);
        assert!(more.is_empty());
        let id = loaded.intern_subject(Kind::Vehicle, "NEW", &mut more);
        assert_eq!(id as usize, interned.len_subjects());
        assert_eq!(loaded.subject_id(Kind::Vehicle, "NEW"), Some(id));
    }

    #[test]
    fn a_duplicate_subject_is_refused_naming_its_record() {
        let log = log_of(&[
            (TAG_SUBJECT, 0, Kind::Vehicle.code(), "A"),
            (TAG_SUBJECT, 1, Kind::Face.code(), "A"),
            (TAG_SUBJECT, 2, Kind::Vehicle.code(), "B"),
            (TAG_SUBJECT, 3, Kind::Vehicle.code(), "A"),
        ]);
        let second = log_of(&[
            (TAG_SUBJECT, 0, Kind::Vehicle.code(), "A"),
            (TAG_SUBJECT, 1, Kind::Face.code(), "A"),
            (TAG_SUBJECT, 2, Kind::Vehicle.code(), "B"),
        ])
        .len() as u64;
        match parse(&log, Path::new("dict.log")) {
            Err(StorageError::Corrupt { offset, reason, .. }) => {
                assert_eq!(offset, second, "{reason}");
                assert!(reason.contains("duplicate"), "{reason}");
            }
            other => panic!("expected a corruption error, got {other:?}"),
        }
    }
}
