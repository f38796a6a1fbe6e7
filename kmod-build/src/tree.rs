use camino::{Utf8Path, Utf8PathBuf};

use crate::config::Config;
pub use crate::distro::Layout;
use crate::distro::{fix_for, install_headers_command, Packaged, Piece};
use crate::error::{Error, Result};
use crate::symvers::Symvers;

/// Where distributions link each release's build tree from.
const MODULE_ROOTS: &[&str] = &["/lib/modules", "/usr/lib/modules"];

/// Environment variable naming a directory that discovery treats as `/`
/// (for fixture trees in tests, or a target's root filesystem).
pub const SYSROOT_ENV: &str = "KMOD_BUILD_SYSROOT";

/// The sysroot discovery scans under: `KMOD_BUILD_SYSROOT`, else `/`.
fn sysroot() -> Utf8PathBuf {
    match std::env::var(SYSROOT_ENV) {
        Ok(root) if !root.is_empty() => Utf8PathBuf::from(root),
        _ => Utf8PathBuf::from("/"),
    }
}

/// `MODULE_ROOTS` under the sysroot, if one is set.
fn module_roots() -> Vec<Utf8PathBuf> {
    let root = sysroot();
    MODULE_ROOTS.iter().map(|dir| in_root(&root, dir)).collect()
}

/// `path` (absolute, as the distro names it) inside `root`.
fn in_root(root: &Utf8Path, path: &str) -> Utf8PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// The compiler a tree's kernel was built with, which Kbuild will call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiler {
    /// What Kbuild runs as `$(CC)`, e.g. `x86_64-linux-gnu-gcc-12` or `clang`.
    pub command: String,
    /// `CONFIG_CC_VERSION_TEXT`, e.g. `gcc-12 (Debian 12.2.0-14) 12.2.0`.
    pub version_text: Option<String>,
    pub is_clang: bool,
    /// For a tree of another architecture than this machine's: Kbuild's
    /// `ARCH` and the `CROSS_COMPILE` prefix of its tools.
    pub cross: Option<Cross>,
}

/// What Kbuild needs to build for another architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cross {
    /// Kbuild's `ARCH`, e.g. `arm64`.
    pub arch: String,
    /// e.g. `aarch64-linux-gnu-` (Debian's cross toolchains).
    pub prefix: String,
}

impl Compiler {
    /// Extra `make` arguments: clang-built kernels need `LLVM=1` or Kbuild
    /// falls back to gcc and rejects the config; a cross build names the
    /// architecture and the cross tools.
    pub fn make_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.is_clang {
            args.push("LLVM=1".to_owned());
        }
        if let Some(cross) = &self.cross {
            args.push(format!("ARCH={}", cross.arch));
            args.push(format!("CROSS_COMPILE={}", cross.prefix));
        }
        args
    }
}

/// Kbuild's `SRCARCH` of the machine this runs on.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" | "x86" => "x86",
        "aarch64" => "arm64",
        "powerpc64" => "powerpc",
        "riscv64" => "riscv",
        "loongarch64" => "loongarch",
        other => other,
    }
}

/// The Rust target, clang target and GNU triplet (Debian's cross tool
/// prefix) of a kernel architecture this project builds for.
pub(crate) fn arch_targets(arch: &str) -> Option<(&'static str, &'static str, &'static str)> {
    match arch {
        "x86" => Some((
            "x86_64-unknown-none",
            "x86_64-linux-gnu",
            "x86_64-linux-gnu",
        )),
        // What arch/arm64/Makefile gives its own Rust (rustc >= 1.85): no
        // FP/SIMD registers, like the C's -mgeneral-regs-only.
        "arm64" => Some((
            "aarch64-unknown-none-softfloat",
            "aarch64-linux-gnu",
            "aarch64-linux-gnu",
        )),
        _ => None,
    }
}

/// Where a tree came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// Installed into the system (or the `KMOD_BUILD_SYSROOT`) by its
    /// package manager.
    Installed,
    /// Downloaded and unpacked into the per-user cache by
    /// [`crate::fetch::fetch`].
    Fetched,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::Installed => "installed",
            Origin::Fetched => "fetched",
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A kernel-devel tree: the directory `make -C` is pointed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelTree {
    /// Absolute, symlinks resolved (Kbuild's `M=`/`-C` want real paths):
    /// Kbuild's objtree, with the generated files.
    pub path: Utf8PathBuf,
    /// `uname -r` of the kernel this tree was built with.
    pub release: String,
    /// Kbuild's srctree: where the top Makefile really lives (Debian's
    /// `-common`, openSUSE's `/usr/src/linux-<ver>`, an `O=` build's
    /// source); `path` itself for single-directory trees.
    pub source: Utf8PathBuf,
    pub layout: Layout,
    /// Kbuild's `SRCARCH` (`x86`, `arm64`, ...) from the config, else the
    /// only directory under `arch/`; `unknown` if neither says.
    pub arch: String,
    /// The directory discovery treated as `/` (where `/boot` and
    /// `/lib/modules` are looked up for this tree).
    pub sysroot: Utf8PathBuf,
}

impl KernelTree {
    /// Opens the tree at `path`: a directory with a kernel release and at
    /// least one of the files every tree has. What else is missing is
    /// [`crate::doctor`]'s business.
    pub fn open(path: impl AsRef<Utf8Path>) -> Result<KernelTree> {
        KernelTree::open_in(&sysroot(), path.as_ref())
    }

    /// Opens `given` with absolute symlinks and `include` paths resolved
    /// inside `root`.
    fn open_in(root: &Utf8Path, given: &Utf8Path) -> Result<KernelTree> {
        let path = resolve_in_root(root, given).map_err(|e| Error::NotATree {
            path: given.to_owned(),
            why: e.to_string(),
        })?;
        if !path.is_dir() {
            return Err(Error::NotATree {
                path,
                why: "not a directory".into(),
            });
        }
        if !TREE_MARKERS.iter().any(|marker| path.join(marker).exists()) {
            return Err(Error::NotATree {
                path,
                why: format!("none of {} in it", TREE_MARKERS.join(", ")),
            });
        }
        let release = read_release(&path)?;
        let source = source_tree(root, &path);
        let arch = read_arch(&path);
        let layout = Layout::detect(&path);
        Ok(KernelTree {
            path,
            release,
            source,
            layout,
            arch,
            sysroot: root.to_owned(),
        })
    }

    /// Every tree installed on this machine (under `KMOD_BUILD_SYSROOT` if
    /// set), by release; see [`KernelTree::installed_under`].
    pub fn installed() -> Vec<KernelTree> {
        KernelTree::installed_under(&sysroot())
    }

    /// Every tree this machine can build for, by release: the installed
    /// ones and the fetched ones ([`fetched_trees`]), a
    /// release that is both counted once, as installed. With
    /// `KMOD_BUILD_SYSROOT` set, only what is installed there.
    pub fn available() -> Vec<KernelTree> {
        let mut trees = KernelTree::installed();
        if std::env::var_os(SYSROOT_ENV).is_none_or(|root| root.is_empty()) {
            for fetched in fetched_trees() {
                if !trees.iter().any(|tree| tree.release == fetched.release) {
                    trees.push(fetched);
                }
            }
            trees.sort_by(|a, b| {
                (version_key(&a.release), &a.release).cmp(&(version_key(&b.release), &b.release))
            });
        }
        trees
    }

    /// Whether the package manager installed this tree or `fetch` did.
    pub fn origin(&self) -> Origin {
        let fetched = kernels_dir();
        let canonical = fetched
            .canonicalize_utf8()
            .unwrap_or_else(|_| fetched.clone());
        if self.sysroot.starts_with(&fetched) || self.sysroot.starts_with(&canonical) {
            Origin::Fetched
        } else {
            Origin::Installed
        }
    }

    /// The bootable image of this tree's kernel: `/boot/vmlinuz-<release>`
    /// in its sysroot (the unpacked `linux-image` of a fetched one). It may
    /// not exist: an installed tree's image is another package.
    pub fn image(&self) -> Utf8PathBuf {
        in_root(&self.sysroot, &format!("/boot/vmlinuz-{}", self.release))
    }

    /// Every tree under `root` wherever a distro puts them, each once (a
    /// Debian tree is both `/lib/modules/<rel>/build` and
    /// `/usr/src/linux-headers-<rel>`), sorted by release.
    pub fn installed_under(root: &Utf8Path) -> Vec<KernelTree> {
        let mut trees: Vec<KernelTree> = candidates(root)
            .iter()
            .filter_map(|path| KernelTree::open_in(root, path).ok())
            .collect();
        trees.sort_by(|a, b| {
            (version_key(&a.release), &a.release, &a.path).cmp(&(
                version_key(&b.release),
                &b.release,
                &b.path,
            ))
        });
        trees.dedup_by(|a, b| a.path == b.path);
        trees
    }

    /// The tree of the kernel this machine runs, if it is installed.
    pub fn running() -> Option<KernelTree> {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
        let root = sysroot();
        module_roots().iter().find_map(|dir| {
            KernelTree::open_in(&root, &dir.join(release.trim()).join("build")).ok()
        })
    }

    /// Resolves `--kernel <release|path>`: a path, or the release of an
    /// installed or fetched tree.
    pub fn select(spec: &str) -> Result<KernelTree> {
        if spec.contains('/') {
            return KernelTree::open(spec);
        }
        let installed = KernelTree::available();
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
                    "set {}=<tree path> or build with `cargo kmod build`",
                    crate::KERNEL_ENV
                ),
            }),
        }
    }

    /// The Rust target modules for this tree are compiled for. Only
    /// architectures [`arch_targets`] knows are built for (the doctor
    /// refuses the others); they get x86_64's name, never used.
    pub fn rust_target(&self) -> &'static str {
        arch_targets(&self.arch).map_or("x86_64-unknown-none", |(rust, _, _)| rust)
    }

    /// `--target` for libclang (bindgen) reading this tree's headers.
    pub fn clang_target(&self) -> &'static str {
        arch_targets(&self.arch).map_or("x86_64-linux-gnu", |(_, clang, _)| clang)
    }

    /// How Kbuild cross-builds for this tree, if its architecture is not
    /// this machine's.
    pub fn cross(&self) -> Option<Cross> {
        if self.arch == host_arch() {
            return None;
        }
        let (_, _, triplet) = arch_targets(&self.arch)?;
        Some(Cross {
            arch: self.arch.clone(),
            prefix: format!("{triplet}-"),
        })
    }

    /// `(major, minor, patch)` from the release, e.g. `6.12.117+deb12-amd64`.
    pub fn version(&self) -> (u32, u32, u32) {
        version_key(&self.release)
    }

    pub fn config(&self) -> Result<Config> {
        Config::load(&self.required(
            "include/config/auto.conf",
            &fix_for(&self.packaged(), Piece::Generated),
        )?)
    }

    /// The exports modpost and the loader check against: the tree's
    /// `Module.symvers`, else the copy the distro keeps next to the kernel
    /// (see [`KernelTree::symvers_path`]).
    pub fn symvers(&self) -> Result<Symvers> {
        let Some(path) = self.symvers_path() else {
            return Err(Error::MissingFile {
                path: self.path.join("Module.symvers"),
                help: fix_for(&self.packaged(), Piece::Symvers),
            });
        };
        let text = read_maybe_compressed(&path)?;
        Symvers::parse(text).map_err(|(line, why)| Error::Parse { path, line, why })
    }

    /// Where `Module.symvers` is: in the tree, else where Fedora, RHEL and
    /// openSUSE also keep it (`/boot/symvers-<rel>.gz`,
    /// `/lib/modules/<rel>/symvers.xz`, ...).
    pub fn symvers_path(&self) -> Option<Utf8PathBuf> {
        let in_tree = self.path.join("Module.symvers");
        if in_tree.is_file() {
            return Some(in_tree);
        }
        self.symvers_copies()
            .into_iter()
            .find(|path| path.is_file())
    }

    /// The compressed copies of `Module.symvers` distros ship outside the tree.
    pub(crate) fn symvers_copies(&self) -> Vec<Utf8PathBuf> {
        let root = &self.sysroot;
        let release = &self.release;
        let mut copies = Vec::new();
        for extension in ["gz", "xz"] {
            copies.push(in_root(
                root,
                &format!("/boot/symvers-{release}.{extension}"),
            ));
            for dir in MODULE_ROOTS {
                copies.push(in_root(
                    root,
                    &format!("{dir}/{release}/symvers.{extension}"),
                ));
            }
        }
        copies
    }

    /// The compiler Kbuild will run for this tree: Debian names it in
    /// `.kernelvariables`, everyone has `CONFIG_CC_VERSION_TEXT`.
    pub fn compiler(&self) -> Compiler {
        let config = self.config().ok();
        let version_text = config
            .as_ref()
            .and_then(|c| c.get("CONFIG_CC_VERSION_TEXT"))
            .map(str::to_owned);
        let is_clang = config
            .as_ref()
            .is_some_and(|c| c.is_y("CONFIG_CC_IS_CLANG"));
        let from_version_text = || {
            let first = version_text.as_deref()?.split_whitespace().next()?;
            first.contains("gcc").then(|| first.to_owned())
        };
        let cross = self.cross();
        let command = if is_clang {
            "clang".to_owned()
        } else {
            let gcc = debian_compiler(&self.path)
                .or_else(from_version_text)
                .unwrap_or_else(|| "gcc".to_owned());
            // `$(CROSS_COMPILE)gcc-12` with the prefix set only for Debian's
            // own cross builds (6.1), or a bare `gcc` from the version text.
            match &cross {
                Some(cross) if !gcc.starts_with(&cross.prefix) => {
                    let bare = gcc.find("gcc").map_or(gcc.as_str(), |at| &gcc[at..]);
                    format!("{}{bare}", cross.prefix)
                }
                _ => gcc,
            }
        };
        Compiler {
            command,
            version_text,
            is_clang,
            cross,
        }
    }

    /// A module the distro built with this kernel (`.ko` or `.ko.xz`), to
    /// learn what its loader expects.
    pub fn in_tree_module(&self) -> Option<Utf8PathBuf> {
        MODULE_ROOTS.iter().find_map(|dir| {
            find_module(
                &in_root(&self.sysroot, dir)
                    .join(&self.release)
                    .join("kernel"),
                4,
            )
        })
    }

    /// What the distro's fix texts need to know of this tree.
    pub(crate) fn packaged(&self) -> Packaged<'_> {
        Packaged {
            layout: self.layout,
            release: &self.release,
            path: &self.path,
            source: &self.source,
            symvers_copies: self.symvers_copies(),
        }
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

/// Where fetched kernels live: one sysroot-like directory per release.
pub fn kernels_dir() -> Utf8PathBuf {
    crate::cache_home().join("kernels")
}

/// Every fetched tree in the cache, by release. A directory that is not a
/// complete fetch (the temporary ones of a download under way) is skipped.
pub fn fetched_trees() -> Vec<KernelTree> {
    let Ok(entries) = kernels_dir().read_dir_utf8() else {
        return Vec::new();
    };
    let mut trees: Vec<KernelTree> = entries
        .flatten()
        .filter(|entry| !entry.file_name().starts_with('.'))
        .filter_map(|entry| open_fetched(entry.path(), entry.file_name()))
        .collect();
    trees.sort_by(|a, b| a.release.cmp(&b.release));
    trees
}

/// The tree of `release` unpacked under `root`, if it is there.
pub(crate) fn open_fetched(root: &Utf8Path, release: &str) -> Option<KernelTree> {
    KernelTree::installed_under(root)
        .into_iter()
        .find(|tree| tree.release == release)
}

/// Files at least one of which every kernel-devel tree has; a directory
/// with none of them is something else.
const TREE_MARKERS: &[&str] = &[
    "Makefile",
    ".config",
    "include/config/auto.conf",
    "Module.symvers",
];

/// Every place a distro installs trees, under `root`: `/lib/modules/*/build`
/// and `/usr/lib/modules/*/build` (most distros link these; Arch and NixOS
/// put the tree itself there), `/usr/src/kernels/*` (Fedora, RHEL),
/// `/usr/src/linux-headers-*` (Debian, Ubuntu), `/usr/src/linux-*-obj/*/*`
/// (openSUSE), `/usr/src/linux-*` (Gentoo), NixOS's `dev` outputs.
/// Directories that are not trees (Debian's `-common` half, openSUSE's
/// source half) are weeded out by [`KernelTree::open_in`].
fn candidates(root: &Utf8Path) -> Vec<Utf8PathBuf> {
    let children = |dir: &Utf8Path| -> Vec<Utf8PathBuf> {
        let mut paths: Vec<Utf8PathBuf> = dir
            .read_dir_utf8()
            .map(|entries| entries.flatten().map(|e| e.path().to_owned()).collect())
            .unwrap_or_default();
        paths.sort();
        paths
    };
    let named = |path: &Utf8Path, prefix: &str, suffix: &str| {
        path.file_name()
            .is_some_and(|name| name.starts_with(prefix) && name.ends_with(suffix))
    };
    let mut found = Vec::new();
    for dir in MODULE_ROOTS {
        found.extend(
            children(&in_root(root, dir))
                .iter()
                .map(|d| d.join("build")),
        );
    }
    found.extend(children(&in_root(root, "/usr/src/kernels")));
    for dir in children(&in_root(root, "/usr/src")) {
        if named(&dir, "linux-", "-obj") {
            found.extend(children(&dir).iter().flat_map(|arch| children(arch)));
        } else if named(&dir, "linux", "") {
            found.push(dir);
        }
    }
    for output in children(&in_root(root, "/nix/store")) {
        if output.as_str().contains("-linux-") && named(&output, "", "-dev") {
            let modules = output.join("lib/modules");
            found.extend(children(&modules).iter().map(|d| d.join("build")));
        }
    }
    found
}

/// `path` with symlinks resolved, absolute link targets taken inside `root`
/// (a sysroot's `/lib/modules/<rel>/build` points at its own `/usr/src`).
fn resolve_in_root(root: &Utf8Path, path: &Utf8Path) -> std::io::Result<Utf8PathBuf> {
    let mut path = path.to_owned();
    // Bounded like the kernel's own symlink resolution (ELOOP after 40).
    for _ in 0..40 {
        let Ok(target) = path.read_link_utf8() else {
            return path.canonicalize_utf8();
        };
        path = if target.is_absolute() {
            in_root(root, target.as_str())
        } else {
            path.parent().unwrap_or(Utf8Path::new("/")).join(target)
        };
    }
    Err(std::io::Error::other("too many levels of symbolic links"))
}

/// Kbuild's srctree: `abs_srctree` is the real directory of the top
/// Makefile, and a wrapper Makefile (Debian's flavour directory, an `O=`
/// build directory, openSUSE's obj directory) names it in its `include`.
fn source_tree(root: &Utf8Path, tree: &Utf8Path) -> Utf8PathBuf {
    let makefile = tree.join("Makefile");
    if let Some(included) = wrapper_include(&makefile) {
        let included = if root != "/" && included.is_absolute() {
            in_root(root, included.as_str())
        } else {
            tree.join(included)
        };
        if let Some(dir) = included.parent() {
            return resolve_in_root(root, dir).unwrap_or_else(|_| dir.to_owned());
        }
    }
    if let Some(dir) = makefile
        .canonicalize_utf8()
        .ok()
        .and_then(|real| real.parent().map(Utf8Path::to_owned))
    {
        return dir;
    }
    resolve_in_root(root, &tree.join("source")).unwrap_or_else(|_| tree.to_owned())
}

/// The `<dir>/Makefile` a short wrapper Makefile includes, if it is one
/// (Kbuild's real Makefile is tens of KB and includes many things).
fn wrapper_include(makefile: &Utf8Path) -> Option<Utf8PathBuf> {
    const WRAPPER_MAX_BYTES: u64 = 4096;
    if std::fs::metadata(makefile).ok()?.len() > WRAPPER_MAX_BYTES {
        return None;
    }
    std::fs::read_to_string(makefile)
        .ok()?
        .lines()
        .filter_map(|line| line.trim().strip_prefix("include "))
        .map(str::trim)
        .find(|path| path.ends_with("/Makefile") && !path.contains("$("))
        .map(Utf8PathBuf::from)
}

/// `SRCARCH` from the config's architecture symbol, else the only
/// directory under `arch/` (Debian's flavour half has just its own).
fn read_arch(tree: &Utf8Path) -> String {
    const ARCH_SYMBOLS: &[(&str, &str)] = &[
        ("CONFIG_X86", "x86"),
        ("CONFIG_ARM64", "arm64"),
        ("CONFIG_ARM", "arm"),
        ("CONFIG_RISCV", "riscv"),
        ("CONFIG_PPC", "powerpc"),
        ("CONFIG_S390", "s390"),
        ("CONFIG_LOONGARCH", "loongarch"),
        ("CONFIG_MIPS", "mips"),
    ];
    let config = ["include/config/auto.conf", ".config"]
        .iter()
        .find_map(|file| Config::load(&tree.join(file)).ok());
    if let Some(config) = config {
        if let Some((_, arch)) = ARCH_SYMBOLS.iter().find(|(name, _)| config.is_y(name)) {
            return (*arch).to_owned();
        }
    }
    let arches: Vec<String> = tree
        .join("arch")
        .read_dir_utf8()
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_owned())
                .collect()
        })
        .unwrap_or_default();
    match arches.as_slice() {
        [only] => only.clone(),
        _ => "unknown".to_owned(),
    }
}

/// Debian's `.kernelvariables`: `CC = ... $(CROSS_COMPILE)gcc-12`, with
/// `CROSS_COMPILE` set unconditionally (6.12) or only for cross builds
/// inside an `ifneq` (6.1), which a native build skips.
fn debian_compiler(tree: &Utf8Path) -> Option<String> {
    let text = std::fs::read_to_string(tree.join(".kernelvariables")).ok()?;
    let mut depth = 0usize;
    let mut cross_compile = String::new();
    let mut cc = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("ifeq") || line.starts_with("ifneq") {
            depth += 1;
        } else if line.starts_with("endif") {
            depth = depth.saturating_sub(1);
        } else if depth == 0 {
            let line = line.strip_prefix("override ").unwrap_or(line);
            if let Some((name, value)) = line.split_once('=') {
                match name.trim_end_matches([' ', ':', '?']).trim() {
                    "CROSS_COMPILE" => cross_compile = value.trim().to_owned(),
                    "CC" => cc = value.split_whitespace().last().map(str::to_owned),
                    _ => {}
                }
            }
        }
    }
    Some(cc?.replace("$(CROSS_COMPILE)", &cross_compile))
}

/// Reads a file that may be gzip- or xz-compressed (by its extension).
fn read_maybe_compressed(path: &Utf8Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let corrupt = |why: String| Error::Parse {
        path: path.to_owned(),
        line: 0,
        why,
    };
    let bytes = match path.extension() {
        Some("xz") => {
            let mut out = Vec::new();
            lzma_rs::xz_decompress(&mut &bytes[..], &mut out)
                .map_err(|e| corrupt(format!("xz: {e}")))?;
            out
        }
        Some("gz") => {
            // GzDecoder checks the trailer's CRC and length: a damaged
            // copy is an error, not a short symbol table.
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut out)
                .map_err(|e| corrupt(format!("gzip: {e}")))?;
            out
        }
        _ => bytes,
    };
    String::from_utf8(bytes).map_err(|_| corrupt("not UTF-8 text".into()))
}

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

/// The release `uname -r` reports: `UTS_RELEASE`, which vermagic uses too;
/// then Debian's `override KERNELRELEASE` in the wrapper Makefile;
/// `include/config/kernel.release` last: Debian's 6.1 trees put the
/// upstream version there (`6.1.192` for `6.1.0-56-amd64`).
fn read_release(tree: &Utf8Path) -> Result<String> {
    let read = |relative: &str| std::fs::read_to_string(tree.join(relative)).ok();
    let from_utsrelease = read("include/generated/utsrelease.h").and_then(|text| {
        let quoted = text.split_once("UTS_RELEASE")?.1.trim();
        Some(quoted.strip_prefix('"')?.split('"').next()?.to_owned())
    });
    let from_makefile = || {
        read("Makefile")?.lines().find_map(|line| {
            let value = line.strip_prefix("override KERNELRELEASE")?;
            Some(value.trim_start_matches([' ', ':', '=']).trim().to_owned())
        })
    };
    let from_kernel_release =
        || read("include/config/kernel.release").map(|text| text.trim().to_owned());
    from_utsrelease
        .or_else(from_makefile)
        .or_else(from_kernel_release)
        .filter(|release| !release.is_empty())
        .ok_or_else(|| Error::NotATree {
            path: tree.to_owned(),
            why: "no kernel release in include/generated/utsrelease.h or include/config/kernel.release".into(),
        })
}

/// Leading `major.minor.patch` of a release string; missing parts are 0.
pub(crate) fn version_key(release: &str) -> (u32, u32, u32) {
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
    let root = sysroot();
    let mut searched: Vec<String> = module_roots()
        .iter()
        .map(|dir| format!("{dir}/*/build"))
        .collect();
    searched.extend(
        [
            "/usr/src/kernels/*",
            "/usr/src/linux-headers-*",
            "/usr/src/linux-*-obj/*/*",
            "/usr/src/linux-*",
            "/nix/store/*-linux-*-dev",
        ]
        .iter()
        .map(|dir| in_root(&root, dir).into_string()),
    );
    Error::NoKernelTree {
        searched: searched.join(", "),
        install: install_headers_command(),
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
