//! For test suites that need real kernel-devel trees (this repository's,
//! or a module project's): on a machine without any, the tests say what
//! is missing and pass; where trees are required (`cargo xtask test`, CI
//! set [`REQUIRE_TREES_ENV`]), they fail.

use camino::Utf8Path;

use crate::error::{Error, Result};
use crate::tree::KernelTree;

/// Set to make tests that need installed trees fail without them.
pub const REQUIRE_TREES_ENV: &str = "KMOD_BUILD_REQUIRE_TREES";

/// Every installed tree, or `None` (after saying why) when there is none
/// and trees are not required.
///
/// # Panics
/// When there is no tree and [`REQUIRE_TREES_ENV`] is set: the test fails.
pub fn installed_trees() -> Option<Vec<KernelTree>> {
    let trees = KernelTree::installed();
    if !trees.is_empty() {
        return Some(trees);
    }
    let missing = "no kernel-devel tree is installed (Debian: apt-get install linux-headers-amd64)";
    assert!(
        std::env::var_os(REQUIRE_TREES_ENV).is_none(),
        "{missing}, and {REQUIRE_TREES_ENV} requires one"
    );
    eprintln!("skipped: {missing}");
    None
}

/// A copy of `tree` at `to` (a new directory) that tests may damage: files
/// and directories are copied, symlinks point where the original's resolve
/// (Debian's `scripts -> ../../lib/linux-kbuild-*` is relative), so the
/// copy builds like the original.
pub fn copy_tree(tree: &KernelTree, to: &Utf8Path) -> Result<KernelTree> {
    std::fs::create_dir(to).map_err(|e| Error::io(to, e))?;
    crate::files::copy_dir(&tree.path, to, &|_, _| true)?;
    KernelTree::open(to)
}
