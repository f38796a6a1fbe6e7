//! This repository's module crates (the examples and fixtures), built
//! through the same library calls `cargo kmod build` makes.

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::driver::{self, select, Event, Human, Project, Reporter};
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

    /// `cargo clippy -- -D warnings` of the module and the runtime against
    /// `tree`'s bindings, as `cargo kmod cargo-check --clippy` runs it.
    pub fn clippy(&self, tree: &KernelTree) -> Result<()> {
        let options = driver::editor::CheckOptions {
            kernel: Some(tree.path.to_string()),
            features: Vec::new(),
            clippy: true,
        };
        driver::editor::check(&self.project, &self.module, &options, &Human)?;
        Ok(())
    }

    /// Compiles, links and checks the module for `tree`, fresh or not.
    pub fn build(&self, tree: &KernelTree) -> Result<Utf8PathBuf> {
        Ok(driver::build_for(
            &self.project,
            &self.module,
            tree,
            &[],
            &Human,
        )?)
    }
}

/// What a build said, kept: cargo's diagnostics as rustc rendered them
/// (the reporter asks cargo for JSON), for tests of what must not compile.
#[derive(Default)]
pub struct Diagnostics(std::sync::Mutex<Vec<String>>);

impl Diagnostics {
    pub fn rendered(&self) -> String {
        self.0.lock().map(|d| d.join("")).unwrap_or_default()
    }
}

impl Reporter for Diagnostics {
    fn report(&self, event: Event<'_>) {
        match event {
            Event::Cargo(line) => {
                let message: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
                if let Some(rendered) = message["message"]["rendered"].as_str() {
                    if let Ok(mut kept) = self.0.lock() {
                        kept.push(rendered.to_owned());
                    }
                }
            }
            other => Human.report(other),
        }
    }

    fn cargo_message_format(&self) -> &'static str {
        "json"
    }
}

impl ModuleCrate {
    /// [`ModuleCrate::build`] with the crate's `features`, reporting to
    /// `reporter`.
    pub fn build_with(
        &self,
        tree: &KernelTree,
        features: &[String],
        reporter: &dyn Reporter,
    ) -> Result<Utf8PathBuf> {
        Ok(driver::build_for(
            &self.project,
            &self.module,
            tree,
            features,
            reporter,
        )?)
    }
}

/// `--kernel` values, or every installed tree.
pub fn trees_or_every_installed(specs: &[String]) -> Result<Vec<KernelTree>> {
    Ok(select::named_or_every_installed(specs)?)
}

/// Every file under `dir`, symlinks not followed.
pub fn files_under(dir: &Utf8Path) -> Result<Vec<Utf8PathBuf>> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in dir
            .read_dir_utf8()
            .with_context(|| format!("reading {dir}"))?
        {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                todo.push(entry.into_path());
            } else if kind.is_file() {
                files.push(entry.into_path());
            }
        }
    }
    Ok(files)
}

/// Leftovers of an earlier, interrupted run of DKMS package `id`
/// (`name/version`): `dkms remove --all`, whatever it says, and the source
/// copy `dkms add` made.
pub fn forget_dkms_package(sh: &xshell::Shell, id: &str) -> Result<()> {
    xshell::cmd!(sh, "dkms remove {id} --all")
        .quiet()
        .ignore_status()
        .ignore_stdout()
        .ignore_stderr()
        .run()?;
    remove_dkms_source(id)
}

/// The copy of DKMS package `id` (`name/version`) that `dkms add` made.
pub fn remove_dkms_source(id: &str) -> Result<()> {
    let source = format!("/usr/src/{}", id.replace('/', "-"));
    if Utf8Path::new(&source).exists() {
        std::fs::remove_dir_all(&source).with_context(|| format!("removing {source}"))?;
    }
    Ok(())
}
