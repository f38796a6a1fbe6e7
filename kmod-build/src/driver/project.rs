//! The user's cargo workspace, read with `cargo metadata`: its module
//! crates (every `staticlib` package) and where their outputs go.

use camino::{Utf8Path, Utf8PathBuf};

use crate::error::{Error, Result};
use crate::tree::KernelTree;

/// A cargo workspace with module crates in it.
#[derive(Debug, Clone)]
pub struct Project {
    /// The workspace's root directory.
    pub root: Utf8PathBuf,
    /// Its root `Cargo.toml`.
    pub manifest: Utf8PathBuf,
    /// Cargo's target directory (`target/` unless configured otherwise).
    pub target_dir: Utf8PathBuf,
    pub modules: Vec<ModuleCrate>,
    /// Every workspace package's directory but the root: any file in them
    /// may be an input of a module's build (build scripts, manifests).
    package_dirs: Vec<Utf8PathBuf>,
    /// Test builds (`--cfg kmod_test`), kept apart from the real modules.
    pub(crate) tests: bool,
    bindings: super::bindings::Lookup,
}

/// A workspace package that builds a kernel module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleCrate {
    /// The package name, which is also the module's name.
    pub name: String,
    pub version: String,
    /// The directory of its `Cargo.toml`.
    pub manifest_dir: Utf8PathBuf,
}

/// Workspace-root files that change what a module build does.
const ROOT_INPUTS: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "rust-toolchain.toml",
    "rust-toolchain",
    ".cargo/config.toml",
];

impl Project {
    /// The workspace of `manifest_path`, else of the current directory, as
    /// cargo itself would find it.
    pub fn load(manifest_path: Option<&Utf8Path>) -> Result<Project> {
        let mut command = cargo_metadata::MetadataCommand::new();
        command.no_deps();
        if let Some(path) = manifest_path {
            command.manifest_path(path);
        }
        let metadata = command.exec().map_err(|error| Error::Project {
            why: match &error {
                cargo_metadata::Error::CargoMetadata { stderr } => stderr.trim().to_owned(),
                other => other.to_string(),
            },
        })?;
        let root = metadata.workspace_root.clone();
        let is_module = |package: &cargo_metadata::Package| {
            package
                .targets
                .iter()
                .any(|t| t.crate_types.iter().any(|k| k.to_string() == "staticlib"))
        };
        let packages = metadata.workspace_packages();
        let modules = packages
            .iter()
            .filter(|package| is_module(package))
            .map(|package| ModuleCrate {
                name: package.name.to_string(),
                version: package.version.to_string(),
                manifest_dir: package.manifest_path.parent().unwrap_or(&root).to_owned(),
            })
            .collect();
        let package_dirs = packages
            .iter()
            .filter_map(|p| p.manifest_path.parent().map(Utf8Path::to_owned))
            .filter(|dir| *dir != root)
            .collect();
        Ok(Project {
            manifest: root.join("Cargo.toml"),
            target_dir: metadata.target_directory.clone(),
            root,
            modules,
            package_dirs,
            tests: false,
            bindings: Default::default(),
        })
    }

    /// The module crate `name`; without a name, the one whose directory
    /// holds the current directory, else the workspace's only one.
    pub fn module(&self, name: Option<&str>) -> Result<&ModuleCrate> {
        let found = match name {
            Some(name) => self.modules.iter().find(|m| m.name == name),
            None => {
                let cwd = std::env::current_dir().ok();
                let here = self.modules.iter().find(|m| {
                    cwd.as_deref()
                        .is_some_and(|dir| dir.starts_with(&m.manifest_dir))
                });
                here.or(match self.modules.as_slice() {
                    [only] => Some(only),
                    _ => None,
                })
            }
        };
        found.ok_or_else(|| Error::NoSuchModule {
            name: name.map(str::to_owned),
            workspace: self.manifest.clone(),
            modules: self.modules.iter().map(|m| m.name.clone()).collect(),
        })
    }

    /// Everything built for one kernel: `target/kmod/<release>`, or
    /// `target/kmod/test/<release>` for test builds.
    pub fn output_dir(&self, tree: &KernelTree) -> Utf8PathBuf {
        match self.tests {
            false => self.kmod_dir().join(&tree.release),
            true => self.kmod_dir().join("test").join(&tree.release),
        }
    }

    /// The same project building test builds of its modules, each in its
    /// own output directory.
    pub(crate) fn for_tests(&self) -> Project {
        Project {
            tests: true,
            ..self.clone()
        }
    }

    /// The crates of the modules' graph whose build scripts the driver
    /// stands in for (see [`super::bindings`]).
    pub(crate) fn bindings_crates(&self) -> Result<&[super::bindings::BindingsCrate]> {
        self.bindings.get(&self.manifest)
    }

    /// `target/kmod`.
    pub fn kmod_dir(&self) -> Utf8PathBuf {
        self.target_dir.join("kmod")
    }

    /// Caches every module crate and tree of this project shares
    /// (bindings, C flags, where libclang is).
    pub fn cache_dir(&self) -> Utf8PathBuf {
        self.kmod_dir().join("cache")
    }

    /// Where the checked module for `tree` ends up.
    pub fn ko_path(&self, module: &ModuleCrate, tree: &KernelTree) -> Utf8PathBuf {
        self.output_dir(tree).join(format!("{}.ko", module.name))
    }

    /// Files and directories whose change may change any module's build.
    pub(crate) fn inputs(&self) -> Vec<Utf8PathBuf> {
        let mut inputs = self.package_dirs.clone();
        inputs.extend(ROOT_INPUTS.iter().map(|file| self.root.join(file)));
        inputs
    }
}
