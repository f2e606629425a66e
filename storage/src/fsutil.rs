//! Durable file-system steps: write beside, fsync, rename, fsync the directory.

use std::fs;
use std::path::Path;

use crate::error::{Result, StorageError};
use crate::io::{FileIo, OpenMode};

/// Writes `bytes` to `path` atomically and durably: a temporary file beside it is
/// written and fsynced, renamed over `path`, and the directory is fsynced. A failure at
/// any step leaves `path` as it was or whole; the temporary file is rewritten from the
/// start by the next attempt, so nothing relies on a failed fsync.
pub fn write_atomic(io: &dyn FileIo, path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("a file path has a parent directory");
    create_dir_durable(io, dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = io
        .open(&tmp, OpenMode::Truncate)
        .map_err(|e| StorageError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| StorageError::io(&tmp, e))?;
    f.sync_data().map_err(|e| StorageError::io(&tmp, e))?;
    drop(f);
    io.rename(&tmp, path)
        .map_err(|e| StorageError::io(path, e))?;
    fsync_dir(io, dir)
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
