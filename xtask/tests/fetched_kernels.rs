//! `cargo xtask kernels --json` and `cargo xtask fetch` against this
//! machine: every tree, installed or fetched, with its arch and image.

use std::process::Command;

use kmod_build::{KernelTree, Origin};

fn xtask(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn kernels_json_lists_every_tree_with_arch_image_and_origin() {
    let (ok, stdout, stderr) = xtask(&["kernels", "--json"]);
    assert!(ok, "{stderr}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    let available = KernelTree::available();
    assert_eq!(listed.len(), available.len(), "{stdout}");
    for (entry, tree) in listed.iter().zip(&available) {
        assert_eq!(entry["release"], tree.release.as_str(), "{entry}");
        assert_eq!(entry["path"], tree.path.as_str(), "{entry}");
        assert_eq!(entry["arch"], tree.arch.as_str(), "{entry}");
        assert_eq!(entry["origin"], tree.origin().name(), "{entry}");
        if tree.origin() == Origin::Fetched {
            // A fetched tree always comes with its image.
            assert_eq!(entry["image"], tree.image().as_str(), "{entry}");
            assert!(tree.image().is_file(), "{entry}");
        }
    }
}

#[test]
fn fetching_an_unknown_release_names_the_closest() {
    let (ok, _, stderr) = xtask(&["fetch", "6.1.0-0-nonexistent-amd64"]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("the archive has no such kernel"),
        "{stderr}"
    );
    assert!(stderr.contains("closest: 6."), "{stderr}");
}
