//! What several test crates share: scratch directories, and copies of an
//! installed tree under another release for tests that need a second
//! kernel beside the installed ones.

// Each test crate uses only part of this module.
#![allow(dead_code)]

use camino::{Utf8Path, Utf8PathBuf};

/// A directory, made empty, removed when dropped.
pub struct Scratch(pub Utf8PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("kmod-xtask-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(Utf8PathBuf::try_from(dir).unwrap())
    }

    /// Where the scratch copy of an absolute real path is.
    pub fn copy_of(&self, real: &Utf8Path) -> Utf8PathBuf {
        self.0.join(real.as_str().trim_start_matches('/'))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Mirrors `from` in `to` as symlinks, except the entries `replace` writes.
fn mirror(from: &Utf8Path, to: &Utf8Path, replace: &dyn Fn(&str, &Utf8Path) -> bool) {
    std::fs::create_dir_all(to).unwrap();
    for entry in from.read_dir_utf8().unwrap().flatten() {
        let dest = to.join(entry.file_name());
        if !replace(entry.file_name(), &dest) {
            std::os::unix::fs::symlink(entry.path(), &dest).unwrap();
        }
    }
}

/// `tree` mirrored at `copy` (symlinks) with its `UTS_RELEASE` changed to
/// `release` and the top-level entries `left_out` missing: to Kbuild and to
/// discovery, another kernel with the same config.
pub fn renamed_copy(tree: &Utf8Path, copy: &Utf8Path, release: &str, left_out: &[&str]) {
    mirror(tree, copy, &|name, dest| match name {
        "include" => {
            mirror(&tree.join("include"), dest, &|name, dest| {
                if name != "generated" {
                    return false;
                }
                mirror(&tree.join("include/generated"), dest, &|name, dest| {
                    let ours = name == "utsrelease.h";
                    if ours {
                        let define = format!("#define UTS_RELEASE \"{release}\"\n");
                        std::fs::write(dest, define).unwrap();
                    }
                    ours
                });
                true
            });
            true
        }
        _ => left_out.contains(&name),
    });
}
