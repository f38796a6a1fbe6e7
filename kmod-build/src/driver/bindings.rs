//! Bindings of the crates that declare them as data: a `links` key and
//! `[package.metadata.kmod-build] bindings = "<file>"` (read by
//! [`Build::from_spec`]). The driver generates them for each tree itself
//! and hands them to cargo as build-script overrides, so a module build
//! compiles neither those build scripts nor their dependencies (bindgen,
//! kmod-build): a kernel's first build, and a DKMS package, need none of
//! them.

use std::sync::Arc;

use camino::{Utf8Path, Utf8PathBuf};

use super::project::Project;
use crate::build_script::{Build, Generated};
use crate::cflags::CFlags;
use crate::error::{Error, Result};
use crate::tree::KernelTree;

/// The manifest's `package.metadata` table the driver reads.
const METADATA_KEY: &str = "kmod-build";

/// A crate whose build script the driver stands in for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingsCrate {
    /// Cargo's package id (what its JSON messages name the package by).
    pub package_id: String,
    /// Its `links` value: the key of the override.
    pub links: String,
    /// Its bindings spec.
    pub spec: Utf8PathBuf,
}

impl BindingsCrate {
    /// `package`'s declaration, if it makes one: both keys are needed, as
    /// cargo overrides only build scripts of crates with `links`.
    pub fn of(package: &cargo_metadata::Package) -> Option<BindingsCrate> {
        let links = package.links.clone()?;
        let file = package
            .metadata
            .get(METADATA_KEY)?
            .get("bindings")?
            .as_str()?;
        Some(BindingsCrate {
            package_id: package.id.repr.clone(),
            links,
            spec: package.manifest_path.parent()?.join(file),
        })
    }

    /// Every crate of `manifest`'s dependency graph that declares its
    /// bindings.
    pub fn find(manifest: &Utf8Path) -> Result<Vec<BindingsCrate>> {
        let metadata = cargo_metadata::MetadataCommand::new()
            .manifest_path(manifest)
            .exec()
            .map_err(|error| Error::Project {
                why: match &error {
                    cargo_metadata::Error::CargoMetadata { stderr } => stderr.trim().to_owned(),
                    other => other.to_string(),
                },
            })?;
        Ok(metadata
            .packages
            .iter()
            .filter_map(BindingsCrate::of)
            .collect())
    }
}

/// The overrides of one tree's build.
#[derive(Debug, Default)]
pub(crate) struct Overrides {
    /// The cargo config that sets them (`--config <file>`); `None` when no
    /// crate declares its bindings.
    pub config: Option<Utf8PathBuf>,
    /// The C shims to link with the module.
    pub shims: Vec<Utf8PathBuf>,
    /// The `build-script-executed` messages cargo would have printed for
    /// the scripts had they run (cargo prints none for overridden ones):
    /// what rust-analyzer learns a crate's env and cfgs from.
    pub messages: Vec<String>,
    /// The C flags the bindings were generated with when they are another
    /// tree's, guessed ([`CFlags::guess`]) and not yet confirmed: the
    /// link confirms them ([`confirm_guess`]).
    pub guessed: Option<CFlags>,
}

/// Who confirms C flags guessed from another tree ([`CFlags::guess`]),
/// when this tree's are not cached yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Confirm {
    /// A probe of the tree (a `make` of a probe module, ~0.8 s), beside
    /// bindgen.
    Probe,
    /// The module's link, whose compile of the shims is the tree's own
    /// command for a module object ([`confirm_guess`]): no probe at all.
    /// A probe still where there are no shims.
    Link,
}

/// The overrides of `project`'s builds for `tree` (with the Rust target
/// `target`): files in the tree's output directory, bindgen's cache with
/// the project's other caches.
pub(crate) fn for_tree(
    project: &Project,
    tree: &KernelTree,
    target: &str,
    confirm: Confirm,
) -> Result<Overrides> {
    generate(
        project.bindings_crates()?,
        tree,
        target,
        &project.output_dir(tree).join("bindings"),
        &cflags_dir(project, tree),
        confirm,
    )
}

/// Where `tree`'s C flags and bindgen's output are cached.
fn cflags_dir(project: &Project, tree: &KernelTree) -> Utf8PathBuf {
    project.cache_dir().join(&tree.release)
}

/// Generates the bindings of `crates` for `tree` into `dir/<links>/` and
/// the config overriding their build scripts for `target` into `dir`;
/// bindgen's output is kept in `cache_dir`. Files are rewritten only when
/// they change, so nothing is recompiled for a tree whose bindings stand.
fn generate(
    crates: &[BindingsCrate],
    tree: &KernelTree,
    target: &str,
    dir: &Utf8Path,
    cache_dir: &Utf8Path,
    confirm: Confirm,
) -> Result<Overrides> {
    if crates.is_empty() {
        return Ok(Overrides::default());
    }
    let builds = crates
        .iter()
        .map(|declared| Build::from_spec(&declared.spec))
        .collect::<Result<Vec<_>>>()?;
    let mut overrides = Overrides::default();
    let mut cflags = CFlags::cached(tree, cache_dir);
    if cflags.is_none() && confirm == Confirm::Link && builds.iter().any(Build::has_shim) {
        overrides.guessed = CFlags::guess(tree, cache_dir);
        cflags.clone_from(&overrides.guessed);
    }
    let mut targets = toml::Table::new();
    for (declared, build) in crates.iter().zip(&builds) {
        let out_dir = dir.join(&declared.links);
        let generated = match &cflags {
            Some(cflags) => build.generate_from(tree, cflags, &out_dir, cache_dir)?,
            None => {
                let (generated, probed) = probe_beside_bindgen(build, tree, &out_dir, cache_dir)?;
                cflags = Some(probed);
                generated
            }
        };
        targets.insert(declared.links.clone(), override_table(&generated).into());
        overrides
            .messages
            .push(executed_message(declared, &generated, &out_dir));
        overrides.shims.extend(generated.shim);
    }
    let config = toml::Table::from_iter([(
        "target".to_owned(),
        toml::Table::from_iter([(target.to_owned(), targets.into())]).into(),
    )]);
    let path = dir.join("overrides.toml");
    let text = format!(
        "# Written by kmod-build for {}: the build scripts cargo kmod stands in for.\n{}",
        tree.release,
        toml::to_string(&config).map_err(|e| Error::Internal {
            what: format!("writing {path}: {e}"),
        })?
    );
    crate::build_script::write_if_changed(&path, &text)?;
    overrides.config = Some(path);
    Ok(overrides)
}

/// One crate's bindings for a tree whose C flags are not cached yet, and
/// the probed flags. The probe runs while bindgen already reads the
/// headers with the flags guessed from another tree's
/// ([`CFlags::guess`]), when the job budget has a slot for it; the guess
/// is kept if the probe agrees, else bindgen runs again with the probed
/// flags.
fn probe_beside_bindgen(
    build: &Build,
    tree: &KernelTree,
    out_dir: &Utf8Path,
    cache_dir: &Utf8Path,
) -> Result<(Generated, CFlags)> {
    // The probe's directory goes in it.
    std::fs::create_dir_all(cache_dir).map_err(|e| Error::io(cache_dir, e))?;
    let probe_alone = || -> Result<(Generated, CFlags)> {
        let probed = CFlags::probe(tree, cache_dir)?;
        Ok((
            build.generate_from(tree, &probed, out_dir, cache_dir)?,
            probed,
        ))
    };
    let Some(guess) = CFlags::guess(tree, cache_dir) else {
        return probe_alone();
    };
    let Some(_slot) = crate::process::spare_slot() else {
        return probe_alone();
    };
    std::thread::scope(|scope| {
        let probe = scope.spawn(|| CFlags::probe(tree, cache_dir));
        let guessed = build.generate_from(tree, &guess, out_dir, cache_dir);
        let probed = probe.join().unwrap_or_else(|_| {
            Err(Error::Internal {
                what: format!("the C flags probe of {} panicked", tree.release),
            })
        })?;
        if build.clang_args(&probed, tree) == build.clang_args(&guess, tree) {
            Ok((guessed?, probed))
        } else {
            build.forget_bindings(&guess, tree, cache_dir);
            let generated = build.generate_from(tree, &probed, out_dir, cache_dir)?;
            Ok((generated, probed))
        }
    })
}

/// After the link of a build whose bindings were generated with the
/// `guess`ed C flags: reads the tree's own flags from the shim's compile
/// (`shim_command`, its `.cmd` file) and caches them as a probe would.
/// False if bindgen would read the headers otherwise with them: the
/// guessed bindings are forgotten, and the build must run again.
pub(crate) fn confirm_guess(
    project: &Project,
    tree: &KernelTree,
    guess: &CFlags,
    shim_command: &Utf8Path,
) -> Result<bool> {
    let cache_dir = cflags_dir(project, tree);
    let flags = CFlags::learn(tree, &cache_dir, shim_command, crate::shim::SHIM_USE_PREFIX)?;
    let mut confirmed = true;
    for declared in project.bindings_crates()? {
        let build = Build::from_spec(&declared.spec)?;
        if build.clang_args(&flags, tree) != build.clang_args(guess, tree) {
            build.forget_bindings(guess, tree, &cache_dir);
            confirmed = false;
        }
    }
    Ok(confirmed)
}

/// `[target.<target>.<links>]`: what the build script would print.
fn override_table(generated: &Generated) -> toml::Table {
    let strings = |values: &[String]| {
        toml::Value::Array(values.iter().cloned().map(toml::Value::String).collect())
    };
    let env: toml::Table = generated
        .env
        .iter()
        .map(|(key, value)| (key.clone(), toml::Value::String(value.clone())))
        .collect();
    toml::Table::from_iter([
        ("rustc-cfg".to_owned(), strings(&generated.cfgs)),
        ("rustc-check-cfg".to_owned(), strings(&generated.check_cfgs)),
        ("rustc-env".to_owned(), env.into()),
    ])
}

fn executed_message(declared: &BindingsCrate, generated: &Generated, out_dir: &Utf8Path) -> String {
    serde_json::json!({
        "reason": "build-script-executed",
        "package_id": declared.package_id,
        "linked_libs": [],
        "linked_paths": [],
        "cfgs": generated.cfgs,
        "env": generated.env,
        "out_dir": out_dir,
    })
    .to_string()
}

/// The bindings crates of a project, looked up once (a `cargo metadata`
/// of the whole graph) by the first build that compiles.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lookup(Arc<std::sync::OnceLock<Vec<BindingsCrate>>>);

impl Lookup {
    pub fn get(&self, manifest: &Utf8Path) -> Result<&[BindingsCrate]> {
        if let Some(found) = self.0.get() {
            return Ok(found);
        }
        let found = BindingsCrate::find(manifest)?;
        Ok(self.0.get_or_init(|| found))
    }
}
