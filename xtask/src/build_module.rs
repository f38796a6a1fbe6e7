//! `cargo xtask build-module`: a module crate to a checked `.ko`, per tree.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::{check, kbuild, KernelTree, ModuleInfo, RustFlags};
use xshell::{cmd, Shell};

use crate::{prerequisites, project_root, sign, status};

#[derive(clap::Args)]
pub struct Args {
    /// The module crate to build: a workspace package with a staticlib, e.g. `hello`.
    pub module: String,
    /// Kernel release or tree path to build for; repeat for several.
    /// Default: the running kernel's tree if installed, else every installed tree.
    #[arg(long = "kernel", value_name = "RELEASE|PATH")]
    pub kernels: Vec<String>,
    /// Never install missing system packages; say which command would.
    #[arg(long)]
    pub no_install: bool,
    /// Build for every installed tree (and any `--kernel`), going on past a
    /// kernel that fails; a summary at the end, non-zero exit if any failed.
    #[arg(long)]
    pub all_kernels: bool,
    /// Sign each module with the tree's sign-file (`--key`/`--cert`, by
    /// default the pair `cargo xtask gen-key` made).
    #[arg(long)]
    pub sign: bool,
    #[arg(long, requires = "sign", value_name = "KEY.pem", default_value_t = signing_dir().join("signing_key.pem"))]
    pub key: Utf8PathBuf,
    #[arg(long, requires = "sign", value_name = "CERT", default_value_t = signing_dir().join("signing_key.x509"))]
    pub cert: Utf8PathBuf,
}

fn signing_dir() -> Utf8PathBuf {
    project_root().join("target/kmod/signing")
}

pub fn run(args: &Args) -> Result<()> {
    let sh = Shell::new()?;
    prerequisites::ensure(&sh, !args.no_install)?;
    let crate_ = ModuleCrate::find(&args.module)?;
    if args.sign {
        // Fail before a long build, naming the file at fault.
        kmod_build::signature::load_certificate(&args.cert)?;
        sign::check_key(&args.key)?;
    }
    let started = std::time::Instant::now();
    if args.all_kernels {
        return build_all(&sh, &crate_, args, started);
    }
    let trees = select_trees(&args.kernels)?;
    for tree in &trees {
        build_and_sign(&sh, &crate_, tree, args)?;
    }
    status::step(
        "Finished",
        &format!(
            "{} for {} kernel(s) in {:.1}s",
            crate_.name,
            trees.len(),
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

/// `build`, then `sign` if asked; a module that fails to sign is removed.
fn build_and_sign(
    sh: &Shell,
    crate_: &ModuleCrate,
    tree: &KernelTree,
    args: &Args,
) -> Result<Utf8PathBuf> {
    let ko = build(sh, crate_, tree)?;
    if args.sign {
        if let Err(error) = sign::sign(sh, &ko, &args.key, &args.cert, tree, &ko) {
            remove_if_exists(&ko)?;
            return Err(error);
        }
    }
    Ok(ko)
}

/// `--all-kernels`: one result per tree, a summary table, and the first
/// failure (with its exit code) if any failed.
fn build_all(
    sh: &Shell,
    crate_: &ModuleCrate,
    args: &Args,
    started: std::time::Instant,
) -> Result<()> {
    let mut trees = KernelTree::installed();
    for spec in &args.kernels {
        let tree = KernelTree::select(spec)?;
        if !trees.contains(&tree) {
            trees.push(tree);
        }
    }
    if trees.is_empty() {
        return Err(kmod_build::no_tree_error().into());
    }
    let results: Vec<(&KernelTree, Result<Utf8PathBuf>)> = trees
        .iter()
        .map(|tree| {
            let result = build_and_sign(sh, crate_, tree, args);
            if let Err(error) = &result {
                status::error(&format!("{} ({}): {error:#}", crate_.name, tree.release));
            }
            (tree, result)
        })
        .collect();
    let width = trees.iter().map(|t| t.release.len()).max().unwrap_or(0);
    status::step("Summary", &format!("{} per kernel:", crate_.name));
    for (tree, result) in &results {
        let (outcome, detail) = match result {
            Ok(ko) => ("ok", ko.to_string()),
            // The first line names the file or check at fault.
            Err(error) => (
                "FAILED",
                format!("{error:#}").lines().next().unwrap_or("").to_owned(),
            ),
        };
        eprintln!("{outcome:>12} {:width$}  {detail}", tree.release);
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(tree, _)| tree.release.as_str())
        .collect();
    let total = results.len();
    let first_error = results.into_iter().find_map(|(_, r)| r.err());
    match first_error {
        None => {
            status::step(
                "Finished",
                &format!(
                    "{} for {total} kernel(s) in {:.1}s",
                    crate_.name,
                    started.elapsed().as_secs_f64()
                ),
            );
            Ok(())
        }
        Some(error) => Err(error.context(format!(
            "{} failed for {} of {total} kernel(s) ({}); first failure",
            crate_.name,
            failed.len(),
            failed.join(", ")
        ))),
    }
}

/// `--kernel` values, or the default choice, said out loud.
pub fn select_trees(specs: &[String]) -> Result<Vec<KernelTree>> {
    if !specs.is_empty() {
        return specs
            .iter()
            .map(|spec| Ok(KernelTree::select(spec)?))
            .collect();
    }
    if let Some(tree) = KernelTree::running() {
        status::step(
            "Selected",
            &format!("the running kernel's tree {} ({})", tree.release, tree.path),
        );
        return Ok(vec![tree]);
    }
    let installed = KernelTree::installed();
    if installed.is_empty() {
        return Err(kmod_build::no_tree_error().into());
    }
    let releases: Vec<&str> = installed.iter().map(|t| t.release.as_str()).collect();
    status::step(
        "Selected",
        &format!(
            "every installed tree ({}): the running kernel has none",
            releases.join(", ")
        ),
    );
    Ok(installed)
}

/// A workspace package that builds a module.
pub struct ModuleCrate {
    /// Package name, which is also the module's name.
    pub name: String,
    pub version: String,
    /// The directory of its Cargo.toml.
    pub manifest_dir: Utf8PathBuf,
    target_dir: Utf8PathBuf,
}

impl ModuleCrate {
    pub fn find(name: &str) -> Result<ModuleCrate> {
        let metadata = cargo_metadata::MetadataCommand::new()
            .manifest_path(project_root().join("Cargo.toml"))
            .no_deps()
            .exec()
            .context("reading the workspace with `cargo metadata`")?;
        let is_module = |package: &cargo_metadata::Package| {
            package
                .targets
                .iter()
                .any(|t| t.crate_types.iter().any(|k| k.to_string() == "staticlib"))
        };
        match metadata
            .workspace_packages()
            .into_iter()
            .find(|p| p.name.as_str() == name)
        {
            Some(package) if is_module(package) => Ok(ModuleCrate {
                name: name.to_owned(),
                version: package.version.to_string(),
                manifest_dir: package
                    .manifest_path
                    .parent()
                    .unwrap_or(&package.manifest_path)
                    .to_owned(),
                target_dir: metadata.target_directory.clone(),
            }),
            found => {
                let modules: Vec<String> = metadata
                    .workspace_packages()
                    .into_iter()
                    .filter(|p| is_module(p))
                    .map(|p| p.name.to_string())
                    .collect();
                let why = if found.is_some() {
                    "is not a module crate (no staticlib)"
                } else {
                    "is not a workspace package"
                };
                bail!("`{name}` {why}; module crates: {}", modules.join(", "))
            }
        }
    }

    /// Everything built for one kernel lives under `target/kmod/<release>`.
    pub fn output_dir(&self, tree: &KernelTree) -> Utf8PathBuf {
        self.target_dir.join("kmod").join(&tree.release)
    }

    /// Where the checked module ends up.
    pub fn ko_path(&self, tree: &KernelTree) -> Utf8PathBuf {
        self.output_dir(tree).join(format!("{}.ko", self.name))
    }
}

/// Compiles, links and checks the module for `tree`; returns the `.ko`.
/// A module that fails a check is not left at the output path.
pub fn build(sh: &Shell, crate_: &ModuleCrate, tree: &KernelTree) -> Result<Utf8PathBuf> {
    let name = &crate_.name;
    let release = &tree.release;
    let out = crate_.output_dir(tree);
    let ko = crate_.ko_path(tree);
    remove_if_exists(&ko)?;
    kbuild::check_kbuild_path(&out)?;
    // Loaded before compiling: a tree that cannot check the result fails fast.
    let kernel = check::Kernel::load(tree)?;

    status::step(
        "Compiling",
        &format!("{name} ({release}): core, bindings, crate"),
    );
    compile(sh, crate_, tree, &RustFlags::for_config(&kernel.config))?;
    let staticlib = out.join(format!(
        "cargo/{}/kmod/lib{}.a",
        kmod_build::RUST_TARGET,
        name.replace('-', "_")
    ));

    status::step("Linking", &format!("{name}.ko ({release})"));
    let linked = kbuild::link(tree, name, &staticlib, &out.join("kbuild").join(name))?;
    if !linked.warnings.is_empty() {
        bail!(
            "{name}.ko ({release}): Kbuild warned, so the module was not installed at {ko}:\n  {}",
            linked.warnings.join("\n  ")
        );
    }

    status::step(
        "Checking",
        &format!(
            "{name}.ko ({release}) against {}",
            tree.path.join("Module.symvers")
        ),
    );
    let report = check::check(&ModuleInfo::read(&linked.ko)?, &kernel);
    let reason = if let check::Verdict::Refused(_) = report.verdict {
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
        return Err(kmod_build::Error::BadModule {
            module: linked.ko,
            reason: format!("{reason}:\n{report}"),
        }
        .into());
    }
    let partial = ko.with_extension("ko.partial");
    std::fs::copy(&linked.ko, &partial)
        .with_context(|| format!("copying {} to {partial}", linked.ko))?;
    std::fs::rename(&partial, &ko).with_context(|| format!("renaming {partial} to {ko}"))?;
    status::step("Built", ko.as_str());
    Ok(ko)
}

/// `cargo build` of the staticlib with `core` rebuilt under the tree's
/// codegen (the kernel's own Rust build uses RUSTC_BOOTSTRAP for the same
/// unstable flags on stable compilers).
fn compile(sh: &Shell, crate_: &ModuleCrate, tree: &KernelTree, flags: &RustFlags) -> Result<()> {
    let manifest = project_root().join("Cargo.toml");
    let target_dir = crate_.output_dir(tree).join("cargo");
    let cache = crate_.target_dir.join("kmod/cache");
    let (name, target) = (&crate_.name, kmod_build::RUST_TARGET);
    cmd!(sh, "cargo build --quiet --manifest-path {manifest} -p {name} --profile kmod --target {target} -Zbuild-std=core,compiler_builtins --target-dir {target_dir}")
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_ENCODED_RUSTFLAGS", flags.encoded())
        .env_remove("RUSTFLAGS")
        .env(kmod_build::KERNEL_ENV, &tree.path)
        .env(kmod_build::CACHE_ENV, &cache)
        .quiet()
        .run()
        .with_context(|| format!("compiling {name} for {}", tree.release))?;
    Ok(())
}

fn remove_if_exists(path: &Utf8Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {path}"))
        }
        _ => Ok(()),
    }
}
