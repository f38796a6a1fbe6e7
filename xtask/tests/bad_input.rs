//! `cargo xtask build-module` on bad input: one clear line naming what is
//! wrong and how to fix it, a non-zero exit code, and no `.ko` written.

use std::process::{Command, Output};

use camino::{Utf8Path, Utf8PathBuf};

struct Scratch(Utf8PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("kmod-xtask-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(Utf8PathBuf::try_from(dir).unwrap())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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

fn no_ko_written(target_dir: &Utf8Path) {
    let found: Vec<_> = walk(target_dir)
        .into_iter()
        .filter(|p| p.extension() == Some("ko"))
        .collect();
    assert!(found.is_empty(), "left behind: {found:?}");
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
    let (code, stderr) = xtask(
        &scratch.0,
        &["build-module", "hello", "--kernel", "0.0.0-nothing"],
        &[],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("--kernel 0.0.0-nothing: matches no installed kernel-devel tree"),
        "{stderr}"
    );
    no_ko_written(&scratch.0);
}

#[test]
fn no_tree_at_all() {
    let scratch = Scratch::new("notree");
    let sysroot = scratch.0.join("sysroot");
    std::fs::create_dir_all(&sysroot).unwrap();
    let (code, stderr) = xtask(
        &scratch.0,
        &["build-module", "hello"],
        &[("KMOD_BUILD_SYSROOT", sysroot.as_str())],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("a kernel-devel tree"), "{stderr}");
    assert!(
        stderr.contains("apt-get install linux-headers-amd64"),
        "{stderr}"
    );
    no_ko_written(&scratch.0);
}

/// A real installed tree, copied as symlinks with `Module.symvers` left out.
#[test]
fn tree_without_module_symvers() {
    let real = kmod_build::KernelTree::installed()
        .into_iter()
        .next()
        .expect("an installed kernel-devel tree");
    let scratch = Scratch::new("nosymvers");
    let copy = scratch.0.join("tree");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in real.path.read_dir_utf8().unwrap().flatten() {
        if entry.file_name() != "Module.symvers" {
            std::os::unix::fs::symlink(entry.path(), copy.join(entry.file_name())).unwrap();
        }
    }
    let (code, stderr) = xtask(
        &scratch.0,
        &["build-module", "hello", "--kernel", copy.as_str()],
        &[],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{copy}/Module.symvers: missing from the kernel-devel tree"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("linux-headers-"), "{stderr}");
    no_ko_written(&scratch.0);
}

#[test]
fn build_directory_with_a_space() {
    let scratch = Scratch::new("space");
    let target = scratch.0.join("has space");
    let release = kmod_build::KernelTree::installed()
        .into_iter()
        .next()
        .expect("an installed tree")
        .release;
    let (code, stderr) = xtask(
        &target,
        &["build-module", "hello", "--kernel", &release],
        &[],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("contains a space or colon"), "{stderr}");
    no_ko_written(&scratch.0);
}

#[test]
fn unknown_module_crate() {
    let scratch = Scratch::new("nocrate");
    let (code, stderr) = xtask(&scratch.0, &["build-module", "no-such-module"], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("`no-such-module` is not a workspace package; module crates: hello"),
        "{stderr}"
    );
}

#[test]
fn missing_libclang() {
    let scratch = Scratch::new("nolibclang");
    let (code, stderr) = xtask(
        &scratch.0,
        &["build-module", "hello", "--no-install"],
        &[("LIBCLANG_PATH", "/nonexistent")],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("libclang (for bindgen) is missing"),
        "{stderr}"
    );
    assert!(stderr.contains("apt-get install libclang-dev"), "{stderr}");
    no_ko_written(&scratch.0);
}
