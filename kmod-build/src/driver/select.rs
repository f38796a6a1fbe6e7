//! Which trees a command works on, said out loud when it is not what the
//! user named.

use camino::Utf8PathBuf;

use super::report::Reporter;
use crate::error::{Error, Result};
use crate::tree::{no_tree_error, KernelTree};

/// `--kernel` values; without any, `KDIR`, else the running kernel's tree,
/// else every installed tree.
pub fn trees(specs: &[String], reporter: &dyn Reporter) -> Result<Vec<KernelTree>> {
    if !specs.is_empty() {
        return specs.iter().map(|spec| KernelTree::select(spec)).collect();
    }
    if let Some(kdir) = std::env::var_os("KDIR") {
        let path =
            Utf8PathBuf::from_path_buf(kdir.into()).map_err(|path| Error::NonUtf8Path { path })?;
        let tree = KernelTree::open(path)?;
        reporter.status(
            "Selected",
            &format!("KDIR={} ({})", tree.path, tree.release),
        );
        return Ok(vec![tree]);
    }
    if let Some(tree) = KernelTree::running() {
        reporter.status(
            "Selected",
            &format!("the running kernel's tree {} ({})", tree.release, tree.path),
        );
        return Ok(vec![tree]);
    }
    let installed = KernelTree::installed();
    if installed.is_empty() {
        return Err(no_tree_error());
    }
    let releases: Vec<&str> = installed.iter().map(|t| t.release.as_str()).collect();
    reporter.status(
        "Selected",
        &format!(
            "every installed tree ({}): the running kernel has none",
            releases.join(", ")
        ),
    );
    Ok(installed)
}

/// Every installed or fetched tree plus the `--kernel` ones, each once.
pub fn every_installed_and(specs: &[String]) -> Result<Vec<KernelTree>> {
    let mut trees = KernelTree::available();
    for spec in specs {
        let tree = KernelTree::select(spec)?;
        if !trees.contains(&tree) {
            trees.push(tree);
        }
    }
    if trees.is_empty() {
        return Err(no_tree_error());
    }
    Ok(trees)
}

/// `--kernel` values, or every installed tree (for tests and benchmarks,
/// which cover all installed kernels rather than the running one; fetched
/// ones only when named).
pub fn named_or_every_installed(specs: &[String]) -> Result<Vec<KernelTree>> {
    if specs.is_empty() {
        let trees = KernelTree::installed();
        if trees.is_empty() {
            return Err(no_tree_error());
        }
        Ok(trees)
    } else {
        specs.iter().map(|spec| KernelTree::select(spec)).collect()
    }
}
