//! What a command needs on this machine, installed where it can be (root
//! with apt-get: `apt-get update` first, then every missing package in one
//! go) or else named in one command before anything else runs.

use camino::Utf8Path;

use super::report::Reporter;
use crate::error::{Error, Result};

/// A piece the machine may lack and the Debian package that provides it.
pub struct Need {
    pub what: String,
    pub package: String,
    present: Box<dyn Fn() -> bool>,
}

impl Need {
    pub fn new(what: &str, package: &str, present: impl Fn() -> bool + 'static) -> Need {
        Need {
            what: what.to_owned(),
            package: package.to_owned(),
            present: Box::new(present),
        }
    }

    /// A program that must be on `PATH`.
    pub fn program(program: &str, package: &str) -> Need {
        let name = program.to_owned();
        Need::new(program, package, move || which::which(&name).is_ok())
    }

    pub fn is_present(&self) -> bool {
        (self.present)()
    }
}

/// Debian's name for this machine's architecture, as package names use it.
pub fn debian_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// What every module build needs: libclang for bindgen, make, a C
/// compiler and, unless the user names a tree or discovery looks under a
/// sysroot (where this machine's packages would not help), an installed one.
/// `cache_dir` remembers where libclang was found (loading it to check
/// costs about 0.1 s).
pub fn for_build(cache_dir: &Utf8Path, tree_named: bool) -> Vec<Need> {
    let cache_dir = cache_dir.to_owned();
    let mut needs = vec![
        Need::new("libclang (for bindgen)", "libclang-dev", move || {
            crate::check_libclang_remembered(&cache_dir).is_ok()
        }),
        Need::program("make", "make"),
        Need::program("gcc", "gcc"),
    ];
    if !tree_named && std::env::var_os(crate::SYSROOT_ENV).is_none() {
        needs.push(Need::new(
            "a kernel-devel tree",
            &format!("linux-headers-{}", debian_arch()),
            || !crate::KernelTree::installed().is_empty(),
        ));
    }
    needs
}

/// Makes sure every need is met, installing what is missing if
/// `may_install` and this is root on a machine with apt-get.
pub fn ensure(needs: &[Need], may_install: bool, reporter: &dyn Reporter) -> Result<()> {
    let missing = |needs: &[Need]| -> Vec<usize> {
        (0..needs.len())
            .filter(|&i| !needs[i].is_present())
            .collect()
    };
    let mut absent = missing(needs);
    let packages = |absent: &[usize]| -> Vec<String> {
        let mut packages: Vec<String> = absent.iter().map(|&i| needs[i].package.clone()).collect();
        packages.sort();
        packages.dedup();
        packages
    };
    // Under a sysroot, packages installed on this machine would not help.
    let can_install = may_install
        && which::which("apt-get").is_ok()
        && is_root()
        && std::env::var_os(crate::SYSROOT_ENV).is_none();
    if !absent.is_empty() && can_install {
        let packages = packages(&absent);
        reporter.status("Updating", "apt-get's package lists");
        super::run_status(
            std::process::Command::new("apt-get").args(["update", "-q"]),
            "apt-get update",
        )?;
        reporter.status("Installing", &packages.join(" "));
        super::run_status(
            std::process::Command::new("apt-get")
                .args(["install", "-y", "-q"])
                .args(&packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
            "apt-get install",
        )?;
        absent = missing(needs);
    }
    if absent.is_empty() {
        return Ok(());
    }
    let what: Vec<&str> = absent.iter().map(|&i| needs[i].what.as_str()).collect();
    let sudo = if is_root() { "" } else { "sudo " };
    Err(Error::Prerequisite {
        what: what.join(", "),
        help: format!(
            "{sudo}apt-get update && {sudo}apt-get install {} (or your distribution's equivalent)",
            packages(&absent).join(" ")
        ),
    })
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .map(|line| line.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_missing_is_named_with_one_command() {
        let needs = [
            Need::new("a thing", "thing-pkg", || false),
            Need::new("another", "other-pkg", || false),
            Need::new("present", "present-pkg", || true),
        ];
        let error = ensure(&needs, false, &super::super::Human).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("a thing, another"), "{text}");
        assert!(
            text.contains("apt-get update && ")
                && text.contains("apt-get install other-pkg thing-pkg"),
            "{text}"
        );
        assert!(!text.contains("present-pkg"), "{text}");
        assert_eq!(error.exit_code(), 3);
        assert!(ensure(&needs[2..], false, &super::super::Human).is_ok());
    }
}
