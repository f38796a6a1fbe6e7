//! `cargo kmod doctor` and `cargo kmod build` on a copy of each installed
//! tree whose `Module.symvers` has a malformed line: both exit with 3 (a
//! file in a tree is unusable, README's exit codes), naming the line.

use std::process::{Command, Output};

use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::test_support::{copy_tree, installed_trees};

fn cargo_kmod(args: &[&str], target_dir: &Utf8Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cargo-kmod"))
        .arg("kmod")
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir)
        .output()
        .unwrap()
}

#[test]
fn doctor_and_build_exit_3_on_a_malformed_symvers_line() {
    let checkout = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for tree in installed_trees().unwrap_or_default() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::try_from(dir.path().to_owned()).unwrap();
        let copy = copy_tree(&tree, &root.join(tree.path.file_name().unwrap())).unwrap();
        let symvers = copy.path.join("Module.symvers");
        let text = std::fs::read_to_string(&symvers).unwrap();
        let line = 1 + text.lines().count() / 3;
        let damaged: Vec<&str> = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i + 1 == line {
                    "0x1234\tcut_short"
                } else {
                    l
                }
            })
            .collect();
        std::fs::write(&symvers, damaged.join("\n") + "\n").unwrap();
        let at = format!("{symvers}:{line}");
        let target = root.join("target");

        let doctor = cargo_kmod(&["doctor", "--kernel", copy.path.as_str()], &target);
        let stdout = String::from_utf8_lossy(&doctor.stdout);
        assert_eq!(doctor.status.code(), Some(3), "{}: {stdout}", tree.release);
        assert!(stdout.contains("not usable"), "{stdout}");
        assert!(stdout.contains(&at), "{at} in {stdout}");

        let manifest = checkout.join("Cargo.toml");
        let build = cargo_kmod(
            &[
                "build",
                "-p",
                "hello",
                "--no-install",
                "--kernel",
                copy.path.as_str(),
                "--manifest-path",
                manifest.as_str(),
            ],
            &target,
        );
        let stderr = String::from_utf8_lossy(&build.stderr);
        assert_eq!(build.status.code(), Some(3), "{}: {stderr}", tree.release);
        assert!(stderr.contains(&at), "{at} in {stderr}");
        // Stopped by the doctor, before cargo or make ran.
        assert!(!stderr.contains("Compiling"), "{stderr}");
    }
}
