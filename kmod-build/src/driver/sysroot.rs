//! The `core`, `alloc` and `compiler_builtins` every module links, built
//! once per (toolchain, codegen flags, profile) into a sysroot in the
//! per-user cache that every tree, module crate and checkout shares: a
//! kernel and its update (same mitigations, another release) build `core`
//! once, not once each.
//!
//! The sysroot is what `-Zbuild-std` would have built inside each build:
//! cargo builds it as the dependencies of a tiny `no_std` staticlib with
//! the `kmod` profile (so, under fat LTO, as bitcode), and the rlibs are
//! copied to `lib/rustlib/<target>/lib`. Module builds then pass
//! `--sysroot` instead of `-Zbuild-std`.

use std::time::Instant;

use camino::{Utf8Path, Utf8PathBuf};

use super::compile::{cargo, profile_args, PROFILE_NAME};
use super::lock::{lock_file, try_lock_file};
use super::report::Reporter;
use crate::error::{Error, Result};
use crate::files::{file_stamp, read_cache_entry, write_cache_entry, CacheEntry};
use crate::rustflags::RustFlags;
use crate::stable_hash::StableHash;

/// Written last into a sysroot's library directory: the sysroot is whole.
/// A cache entry listing each rlib with its size and mtime, so that a
/// truncated or rewritten rlib is seen before rustc trips over it.
const COMPLETE: &str = ".complete";

/// The sysroot for `flags` with the toolchain `workspace` selects, built
/// first if missing or damaged. Several builds may ask at once: one builds
/// it under a lock while the others wait, saying so.
pub(crate) fn ensure(
    workspace: &Utf8Path,
    flags: &RustFlags,
    reporter: &dyn Reporter,
) -> Result<Utf8PathBuf> {
    let toolchain = super::run_output(
        std::process::Command::new("rustc")
            .arg("-vV")
            .current_dir(workspace),
    )?;
    let mut key = StableHash::new();
    key.part(&toolchain)
        .part(flags.encoded())
        .parts(&profile_args())
        .part(flags.target);
    let key = key.hex16();
    let sysroots = crate::cache_home().join("sysroot");
    let sysroot = sysroots.join(&key);
    let lib = sysroot.join("lib/rustlib").join(flags.target).join("lib");
    if check_whole(&lib).is_ok() {
        return Ok(sysroot);
    }
    std::fs::create_dir_all(&sysroots).map_err(|e| Error::io(&sysroots, e))?;
    let _lock = lock_file(&sysroots.join(format!("{key}.lock")), || {
        reporter.status(
            "Blocking",
            &format!("waiting for file lock on the core/alloc sysroot {sysroot}"),
        )
    })?;
    collect_abandoned_builds(&sysroots, &key);
    match check_whole(&lib) {
        Ok(()) => return Ok(sysroot),
        Err(Some(why)) => {
            reporter.warning(&format!(
                "the core/alloc sysroot {sysroot} is damaged ({why}); building it again"
            ));
            std::fs::remove_dir_all(&sysroot).map_err(|e| Error::io(&sysroot, e))?;
        }
        Err(None) => {}
    }
    reporter.status(
        "Compiling",
        &format!("core and alloc into {sysroot} (once per toolchain and codegen flags)"),
    );
    let started = Instant::now();
    // Removed when dropped, on every way out, error included; a killed
    // build's is collected by the next one.
    let build_dir = tempfile::Builder::new()
        .prefix(&format!("{key}{BUILD_INFIX}"))
        .tempdir_in(&sysroots)
        .map_err(|e| Error::io(&sysroots, e))?;
    let build_dir_path =
        Utf8PathBuf::try_from(build_dir.path().to_owned()).map_err(|e| Error::NonUtf8Path {
            path: e.into_path_buf(),
        })?;
    let rlibs = build(workspace, flags, &build_dir_path)?;
    let partial = build_dir_path.join("lib");
    std::fs::create_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
    let mut manifest = String::new();
    for rlib in &rlibs {
        let name = rlib.file_name().unwrap_or_default();
        let to = partial.join(name);
        std::fs::copy(rlib, &to).map_err(|e| Error::io(&to, e))?;
        manifest += &format!("{} {name}\n", file_stamp(&to));
    }
    write_cache_entry(&partial.join(COMPLETE), &manifest)?;
    let parent = lib.parent().unwrap_or(&sysroot);
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    std::fs::rename(&partial, &lib).map_err(|e| Error::io(&lib, e))?;
    reporter.status(
        "Compiled",
        &format!("core and alloc in {:.1}s", started.elapsed().as_secs_f64()),
    );
    Ok(sysroot)
}

/// Between a sysroot's key and the random part of its build directory.
const BUILD_INFIX: &str = ".build.";

/// `Ok` if the sysroot in `lib` is whole: every rlib its manifest lists,
/// unchanged. `Err(None)`: not built; `Err(Some(why))`: damaged.
fn check_whole(lib: &Utf8Path) -> std::result::Result<(), Option<String>> {
    let manifest = lib.join(COMPLETE);
    let text = match read_cache_entry(&manifest) {
        CacheEntry::Valid(text) => text,
        CacheEntry::Missing if !lib.exists() => return Err(None),
        CacheEntry::Missing => return Err(Some(format!("{manifest} is missing"))),
        CacheEntry::Damaged(why) => return Err(Some(format!("{manifest}: {why}"))),
    };
    if !text.lines().any(|line| line.contains(" libcore-")) {
        return Err(Some(format!("{manifest} lists no libcore")));
    }
    for line in text.lines() {
        // `<size> <mtime> <name>`, as file_stamp and the build wrote it.
        let Some((stamp, name)) = line.rsplit_once(' ') else {
            return Err(Some(format!("{manifest}: malformed line `{line}`")));
        };
        let rlib = lib.join(name);
        if file_stamp(&rlib) != stamp {
            return Err(Some(format!("{rlib} changed since it was built")));
        }
    }
    Ok(())
}

/// Removes the build directories killed builds left: those whose sysroot
/// nobody is building (its lock is free), and `held`'s, whose lock we hold.
fn collect_abandoned_builds(sysroots: &Utf8Path, held: &str) {
    let Ok(entries) = sysroots.read_dir_utf8() else {
        return;
    };
    for entry in entries.flatten() {
        let Some((key, _)) = entry.file_name().split_once(BUILD_INFIX) else {
            continue;
        };
        let _other = if key == held {
            None
        } else {
            match try_lock_file(&sysroots.join(format!("{key}.lock"))) {
                Ok(Some(lock)) => Some(lock),
                _ => continue,
            }
        };
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// Builds the std crates as dependencies of a `no_std` staticlib in
/// `build_dir`; their rlibs.
fn build(
    workspace: &Utf8Path,
    flags: &RustFlags,
    build_dir: &Utf8Path,
) -> Result<Vec<Utf8PathBuf>> {
    let manifest = build_dir.join("Cargo.toml");
    write(
        &manifest,
        "# Generated by kmod-build: builds core and alloc for a sysroot.\n\
         [package]\nname = \"kmod-sysroot\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
         [lib]\npath = \"lib.rs\"\ncrate-type = [\"staticlib\"]\n\n\
         [workspace]\n",
    )?;
    write(
        &build_dir.join("lib.rs"),
        "#![no_std]\n\
         // Only here so that cargo builds the std crates (see kmod-build's driver/sysroot.rs).\n\
         #[panic_handler]\n\
         fn panic(_: &core::panic::PanicInfo) -> ! {\n    loop {}\n}\n",
    )?;
    let target_dir = build_dir.join("cargo");
    // In the workspace, so that its toolchain pin applies.
    let mut command = cargo(workspace, &flags.encoded());
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--profile", PROFILE_NAME, "--target", flags.target])
        .arg("-Zbuild-std=core,alloc,compiler_builtins")
        .arg("--target-dir")
        .arg(&target_dir)
        .args(profile_args());
    super::run_status(&mut command, "compiling core and alloc")?;
    let deps = target_dir
        .join(flags.target)
        .join(PROFILE_NAME)
        .join("deps");
    let mut rlibs = Vec::new();
    for entry in deps.read_dir_utf8().map_err(|e| Error::io(&deps, e))? {
        let path = entry.map_err(|e| Error::io(&deps, e))?.into_path();
        let name = path.file_name().unwrap_or_default();
        if path.extension() == Some("rlib") && !name.starts_with("libkmod_sysroot") {
            rlibs.push(path);
        }
    }
    if !rlibs.iter().any(|rlib| {
        rlib.file_name()
            .is_some_and(|name| name.starts_with("libcore-"))
    }) {
        return Err(Error::Command {
            command: "cargo build -Zbuild-std".into(),
            status: String::new(),
            output: format!("no libcore in {deps} after building it"),
        });
    }
    Ok(rlibs)
}

fn write(path: &Utf8Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}
