use camino::{Utf8Path, Utf8PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::symvers::Symvers;

/// Where distributions link each release's build tree from.
const MODULE_ROOTS: &[&str] = &["/lib/modules", "/usr/lib/modules"];

/// Environment variable naming a directory that discovery treats as `/`
/// (for fixture trees in tests, or a target's root filesystem).
pub const SYSROOT_ENV: &str = "KMOD_BUILD_SYSROOT";

/// `MODULE_ROOTS` under the sysroot, if one is set.
fn module_roots() -> Vec<Utf8PathBuf> {
    let sysroot = std::env::var(SYSROOT_ENV).unwrap_or_default();
    MODULE_ROOTS
        .iter()
        .map(|root| Utf8PathBuf::from(format!("{sysroot}{root}")))
        .collect()
}

/// A kernel-devel tree: the directory `make -C` is pointed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelTree {
    /// Absolute, symlinks resolved (Kbuild's `M=`/`-C` want real paths).
    pub path: Utf8PathBuf,
    /// `uname -r` of the kernel this tree was built with.
    pub release: String,
}

impl KernelTree {
    /// Opens the tree at `path`, which must hold a Makefile and a kernel release.
    pub fn open(path: impl AsRef<Utf8Path>) -> Result<KernelTree> {
        let given = path.as_ref();
        let path = given.canonicalize_utf8().map_err(|e| Error::NotATree {
            path: given.to_owned(),
            why: e.to_string(),
        })?;
        if !path.join("Makefile").is_file() {
            return Err(Error::NotATree {
                path,
                why: "no Makefile".into(),
            });
        }
        let release = read_release(&path)?;
        Ok(KernelTree { path, release })
    }

    /// Every tree linked from `/lib/modules/<release>/build`, by release.
    pub fn installed() -> Vec<KernelTree> {
        let mut trees: Vec<KernelTree> = module_roots()
            .iter()
            .filter_map(|root| root.read_dir_utf8().ok())
            .flatten()
            .filter_map(|entry| KernelTree::open(entry.ok()?.path().join("build")).ok())
            .collect();
        trees.sort_by_key(|tree| version_key(&tree.release));
        trees.dedup_by(|a, b| a.path == b.path);
        trees
    }

    /// The tree of the kernel this machine runs, if it is installed.
    pub fn running() -> Option<KernelTree> {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
        module_roots()
            .iter()
            .find_map(|root| KernelTree::open(root.join(release.trim()).join("build")).ok())
    }

    /// Resolves `--kernel <release|path>`.
    pub fn select(spec: &str) -> Result<KernelTree> {
        if spec.contains('/') {
            return KernelTree::open(spec);
        }
        let installed = KernelTree::installed();
        if let Some(tree) = installed.iter().find(|t| t.release == spec) {
            return Ok(tree.clone());
        }
        Err(Error::NoSuchKernel {
            spec: spec.to_owned(),
            installed: if installed.is_empty() {
                "none".to_owned()
            } else {
                installed
                    .iter()
                    .map(|t| t.release.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
    }

    /// The tree a module's build script builds against: the driver's
    /// `KMOD_BUILD_KERNEL`, else `KDIR`, else the running kernel's, else the
    /// only installed one.
    pub fn from_env() -> Result<KernelTree> {
        for var in [crate::KERNEL_ENV, "KDIR"] {
            if let Some(path) = std::env::var_os(var) {
                let path = Utf8PathBuf::from_path_buf(path.into())
                    .map_err(|path| Error::NonUtf8Path { path })?;
                return KernelTree::open(path);
            }
        }
        if let Some(tree) = KernelTree::running() {
            return Ok(tree);
        }
        let mut installed = KernelTree::installed();
        match installed.len() {
            0 => Err(no_tree_error()),
            1 => Ok(installed.remove(0)),
            _ => Err(Error::Prerequisite {
                what: format!(
                    "a choice of kernel tree (installed: {})",
                    installed
                        .iter()
                        .map(|t| t.release.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                help: format!(
                    "set {}=<tree path> or build with `cargo xtask build-module`",
                    crate::KERNEL_ENV
                ),
            }),
        }
    }

    /// `(major, minor, patch)` from the release, e.g. `6.12.117+deb12-amd64`.
    pub fn version(&self) -> (u32, u32, u32) {
        version_key(&self.release)
    }

    pub fn config(&self) -> Result<Config> {
        Config::load(&self.required(
            "include/config/auto.conf",
            "run `make modules_prepare` in the tree, or reinstall its kernel headers package",
        )?)
    }

    pub fn symvers(&self) -> Result<Symvers> {
        Symvers::load(&self.required("Module.symvers", "install the headers package that matches this kernel: it ships Module.symvers (Debian: linux-headers-<release>)")?)
    }

    /// A module the distro built with this kernel (`.ko` or `.ko.xz`), to
    /// learn what its loader expects.
    pub fn in_tree_module(&self) -> Option<Utf8PathBuf> {
        let sysroot = std::env::var(SYSROOT_ENV).unwrap_or_default();
        MODULE_ROOTS.iter().find_map(|root| {
            find_module(
                &Utf8PathBuf::from(format!("{sysroot}{root}/{}/kernel", self.release)),
                4,
            )
        })
    }

    /// `relative` inside the tree, or an error naming it and what provides it.
    pub fn required(&self, relative: &str, help: &str) -> Result<Utf8PathBuf> {
        let path = self.path.join(relative);
        if path.exists() {
            Ok(path)
        } else {
            Err(Error::MissingFile {
                path,
                help: help.to_owned(),
            })
        }
    }
}

/// The release `uname -r` reports: `UTS_RELEASE`, which vermagic uses too.
/// `include/config/kernel.release` is only a fallback: Debian's 6.1 trees
/// put the upstream version there (`6.1.192` for `6.1.0-56-amd64`).
/// The first `.ko`/`.ko.xz` under `dir`, at most `depth` levels down.
fn find_module(dir: &Utf8Path, depth: usize) -> Option<Utf8PathBuf> {
    let mut entries: Vec<Utf8PathBuf> = dir
        .read_dir_utf8()
        .ok()?
        .flatten()
        .map(|entry| entry.path().to_owned())
        .collect();
    entries.sort();
    let is_module =
        |path: &Utf8PathBuf| path.as_str().ends_with(".ko") || path.as_str().ends_with(".ko.xz");
    if let Some(module) = entries
        .iter()
        .find(|path| path.is_file() && is_module(path))
    {
        return Some(module.clone());
    }
    if depth == 0 {
        return None;
    }
    entries
        .iter()
        .filter(|path| path.is_dir())
        .find_map(|path| find_module(path, depth - 1))
}

fn read_release(tree: &Utf8Path) -> Result<String> {
    let from_utsrelease = std::fs::read_to_string(tree.join("include/generated/utsrelease.h"))
        .ok()
        .and_then(|text| {
            let quoted = text.split_once("UTS_RELEASE")?.1.trim();
            Some(quoted.strip_prefix('"')?.split('"').next()?.to_owned())
        });
    let from_kernel_release = || {
        std::fs::read_to_string(tree.join("include/config/kernel.release"))
            .ok()
            .map(|text| text.trim().to_owned())
    };
    from_utsrelease
        .or_else(from_kernel_release)
        .filter(|release| !release.is_empty())
        .ok_or_else(|| Error::NotATree {
            path: tree.to_owned(),
            why: "no kernel release in include/generated/utsrelease.h or include/config/kernel.release".into(),
        })
}

/// Leading `major.minor.patch` of a release string; missing parts are 0.
fn version_key(release: &str) -> (u32, u32, u32) {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|part| part.parse().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// The error for a machine with no tree at all, with this distro's fix.
pub fn no_tree_error() -> Error {
    Error::NoKernelTree {
        searched: module_roots()
            .iter()
            .map(|root| format!("{root}/*/build"))
            .collect::<Vec<_>>()
            .join(", "),
        install: install_headers_command(),
    }
}

fn install_headers_command() -> String {
    let has = |tool: &str| Utf8Path::new("/usr/bin").join(tool).exists();
    if has("apt-get") {
        "apt-get install linux-headers-amd64 (Ubuntu: linux-headers-generic)".to_owned()
    } else if has("dnf") {
        "dnf install kernel-devel".to_owned()
    } else if has("pacman") {
        "pacman -S linux-headers".to_owned()
    } else if has("zypper") {
        "zypper install kernel-devel".to_owned()
    } else {
        "install your distribution's kernel headers package".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_key_reads_leading_numbers() {
        assert_eq!(version_key("6.12.117+deb12-amd64"), (6, 12, 117));
        assert_eq!(version_key("6.1.0-56-amd64"), (6, 1, 0));
        assert_eq!(version_key("6.8-rc1"), (6, 8, 0));
        assert_eq!(version_key("garbage"), (0, 0, 0));
    }

    #[test]
    fn select_unknown_release_names_it() {
        let err = KernelTree::select("0.0.0-nonexistent").unwrap_err();
        assert!(err.to_string().contains("0.0.0-nonexistent"), "{err}");
        assert_eq!(err.exit_code(), 3);
    }

    #[test]
    fn open_rejects_a_directory_without_makefile() {
        let dir = std::env::temp_dir().join(format!("kmod-build-notree-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = KernelTree::open(Utf8PathBuf::try_from(dir.clone()).unwrap()).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(err, Error::NotATree { .. }), "{err}");
    }
}
