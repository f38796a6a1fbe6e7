//! Whether a `.ko` is up to date, so that a no-op build runs neither cargo
//! nor make.

use camino::{Utf8Path, Utf8PathBuf};

use crate::error::{Error, Result};
use crate::files::{file_stamp, read_cache_entry, write_cache_entry, CacheEntry};
use crate::stable_hash::StableHash;

/// Size and mtime of every source rustc read (cargo's dep-info: the crate,
/// its dependencies, `core`, the bindings), of the workspace's packages
/// (build scripts, manifests, the toolchain pin), of the tree files a
/// kernel update changes, of the running driver (it decides flags and the
/// link), and of the installed `.ko` itself.
pub(crate) struct Fingerprint {
    pub stamp: Utf8PathBuf,
    pub ko: Utf8PathBuf,
    pub dep_info: Utf8PathBuf,
    pub tree_files: Vec<Utf8PathBuf>,
    pub workspace_inputs: Vec<Utf8PathBuf>,
    /// The crate's enabled features: another set is another build.
    pub features: Vec<String>,
}

impl Fingerprint {
    pub fn is_fresh(&self) -> bool {
        // A damaged stamp is simply stale.
        match read_cache_entry(&self.stamp) {
            CacheEntry::Valid(recorded) => Some(recorded) == self.compute(),
            CacheEntry::Missing | CacheEntry::Damaged(_) => false,
        }
    }

    /// Called once the `.ko` is installed. Without a fingerprint the next
    /// build simply is not skipped.
    pub fn record(&self) -> Result<()> {
        match self.compute() {
            Some(value) => write_cache_entry(&self.stamp, &value),
            None => match std::fs::remove_file(&self.stamp) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::io(&self.stamp, e))
                }
                _ => Ok(()),
            },
        }
    }

    /// `None` when an input is missing: then the build is stale anyway.
    fn compute(&self) -> Option<String> {
        let mut files: Vec<Utf8PathBuf> = vec![self.ko.clone()];
        files.extend(self.tree_files.iter().cloned());
        files.push(Utf8PathBuf::try_from(std::env::current_exe().ok()?).ok()?);
        let dep_info = std::fs::read_to_string(&self.dep_info).ok()?;
        let (_, sources) = dep_info.lines().next()?.split_once(": ")?;
        // Make syntax: spaces in paths are escaped with a backslash.
        let sources = sources.replace("\\ ", "\0");
        files.extend(sources.split(' ').map(|p| p.replace('\0', " ").into()));
        for input in &self.workspace_inputs {
            files_under(input, &mut files);
        }
        let mut hash = StableHash::new();
        hash.parts(&self.features);
        for file in &files {
            let stamp = file_stamp(file);
            if stamp == "-" {
                return None;
            }
            hash.part(file.as_str()).part(stamp);
        }
        Some(format!("{}\n", hash.hex16()))
    }
}

/// `path` if it is a file, else every file below it but build outputs;
/// nothing if it does not exist (a workspace without `.cargo/config.toml`).
fn files_under(path: &Utf8Path, files: &mut Vec<Utf8PathBuf>) {
    let Ok(entries) = path.read_dir_utf8() else {
        if path.exists() {
            files.push(path.to_owned());
        }
        return;
    };
    let mut entries: Vec<Utf8PathBuf> = entries.flatten().map(|e| e.into_path()).collect();
    entries.sort();
    for entry in entries {
        if entry.file_name() != Some("target") {
            files_under(&entry, files);
        }
    }
}
