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
        apt_update()?;
        let (from_release, from_backports) = split_by_backports(packages);
        if !from_release.is_empty() {
            reporter.status("Installing", &from_release.join(" "));
            apt_install(&[], &from_release)?;
        }
        if !from_backports.is_empty() {
            let suite = backports_suite(reporter)?;
            reporter.status(
                "Installing",
                &format!(
                    "{} from {suite} (their siblings already on this machine come from it)",
                    from_backports.join(" ")
                ),
            );
            apt_install(
                &["-t", suite.as_str(), "--no-install-recommends"],
                &from_backports,
            )?;
        }
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

fn apt_update() -> Result<()> {
    super::run_status(
        std::process::Command::new("apt-get").args(["update", "-q"]),
        "apt-get update",
    )
}

fn apt_install(options: &[&str], packages: &[String]) -> Result<()> {
    super::run_status(
        std::process::Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(options)
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install",
    )
}

/// Splits `packages` into those apt takes from the release and those built
/// from a source package this machine already has from backports (e.g.
/// qemu-system-x86 beside qemu-utils from bookworm-backports): the
/// release's older version of those breaks against what is installed.
fn split_by_backports(packages: Vec<String>) -> (Vec<String>, Vec<String>) {
    let Ok(installed) = super::run_output(std::process::Command::new("dpkg-query").args([
        "-W",
        "-f",
        "${source:Package} ${Version}\\n",
    ])) else {
        return (packages, Vec::new());
    };
    let sources = backported_sources(&installed);
    if sources.is_empty() {
        return (packages, Vec::new());
    }
    packages.into_iter().partition(|package| {
        let source = super::run_output(std::process::Command::new("apt-cache").args([
            "show",
            "--no-all-versions",
            package,
        ]))
        .ok()
        .map(|record| source_package(&record, package));
        !source.is_some_and(|source| sources.contains(&source))
    })
}

/// Source packages of `dpkg-query -W -f '${source:Package} ${Version}\n'`
/// lines whose version is a backport (`~bpo`).
fn backported_sources(installed: &str) -> std::collections::BTreeSet<String> {
    installed
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(_, version)| version.contains("~bpo"))
        .map(|(source, _)| source.to_owned())
        .collect()
}

/// The source package an `apt-cache show` record of `package` names
/// (`Source: qemu (1:7.2)`), or the package itself when it names none.
fn source_package(record: &str, package: &str) -> String {
    record
        .lines()
        .find_map(|line| line.strip_prefix("Source:"))
        .and_then(|source| source.split_whitespace().next())
        .unwrap_or(package)
        .to_owned()
}

/// `<codename>-backports`, added to apt's sources (and the lists updated)
/// when apt does not know it yet.
fn backports_suite(reporter: &dyn Reporter) -> Result<String> {
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = os_release
        .lines()
        .find_map(|line| line.strip_prefix("VERSION_CODENAME="))
        .map(|name| name.trim_matches('"').to_owned())
        .filter(|name| !name.is_empty())
        .ok_or_else(|| Error::Prerequisite {
            what: "the name of this Debian release (VERSION_CODENAME in /etc/os-release)".into(),
            help: "install the packages above from your backports suite by hand".into(),
        })?;
    let suite = format!("{codename}-backports");
    let policy = super::run_output(std::process::Command::new("apt-cache").arg("policy"))?;
    if !policy.contains(&format!(" {suite}/")) {
        let list = Utf8Path::new("/etc/apt/sources.list.d/kmod-build-backports.sources");
        reporter.status("Adding", &format!("{suite} to apt's sources ({list})"));
        std::fs::write(
            list,
            format!(
                "# Added by kmod-build: packages whose siblings here come from {suite}.\n\
                 Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {suite}\n\
                 Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            ),
        )
        .map_err(|e| Error::io(list, e))?;
        apt_update()?;
    }
    Ok(suite)
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

    #[test]
    fn backports_are_told_by_the_installed_versions() {
        let installed = "qemu 1:10.0.2+ds-2+deb13u1~bpo12+1\nqemu 1:10.0.2+ds-2+deb13u1~bpo12+1\n\
                         busybox 1:1.35.0-4+deb12u1\nosslsigncode 2.9-1~bpo12+1\n";
        let sources: Vec<String> = backported_sources(installed).into_iter().collect();
        assert_eq!(sources, ["osslsigncode", "qemu"]);
        let record = "Package: qemu-system-x86\nSource: qemu (1:7.2+dfsg-7)\nVersion: 1:7.2\n";
        assert_eq!(source_package(record, "qemu-system-x86"), "qemu");
        assert_eq!(source_package("Package: kmod\n", "kmod"), "kmod");
    }
}
