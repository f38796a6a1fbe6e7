//! What makes repeated builds fast actually holds: a second `build-module`
//! with nothing changed runs neither cargo nor make, a module and its
//! runtime rebuilt after `cargo clean` reuse the shared bindings instead of
//! running bindgen, and a kernel with the same codegen as one built before
//! reuses its `core` and the build scripts' compiled dependencies.
//! Timings belong to `cargo xtask bench`; this only checks what is reused.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::SystemTime;

use camino::Utf8Path;
use common::{renamed_copy, Scratch};
use kmod_build::KernelTree;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The tests rebuild and clean the same module: one at a time.
static SAME_MODULE: Mutex<()> = Mutex::new(());

fn build_hello(tree: &Utf8Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["build-module", "hello", "--kernel", tree.as_str()])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    stderr
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every bindings cache entry for `release`, with its mtime.
fn bindings_cache(release: &str) -> BTreeMap<PathBuf, SystemTime> {
    let dir = workspace().join("target/kmod/cache").join(release);
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("bindings-")
        })
        .map(|path| {
            let time = modified(&path);
            (path, time)
        })
        .collect()
}

fn first_tree() -> Option<KernelTree> {
    kmod_build::test_support::installed_trees()?
        .into_iter()
        .next()
}

#[test]
fn no_op_build_runs_neither_cargo_nor_make() {
    let _one_at_a_time = SAME_MODULE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(tree) = first_tree() else {
        return;
    };
    build_hello(&tree.path);
    let out = workspace().join("target/kmod").join(&tree.release);
    let kbuild_ko = out.join("kbuild/hello/hello.ko");
    let before = (modified(&kbuild_ko), modified(&out.join("hello.ko")));

    let said = build_hello(&tree.path);
    assert!(said.contains("Fresh"), "{said}");
    assert!(
        !said.contains("Compiling") && !said.contains("Linking"),
        "{said}"
    );
    let after = (modified(&kbuild_ko), modified(&out.join("hello.ko")));
    assert_eq!(before, after, "make or the install step ran again");
}

#[test]
fn bindings_survive_cargo_clean() {
    let _one_at_a_time = SAME_MODULE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(tree) = first_tree() else {
        return;
    };
    build_hello(&tree.path);
    let cache = bindings_cache(&tree.release);
    assert!(!cache.is_empty(), "no bindings were cached");

    let target_dir = workspace()
        .join("target/kmod")
        .join(&tree.release)
        .join("cargo");
    let status = Command::new(env!("CARGO"))
        // The runtime's build script is the one that runs bindgen.
        .args(["clean", "--quiet", "-p", "hello", "-p", "kmod-runtime"])
        .args(["--profile", kmod_build::driver::PROFILE_NAME])
        .args(kmod_build::driver::profile_args())
        .args(["--target", tree.rust_target(), "--target-dir"])
        .arg(&target_dir)
        .current_dir(workspace())
        .status()
        .unwrap();
    assert!(status.success());

    let said = build_hello(&tree.path);
    assert!(said.contains("Linking"), "hello was not rebuilt:\n{said}");
    assert_eq!(bindings_cache(&tree.release), cache, "bindgen ran again");
}

/// The sysroots (`core` and `alloc` per codegen) built so far, in the
/// per-user cache every checkout shares.
fn sysroots() -> Vec<PathBuf> {
    let dir = kmod_build::cache_home().join("sysroot");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.join("lib/rustlib").is_dir())
        .collect();
    found.sort();
    found
}

#[test]
fn a_kernel_with_the_same_codegen_reuses_core() {
    let _one_at_a_time = SAME_MODULE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(tree) = first_tree() else {
        return;
    };
    build_hello(&tree.path);
    let before = sysroots();
    assert!(!before.is_empty(), "no sysroot after building hello");

    // What a kernel update looks like: another release, the same config.
    let release = "0.0.1-samecodegen";
    let scratch = Scratch::new("samecodegen");
    let update = scratch.0.join("update");
    renamed_copy(&tree.path, &update, release, &[]);
    let said = build_hello(&update);
    assert!(
        !said.contains("core and alloc"),
        "core was built again:\n{said}"
    );
    assert!(said.contains("Linking"), "{said}");
    // Its cargo directory started from another kernel's.
    assert!(said.contains("Seeding"), "{said}");
    assert!(
        !said.contains("Compiling bindgen"),
        "the build scripts' dependencies were compiled again:\n{said}"
    );
    let ko = workspace()
        .join("target/kmod")
        .join(release)
        .join("hello.ko");
    assert!(ko.is_file(), "{} is missing:\n{said}", ko.display());
    assert_eq!(sysroots(), before, "a sysroot was added");
    for dir in ["target/kmod", "target/kmod/cache"] {
        let _ = std::fs::remove_dir_all(workspace().join(dir).join(release));
    }
}
