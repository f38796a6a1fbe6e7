//! Bindings generated once per (tree, header set, allowlists, clang flags,
//! libclang and kmod-build version) and shared by every module crate and
//! every `cargo clean`: bindgen is the slowest step of a warm build.

use std::sync::{Arc, Mutex};

use camino::{Utf8Path, Utf8PathBuf};

use crate::error::Result;
use crate::files::{collect_leftovers, read_cache_entry, write_cache_entry, CacheEntry};
use crate::stable_hash::StableHash;

/// Bumped when what bindgen is asked for changes (its options in
/// `Build::generate_bindings`) between versions: 2 dropped `Debug`.
const GENERATOR_EPOCH: u32 = 2;

pub(crate) struct BindingsCache {
    bindings: Utf8PathBuf,
    /// The headers bindgen read, one per line: cargo's rerun triggers.
    headers: Utf8PathBuf,
}

impl BindingsCache {
    /// `key` is everything the bindings are generated from.
    pub fn new(cache_dir: &Utf8Path, key: &StableHash) -> BindingsCache {
        let mut key = key.clone();
        key.part(env!("CARGO_PKG_VERSION"))
            .part(GENERATOR_EPOCH.to_le_bytes())
            .part(bindgen::clang_version().full);
        let stem = format!("bindings-{}", key.hex16());
        BindingsCache {
            bindings: cache_dir.join(format!("{stem}.rs")),
            headers: cache_dir.join(format!("{stem}.headers")),
        }
    }

    /// The entry, if it is whole: a damaged part is reported (a warning
    /// naming the file) and regenerated, never trusted.
    pub fn load(&self) -> Option<(String, Vec<String>)> {
        let read = |path: &Utf8Path| match read_cache_entry(path) {
            CacheEntry::Valid(text) => Some(text),
            CacheEntry::Missing => None,
            CacheEntry::Damaged(why) => {
                crate::build_script::warn(&format!(
                    "ignoring the damaged bindings cache entry {path} ({why}); regenerating it"
                ));
                None
            }
        };
        // Headers are written last, so their presence marks a whole entry.
        let headers = read(&self.headers)?;
        let bindings = read(&self.bindings)?;
        Some((bindings, headers.lines().map(String::from).collect()))
    }

    /// Stores an entry; concurrent builds write whole files by renaming.
    /// Removes the entry (a missing one is no error): for bindings made
    /// from flags that proved wrong, which no build will look up.
    #[cfg(feature = "driver")]
    pub fn remove(&self) {
        for path in [&self.headers, &self.bindings] {
            let _ = std::fs::remove_file(path);
        }
    }

    pub fn store(&self, bindings: &str, headers: &[String]) -> Result<()> {
        collect_leftovers(self.dir(), ".bindings-", false);
        write_cache_entry(&self.bindings, bindings)?;
        write_cache_entry(&self.headers, &(headers.join("\n") + "\n"))
    }

    fn dir(&self) -> &Utf8Path {
        self.bindings.parent().unwrap_or(Utf8Path::new("."))
    }
}

/// The files bindgen's libclang read, for cargo's rerun triggers.
#[derive(Debug, Default, Clone)]
pub(crate) struct IncludedFiles(Arc<Mutex<Vec<String>>>);

impl IncludedFiles {
    pub fn take(&self) -> Vec<String> {
        let mut files = self
            .0
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default();
        files.sort();
        files.dedup();
        files
    }
}

impl bindgen::callbacks::ParseCallbacks for IncludedFiles {
    fn include_file(&self, filename: &str) {
        if let Ok(mut files) = self.0.lock() {
            files.push(filename.to_owned());
        }
    }
}
