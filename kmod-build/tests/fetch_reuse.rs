//! Fetched kernels (Debian's packages unpacked into the per-user cache) are
//! ordinary trees: found by discovery, marked fetched, bootable, reused.
//! Fetches one (about 40 MB, ~15 s) if the cache has none.

use kmod_build::fetch;
use kmod_build::{KernelTree, Origin};

/// The fetched trees, fetching the newest `cloud` flavour of this
/// machine's architecture the archive offers if there are none yet.
fn fetched() -> Vec<KernelTree> {
    let trees = fetch::fetched_trees();
    if !trees.is_empty() {
        return trees;
    }
    let offered = fetch::offered().expect("apt-cache search");
    let native = if cfg!(target_arch = "aarch64") {
        "cloud-arm64"
    } else {
        "cloud-amd64"
    };
    let release = offered
        .iter()
        .rev()
        .find(|release| fetch::flavour(release) == native)
        .unwrap_or_else(|| panic!("the archive offers no {native} kernel: {offered:?}"));
    vec![fetch::fetch(release).expect("fetching a kernel").tree]
}

#[test]
fn fetched_trees_are_found_marked_and_reused() {
    for tree in fetched() {
        assert_eq!(tree.origin(), Origin::Fetched, "{}", tree.path);
        assert!(tree.path.starts_with(fetch::kernels_dir()), "{}", tree.path);
        assert!(tree.image().is_file(), "{}: no image", tree.release);
        // The wrapper Makefile no longer names the host's /usr/src.
        let makefile = std::fs::read_to_string(tree.path.join("Makefile")).unwrap();
        assert!(!makefile.contains("/usr/src/"), "{makefile}");
        assert!(tree.source.starts_with(&tree.sysroot), "{}", tree.source);
        assert!(
            tree.path.join("scripts/Makefile.build").is_file(),
            "{}",
            tree.path
        );
        let selected = KernelTree::select(&tree.release).unwrap();
        assert_eq!(selected.path, tree.path);
        assert!(KernelTree::available().iter().any(|t| t.path == tree.path));
        let started = std::time::Instant::now();
        let again = fetch::fetch(&tree.release).unwrap();
        assert!(again.reused, "{} was downloaded again", tree.release);
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
        assert_eq!(again.tree.path, tree.path);
    }
}

#[test]
fn installed_trees_say_so() {
    let installed = KernelTree::installed_under(camino::Utf8Path::new("/"));
    assert!(!installed.is_empty(), "no installed tree");
    for tree in installed {
        assert_eq!(tree.origin(), Origin::Installed, "{}", tree.path);
        assert_eq!(
            tree.image().as_str(),
            format!("/boot/vmlinuz-{}", tree.release)
        );
    }
}

#[test]
fn unknown_release_gives_the_closest_offered() {
    let offered = fetch::offered().expect("apt-cache search");
    let real = offered.last().expect("the archive offers kernels");
    // One digit of the ABI number off: not offered, but close to `real`.
    let wrong = format!("{real}x");
    let error = fetch::fetch(&wrong).unwrap_err().to_string();
    assert!(error.contains(&wrong), "{error}");
    assert!(error.contains(real.as_str()), "{error}");
}
