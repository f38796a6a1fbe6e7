//! This repository's module crates (the examples and fixtures), built
//! through the same library calls `cargo kmod build` makes.

use anyhow::Result;
use camino::Utf8PathBuf;
use kmod_build::driver::{self, select, Human, Project};
use kmod_build::KernelTree;

use crate::project_root;

/// A module crate of this workspace.
pub struct ModuleCrate {
    pub project: Project,
    pub module: driver::ModuleCrate,
}

impl ModuleCrate {
    pub fn find(name: &str) -> Result<ModuleCrate> {
        let project = Project::load(Some(&project_root().join("Cargo.toml")))?;
        let module = project.module(Some(name))?.clone();
        Ok(ModuleCrate { project, module })
    }

    /// `target/kmod/<release>`.
    pub fn output_dir(&self, tree: &KernelTree) -> Utf8PathBuf {
        self.project.output_dir(tree)
    }

    /// Where the checked module ends up.
    pub fn ko_path(&self, tree: &KernelTree) -> Utf8PathBuf {
        self.project.ko_path(&self.module, tree)
    }

    /// Compiles, links and checks the module for `tree`, fresh or not.
    pub fn build(&self, tree: &KernelTree) -> Result<Utf8PathBuf> {
        Ok(driver::build_for(
            &self.project,
            &self.module,
            tree,
            &Human,
        )?)
    }
}

/// `--kernel` values, or every installed tree.
pub fn trees_or_every_installed(specs: &[String]) -> Result<Vec<KernelTree>> {
    Ok(select::named_or_every_installed(specs)?)
}
