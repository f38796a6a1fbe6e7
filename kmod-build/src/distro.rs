//! What each distribution calls things: how it lays a tree out
//! ([`Layout`]) and which package or command provides each piece of it. Every
//! fix text the doctor and discovery print comes from here. Plain data in:
//! discovery and the doctor depend on this, never the other way.

use camino::{Utf8Path, Utf8PathBuf};

/// How a distribution packaged a tree: where its two halves live and which
/// package (or command) provides each piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layout {
    /// Debian and Ubuntu: `/usr/src/linux-headers-<release>` (generated
    /// files), its `-common` source half, host tools in `linux-kbuild-<ver>`.
    Debian,
    /// Fedora, RHEL: `/usr/src/kernels/<release>` from `kernel-devel`.
    Fedora,
    /// Arch: a real directory at `/usr/lib/modules/<release>/build`.
    Arch,
    /// openSUSE: `/usr/src/linux-<ver>-obj/<arch>/<flavor>` plus the
    /// `/usr/src/linux-<ver>` source half.
    OpenSuse,
    /// Gentoo: a full, configured source tree in `/usr/src/linux-<ver>`.
    Gentoo,
    /// NixOS: the kernel's `dev` output in `/nix/store`.
    Nix,
    /// A kernel built by hand, in place or with `O=`.
    SelfBuilt,
    Unknown,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Debian => "Debian/Ubuntu",
            Layout::Fedora => "Fedora/RHEL",
            Layout::Arch => "Arch",
            Layout::OpenSuse => "openSUSE",
            Layout::Gentoo => "Gentoo",
            Layout::Nix => "NixOS",
            Layout::SelfBuilt => "self-built",
            Layout::Unknown => "unknown",
        }
    }

    /// From the tree's (canonical) path and contents: the path is what the
    /// distro chose, so it decides first.
    pub(crate) fn detect(tree: &Utf8Path) -> Layout {
        let components: Vec<&str> = tree.iter().collect();
        let parent = |depth: usize| {
            components
                .len()
                .checked_sub(depth + 1)
                .map(|i| components[i])
                .unwrap_or("")
        };
        let has = |relative: &str| tree.join(relative).exists();
        if components.iter().any(|c| c.starts_with("linux-headers-")) {
            Layout::Debian
        } else if parent(1) == "kernels" {
            Layout::Fedora
        } else if tree.as_str().contains("/nix/store/") {
            Layout::Nix
        } else if parent(2).starts_with("linux-") && parent(2).ends_with("-obj") {
            Layout::OpenSuse
        } else if parent(0) == "build" && parent(2) == "modules" {
            Layout::Arch
        } else if parent(1) == "src" && parent(0).starts_with("linux-") && has("Kconfig") {
            Layout::Gentoo
        } else if has("Kconfig") || has("source") {
            Layout::SelfBuilt
        } else if has(".kernelvariables") {
            Layout::Debian
        } else {
            Layout::Unknown
        }
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What kind of piece is missing, which decides what provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Discovery misses only generated files and `Module.symvers`; the doctor
// (feature `check`) names the other pieces too.
#[cfg_attr(not(feature = "check"), allow(dead_code))]
pub(crate) enum Piece {
    /// Kbuild sources: Makefiles, `scripts/*`, headers.
    Source,
    /// What `make modules_prepare` generates: `auto.conf`, `autoconf.h`,
    /// `utsrelease.h`, the module linker script.
    Generated,
    /// Host programs Kbuild runs: `fixdep`, `modpost`, `objtool`.
    HostTool,
    /// `Module.symvers`, written only by a full kernel build.
    Symvers,
}

/// What the fix texts need to know of a tree.
pub(crate) struct Packaged<'a> {
    pub layout: Layout,
    pub release: &'a str,
    pub path: &'a Utf8Path,
    pub source: &'a Utf8Path,
    /// Where the distro keeps copies of `Module.symvers` outside the tree.
    pub symvers_copies: Vec<Utf8PathBuf>,
}

/// The package with `command`: `x86_64-linux-gnu-gcc-12` is in `gcc-12`,
/// a cross compiler `aarch64-linux-gnu-gcc-12` in `gcc-12-aarch64-linux-gnu`
/// (cross: unless `native` is the machine's own triplet).
#[cfg(feature = "check")]
pub(crate) fn compiler_package(command: &str, is_clang: bool, native: Option<&str>) -> String {
    if is_clang {
        return "clang lld llvm".to_owned();
    }
    let Some(at) = command.find("gcc") else {
        return command.to_owned();
    };
    let triplet = command[..at].trim_end_matches('-');
    if triplet.is_empty() || Some(triplet) == native {
        command[at..].to_owned()
    } else {
        format!("{}-{triplet}", &command[at..])
    }
}

/// The install command for `packages` on a layout's distro.
#[cfg(feature = "check")]
pub(crate) fn install(layout: Layout, packages: &str) -> String {
    match layout {
        Layout::Debian => format!("apt-get install {packages}"),
        Layout::Fedora => format!("dnf install {packages}"),
        Layout::Arch => format!("pacman -S {packages}"),
        Layout::OpenSuse => format!("zypper install {packages}"),
        _ => format!("install {packages}"),
    }
}

/// What provides a missing `piece` of a tree, for [`KernelTree`](crate::KernelTree)'s own errors.
pub(crate) fn fix_for(tree: &Packaged<'_>, piece: Piece) -> String {
    fix_at(tree, piece, None)
}

/// What provides `piece` at `path` on the tree's distro.
pub(crate) fn fix_at(tree: &Packaged<'_>, piece: Piece, path: Option<&Utf8Path>) -> String {
    let release = &tree.release;
    let package_fix = match tree.layout {
        Layout::Debian => format!("apt-get install --reinstall {}", debian_package(tree, path)),
        Layout::Fedora => format!("dnf reinstall kernel-devel-{release}"),
        Layout::Arch => format!("pacman -S {}", arch_package(release)),
        Layout::OpenSuse => {
            let in_source_half =
                path.is_some_and(|p| tree.source != tree.path && p.starts_with(tree.source));
            if in_source_half {
                "zypper install -f kernel-devel".to_owned()
            } else {
                let flavor = tree.path.file_name().unwrap_or("default");
                format!("zypper install -f kernel-{flavor}-devel")
            }
        }
        Layout::Nix => {
            // The store path: `/nix/store/<hash>-linux-<ver>-dev`.
            let components: Vec<&str> = tree.path.iter().collect();
            let end = components
                .windows(2)
                .position(|pair| pair == ["nix", "store"])
                .map_or(components.len(), |at| (at + 3).min(components.len()));
            let output: Utf8PathBuf = components[..end].iter().collect();
            format!("nix-store --repair-path {output}")
        }
        Layout::Gentoo | Layout::SelfBuilt => {
            let out = if tree.source == tree.path {
                String::new()
            } else {
                format!(" O={}", tree.path)
            };
            match piece {
                Piece::Source if tree.layout == Layout::Gentoo => {
                    "emerge --ask sys-kernel/gentoo-sources".to_owned()
                }
                Piece::Source => format!("restore the kernel source in {}", tree.source),
                Piece::Generated | Piece::HostTool => {
                    format!("make -C {}{out} modules_prepare", tree.source)
                }
                Piece::Symvers => format!(
                    "make -C {}{out} (a full build writes Module.symvers)",
                    tree.source
                ),
            }
        }
        Layout::Unknown => format!("reinstall the kernel-devel package for {release}"),
    };
    if piece != Piece::Symvers {
        return package_fix;
    }
    match tree.symvers_copies.iter().find(|copy| copy.is_file()) {
        Some(copy) => {
            let cat = if copy.extension() == Some("xz") {
                "xzcat"
            } else {
                "zcat"
            };
            format!(
                "{cat} {copy} > {}/Module.symvers, or {package_fix}",
                tree.path
            )
        }
        None => package_fix,
    }
}

/// The Debian package a path belongs to, read from the real directory it
/// is (or would be) in: `linux-kbuild-<ver>` for `scripts/` and `tools/`,
/// `linux-headers-<x>` for either half of the headers.
fn debian_package(tree: &Packaged<'_>, path: Option<&Utf8Path>) -> String {
    let located = path
        .map(real_location)
        .unwrap_or_else(|| tree.path.to_owned());
    located
        .iter()
        .find(|c| c.starts_with("linux-kbuild-") || c.starts_with("linux-headers-"))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("linux-headers-{}", tree.release))
}

/// `path` with its deepest existing ancestor's symlinks resolved.
fn real_location(path: &Utf8Path) -> Utf8PathBuf {
    let mut rest = Vec::new();
    let mut current = path;
    loop {
        if let Ok(real) = current.canonicalize_utf8() {
            return rest.iter().rev().fold(real, |dir, name| dir.join(name));
        }
        match (current.parent(), current.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                current = parent;
            }
            _ => return path.to_owned(),
        }
    }
}

/// Arch's headers package for a release: `6.6.1-arch1-1` is `linux`'s,
/// `6.6.1-1-lts` is `linux-lts`'s, likewise zen and hardened.
fn arch_package(release: &str) -> String {
    ["lts", "zen", "hardened", "rt"]
        .iter()
        .find(|variant| release.ends_with(&format!("-{variant}")))
        .map(|variant| format!("linux-{variant}-headers"))
        .unwrap_or_else(|| "linux-headers".to_owned())
}

/// The command that installs kernel headers on this machine's distro.
pub(crate) fn install_headers_command() -> String {
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
    #[cfg(feature = "check")]
    fn compiler_packages() {
        assert_eq!(
            compiler_package("x86_64-linux-gnu-gcc-12", false, Some("x86_64-linux-gnu")),
            "gcc-12"
        );
        assert_eq!(
            compiler_package("gcc", false, Some("x86_64-linux-gnu")),
            "gcc"
        );
        assert_eq!(
            compiler_package("aarch64-linux-gnu-gcc-12", false, Some("x86_64-linux-gnu")),
            "gcc-12-aarch64-linux-gnu"
        );
        assert_eq!(
            compiler_package("clang", true, Some("x86_64-linux-gnu")),
            "clang lld llvm"
        );
    }

    #[test]
    fn arch_packages() {
        assert_eq!(arch_package("6.6.1-arch1-1"), "linux-headers");
        assert_eq!(arch_package("6.6.1-1-lts"), "linux-lts-headers");
        assert_eq!(arch_package("6.6.1-zen1-1-zen"), "linux-zen-headers");
    }
}
