//! What building a module needs on this machine, installed where we can
//! (root with apt-get) or named with the exact command otherwise.

use anyhow::Result;
use camino::Utf8Path;
use xshell::{cmd, Shell};

use crate::status;

/// A missing piece and the Debian package that provides it.
struct Need {
    what: &'static str,
    package: &'static str,
}

/// `cache_dir` remembers where libclang was found: loading it to check
/// costs ~0.1 s of every build.
fn missing(cache_dir: &Utf8Path) -> Vec<Need> {
    let mut needs = Vec::new();
    if kmod_build::check_libclang_remembered(cache_dir).is_err() {
        needs.push(Need {
            what: "libclang (for bindgen)",
            package: "libclang-dev",
        });
    }
    if kmod_build::KernelTree::installed().is_empty() {
        needs.push(Need {
            what: "a kernel-devel tree",
            package: "linux-headers-amd64",
        });
    }
    if which::which("make").is_err() {
        needs.push(Need {
            what: "make",
            package: "make",
        });
    }
    needs
}

/// Makes sure libclang, make and at least one kernel-devel tree are
/// present, installing them if `may_install` and we can.
pub fn ensure(sh: &Shell, may_install: bool, cache_dir: &Utf8Path) -> Result<()> {
    let mut needs = missing(cache_dir);
    // Under a sysroot, packages installed on this machine would not help.
    let can_install = may_install
        && which::which("apt-get").is_ok()
        && is_root()
        && std::env::var_os(kmod_build::SYSROOT_ENV).is_none();
    if !needs.is_empty() && can_install {
        let packages: Vec<&str> = needs.iter().map(|n| n.package).collect();
        status::step("Installing", &packages.join(" "));
        cmd!(sh, "apt-get install -y {packages...}")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .run()?;
        needs = missing(cache_dir);
    }
    if needs.is_empty() {
        return Ok(());
    }
    let what: Vec<&str> = needs.iter().map(|n| n.what).collect();
    let packages: Vec<&str> = needs.iter().map(|n| n.package).collect();
    Err(kmod_build::Error::Prerequisite {
        what: what.join(", "),
        help: format!(
            "sudo apt-get install {} (or your distribution's equivalent)",
            packages.join(" ")
        ),
    }
    .into())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
