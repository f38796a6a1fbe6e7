//! Copies of the real installed trees, damaged one file at a time: the
//! doctor must read each file it vouches for as the build will, and name
//! the line the build would stop on.

use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::test_support::{copy_tree, installed_trees};
use kmod_build::{check, doctor, Error, KernelTree};

/// A copy of `tree` in a fresh temporary directory, named as Debian names
/// the tree so that the fix names its package.
fn copy(tree: &KernelTree) -> (tempfile::TempDir, KernelTree) {
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8Path::from_path(dir.path()).unwrap();
    let copy = copy_tree(tree, &root.join(tree.path.file_name().unwrap())).unwrap();
    (dir, copy)
}

/// One way of damaging a file: the new text, and the 1-based line the
/// build should stop on.
type Damage = fn(&str) -> (String, usize);

/// A line in the middle whose CRC is not hexadecimal.
fn bad_crc(text: &str) -> (String, usize) {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let at = lines.len() / 2;
    let (_, rest) = lines[at].split_once('\t').unwrap();
    lines[at] = format!("0xnotacrc\t{rest}");
    (lines.join("\n") + "\n", at + 1)
}

/// Cut off inside a line, as a write interrupted half-way leaves it.
fn truncated(text: &str) -> (String, usize) {
    let middle = text.len() / 2;
    let start = middle + text[middle..].find('\n').unwrap() + 1;
    let cut = start + text[start..].find('\t').unwrap();
    let kept = &text[..cut];
    (kept.to_owned(), kept.lines().count())
}

/// A line of garbage among the options.
fn garbled_line(text: &str) -> (String, usize) {
    let mut lines: Vec<&str> = text.lines().collect();
    let at = lines.len() / 2;
    lines.insert(at, "\u{1}\u{7f}garbage no equals sign");
    (lines.join("\n") + "\n", at + 1)
}

fn check_damage(file: &str, damage: Damage, damage_name: &str) {
    for tree in installed_trees().unwrap_or_default() {
        let (_keep, copy) = copy(&tree);
        let what = format!("{} {file} ({damage_name})", tree.release);
        // The undamaged copy is usable: what follows is the damage's doing.
        assert_eq!(doctor::tree_problems(&copy), [], "{what}: intact copy");

        let path = copy.path.join(file);
        let (text, line) = damage(&std::fs::read_to_string(&path).unwrap());
        std::fs::write(&path, text).unwrap();

        // Where the build stops: `check::Kernel::load` before any compile.
        match check::Kernel::load(&copy) {
            Err(Error::Parse {
                path: at, line: l, ..
            }) => assert_eq!((at, l), (path.clone(), line), "{what}: the build"),
            other => panic!("{what}: the build read it: {:?}", other.map(|k| k.release)),
        }

        let problems = doctor::tree_problems(&copy);
        let [problem] = problems.as_slice() else {
            panic!("{what}: {problems:#?}");
        };
        assert_eq!(problem.path.as_ref(), Some(&path), "{what}");
        assert_eq!(problem.subject, format!("{path}:{line}"), "{what}");
        let package = tree.path.file_name().unwrap();
        assert_eq!(
            problem.fix,
            format!("apt-get install --reinstall {package}"),
            "{what}"
        );
        let error = doctor::diagnose(&copy).into_result(&copy).unwrap_err();
        assert!(matches!(error, Error::BrokenTree { .. }), "{what}: {error}");
        assert_eq!(error.exit_code(), 3, "{what}: {error}");
        assert!(
            error.to_string().contains(&format!("{path}:{line}")),
            "{what}: {error}"
        );
    }
}

#[test]
fn malformed_symvers_line_is_named() {
    check_damage("Module.symvers", bad_crc, "bad CRC");
}

#[test]
fn truncated_symvers_is_named() {
    check_damage("Module.symvers", truncated, "truncated");
}

#[test]
fn garbled_auto_conf_is_named() {
    check_damage("include/config/auto.conf", garbled_line, "garbage line");
}

/// The copies the tests above damage are found where they are put.
#[test]
fn copies_keep_release_and_source_half() {
    for tree in installed_trees().unwrap_or_default() {
        let (_keep, copy) = copy(&tree);
        assert_ne!(copy.path, tree.path);
        assert_eq!(copy.release, tree.release);
        assert_eq!(copy.source, tree.source);
        assert_eq!(copy.layout, tree.layout);
        let scripts: Utf8PathBuf = copy.path.join("scripts").canonicalize_utf8().unwrap();
        assert_eq!(
            scripts,
            tree.path.join("scripts").canonicalize_utf8().unwrap()
        );
    }
}
