//! `cargo xtask dkms`: a DKMS source package of a module crate, so that a
//! kernel upgrade rebuilds the module through DKMS, offline.
//!
//! The package is a cut-down copy of this workspace (kmod-build,
//! kmod-runtime, xtask, the module crate, the pinned `rust-toolchain.toml`)
//! with every crate it needs vendored, including those `-Zbuild-std` takes
//! from the toolchain's `library/Cargo.lock`. `dkms.conf` builds with the same
//! `cargo xtask build-module` against `$kernel_source_dir`; DKMS picks the
//! `.ko` up from `target/kmod/$kernelver/`.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{cmd, Shell};

use crate::build_module::ModuleCrate;
use crate::{project_root, status};

#[derive(clap::Args)]
pub struct Args {
    /// The module crate to package, e.g. `hello`.
    pub module: String,
    /// Where to write `<module>-<version>/` (what `dkms add` takes).
    #[arg(long, value_name = "DIR", default_value_t = project_root().join("target/kmod/dkms"))]
    pub out_dir: Utf8PathBuf,
}

/// The package's Cargo home, relative to its root: config only.
const CARGO_HOME: &str = "cargo-home";

/// Workspace crates every module build needs besides the module itself:
/// the build driver and the runtime module crates are written on.
const DRIVER_CRATES: &[&str] = &["kmod-build", "kmod-runtime", "xtask"];

pub fn run(args: &Args) -> Result<()> {
    let sh = Shell::new()?;
    let crate_ = ModuleCrate::find(&args.module)?;
    let package = package(&sh, &crate_, &args.out_dir)?;
    status::step("Packaged", package.as_str());
    println!(
        "Register it, then build and install it for each installed kernel\n\
         (AUTOINSTALL rebuilds it for kernels installed later):\n\
         \n    sudo dkms add {package}\n    sudo dkms install {}/{} -k <release>\n",
        crate_.name, crate_.version
    );
    Ok(())
}

/// Writes the package to `<out_dir>/<module>-<version>` (replacing an old
/// one) and returns that directory.
pub fn package(sh: &Shell, crate_: &ModuleCrate, out_dir: &Utf8Path) -> Result<Utf8PathBuf> {
    let root = project_root();
    let package = out_dir.join(format!("{}-{}", crate_.name, crate_.version));
    let partial = out_dir.join(format!("{}-{}.partial", crate_.name, crate_.version));
    for dir in [&package, &partial] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {dir}"))?;
        }
    }
    let module_dir = crate_
        .manifest_dir
        .strip_prefix(&root)
        .with_context(|| format!("{} is outside the workspace", crate_.manifest_dir))?;
    status::step(
        "Copying",
        &format!("{} and {}", DRIVER_CRATES.join(", "), module_dir),
    );
    for dir in DRIVER_CRATES.iter().map(Utf8Path::new).chain([module_dir]) {
        copy_tree(&root.join(dir), &partial.join(dir))?;
    }
    for file in ["Cargo.lock", "rust-toolchain.toml"] {
        std::fs::copy(root.join(file), partial.join(file))
            .with_context(|| format!("copying {file} to {partial}"))?;
    }
    let members: Vec<&str> = DRIVER_CRATES
        .iter()
        .copied()
        .chain([module_dir.as_str()])
        .collect();
    write(
        &partial.join("Cargo.toml"),
        &workspace_manifest(&root, &members)?,
    )?;

    status::step(
        "Vendoring",
        "the workspace's crates and build-std's (cargo vendor)",
    );
    let library = toolchain_library(sh, &partial)?;
    let vendor = partial.join("vendor");
    let manifest = partial.join("Cargo.toml");
    // The library workspace uses cargo-features, which need a nightly
    // cargo or RUSTC_BOOTSTRAP, as build-std itself does.
    let vendored = cmd!(
        sh,
        "cargo vendor --manifest-path {manifest} --sync {library} {vendor}"
    )
    .env("RUSTC_BOOTSTRAP", "1")
    .ignore_status()
    .output()
    .context("running cargo vendor")?;
    if !vendored.status.success() {
        bail!(
            "cargo vendor failed:\n{}",
            String::from_utf8_lossy(&vendored.stderr)
        );
    }
    let sources = String::from_utf8(vendored.stdout)?;
    // `cargo vendor` prints the source replacement to use; paths relative
    // to the package, so it builds wherever DKMS copies it.
    let sources = sources.replace(vendor.as_str(), "vendor");
    // DKMS copies the package with `cp -r source/*`, which skips a
    // top-level `.cargo/`: the config lives in the Cargo home MAKE sets.
    write(
        &partial.join(CARGO_HOME).join("config.toml"),
        &cargo_config(&sources),
    )?;
    write(&partial.join("dkms.conf"), &dkms_conf(sh, crate_)?)?;
    std::fs::rename(&partial, &package).with_context(|| format!("renaming {partial}"))?;
    Ok(package)
}

/// The workspace `Cargo.toml` with only the packaged crates as members.
fn workspace_manifest(root: &Utf8Path, members: &[&str]) -> Result<String> {
    let path = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let quoted: Vec<String> = members.iter().map(|m| format!("{m:?}")).collect();
    let mut replaced = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            if line.starts_with("members = [") {
                replaced = true;
                format!("members = [{}]", quoted.join(", "))
            } else {
                line.to_owned()
            }
        })
        .collect();
    if !replaced {
        bail!("{path}: no one-line `members = [...]` to rewrite for the package");
    }
    Ok(lines.join("\n") + "\n")
}

/// The pinned toolchain's `library/Cargo.toml`, whose crates build-std uses.
fn toolchain_library(sh: &Shell, package: &Utf8Path) -> Result<Utf8PathBuf> {
    // rustc as rust-toolchain.toml pins it.
    let _dir = sh.push_dir(package);
    let sysroot = cmd!(sh, "rustc --print sysroot").read()?;
    let library = Utf8PathBuf::from(sysroot).join("lib/rustlib/src/rust/library/Cargo.toml");
    if !library.is_file() {
        bail!("{library} is missing: rustup component add rust-src");
    }
    Ok(library)
}

fn cargo_config(sources: &str) -> String {
    format!(
        "# Written by `cargo xtask dkms`: builds from vendor/ only.\n\
         [alias]\n\
         xtask = \"run --quiet --package xtask --\"\n\
         \n\
         [net]\n\
         offline = true\n\
         \n\
         {sources}\n"
    )
}

/// DKMS runs `MAKE` as root from kernel postinst hooks, with a minimal
/// PATH and maybe another HOME: the rustup proxy and toolchains are named
/// by the absolute paths they have here, and Cargo's home is a fresh one in
/// the package, so nothing outside it is fetched or used.
fn dkms_conf(sh: &Shell, crate_: &ModuleCrate) -> Result<String> {
    let cargo = which::which("cargo").context("finding cargo")?;
    let cargo = Utf8PathBuf::try_from(cargo)?;
    let rustup_home = cmd!(sh, "rustup show home")
        .read()
        .context("rustup show home")?;
    let name = &crate_.name;
    Ok(format!(
        r#"# Written by `cargo xtask dkms {name}`.
PACKAGE_NAME="{name}"
PACKAGE_VERSION="{version}"
BUILT_MODULE_NAME[0]="{name}"
BUILT_MODULE_LOCATION[0]="target/kmod/${{kernelver}}/"
DEST_MODULE_LOCATION[0]="/updates/dkms"
MAKE[0]="env -u CARGO_TARGET_DIR -u RUSTFLAGS RUSTUP_HOME={rustup_home} CARGO_HOME=${{dkms_tree}}/${{module}}/${{module_version}}/build/{CARGO_HOME} PATH={bin}:/usr/sbin:/usr/bin:/sbin:/bin {cargo} xtask build-module {name} --kernel ${{kernel_source_dir}} --no-install"
CLEAN="rm -rf target"
AUTOINSTALL="yes"
"#,
        version = crate_.version,
        bin = cargo.parent().unwrap_or(Utf8Path::new("/usr/bin")),
    ))
}

fn write(path: &Utf8Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {path}"))
}

/// Copies a crate's directory, without build outputs.
fn copy_tree(from: &Utf8Path, to: &Utf8Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {to}"))?;
    for entry in from
        .read_dir_utf8()
        .with_context(|| format!("reading {from}"))?
    {
        let entry = entry?;
        let (source, dest) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if entry.file_name() != "target" {
                copy_tree(source, &dest)?;
            }
        } else if kind.is_file() {
            std::fs::copy(source, &dest).with_context(|| format!("copying {source}"))?;
        }
    }
    Ok(())
}
