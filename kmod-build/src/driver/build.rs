//! A module crate to a checked `.ko` per tree: fingerprint, doctor,
//! sysroot, cargo, Kbuild, check, install, and signing if asked.

use std::time::Instant;

use camino::{Utf8Path, Utf8PathBuf};

use super::bindings::Confirm;
use super::compile::Compile;
use super::fingerprint::Fingerprint;
use super::lock::lock_file;
use super::project::{ModuleCrate, Project};
use super::report::{Artifact, Event, Reporter};
use super::seed;
use super::sign::{self, SigningKey};
use super::{prerequisites, select, sysroot};
use crate::error::{Error, Result};
use crate::files::collect_leftovers;
use crate::tree::KernelTree;
use crate::{check, doctor, kbuild, ModuleInfo, RustFlags};

/// What `build` is asked for.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Kernel releases or tree paths; empty: see [`select::trees`].
    pub kernels: Vec<String>,
    /// Every installed tree plus `kernels`, going on past one that fails.
    pub all_kernels: bool,
    /// Install missing system packages (root with apt-get) instead of
    /// only naming them.
    pub install_prerequisites: bool,
    /// Sign each module with this pair.
    pub sign: Option<SigningKey>,
    /// Cargo features of the module crate to enable.
    pub features: Vec<String>,
}

/// Builds `module` for the trees `options` name; the checked modules, in
/// the order of the trees. With several trees, one failure is reported
/// with its own error; more are summed up, keeping the first one's kind.
pub fn build(
    project: &Project,
    module: &ModuleCrate,
    options: &BuildOptions,
    reporter: &dyn Reporter,
) -> Result<Vec<Artifact>> {
    let started = Instant::now();
    if let Some(pair) = &options.sign {
        pair.check()?;
    }
    // Before the trees are chosen: on a bare machine there are none yet.
    let tree_named = !options.kernels.is_empty() || std::env::var_os("KDIR").is_some();
    let needs = prerequisites::for_build(&project.cache_dir(), tree_named);
    prerequisites::ensure(&needs, options.install_prerequisites, reporter)?;
    let trees = if options.all_kernels {
        select::every_installed_and(&options.kernels)?
    } else {
        select::trees(&options.kernels, reporter)?
    };
    let results = build_in_parallel(project, module, &trees, options, reporter);
    if crate::process::interrupted() {
        return Err(Error::Interrupted);
    }
    let summary = options
        .all_kernels
        .then(|| summarize(module, &results, reporter));
    let total = results.len();
    let mut built = Vec::new();
    let mut failed: Vec<(&KernelTree, Error)> = Vec::new();
    for (tree, result) in results {
        match result {
            Ok(artifact) => built.push(artifact),
            Err(error) => failed.push((tree, error)),
        }
    }
    if failed.is_empty() {
        finished(module, total, started, reporter);
        return Ok(built);
    }
    if failed.len() == 1 && summary.is_none() {
        return Err(failed.remove(0).1);
    }
    let releases: Vec<&str> = failed.iter().map(|(t, _)| t.release.as_str()).collect();
    let count = failed.len();
    let (_, first) = failed.remove(0);
    if summary.is_none() {
        for (tree, error) in &failed {
            reporter.warning(&format!("{} ({}): {error}", module.name, tree.release));
        }
    }
    Err(Error::Failed {
        what: format!(
            "{} failed for {count} of {total} kernel(s) ({}); first failure",
            module.name,
            releases.join(", ")
        ),
        first: Box::new(first),
    })
}

fn finished(module: &ModuleCrate, kernels: usize, started: Instant, reporter: &dyn Reporter) {
    reporter.status(
        "Finished",
        &format!(
            "{} for {kernels} kernel(s) in {:.2}s",
            module.name,
            started.elapsed().as_secs_f64()
        ),
    );
}

/// `--all-kernels`: a line per kernel.
fn summarize(
    module: &ModuleCrate,
    results: &[(&KernelTree, Result<Artifact>)],
    reporter: &dyn Reporter,
) {
    let width = results
        .iter()
        .map(|(t, _)| t.release.len())
        .max()
        .unwrap_or(0);
    reporter.status("Summary", &format!("{} per kernel:", module.name));
    for (tree, result) in results {
        let (outcome, detail) = match result {
            Ok(artifact) => ("ok", artifact.path.to_string()),
            // The first line names the file or check at fault.
            Err(error) => (
                "FAILED",
                error.to_string().lines().next().unwrap_or("").to_owned(),
            ),
        };
        reporter.status(outcome, &format!("{:width$}  {detail}", tree.release));
    }
}

/// Builds for every tree at once (each build has its own target dir and
/// Kbuild dir), within the driver's job budget; one result per tree.
fn build_in_parallel<'a>(
    project: &Project,
    module: &ModuleCrate,
    trees: &'a [KernelTree],
    options: &BuildOptions,
    reporter: &dyn Reporter,
) -> Vec<(&'a KernelTree, Result<Artifact>)> {
    std::thread::scope(|scope| {
        let builds: Vec<_> = trees
            .iter()
            .enumerate()
            .map(|(index, tree)| {
                let build = move || build_locked(index, project, module, tree, options, reporter);
                (tree, scope.spawn(build))
            })
            .collect();
        builds
            .into_iter()
            .map(|(tree, build)| {
                let result = build.join().unwrap_or_else(|_| {
                    Err(Error::Internal {
                        what: format!("the build thread for {} panicked", tree.release),
                    })
                });
                if let Ok(artifact) = &result {
                    reporter.report(Event::Artifact(artifact));
                }
                (tree, result)
            })
            .collect()
    })
}

/// One tree's build (the `index`th of those running at once), holding the
/// lock on `module`'s outputs for `tree`:
/// another build of the same module and kernel waits (saying so), then
/// finds the module fresh.
fn build_locked(
    index: usize,
    project: &Project,
    module: &ModuleCrate,
    tree: &KernelTree,
    options: &BuildOptions,
    reporter: &dyn Reporter,
) -> Result<Artifact> {
    let artifact = |path, fresh| Artifact {
        module: module.name.clone(),
        release: tree.release.clone(),
        path,
        fresh,
    };
    // The fingerprint does not cover keys: a signed build always signs.
    let fresh = || {
        options.sign.is_none() && fingerprint(project, module, tree, &options.features).is_fresh()
    };
    // Read-only, so without the lock: a no-op build stays a few stat calls.
    if fresh() {
        return Ok(artifact(project.ko_path(module, tree), true));
    }
    // Before a job slot, which it would hold idle.
    let _cold = seed::wait_for_cold_builds(&project.output_dir(tree).join("cargo"));
    // Every build after the first waits for its share of the job budget.
    let _slot = crate::process::job_slot(index)?;
    // A broken tree never reaches make, nor writes anything.
    doctor::diagnose(tree).into_result(tree)?;
    let out = project.output_dir(tree);
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let lock = out.join(format!("{}.lock", module.name));
    let _lock = lock_file(&lock, || {
        reporter.status(
            "Blocking",
            &format!(
                "waiting for file lock on {} for {} ({lock})",
                module.name, tree.release
            ),
        )
    })?;
    // Nobody else writes these while we hold the lock: a killed build's.
    collect_leftovers(&out, &format!(".{}.", module.name), true);
    // The build we waited for may have made it.
    if fresh() {
        return Ok(artifact(project.ko_path(module, tree), true));
    }
    let ko = build_for(project, module, tree, &options.features, reporter)
        .map_err(crate::process::unless_interrupted)?;
    if let Some(pair) = &options.sign {
        if let Err(error) = sign::sign(&ko, pair, tree, &ko, reporter) {
            remove_if_exists(&ko)?;
            return Err(crate::process::unless_interrupted(error));
        }
        sign::warn_if_untrusted(tree, &ko, &pair.cert, reporter)?;
    }
    Ok(artifact(ko, false))
}

/// Everything the `.ko` for `tree` was built from.
fn fingerprint(
    project: &Project,
    module: &ModuleCrate,
    tree: &KernelTree,
    features: &[String],
) -> Fingerprint {
    let out = project.output_dir(tree);
    Fingerprint {
        stamp: out.join(format!("{}.fingerprint", module.name)),
        ko: project.ko_path(module, tree),
        dep_info: staticlib(project, module, tree).with_extension("d"),
        tree_files: ["Module.symvers", "include/config/auto.conf", "Makefile"]
            .iter()
            .map(|file| tree.path.join(file))
            .collect(),
        workspace_inputs: project.inputs(),
        features: features.to_vec(),
    }
}

/// Where cargo leaves the module's staticlib for `tree`.
fn staticlib(project: &Project, module: &ModuleCrate, tree: &KernelTree) -> Utf8PathBuf {
    project.output_dir(tree).join(format!(
        "cargo/{}/{}/lib{}.a",
        tree.rust_target(),
        super::compile::PROFILE_NAME,
        module.name.replace('-', "_")
    ))
}

/// Compiles (with the crate's `features`), links and checks `module` for
/// `tree`, whatever the fingerprint says; returns the installed `.ko`. A
/// module that fails a check is not left at the output path.
pub fn build_for(
    project: &Project,
    module: &ModuleCrate,
    tree: &KernelTree,
    features: &[String],
    reporter: &dyn Reporter,
) -> Result<Utf8PathBuf> {
    if let Some(ko) = build_confirming(project, module, tree, features, Confirm::Link, reporter)? {
        return Ok(ko);
    }
    reporter.status(
        "Rebuilding",
        &format!(
            "{} ({}): its C flags are not those guessed from another kernel's",
            module.name, tree.release
        ),
    );
    build_confirming(project, module, tree, features, Confirm::Probe, reporter)?.ok_or_else(|| {
        Error::Internal {
            what: format!("C flags of {} guessed after a probe", tree.release),
        }
    })
}

/// [`build_for`], with C flags guessed from another tree confirmed as
/// `confirm` says; `None` if the link showed the guess wrong.
fn build_confirming(
    project: &Project,
    module: &ModuleCrate,
    tree: &KernelTree,
    features: &[String],
    confirm: Confirm,
    reporter: &dyn Reporter,
) -> Result<Option<Utf8PathBuf>> {
    let name = &module.name;
    let release = &tree.release;
    let out = project.output_dir(tree);
    let ko = project.ko_path(module, tree);
    remove_if_exists(&ko)?;
    crate::make::check_kbuild_path(&out)?;
    // Loaded before compiling: a tree that cannot check the result fails fast.
    let kernel = check::Kernel::load(tree)?;
    let flags = RustFlags::for_config(&kernel.config);

    reporter.status("Compiling", &format!("{name} ({release})"));
    // Kbuild sets itself up while cargo compiles; it waits for the objects.
    // Kbuild reads the tree's Makefiles and probes the compiler (about 0.7 s)
    // while cargo compiles, when the job budget has a slot to spare for it;
    // the slot is returned once make waits for the Rust objects.
    let kbuild_dir = out.join("kbuild").join(name);
    let early_link = match crate::process::spare_slot() {
        Some(slot) => {
            let link = kbuild::start_link(tree, name, &kbuild_dir)?;
            link.release_when_waiting(slot);
            Some(link)
        }
        None => None,
    };
    let sysroot = sysroot::ensure(&project.root, &flags, reporter)?;
    let target_dir = out.join("cargo");
    let overrides = super::bindings::for_tree(project, tree, flags.target, confirm)?;
    let codegen = super::compile::codegen(&flags, &sysroot);
    let shims = seed::compile_seeded(&project.root, &target_dir, &codegen, reporter, || {
        Compile {
            workspace: &project.root,
            manifest: &project.manifest,
            package: name,
            target_dir: &target_dir,
            cache_dir: &project.cache_dir(),
            sysroot: &sysroot,
            tree,
            flags: &flags,
            features,
            tests: project.tests,
            overrides: &overrides,
        }
        .run(reporter)
    })?;
    if project.tests {
        super::test::check_suite(&staticlib(project, module, tree), module)?;
    }

    reporter.status("Linking", &format!("{name}.ko ({release})"));
    let link = match early_link {
        Some(link) => link,
        None => kbuild::start_link(tree, name, &kbuild_dir)?,
    };
    let linked = link.finish(&staticlib(project, module, tree), &shims)?;
    if let (Some(guess), Some(shim_command)) = (&overrides.guessed, &linked.shim_command) {
        if !super::bindings::confirm_guess(project, tree, guess, shim_command)? {
            return Ok(None);
        }
    }
    if !linked.warnings.is_empty() {
        return Err(Error::BadModule {
            module: linked.ko,
            reason: format!(
                "Kbuild warned, so the module was not installed at {ko}:\n  {}",
                linked.warnings.join("\n  ")
            ),
        });
    }

    reporter.status(
        "Checking",
        &format!(
            "{name}.ko ({release}) against {}",
            tree.path.join("Module.symvers")
        ),
    );
    let info = ModuleInfo::read(&linked.ko).map_err(|error| match error {
        // Kbuild's own output that is not an object at all: the build broke.
        Error::BadModule { module, reason } => Error::BadBuildOutput {
            path: module,
            why: reason,
        },
        other => other,
    })?;
    let report = check::check(&info, &kernel);
    let reason = if let check::Verdict::Refused(_) | check::Verdict::WouldCrash(_) = report.verdict
    {
        Some("the kernel would refuse it")
    } else if report
        .findings
        .iter()
        .any(|f| f.check == check::Check::Mitigation)
    {
        // Our own codegen is wrong then: objtool fails C builds for this.
        Some("its code breaks the kernel's mitigations")
    } else {
        None
    };
    if let Some(reason) = reason {
        return Err(Error::BadModule {
            module: linked.ko,
            reason: format!("{reason}:\n{report}"),
        });
    }
    install(&linked.ko, &ko)?;
    fingerprint(project, module, tree, features).record()?;
    Ok(Some(ko))
}

/// Copies the checked module to its output path whole: a temporary file
/// beside it, renamed over it.
fn install(from: &Utf8Path, to: &Utf8Path) -> Result<()> {
    let dir = to.parent().unwrap_or(Utf8Path::new("."));
    let partial = tempfile::Builder::new()
        .prefix(&format!(".{}.", to.file_name().unwrap_or("module")))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    std::fs::copy(from, partial.path()).map_err(|e| Error::io(from, e))?;
    partial.persist(to).map_err(|e| Error::io(to, e.error))?;
    Ok(())
}

pub(crate) fn remove_if_exists(path: &Utf8Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}
