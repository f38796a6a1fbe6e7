//! `cargo xtask build-module --all-kernels` goes on past a broken tree,
//! builds the good one, and sums up with the broken tree's exit code.
//!
//! Every installed tree, plus (through `--kernel`) a copy of one with
//! `Module.symvers` left out and its release renamed, so that the broken
//! tree's output directory is its own. The good trees' builds reuse the
//! workspace's `target/kmod/<release>`. Fetched trees would be built too:
//! the run gets a cache home of its own that shares only the sysroots, so
//! it holds to the installed ones (`fetched_kernels.rs` covers fetching).

mod common;

use std::process::Command;

use camino::Utf8Path;
use common::{renamed_copy, Scratch};

const BROKEN_RELEASE: &str = "0.0.0-broken";

#[test]
fn continues_past_a_broken_tree_and_sums_up() {
    let Some(installed) = kmod_build::test_support::installed_trees() else {
        return;
    };
    let scratch = Scratch::new("allkernels");
    let broken = scratch.0.join("broken");
    renamed_copy(
        &installed[0].path,
        &broken,
        BROKEN_RELEASE,
        &["Module.symvers"],
    );

    let cache_home = scratch.0.join("cache");
    std::fs::create_dir_all(&cache_home).unwrap();
    let sysroots = kmod_build::cache_home().join("sysroot");
    std::fs::create_dir_all(&sysroots).unwrap();
    std::os::unix::fs::symlink(&sysroots, cache_home.join("sysroot")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["build-module", "hello", "--all-kernels", "--kernel"])
        .arg(&broken)
        .env("NO_COLOR", "1")
        .env(kmod_build::CACHE_HOME_ENV, &cache_home)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let line = |start: &str, release: &str| {
        stderr
            .lines()
            .find(|l| l.trim_start().starts_with(start) && l.contains(release))
            .unwrap_or_else(|| panic!("no `{start} {release}` line in:\n{stderr}"))
            .to_owned()
    };
    // The broken tree fails alone; every good one is still built.
    let failed = line("FAILED", BROKEN_RELEASE);
    assert!(
        failed.contains("broken/Module.symvers: missing from the kernel-devel tree"),
        "{failed}"
    );
    for good in &installed {
        let ok = line("ok", &good.release);
        let ko = format!("kmod/{}/hello.ko", good.release);
        assert!(ok.ends_with(&ko), "{ok}");
        let built = ok.rsplit(' ').next().unwrap();
        assert!(Utf8Path::new(built).is_file(), "{built} is missing");
    }
    let total = installed.len() + 1;
    assert!(
        stderr.contains(&format!(
            "hello failed for 1 of {total} kernel(s) ({BROKEN_RELEASE}); first failure"
        )),
        "{stderr}"
    );
}
