//! The seam between the store and the file system.
//!
//! Every read, write, fsync, rename and removal of the store's own files (WAL,
//! dictionary log, segments) goes through a [`FileIo`], taken from
//! [`crate::StoreConfig::io`]. [`OsIo`] is the real one; [`FaultyIo`] wraps it and fails
//! chosen operations on chosen files, so tests can check what the store does when the
//! disk fails: a failed fsync, ENOSPC, a short write, a failed rename, a read error, a
//! flipped bit. (The catalog is sled, which does its own I/O; it is outside the seam.)

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How [`FileIo::open`] opens a file for writing. Every write goes to the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, appended to.
    Append,
    /// Appended to, created if missing.
    AppendOrCreate,
    /// Created; an existing file is an error.
    CreateNew,
    /// Created, or emptied if it exists.
    Truncate,
}

/// A file open for appending.
pub trait WriteFile: Send + Sync {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes the data written so far durable (fdatasync).
    fn sync_data(&mut self) -> io::Result<()>;
    /// The file's length in bytes now.
    fn size(&self) -> io::Result<u64>;
    /// An fsync of what has been written so far that can run without this handle
    /// (without the lock that guards it), so writers append meanwhile; `None` when the
    /// file can only be synced in place ([`WriteFile::sync_data`]).
    fn detached_sync(&self) -> io::Result<Option<DetachedSync>> {
        Ok(None)
    }
}

/// See [`WriteFile::detached_sync`].
pub type DetachedSync = Box<dyn FnOnce() -> io::Result<()> + Send>;

/// A whole file's bytes for reading: memory-mapped, or read into memory.
pub enum FileBytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Owned(v) => v,
        }
    }
}

/// The file-system calls the store makes on its own files.
pub trait FileIo: Send + Sync + std::fmt::Debug {
    /// A whole file's contents.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// A whole immutable file, memory-mapped where possible.
    fn map(&self, path: &Path) -> io::Result<FileBytes>;
    /// `len` bytes of a file from `offset` (all of them, or an error).
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// [`FileIo::read_at`] when every byte is in memory already (the page cache), read
    /// without waiting for a disk: `None` when it would wait, so a caller on an event
    /// loop can serve what is cached at once and send the rest to a thread that may
    /// block. The default never answers from memory.
    fn read_at_cached(&self, path: &Path, offset: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
        let _ = (path, offset, len);
        Ok(None)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn WriteFile>>;
    /// Cuts `path` to `len` bytes and fsyncs it.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes a directory's entries (created, renamed, removed files) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The operating system's file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsIo;

struct OsFile(File);

impl WriteFile for OsFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn detached_sync(&self) -> io::Result<Option<DetachedSync>> {
        // A second descriptor of the same open file: fdatasync on it makes the
        // inode's data durable, whatever handle wrote it.
        let f = self.0.try_clone()?;
        Ok(Some(Box::new(move || f.sync_data())))
    }
}

fn os_open(path: &Path, mode: OpenMode) -> io::Result<OsFile> {
    let mut o = OpenOptions::new();
    match mode {
        OpenMode::Append => o.append(true),
        OpenMode::AppendOrCreate => o.append(true).create(true),
        OpenMode::CreateNew => o.append(true).create_new(true),
        OpenMode::Truncate => o.write(true).create(true).truncate(true),
    };
    Ok(OsFile(o.open(path)?))
}

impl FileIo for OsIo {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }
    fn map(&self, path: &Path) -> io::Result<FileBytes> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            // An empty file cannot be mapped on every platform.
            return Ok(FileBytes::Owned(Vec::new()));
        }
        // SAFETY: the store maps only segment files and the dictionary snapshot, which
        // are immutable once renamed into place; it never writes or truncates them, and
        // replaces a snapshot only by renaming a new file over its path, which leaves
        // the mapped file's bytes as they were. A file changed underneath us by another process is outside what we
        // can defend.
        Ok(FileBytes::Mapped(unsafe { memmap2::Mmap::map(&file) }?))
    }
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len];
        File::open(path)?.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
    #[cfg(target_os = "linux")]
    fn read_at_cached(&self, path: &Path, offset: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
        use std::os::fd::AsRawFd;
        let file = File::open(path)?;
        let mut buf = vec![0u8; len];
        let mut done = 0;
        while done < len {
            let iov = libc::iovec {
                iov_base: buf[done..].as_mut_ptr().cast(),
                iov_len: len - done,
            };
            let at = libc::off_t::try_from(offset + done as u64)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset past off_t"))?;
            // SAFETY: `iov` points into `buf`, valid for `len - done` writable bytes for
            // the duration of the call; the descriptor is open (`file` lives on).
            let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, at, libc::RWF_NOWAIT) };
            match n {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n if n > 0 => done += n as usize,
                _ => {
                    let e = io::Error::last_os_error();
                    return match e.raw_os_error() {
                        // Not in memory (or RWF_NOWAIT unknown to this kernel or file
                        // system): the blocking read will do.
                        Some(libc::EAGAIN | libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => {
                            Ok(None)
                        }
                        Some(libc::EINTR) => continue,
                        _ => Err(e),
                    };
                }
            }
        }
        Ok(Some(buf))
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn WriteFile>> {
        Ok(Box::new(os_open(path, mode)?))
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(len)?;
        f.sync_all()
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// The real file system, shared (the default of [`crate::StoreConfig::io`]).
pub fn os() -> Arc<dyn FileIo> {
    Arc::new(OsIo)
}

/// The operating system's file system without fsync: for a store that is a cache of
/// data kept durably elsewhere (a cluster's read replica, made again from object
/// storage and the log whenever it is lost, its directory emptied at start). Writes,
/// renames and removals are the OS's; `sync_data`, `sync_dir` and the fsync of
/// `truncate` return at once, so such a store adds no fsyncs to a disk that the
/// durable parts of the system (the log's nodes, the indexers) share. Never use it for
/// a store whose acknowledged events must survive power loss.
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheIo;

/// An [`OsFile`] whose syncs return at once.
struct CacheFile(OsFile);

impl WriteFile for CacheFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn size(&self) -> io::Result<u64> {
        self.0.size()
    }
    fn detached_sync(&self) -> io::Result<Option<DetachedSync>> {
        Ok(Some(Box::new(|| Ok(()))))
    }
}

impl FileIo for CacheIo {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        OsIo.read(path)
    }
    fn map(&self, path: &Path) -> io::Result<FileBytes> {
        OsIo.map(path)
    }
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        OsIo.read_at(path, offset, len)
    }
    fn read_at_cached(&self, path: &Path, offset: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
        OsIo.read_at_cached(path, offset, len)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn WriteFile>> {
        Ok(Box::new(CacheFile(os_open(path, mode)?)))
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        OpenOptions::new().write(true).open(path)?.set_len(len)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

/// An operation [`FaultyIo`] can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Write,
    Sync,
    /// An fsync of a directory.
    SyncDir,
    Rename,
    Remove,
    Truncate,
    Open,
    /// [`FileIo::read`], [`FileIo::map`] and [`FileIo::read_at`].
    Read,
}

/// What goes wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The call fails with this OS error number (`libc`'s EIO = 5, ENOSPC = 28, …).
    Errno(i32),
    /// A write stores only the first half of its bytes, then fails with ENOSPC.
    ShortWrite,
    /// A read returns the file with one bit flipped (in the middle of the file, or at
    /// this byte offset when it is within the file).
    BitFlip { at: Option<u64> },
}

pub const EIO: i32 = 5;
pub const ENOSPC: i32 = 28;

/// One injected fault: `kind` for operations `op` on paths containing `path_contains`,
/// `times` times (`None`: until cleared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub op: Op,
    pub path_contains: String,
    pub kind: FaultKind,
    pub times: Option<usize>,
}

impl Fault {
    /// `kind` on every `op` on paths containing `path_contains`, until cleared.
    pub fn new(op: Op, path_contains: impl Into<String>, kind: FaultKind) -> Fault {
        Fault {
            op,
            path_contains: path_contains.into(),
            kind,
            times: None,
        }
    }
    pub fn once(self) -> Fault {
        Fault {
            times: Some(1),
            ..self
        }
    }
}

/// A [`FileIo`] over the real file system that fails as told.
///
/// A failed fsync behaves as Linux's does at worst: the data written since the last
/// successful sync is lost (overwritten with zeros on disk) although the call that wrote
/// it succeeded, so a store that retried the fsync and trusted it would lose
/// acknowledged events, and a test would see it.
#[derive(Debug, Default)]
pub struct FaultyIo {
    state: Arc<Mutex<FaultState>>,
}

#[derive(Debug, Default)]
struct FaultState {
    faults: Vec<Fault>,
    injected: u64,
}

impl FaultState {
    /// The fault to inject for `op` on `path` now, if any (counting it).
    fn take(&mut self, op: Op, path: &Path) -> Option<FaultKind> {
        let p = path.to_string_lossy();
        let i = self
            .faults
            .iter()
            .position(|f| f.op == op && p.contains(&f.path_contains))?;
        let f = &mut self.faults[i];
        let kind = f.kind;
        if let Some(t) = &mut f.times {
            *t -= 1;
            if *t == 0 {
                self.faults.remove(i);
            }
        }
        self.injected += 1;
        Some(kind)
    }
}

fn errno(kind: FaultKind) -> io::Error {
    match kind {
        FaultKind::Errno(n) => io::Error::from_raw_os_error(n),
        _ => io::Error::from_raw_os_error(EIO),
    }
}

impl FaultyIo {
    pub fn new() -> Arc<FaultyIo> {
        Arc::new(FaultyIo::default())
    }

    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Removes every fault not yet spent: the disk works again.
    pub fn clear(&self) {
        self.lock().faults.clear();
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fails `op` on `path` if a fault says so (for operations with no data to damage).
    fn check(&self, op: Op, path: &Path) -> io::Result<()> {
        match self.lock().take(op, path) {
            Some(k) => Err(errno(k)),
            None => Ok(()),
        }
    }

    fn damage_read(&self, path: &Path, mut bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        match self.lock().take(Op::Read, path) {
            None => Ok(bytes),
            Some(FaultKind::BitFlip { at }) => {
                if !bytes.is_empty() {
                    let len = bytes.len() as u64;
                    let i = at.filter(|&a| a < len).unwrap_or(len / 2) as usize;
                    bytes[i] ^= 0x10;
                }
                Ok(bytes)
            }
            Some(k) => Err(errno(k)),
        }
    }
}

struct FaultyFile {
    inner: OsFile,
    path: PathBuf,
    state: Arc<Mutex<FaultState>>,
    /// The length known durable: what a successful sync covered.
    synced: u64,
}

impl FaultyFile {
    fn take(&self, op: Op) -> Option<FaultKind> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(op, &self.path)
    }
}

impl WriteFile for FaultyFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.take(Op::Write) {
            None => self.inner.write_all(bytes),
            Some(FaultKind::ShortWrite) => {
                self.inner.write_all(&bytes[..bytes.len() / 2])?;
                Err(io::Error::from_raw_os_error(ENOSPC))
            }
            Some(k) => Err(errno(k)),
        }
    }
    fn sync_data(&mut self) -> io::Result<()> {
        match self.take(Op::Sync) {
            None => {
                self.inner.sync_data()?;
                self.synced = self.inner.size()?;
                Ok(())
            }
            Some(k) => {
                // What was not yet durable is gone from the disk, whatever the page
                // cache shows; model that by zeroing it.
                let len = self.inner.size()?;
                if len > self.synced {
                    use std::os::unix::fs::FileExt;
                    let f = OpenOptions::new().write(true).open(&self.path)?;
                    f.write_all_at(&vec![0u8; (len - self.synced) as usize], self.synced)?;
                    f.sync_all()?;
                }
                Err(errno(k))
            }
        }
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

impl FileIo for FaultyIo {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let bytes = fs::read(path)?;
        self.damage_read(path, bytes)
    }
    fn map(&self, path: &Path) -> io::Result<FileBytes> {
        let bytes = fs::read(path)?;
        Ok(FileBytes::Owned(self.damage_read(path, bytes)?))
    }
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let bytes = OsIo.read_at(path, offset, len)?;
        self.damage_read(path, bytes)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn WriteFile>> {
        self.check(Op::Open, path)?;
        let existing = match mode {
            OpenMode::Append | OpenMode::AppendOrCreate => {
                fs::metadata(path).map(|m| m.len()).unwrap_or(0)
            }
            OpenMode::CreateNew | OpenMode::Truncate => 0,
        };
        Ok(Box::new(FaultyFile {
            inner: os_open(path, mode)?,
            path: path.to_path_buf(),
            state: self.state.clone(),
            synced: existing,
        }))
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.check(Op::Truncate, path)?;
        OsIo.truncate(path, len)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(Op::Rename, to)?;
        OsIo.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check(Op::Remove, path)?;
        OsIo.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check(Op::SyncDir, dir)?;
        OsIo.sync_dir(dir)
    }
}
