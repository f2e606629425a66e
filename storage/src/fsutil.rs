//! Durable file-system steps: write beside, fsync, rename, fsync the directory.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::io::{FileIo, OpenMode, WriteFile};

/// Writes a file at `path` atomically and durably: `write` streams its contents into a
/// buffered [`FileOut`] over a temporary file beside it (so a large file is never whole
/// in memory), which is fsynced, renamed over `path`, and the directory is fsynced. A
/// failure at any step leaves `path` as it was or whole; the temporary file is
/// rewritten from the start by the next attempt, so nothing relies on a failed fsync.
pub(crate) fn write_atomic(
    io: &dyn FileIo,
    path: &Path,
    write: impl FnOnce(&mut FileOut) -> Result<()>,
) -> Result<()> {
    let dir = path.parent().expect("a file path has a parent directory");
    create_dir_durable(io, dir)?;
    let tmp = path.with_extension("tmp");
    let file = io
        .open(&tmp, OpenMode::Truncate)
        .map_err(|e| StorageError::io(&tmp, e))?;
    let mut out = FileOut {
        file,
        buf: Vec::with_capacity(FileOut::BUFFER),
        path: tmp.clone(),
    };
    write(&mut out)?;
    out.flush()?;
    out.file
        .sync_data()
        .map_err(|e| StorageError::io(&tmp, e))?;
    drop(out);
    io.rename(&tmp, path)
        .map_err(|e| StorageError::io(path, e))?;
    fsync_dir(io, dir)
}

/// [`write_atomic`] for files of the layers above (the index checkpoint): `write`
/// hands its bytes to `put` in pieces; the file appears whole and durable, or not at
/// all, through the same file-system seam as the store's own files.
pub fn write_file_atomic(
    io: &dyn FileIo,
    path: &Path,
    write: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>,
) -> Result<()> {
    write_atomic(io, path, |out| write(&mut |b: &[u8]| out.put(b)))
}

/// Where bytes are written in pieces: memory, or a file being written.
pub(crate) trait Out {
    fn put(&mut self, bytes: &[u8]) -> Result<()>;
}

impl Out for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// A file being written by [`write_atomic`], buffered.
pub(crate) struct FileOut {
    file: Box<dyn WriteFile>,
    buf: Vec<u8>,
    path: PathBuf,
}

impl FileOut {
    /// Bytes gathered before a write call.
    const BUFFER: usize = 1 << 20;

    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(&self.buf)
            .map_err(|e| StorageError::io(&self.path, e))?;
        self.buf.clear();
        Ok(())
    }
}

impl Out for FileOut {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        if self.buf.len() + bytes.len() > Self::BUFFER {
            self.flush()?;
        }
        if bytes.len() >= Self::BUFFER {
            return self
                .file
                .write_all(bytes)
                .map_err(|e| StorageError::io(&self.path, e));
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub fn fsync_dir(io: &dyn FileIo, dir: &Path) -> Result<()> {
    io.sync_dir(dir).map_err(|e| StorageError::io(dir, e))
}

/// Creates `dir` and every missing parent, fsyncing the directory above each one
/// created, so the new entries survive a power loss.
pub fn create_dir_durable(io: &dyn FileIo, dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durable(io, parent)?;
    }
    match fs::create_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(StorageError::io(dir, e))
        }
        _ => {}
    }
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => fsync_dir(io, parent),
        None => Ok(()),
    }
}
