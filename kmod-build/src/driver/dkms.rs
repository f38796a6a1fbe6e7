//! A DKMS source package of a module crate, so that a kernel upgrade
//! rebuilds the module through DKMS, offline.
//!
//! The package holds the module crate and every path dependency it builds
//! with (the runtime, kmod-build for the build scripts), each at its place
//! relative to the others, with the workspace manifests cut down to those
//! packages, the workspace's `Cargo.lock` and `rust-toolchain.toml`, and
//! every registry crate vendored, including those `-Zbuild-std` takes from
//! the toolchain's `library/`. `dkms.conf`'s `MAKE` runs `cargo kmod build`
//! against `$kernel_source_dir`; DKMS picks the `.ko` up from
//! `target/kmod/$kernelver/`.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};

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
    /// The `cargo-kmod` the package's `MAKE` runs; default: the one on `PATH`.
    pub cargo_kmod: Option<Utf8PathBuf>,
}

/// Writes the package to `<out_dir>/<module>-<version>` (replacing an old
/// one) and returns that directory.
pub fn package(
    project: &Project,
    module: &ModuleCrate,
    options: &DkmsOptions,
    reporter: &dyn Reporter,
) -> Result<Utf8PathBuf> {
    let cargo_kmod = match &options.cargo_kmod {
        Some(path) => path.clone(),
        None => which::which("cargo-kmod")
            .ok()
            .and_then(|p| Utf8PathBuf::try_from(p).ok())
            .ok_or_else(|| Error::Prerequisite {
                what: "cargo-kmod (the DKMS package's MAKE runs `cargo kmod build`)".into(),
                help: "cargo install cargo-kmod (or --path cargo-kmod in a kmod-build checkout)"
                    .into(),
            })?,
    };
    let packages = path_packages(project, module)?;
    let roots = workspace_roots(&packages, &project.root)?;
    let base = common_ancestor(packages.iter().chain(roots.keys()));
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
        "the workspace's crates and build-std's (cargo vendor)",
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
            .arg("--manifest-path")
            .arg(module_root.join("Cargo.toml"))
            .arg("--sync")
            .arg(&library)
            .arg(&vendor),
    )?;
    // `cargo vendor` prints the source replacement to use; paths relative
    // to the package, so it builds wherever DKMS copies it.
    let sources = sources.replace(vendor.as_str(), "vendor");
    write(
        &partial_dir.join(CARGO_HOME).join("config.toml"),
        &format!(
            "# Written by kmod-build's DKMS packaging: builds from vendor/ only.\n\
             [net]\noffline = true\n\n{sources}\n"
        ),
    )?;
    write(
        &partial_dir.join("dkms.conf"),
        &dkms_conf(module, &relative(&project.root), &cargo_kmod)?,
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

/// The directories of the module and of every package it depends on by
/// path (normal and build dependencies, transitively): what must be copied.
fn path_packages(project: &Project, module: &ModuleCrate) -> Result<Vec<Utf8PathBuf>> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .manifest_path(&project.manifest)
        .exec()
        .map_err(|error| Error::Project {
            why: error.to_string(),
        })?;
    let by_id: HashMap<_, _> = metadata.packages.iter().map(|p| (&p.id, p)).collect();
    let resolve = metadata.resolve.as_ref().ok_or_else(|| Error::Project {
        why: "cargo metadata gave no dependency graph".into(),
    })?;
    let nodes: HashMap<_, _> = resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let start = metadata
        .workspace_packages()
        .into_iter()
        .find(|p| p.name.as_str() == module.name)
        .map(|p| &p.id)
        .ok_or_else(|| Error::Project {
            why: format!("{} is not in cargo metadata's workspace", module.name),
        })?;
    let mut seen = BTreeSet::new();
    let mut todo = vec![start];
    let mut dirs = Vec::new();
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        let Some(package) = by_id.get(id) else {
            continue;
        };
        if package.source.is_some() {
            continue;
        }
        if let Some(dir) = package.manifest_path.parent() {
            dirs.push(dir.to_owned());
        }
        if let Some(node) = nodes.get(id) {
            todo.extend(node.deps.iter().map(|dep| &dep.pkg));
        }
    }
    dirs.sort();
    Ok(dirs)
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

/// DKMS runs `MAKE` as root from kernel postinst hooks, with a minimal
/// PATH and maybe another HOME: cargo-kmod, cargo and rustup are named by
/// the absolute paths they have here, and Cargo's home is the package's
/// own, so nothing outside it is fetched or used.
fn dkms_conf(
    module: &ModuleCrate,
    module_root: &Utf8Path,
    cargo_kmod: &Utf8Path,
) -> Result<String> {
    let cargo = which::which("cargo")
        .ok()
        .and_then(|p| Utf8PathBuf::try_from(p).ok())
        .ok_or_else(|| Error::Prerequisite {
            what: "cargo".into(),
            help: "install Rust with rustup".into(),
        })?;
    let rustup_home = super::run_output(Command::new("rustup").args(["show", "home"]))?;
    let bin_dirs: Vec<&str> = [cargo_kmod, &cargo]
        .iter()
        .filter_map(|path| path.parent().map(Utf8Path::as_str))
        .collect();
    let name = &module.name;
    let root = if module_root.as_str().is_empty() {
        ".".to_owned()
    } else {
        module_root.to_string()
    };
    Ok(format!(
        r#"# Written by kmod-build for the module crate {name}.
PACKAGE_NAME="{name}"
PACKAGE_VERSION="{version}"
BUILT_MODULE_NAME[0]="{name}"
BUILT_MODULE_LOCATION[0]="{root}/target/kmod/${{kernelver}}/"
DEST_MODULE_LOCATION[0]="/updates/dkms"
MAKE[0]="cd {root} && env -u CARGO_TARGET_DIR -u RUSTFLAGS RUSTUP_HOME={rustup_home} CARGO_HOME=${{dkms_tree}}/${{module}}/${{module_version}}/build/{CARGO_HOME} PATH={path}:/usr/sbin:/usr/bin:/sbin:/bin cargo kmod build -p {name} --kernel ${{kernel_source_dir}} --no-install"
CLEAN="rm -rf {root}/target"
AUTOINSTALL="yes"
"#,
        version = module.version,
        rustup_home = rustup_home.trim(),
        path = bin_dirs.join(":"),
    ))
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
}
