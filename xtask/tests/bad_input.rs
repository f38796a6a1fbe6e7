//! `cargo xtask build-module` on bad input: one clear line naming what is
//! wrong and how to fix it, a non-zero exit code, and no `.ko` written.

mod common;

use std::process::{Command, Output};

use camino::{Utf8Path, Utf8PathBuf};
use common::Scratch;

/// Runs the xtask binary with its outputs in `target_dir`.
fn xtask(target_dir: &Utf8Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let Output { status, stderr, .. } = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir)
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Runs `build-module <args>` with outputs under `scratch/<target>` and
/// asserts it exits with `code`, says every one of `says`, and leaves no
/// `.ko` anywhere under `scratch`.
fn build_module_fails(
    scratch: &Scratch,
    target: &str,
    args: &[&str],
    env: &[(&str, &str)],
    code: i32,
    says: &[&str],
) {
    let args: Vec<&str> = ["build-module"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    let (found, stderr) = xtask(&scratch.0.join(target), &args, env);
    assert_eq!(found, code, "{stderr}");
    for text in says {
        assert!(stderr.contains(text), "no `{text}` in:\n{stderr}");
    }
    let left: Vec<_> = walk(&scratch.0)
        .into_iter()
        .filter(|p| p.extension() == Some("ko"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn installed_tree() -> Option<kmod_build::KernelTree> {
    kmod_build::test_support::installed_trees()?
        .into_iter()
        .next()
}

fn walk(dir: &Utf8Path) -> Vec<Utf8PathBuf> {
    let Ok(entries) = dir.read_dir_utf8() else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            if e.path().is_dir() {
                walk(e.path())
            } else {
                vec![e.path().to_owned()]
            }
        })
        .collect()
}

#[test]
fn kernel_that_matches_nothing() {
    let scratch = Scratch::new("nokernel");
    build_module_fails(
        &scratch,
        "target",
        &["hello", "--kernel", "0.0.0-nothing"],
        &[],
        3,
        &["--kernel 0.0.0-nothing: matches no installed kernel-devel tree"],
    );
}

#[test]
fn no_tree_at_all() {
    let scratch = Scratch::new("notree");
    let sysroot = scratch.0.join("sysroot");
    std::fs::create_dir_all(&sysroot).unwrap();
    build_module_fails(
        &scratch,
        "target",
        &["hello"],
        &[("KMOD_BUILD_SYSROOT", sysroot.as_str())],
        3,
        &[
            "no kernel-devel tree found",
            "apt-get install linux-headers-amd64",
        ],
    );
}

/// A real installed tree, copied as symlinks with `Module.symvers` left out.
#[test]
fn tree_without_module_symvers() {
    let scratch = Scratch::new("nosymvers");
    let copy = scratch.0.join("tree");
    std::fs::create_dir_all(&copy).unwrap();
    let Some(tree) = installed_tree() else {
        return;
    };
    for entry in tree.path.read_dir_utf8().unwrap().flatten() {
        if entry.file_name() != "Module.symvers" {
            std::os::unix::fs::symlink(entry.path(), copy.join(entry.file_name())).unwrap();
        }
    }
    build_module_fails(
        &scratch,
        "target",
        &["hello", "--kernel", copy.as_str()],
        &[],
        3,
        &[
            &format!("{copy}/Module.symvers: missing from the kernel-devel tree"),
            "linux-headers-",
        ],
    );
}

#[test]
fn build_directory_with_a_space() {
    let scratch = Scratch::new("space");
    let Some(release) = installed_tree().map(|tree| tree.release) else {
        return;
    };
    build_module_fails(
        &scratch,
        "has space",
        &["hello", "--kernel", &release],
        &[],
        3,
        &["contains a space or colon"],
    );
}

#[test]
fn unknown_module_crate() {
    let scratch = Scratch::new("nocrate");
    build_module_fails(
        &scratch,
        "target",
        &["no-such-module"],
        &[],
        1,
        &[
            "`no-such-module` is not a module crate of the workspace",
            "module crates (staticlib packages) in ",
            "hello",
        ],
    );
}

#[test]
fn missing_libclang() {
    let scratch = Scratch::new("nolibclang");
    build_module_fails(
        &scratch,
        "target",
        &["hello", "--no-install"],
        &[("LIBCLANG_PATH", "/nonexistent")],
        3,
        &[
            "libclang (for bindgen) is missing",
            "apt-get install libclang-dev",
        ],
    );
}
