//! Copies of the real installed trees (Debian's 6.1 and 6.12 in CI) with one
//! piece removed or replaced at a time: the doctor names exactly that piece,
//! and `build-module` stops with the same message before make runs, writing
//! nothing to `target/kmod`.

mod common;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};
use common::Scratch;
use kmod_build::{doctor, KernelTree};

/// How a piece is broken.
#[derive(Clone, Copy)]
enum Break {
    Remove,
    /// Replaced by a copy whose ELF header says aarch64: exec gives ENOEXEC.
    WrongArch,
}

/// Mirrors `real` at `copy`: symlinks are recreated with the same target
/// (Debian's are relative, so they stay inside the scratch copy), other
/// entries become symlinks to the real ones, except along `omit`, where
/// directories are real and the file itself is left out.
fn mirror(real: &Utf8Path, copy: &Utf8Path, omit: &Utf8Path) {
    std::fs::create_dir_all(copy).unwrap();
    for entry in real.read_dir_utf8().unwrap().flatten() {
        let (from, to) = (entry.path(), copy.join(entry.file_name()));
        if from == omit {
            continue;
        }
        if let Ok(target) = from.read_link_utf8() {
            symlink(target, &to).unwrap();
        } else if omit.starts_with(from) {
            mirror(from, &to, omit);
        } else {
            symlink(from, &to).unwrap();
        }
    }
}

/// `path` with its deepest existing ancestor's symlinks resolved.
fn real_location(path: &Utf8Path) -> Utf8PathBuf {
    let mut rest = Vec::new();
    let mut current = path;
    while current.canonicalize_utf8().is_err() {
        rest.push(current.file_name().unwrap());
        current = current.parent().unwrap();
    }
    rest.iter()
        .rev()
        .fold(current.canonicalize_utf8().unwrap(), |dir, name| {
            dir.join(name)
        })
}

/// A copy of `tree`'s packages (flavour, source half, kbuild) under
/// `scratch`, with `piece` (a real path) broken; returns the copied tree.
fn broken_copy(tree: &KernelTree, scratch: &Scratch, piece: &Utf8Path, how: Break) -> Utf8PathBuf {
    let kbuild = real_location(&tree.path.join("scripts"))
        .parent()
        .unwrap()
        .to_owned();
    let mut packages = vec![tree.path.clone(), tree.source.clone(), kbuild];
    packages.dedup();
    for package in &packages {
        mirror(package, &scratch.copy_of(package), piece);
    }
    // Debian's wrapper Makefile includes the source half by absolute path.
    let makefile = scratch.copy_of(&tree.path).join("Makefile");
    if makefile.is_symlink() {
        let text = std::fs::read_to_string(&makefile).unwrap();
        std::fs::remove_file(&makefile).unwrap();
        let relocated = text.replace(" /usr/", &format!(" {}/usr/", scratch.0));
        std::fs::write(&makefile, relocated).unwrap();
    }
    if let Break::WrongArch = how {
        const E_MACHINE: usize = 18;
        const EM_AARCH64: u16 = 0xb7;
        let mut elf = std::fs::read(piece).unwrap();
        elf[E_MACHINE..E_MACHINE + 2].copy_from_slice(&EM_AARCH64.to_le_bytes());
        let copy = scratch.copy_of(piece);
        std::fs::write(&copy, elf).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    scratch.copy_of(&tree.path)
}

/// Runs the xtask binary; returns its exit code, stdout and stderr.
fn xtask(target_dir: &Utf8Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Breaks `piece` (a path relative to the tree, or to its source half with
/// `in_source`) in a copy of every installed tree, and checks the doctor,
/// `cargo xtask doctor` and `build-module` all name it.
fn names_exactly(name: &str, piece: &str, in_source: bool, how: Break, says: &str) {
    for tree in kmod_build::test_support::installed_trees().unwrap_or_default() {
        let base = if in_source { &tree.source } else { &tree.path };
        let real_piece = real_location(&base.join(piece));
        assert!(real_piece.exists(), "{real_piece}: not in the real tree");
        let scratch = Scratch::new(&format!("{name}-{}", tree.release));
        let copy = broken_copy(&tree, &scratch, &real_piece, how);

        let opened = KernelTree::open(&copy).unwrap();
        let problems = doctor::tree_problems(&opened);
        let [problem] = problems.as_slice() else {
            panic!(
                "{}: want one problem with {piece}, got {problems:#?}",
                tree.release
            );
        };
        let named = problem.path.as_deref().map(real_location);
        assert_eq!(named, Some(scratch.copy_of(&real_piece)), "{problem}");
        assert!(
            problem.to_string().contains(says),
            "no `{says}` in: {problem}"
        );
        assert_doctor_and_build_module_fail(&scratch, &copy, &problem.to_string());
    }
}

/// `cargo xtask doctor` and `build-module` on the broken `copy`: exit code 3
/// with `message`, and build-module leaves nothing under `target/kmod`.
fn assert_doctor_and_build_module_fail(scratch: &Scratch, copy: &Utf8Path, message: &str) {
    let target = scratch.0.join("target");
    let (code, stdout, stderr) = xtask(&target, &["doctor", "--kernel", copy.as_str()]);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(stdout.contains(message), "no `{message}` in:\n{stdout}");
    let (code, _, stderr) = xtask(
        &target,
        &["build-module", "hello", "--kernel", copy.as_str()],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains(message), "no `{message}` in:\n{stderr}");
    assert!(
        !stderr.contains("Compiling"),
        "reached the build:\n{stderr}"
    );
    assert!(
        !Path::new(&target.join("kmod")).exists(),
        "build-module wrote to target/kmod"
    );
}

#[test]
fn intact_copy_has_no_problems() {
    for tree in kmod_build::test_support::installed_trees().unwrap_or_default() {
        let scratch = Scratch::new(&format!("intact-{}", tree.release));
        let nothing = Utf8Path::new("/nonexistent");
        let copy = broken_copy(&tree, &scratch, nothing, Break::Remove);
        let opened = KernelTree::open(&copy).unwrap();
        assert_eq!(opened.release, tree.release);
        assert_eq!(opened.source, scratch.copy_of(&tree.source), "source half");
        assert_eq!(doctor::tree_problems(&opened), vec![], "{}", tree.release);
    }
}

#[test]
fn top_makefile() {
    names_exactly(
        "makefile",
        "Makefile",
        false,
        Break::Remove,
        "linux-headers-",
    );
}

#[test]
fn source_half_makefile() {
    names_exactly(
        "srcmakefile",
        "Makefile",
        true,
        Break::Remove,
        "Kbuild's main Makefile",
    );
}

#[test]
fn arch_makefile() {
    names_exactly(
        "archmakefile",
        "arch/x86/Makefile",
        true,
        Break::Remove,
        "linux-headers-",
    );
}

#[test]
fn kbuild_include() {
    names_exactly(
        "kbuildinclude",
        "scripts/Kbuild.include",
        true,
        Break::Remove,
        "linux-kbuild-",
    );
}

#[test]
fn makefile_modpost() {
    names_exactly(
        "makefilemodpost",
        "scripts/Makefile.modpost",
        true,
        Break::Remove,
        "linux-kbuild-",
    );
}

#[test]
fn auto_conf() {
    names_exactly(
        "autoconf",
        "include/config/auto.conf",
        false,
        Break::Remove,
        "linux-headers-",
    );
}

#[test]
fn autoconf_h() {
    names_exactly(
        "autoconfh",
        "include/generated/autoconf.h",
        false,
        Break::Remove,
        "linux-headers-",
    );
}

#[test]
fn utsrelease_h() {
    names_exactly(
        "utsrelease",
        "include/generated/utsrelease.h",
        false,
        Break::Remove,
        "vermagic",
    );
}

/// Debian keeps the module linker script at `arch/x86/module.lds`, not
/// `scripts/module.lds` (its `scripts/` is shared by all flavours).
#[test]
fn module_linker_script() {
    names_exactly(
        "modulelds",
        "arch/x86/module.lds",
        false,
        Break::Remove,
        "module linker script",
    );
}

#[test]
fn module_symvers() {
    names_exactly(
        "symvers",
        "Module.symvers",
        false,
        Break::Remove,
        "apt-get install --reinstall linux-headers-",
    );
}

#[test]
fn fixdep() {
    names_exactly(
        "fixdep",
        "scripts/basic/fixdep",
        false,
        Break::Remove,
        "linux-kbuild-",
    );
}

#[test]
fn modpost() {
    names_exactly(
        "modpost",
        "scripts/mod/modpost",
        false,
        Break::Remove,
        "linux-kbuild-",
    );
}

/// Both Debian trees have CONFIG_OBJTOOL.
#[test]
fn objtool() {
    names_exactly(
        "objtool",
        "tools/objtool/objtool",
        false,
        Break::Remove,
        "linux-kbuild-",
    );
}

#[test]
fn modpost_for_another_architecture() {
    names_exactly(
        "wrongarch",
        "scripts/mod/modpost",
        false,
        Break::WrongArch,
        "Exec format error: it is built for aarch64",
    );
}

#[test]
fn tree_path_with_a_space() {
    for tree in kmod_build::test_support::installed_trees().unwrap_or_default() {
        let scratch = Scratch::new(&format!("has space-{}", tree.release));
        let copy = broken_copy(
            &tree,
            &scratch,
            Utf8Path::new("/nonexistent"),
            Break::Remove,
        );
        let opened = KernelTree::open(&copy).unwrap();
        let problems = doctor::tree_problems(&opened);
        assert_eq!(
            problems.first().map(|p| p.subject.as_str()),
            Some(copy.as_str())
        );
        assert!(
            problems.iter().all(|p| p.why.contains("space or colon")),
            "{problems:#?}"
        );
        assert_doctor_and_build_module_fail(&scratch, &copy, &problems[0].to_string());
    }
}
