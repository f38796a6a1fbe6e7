//! A DKMS source package of a module crate, so that a kernel upgrade
//! rebuilds the module through DKMS, offline.
//!
//! The package holds the module crate and every path dependency it builds
//! with (the runtime), each at its place relative to the others, with the
//! workspace manifests cut down to those packages, the workspace's
//! `Cargo.lock` and `rust-toolchain.toml`, and every registry crate
//! vendored, including those `-Zbuild-std` takes from the toolchain's
//! `library/`. Of the build dependencies of crates whose build scripts
//! cargo kmod stands in for (see [`super::bindings`]: the runtime's
//! bindgen and kmod-build), and of other platforms' crates, only the
//! manifests are kept, so that the lock file still resolves. `dkms.conf`'s `MAKE` runs `cargo kmod build`
//! against `$kernel_source_dir`; DKMS picks the `.ko` up from
//! `target/kmod/$kernelver/`.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};

use super::bindings::BindingsCrate;
use super::project::{ModuleCrate, Project};
use super::report::Reporter;
use crate::error::{Error, Result};

/// The package's Cargo home, relative to its root: config only. DKMS copies
/// the package with `cp -r source/*`, which skips a top-level `.cargo/`.
const CARGO_HOME: &str = "cargo-home";

/// How the package is made.
#[derive(Debug, Clone)]
pub struct DkmsOptions {
    /// Where `<module>-<version>/` (what `dkms add` takes) is written.
    pub out_dir: Utf8PathBuf,
}

/// The package's `MAKE`: a script, so that what it needs from the machine
/// it builds on is looked for there and named when missing.
pub const MAKE_SCRIPT: &str = "kmod-dkms-make";

/// Where DKMS builds keep their caches unless `KMOD_BUILD_CACHE_HOME`
/// says otherwise: shared by every kernel's build, so an update does not
/// start from nothing.
pub const SYSTEM_CACHE: &str = "/var/cache/kmod-build";

/// The machines a package can be built on, as `uname -m` names them, and
/// the Rust targets of their hosts and of their kernels: the vendored
/// crates are those some of these need.
const MACHINES: &[(&str, &str, &str)] = &[
    ("x86_64", "x86_64-unknown-linux-gnu", "x86_64-unknown-none"),
    (
        "aarch64",
        "aarch64-unknown-linux-gnu",
        "aarch64-unknown-none-softfloat",
    ),
];

/// Writes the package to `<out_dir>/<module>-<version>` (replacing an old
/// one) and returns that directory.
pub fn package(
    project: &Project,
    module: &ModuleCrate,
    options: &DkmsOptions,
    reporter: &dyn Reporter,
) -> Result<Utf8PathBuf> {
    let (packages, stubs) = path_packages(project, module)?;
    let all_packages: Vec<Utf8PathBuf> = packages.iter().chain(&stubs).cloned().collect();
    let roots = workspace_roots(&all_packages, &project.root)?;
    let base = common_ancestor(all_packages.iter().chain(roots.keys()));
    let relative = |dir: &Utf8Path| -> Utf8PathBuf {
        dir.strip_prefix(&base)
            .map(Utf8Path::to_owned)
            .unwrap_or_default()
    };

    let out_dir = &options.out_dir;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let package = out_dir.join(format!("{}-{}", module.name, module.version));
    let partial = tempfile::Builder::new()
        .prefix(&format!(".{}-{}.", module.name, module.version))
        .suffix(".partial")
        .tempdir_in(out_dir)
        .map_err(|e| Error::io(out_dir, e))?;
    let partial_dir =
        Utf8PathBuf::try_from(partial.path().to_owned()).map_err(|e| Error::NonUtf8Path {
            path: e.into_path_buf(),
        })?;

    let names: Vec<String> = packages
        .iter()
        .map(|dir| relative(dir).to_string())
        .collect();
    reporter.status("Copying", &names.join(", "));
    for dir in &packages {
        // Not the crates' build output, nor links out of the package.
        crate::files::copy_dir(dir, &partial_dir.join(relative(dir)), &|path, kind| {
            kind.is_file() || kind.is_dir() && path.file_name() != Some("target")
        })?;
    }
    for dir in &stubs {
        stub_path_package(dir, &partial_dir.join(relative(dir)))?;
    }
    for (root, members) in &roots {
        let members: Vec<String> = members.iter().map(|m| m.to_string()).collect();
        let manifest = workspace_manifest(&root.join("Cargo.toml"), &members)?;
        write(
            &partial_dir.join(relative(root)).join("Cargo.toml"),
            &manifest,
        )?;
    }
    let module_root = partial_dir.join(relative(&project.root));
    for file in ["Cargo.lock", "rust-toolchain.toml"] {
        let from = project.root.join(file);
        if from.is_file() {
            let to = module_root.join(file);
            std::fs::copy(&from, &to).map_err(|e| Error::io(&to, e))?;
        }
    }

    reporter.status(
        "Vendoring",
        "the crates the module's build and build-std need (cargo vendor)",
    );
    let library = toolchain_library(&project.root)?;
    let vendor = partial_dir.join("vendor");
    // The library workspace uses cargo-features, which need a nightly
    // cargo or RUSTC_BOOTSTRAP, as build-std itself does.
    let sources = super::run_output(
        Command::new("cargo")
            .current_dir(&module_root)
            .env("RUSTC_BOOTSTRAP", "1")
            .arg("vendor")
            .arg("--versioned-dirs")
            .arg("--manifest-path")
            .arg(module_root.join("Cargo.toml"))
            .arg("--sync")
            .arg(&library)
            .arg(&vendor),
    )?;
    // `cargo vendor` prints the source replacement to use; paths relative
    // to the package, so it builds wherever DKMS copies it.
    let sources = sources.replace(vendor.as_str(), "vendor");
    let cargo_home = partial_dir.join(CARGO_HOME);
    write(
        &cargo_home.join("config.toml"),
        &format!(
            "# Written by kmod-build's DKMS packaging: builds from vendor/ only.\n\
             [net]\noffline = true\n\n{sources}\n"
        ),
    )?;
    let needed = needed_crates(&module_root, &module.name, &library, &cargo_home)?;
    let emptied = empty_unneeded(&vendor, &needed)?;
    reporter.status(
        "Vendored",
        &format!(
            "{} crates, {emptied} more only as manifests (other platforms; build scripts cargo kmod stands in for)",
            needed.len()
        ),
    );
    write(
        &partial_dir.join(MAKE_SCRIPT),
        &make_script(module, &relative(&project.root)),
    )?;
    let script = partial_dir.join(MAKE_SCRIPT);
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| Error::io(&script, e))?;
    write(
        &partial_dir.join("dkms.conf"),
        &dkms_conf(module, &relative(&project.root)),
    )?;
    if package.exists() {
        std::fs::remove_dir_all(&package).map_err(|e| Error::io(&package, e))?;
    }
    let partial = partial.keep();
    if let Err(e) = std::fs::rename(&partial, &package) {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(Error::io(&package, e));
    }
    reporter.status("Packaged", package.as_str());
    Ok(package)
}

/// The vendored crates (`name-version`, as `cargo vendor --versioned-dirs`
/// names their directories) some machine of [`MACHINES`] builds: the
/// module's normal and build dependencies for the host, and what
/// build-std's core, alloc and compiler_builtins need for the kernel.
fn needed_crates(
    module_root: &Utf8Path,
    module: &str,
    library: &Utf8Path,
    cargo_home: &Utf8Path,
) -> Result<BTreeSet<String>> {
    let metadata = |manifest: &Utf8Path, targets: Vec<&str>| {
        let mut options = vec!["--offline".to_owned()];
        for target in targets {
            options.extend(["--filter-platform".to_owned(), target.to_owned()]);
        }
        cargo_metadata::MetadataCommand::new()
            .manifest_path(manifest)
            .env("CARGO_HOME", cargo_home)
            .env("RUSTC_BOOTSTRAP", "1")
            .other_options(options)
            .exec()
            .map_err(|error| Error::Project {
                why: format!("cargo metadata of {manifest}: {error}"),
            })
    };
    let hosts = MACHINES.iter().map(|(_, host, _)| *host).collect();
    let kernels = MACHINES.iter().map(|(_, _, kernel)| *kernel).collect();
    let mut needed = BTreeSet::new();
    let workspace = metadata(&module_root.join("Cargo.toml"), hosts)?;
    reachable(&workspace, &[module], &mut needed)?;
    let std = metadata(library, kernels)?;
    reachable(&std, &["core", "alloc", "compiler_builtins"], &mut needed)?;
    Ok(needed)
}

/// Adds to `needed` the registry packages `roots` reach by the
/// dependencies a package build compiles (see [`shipped`]).
fn reachable(
    metadata: &cargo_metadata::Metadata,
    roots: &[&str],
    needed: &mut BTreeSet<String>,
) -> Result<()> {
    let roots = metadata
        .packages
        .iter()
        .filter(|p| roots.contains(&p.name.as_str()))
        .map(|p| &p.id);
    for package in reach(metadata, roots, shipped)? {
        if package.source.is_some() {
            needed.insert(format!("{}-{}", package.name, package.version));
        }
    }
    Ok(())
}

/// Whether a build of `package` compiles `dep`: not for dev dependencies,
/// nor for the build dependencies of a crate whose build script cargo kmod
/// stands in for.
fn shipped(package: &cargo_metadata::Package, dep: &cargo_metadata::NodeDep) -> bool {
    use cargo_metadata::DependencyKind;
    dep.dep_kinds.iter().any(|kind| match kind.kind {
        DependencyKind::Development => false,
        DependencyKind::Build => BindingsCrate::of(package).is_none(),
        _ => true,
    })
}

/// The packages `roots` reach in `metadata`'s graph by the dependencies
/// `follow` takes.
fn reach<'a>(
    metadata: &'a cargo_metadata::Metadata,
    roots: impl IntoIterator<Item = &'a cargo_metadata::PackageId>,
    follow: impl Fn(&cargo_metadata::Package, &cargo_metadata::NodeDep) -> bool,
) -> Result<Vec<&'a cargo_metadata::Package>> {
    let by_id: HashMap<_, _> = metadata.packages.iter().map(|p| (&p.id, p)).collect();
    let resolve = metadata.resolve.as_ref().ok_or_else(|| Error::Project {
        why: "cargo metadata gave no dependency graph".into(),
    })?;
    let nodes: HashMap<_, _> = resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let mut todo: Vec<_> = roots.into_iter().collect();
    let mut seen = BTreeSet::new();
    let mut reached = Vec::new();
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        let Some(package) = by_id.get(id) else {
            continue;
        };
        reached.push(*package);
        if let Some(node) = nodes.get(id) {
            todo.extend(
                node.deps
                    .iter()
                    .filter(|dep| follow(package, dep))
                    .map(|dep| &dep.pkg),
            );
        }
    }
    Ok(reached)
}

/// Empties every vendored crate not in `needed` down to its manifest and a
/// checksum file listing no files, so that cargo still resolves the lock
/// file (which names the crates of every platform) but nothing of them is
/// shipped; of the needed ones, drops what no build of them reads
/// ([`UNBUILT_DIRS`]). Returns how many were emptied.
fn empty_unneeded(vendor: &Utf8Path, needed: &BTreeSet<String>) -> Result<usize> {
    let mut emptied = 0;
    for entry in vendor.read_dir_utf8().map_err(|e| Error::io(vendor, e))? {
        let dir = entry.map_err(|e| Error::io(vendor, e))?.into_path();
        let Some(name) = dir.file_name() else {
            continue;
        };
        if !dir.is_dir() {
            continue;
        }
        if needed.contains(name) {
            drop_unbuilt(&dir)?;
            continue;
        }
        let checksum_file = dir.join(".cargo-checksum.json");
        let checksum = crate::error::read_to_string(&checksum_file)?;
        let package = serde_json::from_str::<serde_json::Value>(&checksum)
            .ok()
            .and_then(|json| json.get("package").cloned())
            .ok_or_else(|| Error::Parse {
                path: checksum_file.clone(),
                line: 0,
                why: "no package checksum".into(),
            })?;
        let manifest = crate::error::read_to_string(&dir.join("Cargo.toml"))?;
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        write(&dir.join("Cargo.toml"), &manifest)?;
        write(&dir.join("src/lib.rs"), "")?;
        write(
            &checksum_file,
            &serde_json::json!({ "files": {}, "package": package }).to_string(),
        )?;
        emptied += 1;
    }
    Ok(emptied)
}

/// A crate's directories that building its library never reads: cargo
/// verifies only the files its checksum file lists, and takes no target
/// of a dependency but its library (and build script).
const UNBUILT_DIRS: &[&str] = &["tests", "benches", "examples"];

/// Removes `dir`'s [`UNBUILT_DIRS`] and their files' checksums.
fn drop_unbuilt(dir: &Utf8Path) -> Result<()> {
    let present: Vec<&str> = UNBUILT_DIRS
        .iter()
        .copied()
        .filter(|unbuilt| dir.join(unbuilt).is_dir())
        .collect();
    if present.is_empty() {
        return Ok(());
    }
    for unbuilt in &present {
        let path = dir.join(unbuilt);
        std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
    }
    let checksum_file = dir.join(".cargo-checksum.json");
    let mut checksum: serde_json::Value =
        serde_json::from_str(&crate::error::read_to_string(&checksum_file)?).map_err(|e| {
            Error::Parse {
                path: checksum_file.clone(),
                line: e.line(),
                why: e.to_string(),
            }
        })?;
    if let Some(files) = checksum.get_mut("files").and_then(|f| f.as_object_mut()) {
        files.retain(|file, _| {
            !present
                .iter()
                .any(|unbuilt| file.starts_with(&format!("{unbuilt}/")))
        });
    }
    write(&checksum_file, &checksum.to_string())
}

/// The directories of the module and of every package it depends on by
/// path, transitively: those a build compiles (copied whole), and those
/// only the lock file needs (copied as manifests, see
/// [`stub_path_package`]).
fn path_packages(
    project: &Project,
    module: &ModuleCrate,
) -> Result<(Vec<Utf8PathBuf>, Vec<Utf8PathBuf>)> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .manifest_path(&project.manifest)
        .exec()
        .map_err(|error| Error::Project {
            why: error.to_string(),
        })?;
    let start = metadata
        .workspace_packages()
        .into_iter()
        .find(|p| p.name.as_str() == module.name)
        .map(|p| &p.id)
        .ok_or_else(|| Error::Project {
            why: format!("{} is not in cargo metadata's workspace", module.name),
        })?;
    let dirs = |packages: Vec<&cargo_metadata::Package>| -> BTreeSet<Utf8PathBuf> {
        packages
            .into_iter()
            .filter(|package| package.source.is_none())
            .filter_map(|package| package.manifest_path.parent().map(Utf8Path::to_owned))
            .collect()
    };
    let whole = dirs(reach(&metadata, [start], shipped)?);
    let stubs = dirs(reach(&metadata, [start], |_, _| true)?)
        .into_iter()
        .filter(|dir| !whole.contains(dir))
        .collect();
    Ok((whole.into_iter().collect(), stubs))
}

/// A path package no build compiles, as cargo needs it to resolve the
/// lock file: its manifest without its targets (whose files are not
/// copied) and an empty library.
fn stub_path_package(from: &Utf8Path, to: &Utf8Path) -> Result<()> {
    let path = from.join("Cargo.toml");
    let mut document: toml_edit::DocumentMut = crate::error::read_to_string(&path)?
        .parse()
        .map_err(|e| Error::Parse {
            path: path.clone(),
            line: 0,
            why: format!("{e}"),
        })?;
    for targets in ["lib", "bin", "test", "bench", "example"] {
        document.remove(targets);
    }
    if let Some(package) = document.get_mut("package").and_then(|p| p.as_table_mut()) {
        package.remove("build");
    }
    write(&to.join("Cargo.toml"), &document.to_string())?;
    write(&to.join("src/lib.rs"), "")
}

/// The workspace each path package belongs to (the nearest ancestor
/// manifest with a `[workspace]` table), with the members copied into it.
fn workspace_roots(
    packages: &[Utf8PathBuf],
    module_root: &Utf8Path,
) -> Result<HashMap<Utf8PathBuf, Vec<Utf8PathBuf>>> {
    let mut roots: HashMap<Utf8PathBuf, Vec<Utf8PathBuf>> = HashMap::new();
    roots.entry(module_root.to_owned()).or_default();
    for dir in packages {
        let mut root = None;
        for ancestor in dir.ancestors() {
            let manifest = ancestor.join("Cargo.toml");
            let Ok(text) = std::fs::read_to_string(&manifest) else {
                continue;
            };
            let document: toml_edit::DocumentMut = text.parse().map_err(|e| Error::Parse {
                path: manifest.clone(),
                line: 0,
                why: format!("{e}"),
            })?;
            if document.contains_key("workspace") {
                root = Some(ancestor.to_owned());
                break;
            }
        }
        if let Some(root) = root {
            if let Ok(member) = dir.strip_prefix(&root) {
                if !member.as_str().is_empty() {
                    roots
                        .entry(root.clone())
                        .or_default()
                        .push(member.to_owned());
                }
            }
        }
    }
    Ok(roots)
}

/// The deepest directory all `dirs` are in.
fn common_ancestor<'a>(mut dirs: impl Iterator<Item = &'a Utf8PathBuf>) -> Utf8PathBuf {
    let Some(first) = dirs.next() else {
        return Utf8PathBuf::from("/");
    };
    let mut base = first.clone();
    for dir in dirs {
        while !dir.starts_with(&base) {
            if !base.pop() {
                break;
            }
        }
    }
    base
}

/// The workspace manifest at `path` with only `members` as members.
fn workspace_manifest(path: &Utf8Path, members: &[String]) -> Result<String> {
    let text = crate::error::read_to_string(path)?;
    let mut document: toml_edit::DocumentMut = text.parse().map_err(|e| Error::Parse {
        path: path.to_owned(),
        line: 0,
        why: format!("{e}"),
    })?;
    let workspace = document
        .get_mut("workspace")
        .and_then(|item| item.as_table_mut())
        .ok_or_else(|| Error::Parse {
            path: path.to_owned(),
            line: 0,
            why: "no [workspace] table".into(),
        })?;
    workspace.insert(
        "members",
        toml_edit::value(toml_edit::Array::from_iter(members)),
    );
    workspace.remove("default-members");
    Ok(document.to_string())
}

/// The toolchain's `library/Cargo.toml`, whose crates build-std uses.
fn toolchain_library(workspace: &Utf8Path) -> Result<Utf8PathBuf> {
    // rustc as the workspace's toolchain pin selects it.
    let sysroot = super::run_output(
        Command::new("rustc")
            .args(["--print", "sysroot"])
            .current_dir(workspace),
    )?;
    let library = Utf8PathBuf::from(sysroot.trim()).join("lib/rustlib/src/rust/library/Cargo.toml");
    if !library.is_file() {
        return Err(Error::Prerequisite {
            what: format!("{library} (the Rust sources build-std needs)"),
            help: "rustup component add rust-src".into(),
        });
    }
    Ok(library)
}

/// `dkms.conf`: built by [`MAKE_SCRIPT`] for the kernel DKMS names, on
/// the machines whose kernels cargo kmod builds for.
fn dkms_conf(module: &ModuleCrate, module_root: &Utf8Path) -> String {
    let name = &module.name;
    let root = package_relative(module_root);
    let machines: Vec<&str> = MACHINES.iter().map(|(machine, _, _)| *machine).collect();
    format!(
        r#"# Written by kmod-build for the module crate {name}.
PACKAGE_NAME="{name}"
PACKAGE_VERSION="{version}"
BUILT_MODULE_NAME[0]="{name}"
BUILT_MODULE_LOCATION[0]="{root}/target/kmod/${{kernelver}}/"
DEST_MODULE_LOCATION[0]="/updates/dkms"
BUILD_EXCLUSIVE_ARCH="^({machines})$"
MAKE[0]="./{MAKE_SCRIPT} ${{kernel_source_dir}} ${{kernelver}}"
CLEAN="rm -rf {root}/target"
AUTOINSTALL="yes"
"#,
        version = module.version,
        machines = machines.join("|"),
    )
}

/// DKMS runs `MAKE` as root from kernel postinst hooks, with a minimal
/// PATH and maybe no HOME: the script looks for cargo kmod and the Rust
/// toolchain where rustup and `cargo install` put them, names what it does
/// not find in make.log, and builds offline from vendor/ with the caches
/// in [`SYSTEM_CACHE`]. DKMS builds each kernel in a fresh copy of the
/// package, so the cargo target directory lives in that cache too, one per
/// package version: a kernel update's build starts from the last kernel's
/// compiled crates and the bindings of kernels built before; the module is
/// copied to where dkms.conf says DKMS finds it.
fn make_script(module: &ModuleCrate, module_root: &Utf8Path) -> String {
    let name = &module.name;
    let version = &module.version;
    let root = package_relative(module_root);
    format!(
        r#"#!/bin/sh
# Written by kmod-build: DKMS's MAKE for the module crate {name}.
# Usage: {MAKE_SCRIPT} KERNEL_SOURCE_DIR KERNELVER
set -eu
[ $# -eq 2 ] || {{ echo "usage: $0 KERNEL_SOURCE_DIR KERNELVER" >&2; exit 2; }}
here=$(cd "$(dirname "$0")" && pwd)
PATH="$PATH:${{HOME:-/root}}/.cargo/bin:/usr/local/cargo/bin"
for tool in cargo-kmod cargo rustc; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error: $tool not found (looked in $PATH)" >&2
        case $tool in
        cargo-kmod) echo "help: install it for root: cargo install cargo-kmod" >&2 ;;
        *) echo "help: install Rust for root: https://rustup.rs" >&2 ;;
        esac
        exit 1
    fi
done
export PATH
export CARGO_HOME="$here/{CARGO_HOME}"
export KMOD_BUILD_CACHE_HOME="${{KMOD_BUILD_CACHE_HOME:-{SYSTEM_CACHE}}}"
export CARGO_TARGET_DIR="$KMOD_BUILD_CACHE_HOME/dkms/{name}-{version}/target"
unset RUSTFLAGS CARGO_BUILD_RUSTFLAGS
cd "$here/{root}"
cargo kmod build -p {name} --kernel "$1" --no-install
built="$CARGO_TARGET_DIR/kmod/$2/{name}.ko"
[ -f "$built" ] || {{ echo "error: cargo kmod built no $built (is $1 the tree of $2?)" >&2; exit 1; }}
mkdir -p "target/kmod/$2"
cp "$built" "target/kmod/$2/"
"#
    )
}

/// `dir` (relative to the package) as dkms.conf and the script say it.
fn package_relative(dir: &Utf8Path) -> String {
    if dir.as_str().is_empty() {
        ".".to_owned()
    } else {
        dir.to_string()
    }
}

fn write(path: &Utf8Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_ancestor_of_directories() {
        let dirs: Vec<Utf8PathBuf> = ["/a/b/c", "/a/b/d/e", "/a/b"]
            .iter()
            .map(Into::into)
            .collect();
        assert_eq!(common_ancestor(dirs.iter()), "/a/b");
        let apart: Vec<Utf8PathBuf> = ["/tmp/p/m", "/work/k"].iter().map(Into::into).collect();
        assert_eq!(common_ancestor(apart.iter()), "/");
    }

    #[test]
    fn workspace_members_are_cut_down() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::try_from(dir.path().join("Cargo.toml")).unwrap();
        std::fs::write(
            &path,
            "[workspace]\nmembers = [\"a\", \"b\", \"xtask\"]\ndefault-members = [\"xtask\"]\n\n\
             [workspace.package]\nedition = \"2021\" # kept\n",
        )
        .unwrap();
        let text = workspace_manifest(&path, &["a".to_owned()]).unwrap();
        let document: toml_edit::DocumentMut = text.parse().unwrap();
        let members = document["workspace"]["members"].as_array().unwrap();
        assert_eq!(
            members
                .iter()
                .filter_map(|m| m.as_str())
                .collect::<Vec<_>>(),
            ["a"]
        );
        assert!(document["workspace"].get("default-members").is_none());
        assert!(text.contains("edition = \"2021\" # kept"), "{text}");
    }

    #[test]
    fn unneeded_crates_keep_only_their_manifest_and_needed_ones_lose_their_tests() {
        let dir = tempfile::tempdir().unwrap();
        let vendor = Utf8PathBuf::try_from(dir.path().to_owned()).unwrap();
        for name in ["kept-1.0.0", "windows-sys-0.59.0"] {
            write(
                &vendor.join(name).join("Cargo.toml"),
                &format!("# {name}\n"),
            )
            .unwrap();
            write(&vendor.join(name).join("src/big.rs"), "// lots").unwrap();
            write(&vendor.join(name).join("tests/t.rs"), "// more").unwrap();
            write(
                &vendor.join(name).join(".cargo-checksum.json"),
                r#"{"files":{"src/big.rs":"00","tests/t.rs":"01"},"package":"abc"}"#,
            )
            .unwrap();
        }
        let needed = BTreeSet::from(["kept-1.0.0".to_owned()]);
        assert_eq!(empty_unneeded(&vendor, &needed).unwrap(), 1);
        let kept = vendor.join("kept-1.0.0");
        assert!(kept.join("src/big.rs").is_file());
        assert!(!kept.join("tests").exists());
        let checksum: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(kept.join(".cargo-checksum.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            checksum,
            serde_json::json!({"files": {"src/big.rs": "00"}, "package": "abc"})
        );
        let emptied = vendor.join("windows-sys-0.59.0");
        assert!(!emptied.join("src/big.rs").exists());
        assert_eq!(
            std::fs::read_to_string(emptied.join("Cargo.toml")).unwrap(),
            "# windows-sys-0.59.0\n"
        );
        let checksum: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(emptied.join(".cargo-checksum.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(checksum, serde_json::json!({"files": {}, "package": "abc"}));
    }
}
