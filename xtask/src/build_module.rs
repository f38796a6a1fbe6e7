//! `cargo xtask build-module`: a module crate to a checked `.ko`, per tree.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::{check, kbuild, KernelTree, ModuleInfo, RustFlags};
use xshell::{cmd, Shell};

use crate::{prerequisites, project_root, sign, status, sysroot};

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
    let started = std::time::Instant::now();
    let crate_ = ModuleCrate::find(&args.module)?;
    if args.sign {
        // Fail before a long build, naming the file at fault.
        kmod_build::signature::load_certificate(&args.cert)?;
        sign::check_key(&args.key)?;
    }
    let trees = if args.all_kernels {
        every_installed_and(&args.kernels)?
    } else {
        select_trees(&args.kernels)?
    };
    let mut results: Vec<(&KernelTree, Result<Utf8PathBuf>)> = Vec::new();
    let mut stale = Vec::new();
    for tree in &trees {
        // The fingerprint does not cover keys: a signed build always signs.
        if !args.sign && crate_.fingerprint(tree).is_fresh() {
            let ko = crate_.ko_path(tree);
            status::step("Fresh", &format!("{ko} (nothing changed)"));
            results.push((tree, Ok(ko)));
        } else {
            stale.push(tree);
        }
    }
    if !stale.is_empty() {
        prerequisites::ensure(&Shell::new()?, !args.no_install, &crate_.cache_dir())?;
        results.extend(build_in_parallel(&crate_, &stale, args));
    }
    if args.all_kernels {
        return summarize(&crate_, results, started);
    }
    let mut failed: Vec<(&KernelTree, anyhow::Error)> = results
        .into_iter()
        .filter_map(|(tree, result)| result.err().map(|error| (tree, error)))
        .collect();
    match failed.len() {
        0 => {}
        // One failure keeps its own error (and exit code).
        1 => return Err(failed.remove(0).1),
        n => {
            for (tree, error) in &failed {
                status::error(&format!("{} ({}): {error:#}", crate_.name, tree.release));
            }
            bail!("{} failed for {n} of {} kernels", crate_.name, trees.len())
        }
    }
    finished(&crate_, trees.len(), started);
    Ok(())
}

fn finished(crate_: &ModuleCrate, kernels: usize, started: std::time::Instant) {
    status::step(
        "Finished",
        &format!(
            "{} for {kernels} kernel(s) in {:.2}s",
            crate_.name,
            started.elapsed().as_secs_f64()
        ),
    );
}

/// Every installed tree plus the `--kernel` ones, each once.
fn every_installed_and(specs: &[String]) -> Result<Vec<KernelTree>> {
    let mut trees = KernelTree::installed();
    for spec in specs {
        let tree = KernelTree::select(spec)?;
        if !trees.contains(&tree) {
            trees.push(tree);
        }
    }
    if trees.is_empty() {
        return Err(kmod_build::no_tree_error().into());
    }
    Ok(trees)
}

/// Builds for every tree at once (each build has its own target dir and
/// Kbuild dir); one result per tree.
fn build_in_parallel<'a>(
    crate_: &ModuleCrate,
    trees: &[&'a KernelTree],
    args: &Args,
) -> Vec<(&'a KernelTree, Result<Utf8PathBuf>)> {
    std::thread::scope(|scope| {
        let builds: Vec<_> = trees
            .iter()
            .map(|&tree| {
                let build = move || build_and_sign(&Shell::new()?, crate_, tree, args);
                (tree, scope.spawn(build))
            })
            .collect();
        builds
            .into_iter()
            .map(|(tree, build)| {
                let result = build
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the build thread panicked")));
                (tree, result)
            })
            .collect()
    })
}

/// The doctor's checks (a broken tree never reaches make), `build`, then
/// `sign` if asked; a module that fails to sign is removed.
fn build_and_sign(
    sh: &Shell,
    crate_: &ModuleCrate,
    tree: &KernelTree,
    args: &Args,
) -> Result<Utf8PathBuf> {
    kmod_build::doctor::diagnose(tree).into_result(tree)?;
    let ko = build(sh, crate_, tree)?;
    if args.sign {
        if let Err(error) = sign::sign(sh, &ko, &args.key, &args.cert, tree, &ko) {
            remove_if_exists(&ko)?;
            return Err(error);
        }
    }
    Ok(ko)
}

/// `--all-kernels`: a line per kernel, then the first failure (with its
/// exit code) if any failed.
fn summarize(
    crate_: &ModuleCrate,
    results: Vec<(&KernelTree, Result<Utf8PathBuf>)>,
    started: std::time::Instant,
) -> Result<()> {
    let width = results
        .iter()
        .map(|(t, _)| t.release.len())
        .max()
        .unwrap_or(0);
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
    let failures = failed.len();
    match results.into_iter().find_map(|(_, r)| r.err()) {
        None => {
            finished(crate_, total, started);
            Ok(())
        }
        Some(error) => Err(error.context(format!(
            "{} failed for {failures} of {total} kernel(s) ({}); first failure",
            crate_.name,
            failed.join(", ")
        ))),
    }
}

/// `--kernel` values, or every installed tree (for tests and benchmarks,
/// which cover all kernels rather than the running one).
pub fn trees_or_every_installed(specs: &[String]) -> Result<Vec<KernelTree>> {
    let trees = if specs.is_empty() {
        KernelTree::installed()
    } else {
        select_trees(specs)?
    };
    if trees.is_empty() {
        return Err(kmod_build::no_tree_error().into());
    }
    Ok(trees)
}

/// `--kernel` values, or the default choice, said out loud.
pub fn select_trees(specs: &[String]) -> Result<Vec<KernelTree>> {
    if !specs.is_empty() {
        return specs
            .iter()
            .map(|spec| Ok(KernelTree::select(spec)?))
            .collect();
    }
    if let Some(kdir) = std::env::var_os("KDIR") {
        let tree = KernelTree::open(
            Utf8PathBuf::from_path_buf(kdir.into())
                .map_err(|path| kmod_build::Error::NonUtf8Path { path })?,
        )?;
        status::step(
            "Selected",
            &format!("KDIR={} ({})", tree.path, tree.release),
        );
        return Ok(vec![tree]);
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
    /// The workspace's package directories and root files: any of them
    /// may be an input of the module's build.
    workspace_inputs: Vec<Utf8PathBuf>,
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
            Some(package) if is_module(package) => {
                let root = &metadata.workspace_root;
                let mut workspace_inputs: Vec<Utf8PathBuf> = metadata
                    .workspace_packages()
                    .iter()
                    .filter_map(|p| p.manifest_path.parent().map(Utf8Path::to_owned))
                    .filter(|dir| dir != root)
                    .collect();
                workspace_inputs.extend(
                    [
                        "Cargo.toml",
                        "Cargo.lock",
                        "rust-toolchain.toml",
                        ".cargo/config.toml",
                    ]
                    .iter()
                    .map(|file| root.join(file)),
                );
                Ok(ModuleCrate {
                    name: name.to_owned(),
                    version: package.version.to_string(),
                    manifest_dir: package
                        .manifest_path
                        .parent()
                        .unwrap_or(&package.manifest_path)
                        .to_owned(),
                    target_dir: metadata.target_directory.clone(),
                    workspace_inputs,
                })
            }
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

    /// Caches shared by every module crate and tree (bindings, C flags).
    pub fn cache_dir(&self) -> Utf8PathBuf {
        self.target_dir.join("kmod/cache")
    }

    /// Where the checked module ends up.
    pub fn ko_path(&self, tree: &KernelTree) -> Utf8PathBuf {
        self.output_dir(tree).join(format!("{}.ko", self.name))
    }

    /// Everything the `.ko` for `tree` was built from.
    pub fn fingerprint(&self, tree: &KernelTree) -> Fingerprint {
        let out = self.output_dir(tree);
        let dep_info = out.join(format!(
            "cargo/{}/kmod/lib{}.d",
            kmod_build::RUST_TARGET,
            self.name.replace('-', "_")
        ));
        Fingerprint {
            stamp: out.join(format!("{}.fingerprint", self.name)),
            ko: self.ko_path(tree),
            dep_info,
            tree_files: ["Module.symvers", "include/config/auto.conf", "Makefile"]
                .iter()
                .map(|file| tree.path.join(file))
                .collect(),
            workspace_inputs: self.workspace_inputs.clone(),
        }
    }
}

/// What decides whether a `.ko` is up to date, so a no-op build skips
/// cargo and make altogether: size and mtime of every source rustc read
/// (cargo's dep-info: the crate, its dependencies, `core`, the bindings),
/// of the workspace's packages (build scripts, manifests, the toolchain pin),
/// of the tree files a kernel update changes, of this very program (it
/// decides flags and the link), and of the installed `.ko` itself.
pub struct Fingerprint {
    stamp: Utf8PathBuf,
    ko: Utf8PathBuf,
    dep_info: Utf8PathBuf,
    tree_files: Vec<Utf8PathBuf>,
    workspace_inputs: Vec<Utf8PathBuf>,
}

impl Fingerprint {
    pub fn is_fresh(&self) -> bool {
        let recorded = std::fs::read_to_string(&self.stamp).ok();
        recorded.is_some() && recorded == self.compute()
    }

    /// Called once the `.ko` is installed. Without a fingerprint the next
    /// build simply is not skipped.
    pub fn record(&self) -> Result<()> {
        match self.compute() {
            Some(value) => std::fs::write(&self.stamp, value),
            None => std::fs::remove_file(&self.stamp).or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            }),
        }
        .with_context(|| format!("writing {}", self.stamp))
    }

    /// `None` when an input is missing: then the build is stale anyway.
    fn compute(&self) -> Option<String> {
        use std::hash::{Hash, Hasher};
        let mut files: Vec<std::path::PathBuf> = vec![self.ko.clone().into()];
        files.extend(self.tree_files.iter().map(Into::into));
        files.push(std::env::current_exe().ok()?);
        let dep_info = std::fs::read_to_string(&self.dep_info).ok()?;
        let (_, sources) = dep_info.lines().next()?.split_once(": ")?;
        // Make syntax: spaces in paths are escaped with a backslash.
        let sources = sources.replace("\\ ", "\0");
        files.extend(sources.split(' ').map(|p| p.replace('\0', " ").into()));
        for input in &self.workspace_inputs {
            files_under(input.as_std_path(), &mut files);
        }
        let mut hasher = std::hash::DefaultHasher::new();
        for file in &files {
            let metadata = std::fs::metadata(file).ok()?;
            (file, metadata.len(), metadata.modified().ok()?).hash(&mut hasher);
        }
        Some(format!("{:016x}\n", hasher.finish()))
    }
}

/// `path` if it is a file, else every file below it but build outputs;
/// nothing if it does not exist (a workspace without `.cargo/config.toml`).
fn files_under(path: &std::path::Path, files: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(path) else {
        if path.exists() {
            files.push(path.to_owned());
        }
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for entry in entries {
        if entry.file_name().is_some_and(|name| name != "target") {
            files_under(&entry, files);
        }
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

    status::step("Compiling", &format!("{name} ({release})"));
    // Kbuild sets itself up while cargo compiles; it waits for the objects.
    let link = kbuild::start_link(tree, name, &out.join("kbuild").join(name))?;
    let shims = compile(sh, crate_, tree, &RustFlags::for_config(&kernel.config))?;
    let staticlib = out.join(format!(
        "cargo/{}/kmod/lib{}.a",
        kmod_build::RUST_TARGET,
        name.replace('-', "_")
    ));

    status::step("Linking", &format!("{name}.ko ({release})"));
    let linked = link.finish(&staticlib, &shims)?;
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
    crate_.fingerprint(tree).record()?;
    status::step("Built", ko.as_str());
    Ok(ko)
}

/// `cargo build` of the staticlib against the sysroot whose `core` and
/// `alloc` were built with the tree's codegen (the kernel's own Rust build
/// uses RUSTC_BOOTSTRAP for the same unstable flags on stable compilers).
/// Returns the C shims the build scripts of this build left in their
/// `OUT_DIR`s.
fn compile(
    sh: &Shell,
    crate_: &ModuleCrate,
    tree: &KernelTree,
    flags: &RustFlags,
) -> Result<Vec<Utf8PathBuf>> {
    let manifest = project_root().join("Cargo.toml");
    let target_dir = crate_.output_dir(tree).join("cargo");
    let cache = crate_.cache_dir();
    let sysroot = sysroot::ensure(sh, flags, &crate_.target_dir.join("kmod"))?;
    let encoded = format!("{}\x1f--sysroot={sysroot}", flags.encoded());
    let (name, target) = (&crate_.name, kmod_build::RUST_TARGET);
    let output = cmd!(sh, "cargo build --quiet --message-format=json-render-diagnostics --manifest-path {manifest} -p {name} --profile kmod --target {target} --target-dir {target_dir}")
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_ENCODED_RUSTFLAGS", encoded)
        .env_remove("RUSTFLAGS")
        .env(kmod_build::KERNEL_ENV, &tree.path)
        .env(kmod_build::CACHE_ENV, &cache)
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("compiling {name} for {}", tree.release))?;
    // rustc's diagnostics (on stderr) belong to the error, where callers
    // (and the compile-fail tests) can read them.
    let diagnostics = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!(
            "compiling {name} for {} failed ({}):\n{diagnostics}",
            tree.release,
            output.status
        );
    }
    eprint!("{diagnostics}");
    let messages =
        String::from_utf8(output.stdout).context("cargo's JSON messages are not UTF-8")?;
    // Cargo reports every build script of the build, fresh or not, with
    // its OUT_DIR: only this build's shims are linked, never stale ones.
    let mut shims = Vec::new();
    for message in cargo_metadata::Message::parse_stream(messages.as_bytes()) {
        if let cargo_metadata::Message::BuildScriptExecuted(script) =
            message.context("reading cargo's JSON messages")?
        {
            let shim = script.out_dir.join(kmod_build::SHIM_FILE);
            if shim.is_file() {
                shims.push(shim);
            }
        }
    }
    Ok(shims)
}

fn remove_if_exists(path: &Utf8Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {path}"))
        }
        _ => Ok(()),
    }
}
