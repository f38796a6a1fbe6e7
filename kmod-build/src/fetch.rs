//! Kernels this machine does not have installed: Debian's packages of a
//! release's devel tree (`linux-headers-<rel>`, its `-common` half or
//! halves, the matching `linux-kbuild-<ver>`) and bootable image
//! (`linux-image-<rel>`), fetched with `apt-get download` (no root, nothing
//! installed) and unpacked into `cache_home()/kernels/<rel>/`, a directory
//! laid out like `/` that discovery then treats as the tree's sysroot.

use std::process::{Command, Stdio};

use camino::{Utf8Path, Utf8PathBuf};

use crate::error::{Error, Result};
pub use crate::tree::{fetched_trees, kernels_dir};
use crate::tree::{open_fetched, KernelTree};

/// A fetched kernel, ready to build against and boot.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub tree: KernelTree,
    /// The bootable image unpacked with it.
    pub image: Utf8PathBuf,
    /// Already in the cache: nothing was downloaded.
    pub reused: bool,
    /// What the doctor found wrong with this machine for the tree (a
    /// missing cross compiler, say): the tree itself is fine.
    pub machine_problems: Vec<crate::doctor::Problem>,
}

/// Fetches `release` (e.g. `6.1.0-57-cloud-amd64`, `6.12.117+deb12-arm64`)
/// unless it is already in the cache.
pub fn fetch(release: &str) -> Result<Fetched> {
    let root = kernels_dir().join(release);
    if let Some(tree) = open_fetched(&root, release) {
        return finish(tree, true);
    }
    let arch = debian_arch(release);
    let qualified = |package: &str| match &arch {
        Some(arch) if *arch != native_arch() => format!("{package}:{arch}"),
        _ => package.to_owned(),
    };
    let headers = qualified(&format!("linux-headers-{release}"));
    let image = qualified(&format!("linux-image-{release}"));
    if !apt_knows(&headers) {
        if let Some(arch) = &arch {
            enable_architecture(arch, release)?;
        }
    }
    if !apt_knows(&headers) {
        let offered = offered()?;
        return Err(Error::UnknownRelease {
            release: release.to_owned(),
            closest: closest(release, &offered).join(", "),
        });
    }
    let mut packages = vec![headers.clone(), image];
    packages.extend(tree_dependencies(&headers)?);

    let parent = kernels_dir();
    std::fs::create_dir_all(&parent).map_err(|e| io(&parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{release}."))
        .tempdir_in(&parent)
        .map_err(|e| io(&parent, e))?;
    let staging_path = Utf8Path::from_path(staging.path())
        .ok_or_else(|| Error::UnusableFetch {
            release: release.to_owned(),
            why: format!("{} is not UTF-8", staging.path().display()),
        })?
        .to_owned();
    let debs = staging_path.join("debs");
    let unpacked = staging_path.join("root");
    for dir in [&debs, &unpacked] {
        std::fs::create_dir(dir).map_err(|e| io(dir, e))?;
    }
    let mut download = Command::new("apt-get");
    download.arg("download").args(&packages).current_dir(&debs);
    run(&mut download)?;
    for deb in debs.read_dir_utf8().map_err(|e| io(&debs, e))?.flatten() {
        unpack(deb.path(), &unpacked)?;
    }
    let tree = make_relocatable(&unpacked, release)?;
    let problems = crate::doctor::tree_problems(&tree);
    if let Some(first) = problems.first() {
        return Err(Error::UnusableFetch {
            release: release.to_owned(),
            why: format!("the doctor says: {first}"),
        });
    }
    std::fs::rename(&unpacked, &root).map_err(|e| io(&root, e))?;
    drop(staging);
    let tree = open_fetched(&root, release).ok_or_else(|| Error::UnusableFetch {
        release: release.to_owned(),
        why: format!("no tree found under {root} after moving it there"),
    })?;
    finish(tree, false)
}

fn finish(tree: KernelTree, reused: bool) -> Result<Fetched> {
    let image = tree.image();
    if !image.is_file() {
        return Err(Error::UnusableFetch {
            release: tree.release.clone(),
            why: format!("{image} is missing"),
        });
    }
    let machine_problems = crate::doctor::machine_problems(&tree);
    Ok(Fetched {
        tree,
        image,
        reused,
        machine_problems,
    })
}

/// Unpacks one `.deb` into `root`. Of an image package only what boots
/// and a few in-tree modules (to learn the loader's expectations from) are
/// kept: its drivers are hundreds of MB nobody here loads.
fn unpack(deb: &Utf8Path, root: &Utf8Path) -> Result<()> {
    let is_image = deb
        .file_name()
        .is_some_and(|name| name.starts_with("linux-image-"));
    if !is_image {
        return run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root));
    }
    let mut tarball = Command::new("dpkg-deb");
    tarball
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped());
    let command = format!("dpkg-deb --fsys-tarfile {deb} | tar -x");
    let mut producer = tarball.spawn().map_err(|source| Error::Spawn {
        program: command.clone(),
        why: source.to_string(),
    })?;
    let mut tar = Command::new("tar");
    tar.arg("-x").arg("-C").arg(root);
    for bulk in ["drivers", "net", "sound", "fs", "crypto", "security"] {
        tar.arg(format!("--exclude=*/modules/*/kernel/{bulk}"));
    }
    let stdin = producer.stdout.take().map(Stdio::from);
    tar.stdin(stdin.unwrap_or_else(Stdio::null));
    let unpacked = run(&mut tar);
    let produced = producer.wait().map_err(|source| Error::Spawn {
        program: command.clone(),
        why: source.to_string(),
    })?;
    // A failing dpkg-deb is the cause of whatever tar then says.
    if !produced.success() {
        return Err(Error::Command {
            command,
            status: format!(" ({produced})"),
            output: String::new(),
        });
    }
    unpacked
}

/// Debian's tree names its halves by absolute path
/// (`include /usr/src/linux-headers-<ver>-common/Makefile`); made relative
/// it builds wherever the cache is. `scripts`/`tools` are relative links
/// into `usr/lib/linux-kbuild-<ver>`, unpacked alongside: they must resolve
/// inside `root`, not on the host.
fn make_relocatable(root: &Utf8Path, release: &str) -> Result<KernelTree> {
    let unusable = |why: String| Error::UnusableFetch {
        release: release.to_owned(),
        why,
    };
    let tree_dir = root
        .join("usr/src")
        .join(format!("linux-headers-{release}"));
    let makefile = tree_dir.join("Makefile");
    let text = std::fs::read_to_string(&makefile).map_err(|e| io(&makefile, e))?;
    let mut rewritten = String::with_capacity(text.len());
    for line in text.lines() {
        match line.trim().strip_prefix("include /usr/src/") {
            Some(rest) => rewritten.push_str(&format!("include ../{rest}")),
            None => rewritten.push_str(line),
        }
        rewritten.push('\n');
    }
    std::fs::write(&makefile, rewritten).map_err(|e| io(&makefile, e))?;
    let canonical_root = root.canonicalize_utf8().map_err(|e| io(root, e))?;
    for link in ["scripts", "tools"] {
        let path = tree_dir.join(link);
        let Ok(target) = path.read_link_utf8() else {
            continue;
        };
        let resolved = path.canonicalize_utf8().ok();
        let inside = |real: &Utf8PathBuf| real.starts_with(&canonical_root);
        if target.is_absolute() || !resolved.as_ref().is_some_and(inside) {
            return Err(unusable(format!(
                "{path} -> {target} does not lead into the unpacked linux-kbuild"
            )));
        }
    }
    KernelTree::installed_under(root)
        .into_iter()
        .find(|tree| tree.release == release)
        .ok_or_else(|| unusable(format!("no tree for it under {root}")))
}

/// The packages the headers package needs to build modules: its `-common`
/// half (or halves) and `linux-kbuild-<ver>`, the host tools, taken for
/// this machine's architecture (`Multi-Arch: foreign`).
fn tree_dependencies(headers: &str) -> Result<Vec<String>> {
    let output = capture(Command::new("apt-cache").args([
        "depends",
        "--no-recommends",
        "--no-suggests",
        headers,
    ]))?;
    let mut packages = Vec::new();
    for line in output.lines() {
        let Some(name) = line.trim().strip_prefix("Depends:") else {
            continue;
        };
        let name = name.trim().trim_start_matches('<').trim_end_matches('>');
        let name = name.split(':').next().unwrap_or(name);
        let wanted = name.starts_with("linux-kbuild-")
            || (name.starts_with("linux-headers-") && name.contains("-common"));
        if wanted && !packages.iter().any(|p| p == name) {
            packages.push(name.to_owned());
        }
    }
    Ok(packages)
}

/// Every release the archive offers headers for (all architectures apt
/// knows), sorted by version.
pub fn offered() -> Result<Vec<String>> {
    let output = capture(Command::new("apt-cache").args([
        "search",
        "--names-only",
        "^linux-headers-[0-9]",
    ]))?;
    let mut releases: Vec<String> = output
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|package| package.strip_prefix("linux-headers-"))
        .filter(|release| !release.ends_with("-common") && !release.ends_with("-common-rt"))
        .map(str::to_owned)
        .collect();
    releases
        .sort_by(|a, b| (crate::tree::version_key(a), a).cmp(&(crate::tree::version_key(b), b)));
    releases.dedup();
    Ok(releases)
}

/// The flavour of a Debian release: what follows its ABI number
/// (`cloud-amd64` of `6.1.0-57-cloud-amd64`, `rt-arm64` of
/// `6.12.117+deb12-rt-arm64`).
pub fn flavour(release: &str) -> &str {
    let abi_end = release
        .char_indices()
        .filter(|(_, c)| *c == '-')
        .map(|(i, _)| i)
        .find(|&i| {
            release[i + 1..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
        });
    abi_end.map_or("", |i| &release[i + 1..])
}

/// The five releases of `offered` closest to `release`: those of the same
/// flavour first, then by edit distance, the newest of equally close ones.
pub fn closest(release: &str, offered: &[String]) -> Vec<String> {
    let wanted = flavour(release);
    let mut ranked: Vec<_> = offered
        .iter()
        .map(|candidate| {
            let other_flavour = flavour(candidate) != wanted;
            let distance = strsim::levenshtein(release, candidate);
            let newest = std::cmp::Reverse(crate::tree::version_key(candidate));
            (
                other_flavour,
                distance,
                newest,
                std::cmp::Reverse(candidate),
            )
        })
        .collect();
    ranked.sort();
    ranked
        .into_iter()
        .take(5)
        .map(|(_, _, _, candidate)| candidate.0.clone())
        .collect()
}

/// Debian's architecture of a release, its last `-` part if it names one.
fn debian_arch(release: &str) -> Option<String> {
    const ARCHES: &[&str] = &[
        "amd64", "arm64", "armhf", "armmp", "i386", "ppc64el", "s390x", "riscv64", "mips64el",
        "loong64",
    ];
    let last = release.rsplit('-').next()?;
    ARCHES.contains(&last).then(|| last.to_owned())
}

fn native_arch() -> String {
    capture(Command::new("dpkg").arg("--print-architecture"))
        .map(|arch| arch.trim().to_owned())
        .unwrap_or_else(|_| "amd64".to_owned())
}

fn foreign_enabled(arch: &str) -> bool {
    capture(Command::new("dpkg").arg("--print-foreign-architectures"))
        .is_ok_and(|list| list.split_whitespace().any(|a| a == arch))
}

/// Makes apt list the packages of `arch` (this machine's, or a foreign
/// one added with `dpkg --add-architecture` and `apt-get update` when
/// root); the error, naming `wanted` (what needs them), says how.
pub fn enable_architecture(arch: &str, wanted: &str) -> Result<()> {
    if arch == native_arch() || foreign_enabled(arch) {
        return Ok(());
    }
    add_architecture(wanted, arch)
}

/// `dpkg --add-architecture` and `apt-get update` when root; else the
/// error names them.
fn add_architecture(release: &str, arch: &str) -> Result<()> {
    let is_root = std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    });
    if !is_root {
        return Err(Error::ForeignArch {
            release: release.to_owned(),
            arch: arch.to_owned(),
        });
    }
    run(Command::new("dpkg").args(["--add-architecture", arch]))?;
    run(Command::new("apt-get").arg("update"))
}

fn apt_knows(package: &str) -> bool {
    Command::new("apt-cache")
        .args(["show", "--no-all-versions", package])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Runs `command` with its output shown (apt's progress).
fn run(command: &mut Command) -> Result<()> {
    let shown = describe(command);
    let status = command.status().map_err(|source| Error::Spawn {
        program: shown.clone(),
        why: source.to_string(),
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command: shown,
            status: format!(" ({status})"),
            output: String::new(),
        })
    }
}

fn capture(command: &mut Command) -> Result<String> {
    let shown = describe(command);
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| Error::Spawn {
            program: shown.clone(),
            why: source.to_string(),
        })?;
    if !output.status.success() {
        return Err(Error::Command {
            command: shown,
            status: format!(" ({})", output.status),
            output: String::new(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

fn io(path: &Utf8Path, source: std::io::Error) -> Error {
    Error::io(path, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavour_follows_the_abi_number() {
        assert_eq!(flavour("6.1.0-57-cloud-amd64"), "cloud-amd64");
        assert_eq!(flavour("6.12.117+deb12-rt-arm64"), "rt-arm64");
        assert_eq!(flavour("6.1.0-57-amd64"), "amd64");
        assert_eq!(flavour("6.8.0"), "");
    }

    #[test]
    fn debian_arch_is_the_last_part() {
        assert_eq!(debian_arch("6.1.0-57-rt-arm64").as_deref(), Some("arm64"));
        assert_eq!(
            debian_arch("6.1.0-57-cloud-amd64").as_deref(),
            Some("amd64")
        );
        assert_eq!(debian_arch("6.8.0-generic"), None);
    }

    #[test]
    fn closest_ranks_by_edit_distance() {
        let offered: Vec<String> = [
            "6.1.0-57-amd64",
            "6.1.0-57-rt-amd64",
            "6.12.117+deb12-arm64",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(closest("6.1.0-75-amd64", &offered)[0], "6.1.0-57-amd64");
        assert_eq!(
            closest("6.12.117-arm64", &offered)[0],
            "6.12.117+deb12-arm64"
        );
        let abis: Vec<String> = ["6.1.0-47-rt-amd64", "6.1.0-57-rt-amd64"]
            .map(str::to_owned)
            .to_vec();
        // Equally far from both: the newest ABI first.
        assert_eq!(closest("6.1.0-99-rt-amd64", &abis)[0], "6.1.0-57-rt-amd64");
    }
}
