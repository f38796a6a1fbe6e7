//! What building a module needs on this machine, installed where we can
//! (root with apt-get) or named with the exact command otherwise.

use anyhow::Result;
use xshell::{cmd, Shell};

use crate::status;

/// A Debian package that provides a missing piece.
struct Need {
    what: &'static str,
    package: &'static str,
}

/// Makes sure libclang and at least one kernel-devel tree are present.
pub fn ensure(sh: &Shell) -> Result<()> {
    let mut needs = Vec::new();
    if kmod_build::check_libclang().is_err() {
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
    if needs.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = needs.iter().map(|n| n.package).collect();
    // Under a sysroot, packages installed on this machine would not help.
    let can_install = which::which("apt-get").is_ok()
        && is_root()
        && std::env::var_os(kmod_build::SYSROOT_ENV).is_none();
    if !can_install {
        let missing: Vec<&str> = needs.iter().map(|n| n.what).collect();
        return Err(kmod_build::Error::Prerequisite {
            what: missing.join(", "),
            help: format!(
                "sudo apt-get install {} (or your distribution's equivalent)",
                packages.join(" ")
            ),
        }
        .into());
    }
    status::step("Installing", &packages.join(" "));
    cmd!(sh, "apt-get install -y {packages...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()?;
    Ok(())
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
