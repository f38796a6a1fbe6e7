//! Robustness of the real CLI (`cargo-kmod kmod build`, the binary this
//! checkout builds) on the hello example: builds started at the same
//! moment, builds killed half-way (SIGINT to the whole process group,
//! SIGKILL to the driver alone), and builds handed damaged cache entries.
//! Each group ends with hello loaded by every tree in QEMU.
//!
//! Every build runs with `KMOD_BUILD_CACHE_HOME` set to a directory of
//! this test (seeded with copies of the user's sysroots), so that killing
//! a sysroot build or damaging an rlib never touches what other checkouts
//! share, and with [`MARKER`]`=<id>` in its environment: every process the
//! build starts inherits it, which is how leftovers are found in `/proc`.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, ensure, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::check::{self, Kernel, Verdict};
use kmod_build::{KernelTree, ModuleInfo};
use rustix::process::{kill_process, kill_process_group, Pid, Signal};
use xshell::{cmd, Shell};

use super::{ensure_clean, Results};
use crate::project_root;
use kmod_build::driver::qemu::Guest;

/// Set on every build this test starts, to a value unique to the build.
const MARKER: &str = "KMOD_ROBUST_TEST";
/// How long a killed build may take to be gone entirely.
const GONE_WITHIN: Duration = Duration::from_secs(5);
/// How long a build may take to reach the point where it is killed.
const REACH_WITHIN: Duration = Duration::from_secs(300);
/// The module the tests build, and a second one for two modules at once.
const HELLO: &str = "hello";
const OTHER: &str = "params";

pub fn run(sh: &Shell, trees: &[KernelTree], results: &mut Results) {
    let started = Instant::now();
    let env = match Env::new(sh) {
        Ok(env) => env,
        Err(error) => {
            for tree in trees {
                for group in [
                    "robust_concurrent",
                    "robust_killed",
                    "robust_damaged_caches",
                ] {
                    results.record(
                        format!("boot::{group}::{}", tree.release),
                        Err(anyhow::anyhow!("setting up: {error:#}")),
                    );
                }
            }
            return;
        }
    };
    // A sysroot build killed and then redone (minutes) once, for the first
    // tree; it also tells which sysroot that tree uses.
    let mut sysroot = None;
    if let [first, ..] = trees {
        let (result, dir) = killed_sysroot(&env, first);
        sysroot = dir;
        results.record(
            format!("robust::killed_during_sysroot::{}", first.release),
            result,
        );
    }
    if let [one, two, ..] = trees {
        results.record(
            "robust::concurrent_two_kernels".into(),
            concurrent_two_kernels(&env, one, two),
        );
    }
    let mut timings = Vec::new();
    for tree in trees {
        let tree_started = Instant::now();
        let concurrent = then_boot(&env, tree, concurrent(&env, tree));
        results.record(
            format!("boot::robust_concurrent::{}", tree.release),
            concurrent,
        );
        let killed = then_boot(&env, tree, killed(&env, tree));
        results.record(format!("boot::robust_killed::{}", tree.release), killed);
        let tree_sysroot = sysroot.as_ref().filter(|_| std::ptr::eq(tree, &trees[0]));
        let damaged = then_boot(&env, tree, damaged(&env, tree, tree_sysroot));
        results.record(
            format!("boot::robust_damaged_caches::{}", tree.release),
            damaged,
        );
        timings.push(format!(
            "{} {:.0}s",
            tree.release,
            tree_started.elapsed().as_secs_f64()
        ));
    }
    eprintln!(
        "    robust: {:.0}s in all ({} per tree, after the sysroot case)",
        started.elapsed().as_secs_f64(),
        timings.join(", ")
    );
}

/// What every build of this test shares.
struct Env {
    root: Utf8PathBuf,
    driver: Utf8PathBuf,
    /// The test's own `KMOD_BUILD_CACHE_HOME`, removed when dropped.
    _cache_home: tempfile::TempDir,
    cache_home_path: Utf8PathBuf,
}

impl Env {
    fn new(sh: &Shell) -> Result<Env> {
        let root = project_root();
        cmd!(
            sh,
            "cargo build --quiet --manifest-path {root}/Cargo.toml -p cargo-kmod"
        )
        .run()?;
        let driver = root.join("target/debug/cargo-kmod");
        let cache_home = tempfile::Builder::new()
            .prefix("kmod-robust-home-")
            .tempdir()
            .context("creating a cache home for the robustness tests")?;
        let cache_home_path = Utf8PathBuf::try_from(cache_home.path().to_owned())?;
        let env = Env {
            root,
            driver,
            _cache_home: cache_home,
            cache_home_path,
        };
        env.seed_sysroots(None)?;
        Ok(env)
    }

    fn sysroots(&self) -> Utf8PathBuf {
        self.cache_home_path.join("sysroot")
    }

    /// Copies the user's complete sysroots into the test's cache home
    /// (all but `except`), so that builds need not redo them.
    fn seed_sysroots(&self, except: Option<&Utf8Path>) -> Result<()> {
        let from = kmod_build::cache_home().join("sysroot");
        let to = self.sysroots();
        std::fs::create_dir_all(&to).with_context(|| format!("creating {to}"))?;
        let Ok(entries) = from.read_dir_utf8() else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let target = to.join(name);
            // Only whole ones: `<hash>` directories, not `<hash>.build.*`.
            if name.contains('.') || target.exists() || Some(target.as_path()) == except {
                continue;
            }
            let status = Command::new("cp")
                .arg("-a")
                .arg(entry.path())
                .arg(&target)
                .status()
                .context("running cp")?;
            ensure!(
                status.success(),
                "cp -a {} {target}: {status}",
                entry.path()
            );
        }
        Ok(())
    }

    fn ko(&self, module: &str, tree: &KernelTree) -> Utf8PathBuf {
        self.out(tree).join(format!("{module}.ko"))
    }

    /// `target/kmod/<release>`.
    fn out(&self, tree: &KernelTree) -> Utf8PathBuf {
        self.root.join("target/kmod").join(&tree.release)
    }

    /// `target/kmod/cache`.
    fn cache(&self) -> Utf8PathBuf {
        self.root.join("target/kmod/cache")
    }

    /// Makes the next build of `module` compile it for real (cargo sees a
    /// newer source, the fingerprint a changed one).
    fn touch(&self, module: &str) -> Result<()> {
        let source = self.root.join("examples").join(module).join("src/lib.rs");
        std::fs::File::options()
            .write(true)
            .open(&source)
            .and_then(|file| file.set_modified(SystemTime::now()))
            .with_context(|| format!("touching {source}"))
    }

    /// Starts `cargo-kmod kmod build -p <module> --kernel <release>` in its
    /// own process group.
    fn start(&self, module: &str, tree: &KernelTree) -> Result<Build> {
        self.start_in(module, tree, &self.cache_home_path)
    }

    fn start_in(&self, module: &str, tree: &KernelTree, cache_home: &Utf8Path) -> Result<Build> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let marker = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut command = Command::new(&self.driver);
        command
            .args(["kmod", "build", "--no-install", "--manifest-path"])
            .arg(self.root.join("Cargo.toml"))
            .args(["-p", module, "--kernel", &tree.release])
            .env(kmod_build::CACHE_HOME_ENV, cache_home)
            .env(MARKER, &marker)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", self.driver))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let (lines, watch) = mpsc::channel();
        let readers = vec![
            read_lines(
                child.stdout.take(),
                Arc::new(Mutex::new(String::new())),
                None,
            ),
            read_lines(child.stderr.take(), stderr.clone(), Some(lines)),
        ];
        Ok(Build {
            what: format!("{module} for {}", tree.release),
            child,
            marker,
            stderr,
            watch,
            readers,
            started: Instant::now(),
        })
    }

    /// A build of `module` that must succeed; its `.ko` checked.
    fn build_ok(&self, module: &str, tree: &KernelTree, kernel: &Kernel) -> Result<Finished> {
        let finished = self.start(module, tree)?.finish(None)?;
        ensure!(
            finished.status.success(),
            "building {module} for {} failed ({}):\n{}",
            tree.release,
            finished.status,
            tail(&finished.stderr, 30)
        );
        accepted(&self.ko(module, tree), kernel)?;
        Ok(finished)
    }
}

/// Forwards `from`'s lines into `text` (and `lines`, if given).
fn read_lines(
    from: Option<impl Read + Send + 'static>,
    text: Arc<Mutex<String>>,
    lines: Option<mpsc::Sender<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let Some(from) = from else { return };
        for line in BufReader::new(from)
            .lines()
            .map_while(std::result::Result::ok)
        {
            if let Ok(mut text) = text.lock() {
                text.push_str(&line);
                text.push('\n');
            }
            if let Some(lines) = &lines {
                let _ = lines.send(line);
            }
        }
    })
}

/// A running build.
struct Build {
    what: String,
    child: Child,
    marker: String,
    stderr: Arc<Mutex<String>>,
    watch: mpsc::Receiver<String>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
}

/// A build that ended.
struct Finished {
    status: ExitStatus,
    stderr: String,
    elapsed: Duration,
}

impl Build {
    /// Waits until the driver prints a line containing `text`; the line.
    fn wait_for_line(&self, text: &str) -> Result<String> {
        let deadline = Instant::now() + REACH_WITHIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.watch.recv_timeout(left) {
                Ok(line) if line.contains(text) => return Ok(line),
                Ok(_) => {}
                Err(_) => bail!(
                    "{}: no line with `{text}` (ended or timed out):\n{}",
                    self.what,
                    tail(&self.stderr(), 20)
                ),
            }
        }
    }

    /// Waits until one of the build's processes has `text` in its command
    /// line.
    fn wait_for_process(&self, text: &str) -> Result<()> {
        let deadline = Instant::now() + REACH_WITHIN;
        while Instant::now() < deadline {
            if marked(&self.marker)
                .iter()
                .any(|(_, cmdline)| cmdline.contains(text))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("{}: no process running `{text}`", self.what)
    }

    fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn pid(&self) -> Pid {
        Pid::from_child(&self.child)
    }

    /// Waits for the driver (then says so on `exited`) and for its output
    /// to end: for every process that holds its pipes.
    fn finish(mut self, exited: Option<mpsc::Sender<()>>) -> Result<Finished> {
        let status = self
            .child
            .wait()
            .with_context(|| format!("waiting for {}", self.what));
        let elapsed = self.started.elapsed();
        if let Some(exited) = exited {
            let _ = exited.send(());
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Ok(Finished {
            status: status?,
            stderr: self.stderr(),
            elapsed,
        })
    }
}

/// Processes (pid, command line) with `MARKER=marker` in their
/// environment. Zombies have none, and a process that ends while it is
/// read is not one.
fn marked(marker: &str) -> Vec<(u32, String)> {
    let wanted = format!("{MARKER}={marker}");
    let Ok(proc) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in proc.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == wanted.as_bytes())
        {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push((pid, cmdline.trim_end().to_owned()));
        }
    }
    found
}

/// `ko` is a module `check` says the kernel loads.
fn accepted(ko: &Utf8Path, kernel: &Kernel) -> Result<()> {
    let report = check::check(&ModuleInfo::read(ko)?, kernel);
    match report.verdict {
        Verdict::Loads | Verdict::LoadsWithTaint(_) => Ok(()),
        _ => bail!("check refuses {ko}:\n{report}"),
    }
}

/// The last `n` lines of `text`, indented.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|line| format!("  | {line}\n"))
        .collect()
}

/// Failures of a group's cases, gathered so that one failure does not
/// hide the others.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn case(&mut self, name: &str, result: Result<()>) {
        match result {
            Ok(()) => eprintln!("    {name}: ok"),
            Err(error) => {
                eprintln!("    {name}: FAILED: {error:#}");
                self.0.push(format!("{name}: {error:#}"));
            }
        }
    }

    fn into_result(self) -> Result<()> {
        ensure!(self.0.is_empty(), "{}", self.0.join("\n"));
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// a. Builds started at the same moment

/// Builds `(module, tree)` all at once; each must succeed with a `.ko`
/// `check` accepts. Says whether one waited for another.
fn at_once(env: &Env, builds: &[(&str, &KernelTree)]) -> Result<()> {
    for (module, _) in builds {
        env.touch(module)?;
    }
    let running: Vec<Build> = builds
        .iter()
        .map(|(module, tree)| env.start(module, tree))
        .collect::<Result<_>>()?;
    let finished: Vec<Finished> = running
        .into_iter()
        .map(|build| build.finish(None))
        .collect::<Result<_>>()?;
    let mut failures = Vec::new();
    for ((module, tree), finished) in builds.iter().zip(&finished) {
        let blocked: Vec<&str> = finished
            .stderr
            .lines()
            .filter(|line| line.contains("Blocking waiting for"))
            .map(str::trim)
            .collect();
        eprintln!(
            "      {module} for {}: {} in {:.1}s{}",
            tree.release,
            finished.status,
            finished.elapsed.as_secs_f64(),
            if blocked.is_empty() {
                String::new()
            } else {
                format!(", said: {}", blocked.join("; "))
            }
        );
        if !finished.status.success() {
            failures.push(format!(
                "{module} for {} failed ({}):\n{}",
                tree.release,
                finished.status,
                tail(&finished.stderr, 30)
            ));
            continue;
        }
        let checked = Kernel::load(tree)
            .map_err(anyhow::Error::from)
            .and_then(|kernel| accepted(&env.ko(module, tree), &kernel));
        if let Err(error) = checked {
            failures.push(format!("{module} for {}: {error:#}", tree.release));
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

fn concurrent(env: &Env, tree: &KernelTree) -> Result<()> {
    let mut failures = Failures::default();
    failures.case(
        "same module twice at once",
        at_once(env, &[(HELLO, tree), (HELLO, tree)]),
    );
    failures.case(
        "two modules at once",
        at_once(env, &[(HELLO, tree), (OTHER, tree)]),
    );
    failures.into_result()
}

fn concurrent_two_kernels(env: &Env, one: &KernelTree, two: &KernelTree) -> Result<()> {
    at_once(env, &[(HELLO, one), (HELLO, two)])
}

// ---------------------------------------------------------------------------
// b. Builds killed half-way

#[derive(Debug, Clone, Copy)]
enum Kill {
    /// SIGINT to the driver's whole process group (Ctrl-C in a terminal).
    GroupInterrupt,
    /// SIGKILL to the driver only: its children are orphaned.
    DriverKill,
}

/// Kills `build` the `how` way and checks what it leaves: no process of
/// the build after [`GONE_WITHIN`]; on SIGINT, a prompt non-zero exit
/// saying it was interrupted; no partial file under `dirs`; at the output
/// path no `.ko` or one `check` accepts.
fn kill_and_inspect(
    env: &Env,
    build: Build,
    how: Kill,
    tree: &KernelTree,
    kernel: &Kernel,
) -> Result<()> {
    let pid = build.pid();
    let marker = build.marker.clone();
    let killed_at = Instant::now();
    let sent = match how {
        Kill::GroupInterrupt => kill_process_group(pid, Signal::INT),
        Kill::DriverKill => kill_process(pid, Signal::KILL),
    };
    sent.with_context(|| format!("sending {how:?} to {}", build.what))?;
    let mut problems = Vec::new();
    // The driver is reaped by the waiter (no zombie), whose output readers
    // end only when every process holding its pipes has.
    let (exited, driver_gone) = mpsc::channel();
    let waiter = std::thread::spawn(move || build.finish(Some(exited)));
    if driver_gone.recv_timeout(GONE_WITHIN).is_err() {
        problems.push(format!(
            "the driver had not exited {}s after {how:?}",
            GONE_WITHIN.as_secs()
        ));
        let _ = kill_process(pid, Signal::KILL);
    }
    let mut left = marked(&marker);
    while !left.is_empty() && killed_at.elapsed() < GONE_WITHIN {
        std::thread::sleep(Duration::from_millis(50));
        left = marked(&marker);
    }
    if !left.is_empty() {
        let list: Vec<String> = left.iter().map(|(p, c)| format!("  {p} {c}")).collect();
        problems.push(format!(
            "{} process(es) of the build still ran {}s after {how:?}:\n{}",
            left.len(),
            GONE_WITHIN.as_secs(),
            list.join("\n")
        ));
        // Ours, found by the marker: stopped so that later cases start clean.
        for (pid, _) in &left {
            if let Some(pid) = i32::try_from(*pid).ok().and_then(Pid::from_raw) {
                let _ = kill_process(pid, Signal::KILL);
            }
        }
    }
    let finished = waiter
        .join()
        .map_err(|_| anyhow::anyhow!("the waiter thread panicked"))??;
    if let Kill::GroupInterrupt = how {
        if finished.status.success() {
            problems.push("the driver exited 0 after SIGINT".into());
        }
        if !finished.stderr.contains("interrupted") {
            problems.push(format!(
                "the driver did not say it was interrupted ({}); its stderr ends:\n{}",
                finished.status,
                tail(&finished.stderr, 8)
            ));
        }
    }
    // A driver killed by SIGKILL cannot remove the file it was writing;
    // the next build of the module collects it (checked by the caller).
    if let (Kill::GroupInterrupt, Err(error)) = (how, leftovers_gone(env, tree)) {
        problems.push(format!("{error:#}"));
    }
    let ko = env.ko(HELLO, tree);
    if ko.exists() {
        if let Err(error) = accepted(&ko, kernel) {
            problems.push(format!("an unchecked module was left: {error:#}"));
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

/// No partial file in the tree's output directory or the cache.
fn leftovers_gone(env: &Env, tree: &KernelTree) -> Result<()> {
    let partial = partial_files(&[env.out(tree), env.cache()]);
    ensure!(
        partial.is_empty(),
        "partial files left: {}",
        partial.join(", ")
    );
    Ok(())
}

/// Files named `*.partial` or `.kmod-partial.*` below `dirs`.
fn partial_files(dirs: &[Utf8PathBuf]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack: Vec<Utf8PathBuf> = dirs.to_vec();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = dir.read_dir_utf8() else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.ends_with(".partial") || name.starts_with(".kmod-partial.") {
                found.push(entry.path().to_string());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.into_path());
            }
        }
    }
    found
}

/// Where a build is killed.
#[derive(Debug, Clone, Copy)]
enum Point {
    /// While rustc compiles the module crate.
    Cargo,
    /// After "Linking": Kbuild links and runs modpost.
    Make,
    /// After "Checking".
    Check,
}

fn killed(env: &Env, tree: &KernelTree) -> Result<()> {
    let kernel = Kernel::load(tree)?;
    // Start from a built module, so that each kill is of a warm build.
    env.build_ok(HELLO, tree, &kernel)?;
    let mut failures = Failures::default();
    for point in [Point::Cargo, Point::Make, Point::Check] {
        for how in [Kill::GroupInterrupt, Kill::DriverKill] {
            let name = format!("killed ({how:?}) during {point:?}");
            let result = (|| {
                env.touch(HELLO)?;
                let build = env.start(HELLO, tree)?;
                match point {
                    Point::Cargo => build.wait_for_process("--crate-name hello")?,
                    Point::Make => drop(build.wait_for_line("Linking hello.ko")?),
                    Point::Check => drop(build.wait_for_line("Checking hello.ko")?),
                }
                let inspected = kill_and_inspect(env, build, how, tree, &kernel);
                // The next build needs no cleanup, whatever the kill left,
                // and collects what a killed driver could not.
                let next = env
                    .build_ok(HELLO, tree, &kernel)
                    .and_then(|_| leftovers_gone(env, tree));
                match (inspected, next) {
                    (Ok(()), Ok(())) => Ok(()),
                    (Err(e), Ok(())) => Err(e),
                    (Ok(()), Err(e)) => Err(e.context("the next build")),
                    (Err(e), Err(n)) => Err(e.context(format!("and the next build: {n:#}"))),
                }
            })();
            failures.case(&name, result);
        }
    }
    failures.into_result()
}

/// A sysroot build (in a test cache home emptied of them) killed twice,
/// SIGINT to the group, then SIGKILL to the driver, while cargo builds
/// `core`; then one build that must finish it and collect the leftovers.
/// Also the tree's sysroot directory (if seen), for the damaged-cache tests.
fn killed_sysroot(env: &Env, tree: &KernelTree) -> (Result<()>, Option<Utf8PathBuf>) {
    let mut sysroot = None;
    let result = killed_sysroot_into(env, tree, &mut sysroot);
    (result, sysroot)
}

fn killed_sysroot_into(
    env: &Env,
    tree: &KernelTree,
    sysroot: &mut Option<Utf8PathBuf>,
) -> Result<()> {
    let kernel = Kernel::load(tree)?;
    let sysroots = env.sysroots();
    std::fs::remove_dir_all(&sysroots).with_context(|| format!("removing {sysroots}"))?;
    let mut failures = Failures::default();
    for how in [Kill::GroupInterrupt, Kill::DriverKill] {
        let result = (|| {
            env.touch(HELLO)?;
            let build = env.start(HELLO, tree)?;
            let line = build.wait_for_line("core and alloc into ")?;
            let dir = line
                .split("core and alloc into ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .context("no directory in the sysroot status line")?;
            *sysroot = Some(Utf8PathBuf::from(dir));
            build.wait_for_process("--crate-name core")?;
            kill_and_inspect(env, build, how, tree, &kernel)
        })();
        failures.case(&format!("killed ({how:?}) while building core"), result);
    }
    let sysroot = sysroot.clone().context("no sysroot build was seen")?;
    // Every other tree's sysroot, copied back: only this one is rebuilt.
    env.seed_sysroots(Some(&sysroot))?;
    let result = (|| {
        let finished = env.build_ok(HELLO, tree, &kernel)?;
        eprintln!(
            "      the next build redid the sysroot in {:.0}s",
            finished.elapsed.as_secs_f64()
        );
        let stem = sysroot.file_name().unwrap_or_default();
        let leftovers: Vec<String> = sysroots
            .read_dir_utf8()
            .with_context(|| format!("reading {sysroots}"))?
            .flatten()
            .map(|e| e.file_name().to_owned())
            // `<key>.lock` stays: it is the lock itself, never a leftover.
            .filter(|name| name.starts_with(&format!("{stem}.")) && !name.ends_with(".lock"))
            .collect();
        ensure!(
            leftovers.is_empty(),
            "the killed sysroot builds' directories are still in {sysroots}: {}",
            leftovers.join(", ")
        );
        Ok(())
    })();
    failures.case("the next build after killed sysroot builds", result);
    failures.into_result()
}

// ---------------------------------------------------------------------------
// c. Damaged cache entries

#[derive(Debug, Clone, Copy)]
enum Damage {
    /// The first 17 bytes kept.
    Truncated,
    /// Random bytes, as many as there were.
    Garbled,
}

impl Damage {
    fn apply(self, path: &Utf8Path) -> Result<Vec<u8>> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
        let damaged: Vec<u8> = match self {
            Damage::Truncated => bytes.iter().copied().take(17).collect(),
            Damage::Garbled => std::iter::repeat_with(|| fastrand::u8(..))
                .take(bytes.len())
                .collect(),
        };
        std::fs::write(path, &damaged).with_context(|| format!("writing {path}"))?;
        Ok(damaged)
    }
}

/// A cache entry: what it is and how to find it after a build.
struct Entry {
    name: &'static str,
    path: Utf8PathBuf,
    /// Whether the runtime's build script must run again to read it.
    read_by_build_script: bool,
}

fn damaged(env: &Env, tree: &KernelTree, sysroot: Option<&Utf8PathBuf>) -> Result<()> {
    let kernel = Kernel::load(tree)?;
    env.touch(HELLO)?;
    env.build_ok(HELLO, tree, &kernel)?;
    let cache = env.cache().join(&tree.release);
    let bindings = bindings_entry(env, tree, &cache)?;
    let mut entries = vec![
        Entry {
            name: "bindings",
            path: bindings.clone(),
            read_by_build_script: true,
        },
        Entry {
            name: "bindings headers",
            path: bindings.with_extension("headers"),
            read_by_build_script: true,
        },
        Entry {
            name: "C flags",
            path: cache.join("cflags"),
            read_by_build_script: true,
        },
        Entry {
            name: "fingerprint",
            path: env.out(tree).join(format!("{HELLO}.fingerprint")),
            read_by_build_script: false,
        },
        Entry {
            name: "libclang location",
            path: env.cache().join("libclang"),
            read_by_build_script: false,
        },
    ];
    if let Some(sysroot) = sysroot {
        entries.push(Entry {
            name: "sysroot libcore",
            path: libcore(sysroot, tree)?,
            read_by_build_script: false,
        });
    }
    let mut failures = Failures::default();
    for entry in &entries {
        for damage in [Damage::Truncated, Damage::Garbled] {
            let name = format!("{} {damage:?} ({})", entry.name, entry.path);
            failures.case(&name, damaged_entry(env, tree, &kernel, entry, damage));
        }
    }
    for wrong in [false, true] {
        let name = format!("C flags guessed {}", if wrong { "wrong" } else { "right" });
        failures.case(&name, guessed_flags(env, tree, &kernel, wrong));
    }
    failures.into_result()
}

/// A tree without C flags of its own beside a sibling's (another flavour
/// or ABI of its series, as on a kernel update): the build generates the
/// bindings with the sibling's flags, and its link, whose compile of the
/// shim is the tree's own command, confirms them (the entry it leaves is
/// what a probe finds) or, `wrong` (a define the tree's flags lack), shows
/// them wrong: the build then runs again with the tree's.
fn guessed_flags(env: &Env, tree: &KernelTree, kernel: &Kernel, wrong: bool) -> Result<()> {
    let cache = env.cache();
    let own = cache.join(&tree.release).join("cflags");
    let entry = std::fs::read(&own).with_context(|| format!("reading {own}"))?;
    let text = kmod_build::parse_cache_entry(&entry)
        .map_err(|why| anyhow::anyhow!("{own}: {why}"))?
        .to_owned();
    let (stamp, flags) = text
        .split_once('\n')
        .with_context(|| format!("{own} has no stamp line"))?;
    let sibling = format!("{}-sibling", tree.release);
    let mut guess = format!(
        "{}\n{flags}",
        stamp.replacen(&format!(" {} ", tree.release), &format!(" {sibling} "), 1)
    );
    if wrong {
        guess.push_str("-DKMOD_BUILD_WRONG_GUESS=1\n");
    }
    let sibling_dir = cache.join(&sibling);
    std::fs::create_dir_all(&sibling_dir).with_context(|| format!("creating {sibling_dir}"))?;
    std::fs::write(
        sibling_dir.join("cflags"),
        kmod_build::encode_cache_entry(&guess),
    )?;
    std::fs::remove_file(&own).with_context(|| format!("removing {own}"))?;
    let result = (|| {
        env.touch(HELLO)?;
        let finished = env.build_ok(HELLO, tree, kernel)?;
        let rebuilt = finished.stderr.contains("Rebuilding");
        ensure!(
            rebuilt == wrong,
            "the build {} again:\n{}",
            if rebuilt { "ran" } else { "did not run" },
            tail(&finished.stderr, 12)
        );
        let probe_dir = tempfile::tempdir()?;
        let probed =
            kmod_build::CFlags::probe(tree, &Utf8PathBuf::try_from(probe_dir.path().to_owned())?)?;
        let learned = kmod_build::CFlags::cached(tree, &cache.join(&tree.release));
        ensure!(
            learned.as_ref() == Some(&probed),
            "the C flags the build left in {own} are not the probe's:\n{:?}\nprobed:\n{:?}",
            learned.map(|flags| flags.args),
            probed.args
        );
        Ok(())
    })();
    std::fs::remove_dir_all(&sibling_dir).with_context(|| format!("removing {sibling_dir}"))?;
    result
}

/// The entry of the bindings cache the runtime's build used: the one
/// whose text is the runtime's `bindings.rs` (which the driver generates
/// for the build-script override, see `kmod_build::driver::bindings`).
fn bindings_entry(env: &Env, tree: &KernelTree, cache: &Utf8Path) -> Result<Utf8PathBuf> {
    let generated = env.out(tree).join("bindings/kmod_runtime/bindings.rs");
    let used = std::fs::read(&generated).with_context(|| format!("reading {generated}"))?;
    for entry in cache
        .read_dir_utf8()
        .with_context(|| format!("reading {cache}"))?
        .flatten()
    {
        let name = entry.file_name();
        if name.starts_with("bindings-") && name.ends_with(".rs") {
            // An entry is its contents after a checksum line.
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            if let Ok(text) = kmod_build::parse_cache_entry(&bytes) {
                if used == text.as_bytes() {
                    return Ok(entry.into_path());
                }
            }
        }
    }
    bail!("no entry of {cache} holds the runtime's {generated}")
}

/// `libcore-*.rlib` of `sysroot` for the tree's target.
fn libcore(sysroot: &Utf8Path, tree: &KernelTree) -> Result<Utf8PathBuf> {
    let lib = sysroot
        .join("lib/rustlib")
        .join(tree.rust_target())
        .join("lib");
    lib.read_dir_utf8()
        .with_context(|| format!("reading {lib}"))?
        .flatten()
        .map(|entry| entry.into_path())
        .find(|path| {
            path.file_name()
                .is_some_and(|n| n.starts_with("libcore-") && n.ends_with(".rlib"))
        })
        .with_context(|| format!("no libcore-*.rlib in {lib}"))
}

/// `cargo clean -p kmod-runtime` in the tree's target dir: its build
/// script runs again and reads the caches.
fn clean_runtime(env: &Env, tree: &KernelTree) -> Result<()> {
    let status = Command::new("cargo")
        .arg("clean")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(env.root.join("Cargo.toml"))
        .args(["-p", "kmod-runtime", "--target", tree.rust_target()])
        .args(["--profile", kmod_build::driver::PROFILE_NAME])
        .arg("--target-dir")
        .arg(env.out(tree).join("cargo"))
        .args(kmod_build::driver::profile_args())
        .status()
        .context("running cargo clean")?;
    ensure!(status.success(), "cargo clean -p kmod-runtime: {status}");
    Ok(())
}

/// Damages `entry`; the next build must rebuild it (and succeed) or fail
/// naming it (not by failing to compile a crate); then, with the file
/// deleted, a build must succeed.
fn damaged_entry(
    env: &Env,
    tree: &KernelTree,
    kernel: &Kernel,
    entry: &Entry,
    damage: Damage,
) -> Result<()> {
    ensure!(
        entry.path.is_file(),
        "{} is not there after a build",
        entry.path
    );
    let bad = damage.apply(&entry.path)?;
    if entry.read_by_build_script {
        clean_runtime(env, tree)?;
    }
    env.touch(HELLO)?;
    let finished = env.start(HELLO, tree)?.finish(None)?;
    // A damaged cache is never the code's fault: no crate may fail to
    // compile because of it (the runtime, or the module over a bad core).
    let compile_failed = finished.stderr.contains("could not compile `");
    let outcome = if finished.status.success() {
        accepted(&env.ko(HELLO, tree), kernel)?;
        let now = std::fs::read(&entry.path).ok();
        ensure!(
            now.as_deref() != Some(&bad[..]),
            "the build succeeded but left {} damaged: it never read it, or trusted it",
            entry.path
        );
        eprintln!("      {}: rebuilt by the next build", entry.path);
        Ok(())
    } else if finished.stderr.contains(entry.path.as_str()) && !compile_failed {
        eprintln!("      {}: the build failed naming it", entry.path);
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "the build failed ({}) {}, without naming {}:\n{}",
            finished.status,
            if compile_failed {
                "compiling a crate"
            } else {
                "otherwise"
            },
            entry.path,
            tail(&finished.stderr, 12)
        ))
    };
    if !finished.status.success() {
        // What a user told by the error does: delete it and build again.
        std::fs::remove_file(&entry.path).with_context(|| format!("removing {}", entry.path))?;
        if entry.read_by_build_script {
            clean_runtime(env, tree)?;
        }
        if let Err(error) = env.build_ok(HELLO, tree, kernel) {
            if entry.name == "sysroot libcore" {
                // Restored from the user's copy, for the later cases.
                restore_sysroot(env, &entry.path)?;
            }
            return Err(match outcome {
                Ok(()) => error.context(format!("after deleting {}", entry.path)),
                Err(first) => first.context(format!(
                    "and after deleting {} the build failed too: {error:#}",
                    entry.path
                )),
            });
        }
    }
    outcome
}

/// Replaces the test's sysroot holding `file` with the user's copy.
fn restore_sysroot(env: &Env, file: &Utf8Path) -> Result<()> {
    let sysroots = env.sysroots();
    let dir = file
        .strip_prefix(&sysroots)
        .ok()
        .and_then(|rest| rest.components().next())
        .map(|hash| sysroots.join(hash.as_str()))
        .with_context(|| format!("{file} is not in {sysroots}"))?;
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {dir}"))?;
    env.seed_sysroots(None)
}

// ---------------------------------------------------------------------------

/// A group's `result`, then hello booted whatever it was.
fn then_boot(env: &Env, tree: &KernelTree, result: Result<()>) -> Result<()> {
    let booted = boot_hello(env, tree).context("booting hello after the group");
    match (result, booted) {
        (Ok(()), booted) => booted,
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(b)) => Err(anyhow::anyhow!("{e:#}\n{b:#}")),
    }
}

/// hello, as the last build left it, loads and unloads in the tree's
/// kernel, saying it was built for it.
fn boot_hello(env: &Env, tree: &KernelTree) -> Result<()> {
    let kernel = Kernel::load(tree)?;
    let ko = env.ko(HELLO, tree);
    if !ko.is_file() {
        env.build_ok(HELLO, tree, &kernel)?;
    }
    let log = Guest::new(&tree.image()).file(&ko).run(
        "section load insmod /modules/hello.ko\n\
         section unload rmmod hello\n\
         section log dmesg -r\n",
    )?;
    log.expect_success("load")?;
    log.expect_success("unload")?;
    let kernel_log = log.expect_section("log")?.output;
    let loaded = format!("hello: loaded, built for {}", tree.release);
    ensure!(
        kernel_log.contains(&loaded),
        "no `{loaded}` in the kernel log:\n{kernel_log}"
    );
    ensure_clean(kernel_log.lines())?;
    eprintln!(
        "    {} loaded hello in {:.1}s",
        tree.release,
        log.elapsed.as_secs_f64()
    );
    Ok(())
}
