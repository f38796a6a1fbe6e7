//! Bindings generated once per (tree, header set, allowlists, clang flags,
//! libclang and kmod-build version) and shared by every module crate and
//! every `cargo clean`: bindgen is the slowest step of a warm build.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use camino::{Utf8Path, Utf8PathBuf};

use crate::error::{Error, Result};

pub(crate) struct BindingsCache {
    bindings: Utf8PathBuf,
    /// The headers bindgen read, one per line: cargo's rerun triggers.
    headers: Utf8PathBuf,
}

impl BindingsCache {
    pub fn new(cache_dir: &Utf8Path, key: &impl Hash) -> BindingsCache {
        let mut hasher = DefaultHasher::new();
        (env!("CARGO_PKG_VERSION"), bindgen::clang_version().full).hash(&mut hasher);
        key.hash(&mut hasher);
        let stem = format!("bindings-{:016x}", hasher.finish());
        BindingsCache {
            bindings: cache_dir.join(format!("{stem}.rs")),
            headers: cache_dir.join(format!("{stem}.headers")),
        }
    }

    pub fn load(&self) -> Option<(String, Vec<String>)> {
        // Headers are written last, so their presence marks a whole entry.
        let headers = std::fs::read_to_string(&self.headers).ok()?;
        let bindings = std::fs::read_to_string(&self.bindings).ok()?;
        Some((bindings, headers.lines().map(String::from).collect()))
    }

    /// Stores an entry; concurrent builds write whole files by renaming.
    pub fn store(&self, bindings: &str, headers: &[String]) -> Result<()> {
        write_atomically(&self.bindings, bindings)?;
        write_atomically(&self.headers, &(headers.join("\n") + "\n"))
    }
}

fn write_atomically(path: &Utf8Path, contents: &str) -> Result<()> {
    let partial = path.with_extension(format!("partial.{}", std::process::id()));
    std::fs::write(&partial, contents).map_err(|e| Error::io(&partial, e))?;
    std::fs::rename(&partial, path).map_err(|e| Error::io(path, e))
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
