//! File helpers every stage shares.

use camino::Utf8Path;

use crate::error::{Error, Result};

/// Writes a temporary file beside `path` and renames it over `path`: a
/// reader sees the old file or the whole new one.
pub fn write_atomically(path: &Utf8Path, contents: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(Utf8Path::new("."));
    let mut file = tempfile::Builder::new()
        .prefix(".kmod-partial.")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    std::io::Write::write_all(&mut file, contents.as_bytes()).map_err(|e| Error::io(path, e))?;
    file.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Size and modification time of `path` (`-` if it cannot be read), the
/// way a cache key sees a file that package updates rewrite in place.
pub fn file_stamp(path: &Utf8Path) -> String {
    let stamp = || {
        let metadata = std::fs::metadata(path).ok()?;
        let modified = metadata.modified().ok()?;
        let since_epoch = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
        Some(format!("{} {}", metadata.len(), since_epoch.as_nanos()))
    };
    stamp().unwrap_or_else(|| "-".to_owned())
}
