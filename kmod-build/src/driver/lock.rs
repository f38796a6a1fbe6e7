//! Locks between concurrent builds (two terminals, an editor, a DKMS hook):
//! advisory `flock`s, which the kernel releases when their holder dies.

use camino::Utf8Path;

use crate::error::{Error, Result};

/// An exclusive lock on a file (made if missing), held until dropped; the
/// kernel drops it when its holder dies, however it dies.
#[derive(Debug)]
pub struct FileLock {
    _file: std::fs::File,
}

/// Locks `path`; if another process holds it, calls `waiting` (to say so)
/// and blocks until it is free.
pub fn lock_file(path: &Utf8Path, waiting: impl FnOnce()) -> Result<FileLock> {
    let file = open_lock(path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            waiting();
            file.lock().map_err(|e| Error::io(path, e))?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(path, e)),
    }
    Ok(FileLock { _file: file })
}

/// Locks `path` if nobody holds it.
pub fn try_lock_file(path: &Utf8Path) -> Result<Option<FileLock>> {
    let file = open_lock(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(FileLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(path, e)),
    }
}

fn open_lock(path: &Utf8Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))
}
