//! Which trees a command works on, said out loud when it is not what the
//! user named.

use camino::Utf8PathBuf;

use super::report::Reporter;
use crate::error::{Error, Result};
use crate::tree::{no_tree_error, version_key, KernelTree};

/// `--kernel` values; without any, `KDIR`, else the running kernel's tree,
/// else every installed tree.
pub fn trees(specs: &[String], reporter: &dyn Reporter) -> Result<Vec<KernelTree>> {
    if !specs.is_empty() {
        return specs.iter().map(|spec| KernelTree::select(spec)).collect();
    }
    if let Some(tree) = kdir_or_running(reporter)? {
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

/// Exactly one tree, for what cannot work on several (an editor's view of
/// the bindings): `--kernel`, else `KDIR`, else the running kernel's tree,
/// else the installed tree of the newest release.
pub fn one_tree(spec: Option<&str>, reporter: &dyn Reporter) -> Result<KernelTree> {
    if let Some(spec) = spec {
        return KernelTree::select(spec);
    }
    if let Some(tree) = kdir_or_running(reporter)? {
        return Ok(tree);
    }
    let newest = KernelTree::installed()
        .into_iter()
        .max_by_key(|tree| (version_key(&tree.release), tree.release.clone()))
        .ok_or_else(no_tree_error)?;
    reporter.status(
        "Selected",
        &format!(
            "the newest installed tree {} ({}): the running kernel has none",
            newest.release, newest.path
        ),
    );
    Ok(newest)
}

/// The tree `KDIR` names, else the running kernel's if it is installed.
fn kdir_or_running(reporter: &dyn Reporter) -> Result<Option<KernelTree>> {
    if let Some(kdir) = std::env::var_os("KDIR") {
        let path =
            Utf8PathBuf::from_path_buf(kdir.into()).map_err(|path| Error::NonUtf8Path { path })?;
        let tree = KernelTree::open(path)?;
        reporter.status(
            "Selected",
            &format!("KDIR={} ({})", tree.path, tree.release),
        );
        return Ok(Some(tree));
    }
    let running = KernelTree::running();
    if let Some(tree) = &running {
        reporter.status(
            "Selected",
            &format!("the running kernel's tree {} ({})", tree.release, tree.path),
        );
    }
    Ok(running)
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
