//! File helpers every stage shares.

use std::time::{Duration, SystemTime};

use camino::Utf8Path;

use crate::error::{Error, Result};
use crate::stable_hash::StableHash;

/// Copies the directory `from` to `to` (created, parents too): files with
/// their modification times, directories, and symlinks as links to what they point at (absolute, so
/// a relative link still resolves from the copy). `keep` sees every entry
/// and its type first; what it refuses is not copied.
pub fn copy_dir(
    from: &Utf8Path,
    to: &Utf8Path,
    keep: &dyn Fn(&Utf8Path, std::fs::FileType) -> bool,
) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    for entry in from.read_dir_utf8().map_err(|e| Error::io(from, e))? {
        let entry = entry.map_err(|e| Error::io(from, e))?;
        let (source, dest) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(|e| Error::io(source, e))?;
        if !keep(source, kind) {
            continue;
        }
        if kind.is_symlink() {
            let target = source
                .canonicalize_utf8()
                .map_err(|e| Error::io(source, e))?;
            std::os::unix::fs::symlink(&target, &dest).map_err(|e| Error::io(&dest, e))?;
        } else if kind.is_dir() {
            copy_dir(source, &dest, keep)?;
        } else {
            copy_file(source, &dest)?;
        }
    }
    Ok(())
}

/// Copies a file with its modification time: cargo decides what to rebuild
/// by comparing the times of outputs with those of their inputs.
fn copy_file(from: &Utf8Path, to: &Utf8Path) -> Result<()> {
    std::fs::copy(from, to).map_err(|e| Error::io(from, e))?;
    let modified = from
        .metadata()
        .and_then(|m| m.modified())
        .map_err(|e| Error::io(from, e))?;
    std::fs::File::options()
        .write(true)
        .open(to)
        .and_then(|file| file.set_modified(modified))
        .map_err(|e| Error::io(to, e))
}

/// What every half-written file's name ends with.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// No writer keeps a `.partial` file this long: one this old belongs to a
/// killed build.
const ABANDONED_AFTER: Duration = Duration::from_secs(600);

/// Removes the `.partial` files in `dir` (not below it) that start with
/// `prefix` and were left by a killed writer: all of them when the caller
/// holds the lock that every writer of such files holds (`locked`), else
/// those not touched for ten minutes. Best effort: a file another process
/// removes first is fine.
pub fn collect_leftovers(dir: &Utf8Path, prefix: &str, locked: bool) {
    let Ok(entries) = dir.read_dir_utf8() else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.starts_with(prefix) || !name.ends_with(PARTIAL_SUFFIX) {
            continue;
        }
        let abandoned = locked
            || entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > ABANDONED_AFTER);
        if abandoned {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
        }
    }
}

/// A cache entry's first line: its checksum and length, so that a
/// truncated or garbled entry is never trusted.
const CACHE_HEADER: &str = "kmod-build cache entry";

/// What reading a cache entry found.
#[derive(Debug, PartialEq, Eq)]
pub enum CacheEntry {
    Missing,
    Valid(String),
    /// There, but not what was written: rebuild it. Says what is wrong.
    Damaged(String),
}

/// Writes `contents` as a cache entry (atomically, with its checksum).
pub fn write_cache_entry(path: &Utf8Path, contents: &str) -> Result<()> {
    write_atomically(path, &encode_cache_entry(contents))
}

/// A cache entry's bytes: the header line, then `contents`.
pub fn encode_cache_entry(contents: &str) -> String {
    cache_header(contents) + contents
}

/// Reads a cache entry [`write_cache_entry`] wrote.
pub fn read_cache_entry(path: &Utf8Path) -> CacheEntry {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => CacheEntry::Missing,
        Err(e) => CacheEntry::Damaged(format!("unreadable: {e}")),
        Ok(bytes) => match parse_cache_entry(&bytes) {
            Ok(contents) => CacheEntry::Valid(contents.to_owned()),
            Err(why) => CacheEntry::Damaged(why),
        },
    }
}

/// The contents of a cache entry's bytes, or what is wrong with them.
pub fn parse_cache_entry(bytes: &[u8]) -> std::result::Result<&str, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let (header, contents) = text
        .split_once('\n')
        .ok_or_else(|| "no header line".to_owned())?;
    if format!("{header}\n") != cache_header(contents) {
        return Err(format!(
            "its checksum or length does not match ({} bytes after the header)",
            contents.len()
        ));
    }
    Ok(contents)
}

fn cache_header(contents: &str) -> String {
    let checksum = StableHash::new().part(contents).hex();
    format!(
        "{CACHE_HEADER} sha256:{checksum} bytes:{}\n",
        contents.len()
    )
}

/// Writes a temporary file beside `path` and renames it over `path`: a
/// reader sees the old file or the whole new one. The temporary file is
/// `.<name>.<random>.partial`: what a killed writer leaves is recognisably
/// its own (see [`collect_leftovers`]).
pub fn write_atomically(path: &Utf8Path, contents: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(Utf8Path::new("."));
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".{}.", path.file_name().unwrap_or("kmod")))
        .suffix(PARTIAL_SUFFIX)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_cache_entry_is_never_valid() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().join("entry");
        assert_eq!(read_cache_entry(&path), CacheEntry::Missing);
        write_cache_entry(&path, "line one\nline two\n").unwrap();
        assert_eq!(
            read_cache_entry(&path),
            CacheEntry::Valid("line one\nline two\n".into())
        );
        let whole = std::fs::read(&path).unwrap();
        for damage in [
            whole[..17].to_vec(),
            whole[..whole.len() - 1].to_vec(),
            [&whole[..], b"x"].concat(),
            whole.iter().map(|b| b ^ 0x20).collect(),
            vec![0xff; whole.len()],
        ] {
            std::fs::write(&path, &damage).unwrap();
            assert!(
                matches!(read_cache_entry(&path), CacheEntry::Damaged(_)),
                "{damage:?} was trusted"
            );
        }
    }

    #[test]
    fn leftovers_are_collected_by_prefix_under_a_lock_and_by_age_without() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        for name in [".hello.ko.1.partial", ".other.ko.1.partial", "hello.ko"] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        collect_leftovers(dir, ".hello.", false);
        assert!(
            dir.join(".hello.ko.1.partial").exists(),
            "a fresh one stays"
        );
        collect_leftovers(dir, ".hello.", true);
        assert!(!dir.join(".hello.ko.1.partial").exists());
        assert!(dir.join(".other.ko.1.partial").exists());
        assert!(dir.join("hello.ko").exists());
    }
}
