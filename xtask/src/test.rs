//! `cargo xtask test`: the unit and integration tests, then every example
//! module built for each installed kernel and loaded by that real kernel in
//! QEMU.

use anyhow::{bail, ensure, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::{check, Errno, KernelTree, ModuleInfo};
use xshell::{cmd, Shell};

use crate::workspace::{self, ModuleCrate};
use kmod_build::driver::prerequisites::{self, Need};
use kmod_build::driver::qemu::Guest;
use kmod_build::driver::Human;

mod agreement;
mod damaged;
mod editor;
mod edu;
mod examples;
mod ktest;
mod new_project;
mod robust;
mod run;
mod ship;
mod soundness;
mod trust;
use crate::{project_root, status};

#[derive(clap::Args)]
pub struct Args {
    /// Only the QEMU boot tests (skip `cargo test`).
    #[arg(long)]
    boot_only: bool,
    /// Kernels to boot-test (release or tree path); default: every installed tree.
    #[arg(long = "kernel", value_name = "RELEASE|PATH")]
    kernels: Vec<String>,
    /// Seconds each fuzz target runs after the boot tests (0: skip).
    #[arg(long, default_value_t = 20)]
    fuzz_seconds: u32,
    /// Never install missing system packages; say which command would.
    #[arg(long)]
    no_install: bool,
    /// Run only this group of boot tests (with `--boot-only`, nothing else).
    #[arg(long, value_enum, value_name = "GROUP")]
    only: Option<Only>,
}

/// Boot-test groups `--only` can pick.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Only {
    /// Concurrent, killed and damaged-cache builds (test/robust.rs).
    Robust,
    /// Hello, the agreement cases and the examples on the named kernels,
    /// or else on the other Debian flavours (fetched).
    Flavours,
    /// `cargo kmod run` in each kernel (test/run.rs).
    Run,
    /// rust-analyzer's check command in a new project (test/editor.rs).
    Editor,
    /// Signed hello and the DKMS package (test/ship.rs).
    Ship,
    /// `cargo kmod test` in a new project (test/ktest.rs).
    Ktest,
    /// The runtime: its examples booted, its compile-fail cases, clippy.
    Examples,
    /// `examples/edu` with QEMU's edu PCI device, and without (test/edu.rs).
    Edu,
}

pub fn run(args: &Args) -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    prerequisites::ensure(&suite_needs(), !args.no_install, &Human)?;
    if !args.boot_only {
        status::step("Running", "cargo test (library and xtask)");
        // Here the tests that need real trees must find them.
        cmd!(sh, "cargo test --quiet")
            .env(kmod_build::test_support::REQUIRE_TREES_ENV, "1")
            .run()?;
    }
    let trees = workspace::trees_or_every_installed(&args.kernels)?;
    let hello = ModuleCrate::find("hello")?;
    let mut results = Results::default();
    match args.only {
        Some(Only::Robust) => {
            robust::run(&sh, &trees, &mut results);
            return results.finish();
        }
        Some(Only::Run) => {
            run::run(&sh, &trees, &mut results);
            return results.finish();
        }
        Some(Only::Editor) => {
            editor::run(&sh, &trees, &mut results);
            return results.finish();
        }
        Some(Only::Ship) => {
            ship::run(&sh, &trees, &[], &hello, &mut results);
            return results.finish();
        }
        Some(Only::Ktest) => {
            ktest::run(&sh, &trees, &mut results);
            return results.finish();
        }
        Some(Only::Examples) => {
            for tree in &trees {
                let result = examples::run(&sh, tree);
                results.record(format!("boot::examples::{}", tree.release), result);
                runtime_checks(tree, &mut results);
            }
            return results.finish();
        }
        Some(Only::Edu) => {
            for tree in &trees {
                results.record(format!("boot::edu::{}", tree.release), edu::run(tree));
            }
            return results.finish();
        }
        Some(Only::Flavours) | None => {}
    }
    // Named kernels are tested as asked; by default, beside the installed
    // trees, every other flavour of their series.
    let other_flavours = if args.kernels.is_empty() {
        other_flavours(&trees, &mut results)
    } else {
        Vec::new()
    };
    if args.only == Some(Only::Flavours) {
        let asked = if args.kernels.is_empty() {
            &other_flavours
        } else {
            &trees
        };
        on_every_flavour(&sh, &hello, asked.iter(), &mut results);
        return results.finish();
    }
    on_every_flavour(
        &sh,
        &hello,
        trees.iter().chain(&other_flavours),
        &mut results,
    );
    for tree in &trees {
        let own = hello.ko_path(tree);
        let result = if_built(&own, tree, || trust::run(&sh, tree, &own));
        results.record(
            format!("boot::check_agrees_on_signatures::{}", tree.release),
            result,
        );
        let result = if_built(&own, tree, || damaged::run(tree, &own));
        results.record(
            format!("boot::check_agrees_on_damaged_modules::{}", tree.release),
            result,
        );
    }
    for tree in &trees {
        runtime_checks(tree, &mut results);
        results.record(format!("boot::edu::{}", tree.release), edu::run(tree));
    }
    ship::run(&sh, &trees, &other_flavours, &hello, &mut results);
    new_project::run(&sh, &trees, &mut results);
    run::run(&sh, &trees, &mut results);
    editor::run(&sh, &trees, &mut results);
    ktest::run(&sh, &trees, &mut results);
    robust::run(&sh, &trees, &mut results);
    results.record("package::publishable_crates".into(), publishable(&sh));
    if args.fuzz_seconds > 0 {
        // After the boot tests: their broken modules seed the `.ko` target.
        let fuzz = crate::fuzz::Args {
            targets: Vec::new(),
            seconds: args.fuzz_seconds,
        };
        results.record("fuzz::all_targets".into(), crate::fuzz::run(&fuzz));
    }
    results.finish()
}

/// The runtime's compile-fail cases and clippy with `tree`'s bindings.
fn runtime_checks(tree: &KernelTree, results: &mut Results) {
    results.record(
        format!("compile_fail::soundness::{}", tree.release),
        soundness::run(tree),
    );
    results.record(format!("lint::clippy::{}", tree.release), clippy(tree));
}

/// `run()` if hello's `own` module was built for `tree`, else that error.
fn if_built(own: &Utf8Path, tree: &KernelTree, run: impl FnOnce() -> Result<()>) -> Result<()> {
    ensure!(own.is_file(), "hello.ko was not built for {}", tree.release);
    run()
}

/// Clippy, every warning an error, on hello and the examples (and so the
/// runtime) with `tree`'s bindings: their code differs per kernel.
fn clippy(tree: &KernelTree) -> Result<()> {
    for name in [
        "hello", "params", "chardev", "ticker", "counter", "worker", "edu",
    ] {
        ModuleCrate::find(name)?
            .clippy(tree)
            .with_context(|| format!("clippy on {name} for {}", tree.release))?;
    }
    Ok(())
}

/// What every kernel, of every flavour, is tested with: hello built and
/// loaded, the check-versus-kernel agreement cases, the examples.
fn on_every_flavour<'a>(
    sh: &Shell,
    hello: &ModuleCrate,
    trees: impl Iterator<Item = &'a KernelTree>,
    results: &mut Results,
) {
    let everywhere: Vec<&KernelTree> = trees.collect();
    for tree in &everywhere {
        results.record(
            format!("boot::hello::{}", tree.release),
            boot_hello(sh, hello, tree),
        );
    }
    let built: Vec<(&KernelTree, Utf8PathBuf)> = everywhere
        .iter()
        .map(|tree| (*tree, hello.ko_path(tree)))
        .filter(|(_, ko)| ko.is_file())
        .collect();
    for tree in &everywhere {
        let own = hello.ko_path(tree);
        let others: Vec<(&KernelTree, Utf8PathBuf)> =
            built.iter().filter(|(_, ko)| *ko != own).cloned().collect();
        let result = if_built(&own, tree, || agreement::run(sh, tree, &own, &others));
        results.record(
            format!("boot::check_agrees_with_kernel::{}", tree.release),
            result,
        );
        let result = examples::run(sh, tree);
        results.record(format!("boot::examples::{}", tree.release), result);
    }
}

/// The Debian flavours beside `amd64` every series is tested on.
const OTHER_FLAVOURS: &[&str] = &["cloud-amd64", "rt-amd64", "arm64"];

/// For each series (`6.1`, `6.12`) of `installed`, the newest release of
/// each of [`OTHER_FLAVOURS`] the archive offers, fetched (or found in the
/// cache); each failure to find or fetch one is a failed test.
fn other_flavours(installed: &[KernelTree], results: &mut Results) -> Vec<KernelTree> {
    // A bare machine's apt lists only its own architecture's kernels.
    for flavour in OTHER_FLAVOURS {
        let arch = flavour.rsplit('-').next().unwrap_or(flavour);
        if let Err(error) = kmod_build::fetch::enable_architecture(arch, flavour) {
            results.record(format!("fetch::architecture-{arch}"), Err(error.into()));
        }
    }
    let offered = match kmod_build::fetch::offered() {
        Ok(offered) => offered,
        Err(error) => {
            results.record("fetch::offered".into(), Err(error.into()));
            return Vec::new();
        }
    };
    let mut series: Vec<(u32, u32)> = installed
        .iter()
        .map(|tree| {
            let (major, minor, _) = tree.version();
            (major, minor)
        })
        .collect();
    series.sort();
    series.dedup();
    let mut fetched = Vec::new();
    for (major, minor) in series {
        let prefix = format!("{major}.{minor}.");
        for flavour in OTHER_FLAVOURS {
            let newest = offered
                .iter()
                .filter(|release| release.starts_with(&prefix))
                .rfind(|release| kmod_build::fetch::flavour(release) == *flavour);
            let name = format!("fetch::{major}.{minor}-{flavour}");
            let Some(release) = newest else {
                results.record(
                    name,
                    Err(anyhow::anyhow!(
                        "the archive offers no {major}.{minor} {flavour} kernel"
                    )),
                );
                continue;
            };
            status::step("Fetching", release);
            match kmod_build::fetch::fetch(release) {
                Ok(kernel) => fetched.push(kernel.tree),
                Err(error) => results.record(name, Err(error.into())),
            }
        }
    }
    fetched
}

/// What the suite needs beyond a module build: Debian 12's two kernel
/// series, each tree with its bootable image, QEMU and a static busybox,
/// kmod's tools, openssl and dkms for shipping, g++ for libFuzzer, xz.
fn suite_needs() -> Vec<Need> {
    let cache = project_root().join("target/kmod/cache");
    let mut needs = prerequisites::for_build(&cache, false);
    for (series, suffix) in [((6, 1), ""), ((6, 12), "6.12-")] {
        let in_series = move |tree: &KernelTree| {
            let (major, minor, _) = tree.version();
            (major, minor) == series
        };
        let name = format!("{}.{}", series.0, series.1);
        needs.push(Need::new(
            &format!("Debian's {name} kernel-devel tree"),
            &format!("linux-headers-{suffix}amd64"),
            move || KernelTree::installed().iter().any(in_series),
        ));
        needs.push(Need::new(
            &format!("the bootable image of each {name} tree"),
            &format!("linux-image-{suffix}amd64"),
            // Not met by a series without trees: its headers come in the
            // same install, and their image with them.
            move || {
                let trees: Vec<KernelTree> = KernelTree::installed()
                    .into_iter()
                    .filter(in_series)
                    .collect();
                !trees.is_empty()
                    && trees.iter().all(|tree| {
                        Utf8PathBuf::from(format!("/boot/vmlinuz-{}", tree.release)).is_file()
                    })
            },
        ));
    }
    needs.extend([
        Need::program("qemu-system-x86_64", "qemu-system-x86"),
        Need::new("a static busybox", "busybox-static", || {
            kmod_build::driver::qemu::find_busybox().is_ok()
        }),
        Need::program("modinfo", "kmod"),
        Need::program("openssl", "openssl"),
        Need::program("dkms", "dkms"),
        Need::program("g++", "g++"),
        // The counter example's static 32-bit client (gcc-multilib conflicts
        // with the cross compilers, gcc-12-multilib does not).
        Need::new("32-bit libc", "libc6-dev-i386", || {
            Utf8PathBuf::from("/usr/lib32/libc.a").is_file()
        }),
        Need::new("gcc's 32-bit runtime", "gcc-12-multilib", || {
            Utf8PathBuf::from("/usr/lib/gcc/x86_64-linux-gnu/12/32/libgcc.a").is_file()
        }),
        Need::program("xz", "xz-utils"),
        // The arm64 kernels of the matrix: cross-built, booted in QEMU.
        Need::program("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
        Need::program("qemu-system-aarch64", "qemu-system-arm"),
        Need::new(
            "arm64 libc (the counter client)",
            "libc6-dev-arm64-cross",
            || Utf8PathBuf::from("/usr/aarch64-linux-gnu/lib/libc.a").is_file(),
        ),
    ]);
    needs
}

/// The crates users depend on package as they are (SPDX licenses,
/// versions on path dependencies, nothing outside the package needed).
fn publishable(sh: &Shell) -> Result<()> {
    cmd!(sh, "cargo package --quiet --no-verify --allow-dirty -p kmod-build -p kmod-runtime -p kmod-runtime-macros -p cargo-kmod")
        .run()
        .context("cargo package")?;
    Ok(())
}

/// Test outcomes, reported like cargo test does.
#[derive(Default)]
struct Results {
    passed: usize,
    failed: Vec<String>,
    /// `boot::<test>::<release>` outcomes, for the kernel x test table.
    per_kernel: Vec<(String, String, bool)>,
}

impl Results {
    fn record(&mut self, name: String, result: Result<()>) {
        let mut parts = name.splitn(3, "::");
        if let (Some("boot"), Some(test), Some(release)) =
            (parts.next(), parts.next(), parts.next())
        {
            self.per_kernel
                .push((release.to_owned(), test.to_owned(), result.is_ok()));
        }
        match result {
            Ok(()) => {
                eprintln!("test {name} ... ok");
                self.passed += 1;
            }
            Err(error) => {
                eprintln!("test {name} ... FAILED\n{error:#}");
                self.failed.push(name);
            }
        }
    }

    /// One row per kernel, one column per boot test: `loads`/`FAILS`.
    fn table(&self) -> String {
        let mut tests: Vec<&str> = Vec::new();
        let mut kernels: Vec<&str> = Vec::new();
        for (release, test, _) in &self.per_kernel {
            if !tests.contains(&test.as_str()) {
                tests.push(test);
            }
            if !kernels.contains(&release.as_str()) {
                kernels.push(release);
            }
        }
        let width = kernels.iter().map(|k| k.len()).max().unwrap_or(0).max(6);
        let mut out = format!("{:width$}", "KERNEL");
        for test in &tests {
            out.push_str(&format!("  {test}"));
        }
        for kernel in &kernels {
            out.push_str(&format!("\n{kernel:width$}"));
            for test in &tests {
                let cell = self
                    .per_kernel
                    .iter()
                    .find(|(r, t, _)| r == kernel && t == test)
                    .map_or("-", |(_, _, ok)| if *ok { "loads" } else { "FAILS" });
                out.push_str(&format!("  {cell:w$}", w = test.len()));
            }
        }
        out
    }

    /// Prints the kernel x test table and the counts, and writes them to
    /// `target/kmod/test-summary.txt` too.
    fn finish(self) -> Result<()> {
        let mut summary = String::new();
        if !self.per_kernel.is_empty() {
            summary = format!("{}\n", self.table());
        }
        summary += &format!("{} passed, {} failed\n", self.passed, self.failed.len());
        print!("{summary}");
        let log = project_root().join("target/kmod/test-summary.txt");
        if let Err(error) = std::fs::write(&log, &summary) {
            eprintln!("warning: writing {log}: {error}");
        }
        if !self.failed.is_empty() {
            bail!("tests failed: {}", self.failed.join(", "));
        }
        Ok(())
    }
}

/// `hello` built for `tree` loads and unloads cleanly in that kernel, and a
/// copy with one `__versions` CRC flipped is refused by it, as the offline
/// check predicts.
fn boot_hello(sh: &Shell, hello: &ModuleCrate, tree: &KernelTree) -> Result<()> {
    let vmlinuz = tree.image();
    ensure!(
        vmlinuz.is_file(),
        "{vmlinuz} is missing: apt-get install linux-image-{} (or cargo xtask fetch it)",
        tree.release
    );
    let ko = hello.build(tree)?;

    let info = ModuleInfo::read(&ko)?;
    let config = tree.config()?;
    ensure!(
        info.get("vermagic") == Some(check::vermagic(&tree.release, &config).as_str()),
        "vermagic {:?} is not the tree's",
        info.get("vermagic")
    );
    // kmod's own modinfo, not just our parser, sees the tree's vermagic.
    let modinfo_vermagic = cmd!(sh, "modinfo -F vermagic {ko}").read()?;
    ensure!(
        modinfo_vermagic.trim_end() == check::vermagic(&tree.release, &config).trim_end(),
        "modinfo -F vermagic {ko}: {modinfo_vermagic:?}"
    );
    ensure!(
        info.get("license") == Some("GPL"),
        "license is {:?}",
        info.get("license")
    );
    ensure!(
        info.get("author").is_some() && info.get("description").is_some(),
        "author/description missing"
    );
    ensure!(
        check::arch::relocations(&info, &config).is_empty(),
        "relocations: {:?}",
        info.relocation_types
    );

    let bad = ko.with_file_name("hello-badcrc.ko");
    std::fs::write(
        &bad,
        agreement::flip_crc(&ko, &std::fs::read(&ko)?, "_printk")?,
    )
    .with_context(|| format!("writing {bad}"))?;
    let findings = check::versions(&ModuleInfo::read(&bad)?, &tree.symvers()?);
    ensure!(
        findings.len() == 1
            && findings[0].kernel_says == "hello: disagrees about version of symbol _printk",
        "offline check of the flipped copy: {findings:?}"
    );

    let log = Guest::new(&vmlinuz).file(&bad).file(&ko).run(
        "section refused insmod /modules/hello-badcrc.ko\n\
         section refused_log dmesg -r -c\n\
         section load insmod /modules/hello.ko\n\
         section unload rmmod hello\n\
         section log dmesg -r\n",
    )?;
    let refused = log.expect_section("refused")?;
    ensure!(
        refused.insmod() == Ok(Some(Errno::EINVAL)),
        "insmod of the copy with a flipped CRC gave {:?}, not EINVAL:\n{}",
        refused.insmod(),
        refused.output
    );
    let refused_log = log.expect_section("refused_log")?.output;
    let refusal = "hello: disagrees about version of symbol _printk";
    ensure!(
        refused_log.contains(refusal),
        "the kernel did not say `{refusal}`:\n{refused_log}"
    );
    let unknown = format!(
        "hello: Unknown symbol _printk (err -{})",
        Errno::EINVAL.number()
    );
    let expected_refusal = [refusal, unknown.as_str()];
    ensure_clean(
        refused_log
            .lines()
            .filter(|line| !expected_refusal.iter().any(|e| line.ends_with(e))),
    )?;

    log.expect_success("load")?;
    log.expect_success("unload")?;
    let kernel_log = log.expect_section("log")?.output;
    // The init line prints LINUX_VERSION_CODE from the generated bindings:
    // it must be this tree's, not the other kernel's.
    let loaded = format!(
        "hello: loaded, built for {} (LINUX_VERSION_CODE {:#x})",
        tree.release,
        version_code(tree)?
    );
    // `dmesg -r` lines are `<level>[timestamp] message`: KERN_INFO is 6.
    for message in [loaded, "hello: unloaded, goodbye".to_owned()] {
        ensure!(
            kernel_log
                .lines()
                .any(|line| line.starts_with("<6>[") && line.contains(&format!("] {message}"))),
            "no KERN_INFO line `{message}` in the kernel log:\n{kernel_log}"
        );
    }
    ensure_clean(kernel_log.lines())?;
    eprintln!(
        "    {} booted in {:.1}s",
        tree.release,
        log.elapsed.as_secs_f64()
    );
    Ok(())
}

/// `LINUX_VERSION_CODE` as the tree's own generated header defines it.
fn version_code(tree: &KernelTree) -> Result<u32> {
    let header = tree.path.join("include/generated/uapi/linux/version.h");
    let text = std::fs::read_to_string(&header).with_context(|| format!("reading {header}"))?;
    text.lines()
        .find_map(|line| {
            line.strip_prefix("#define LINUX_VERSION_CODE ")?
                .trim()
                .parse()
                .ok()
        })
        .with_context(|| format!("{header} defines no LINUX_VERSION_CODE"))
}

/// Fails on the first kernel log line that signals a problem.
fn ensure_clean<'a>(lines: impl Iterator<Item = &'a str>) -> Result<()> {
    match kmod_build::driver::qemu::first_problem(lines) {
        Some(line) => bail!("the kernel log holds `{line}`"),
        None => Ok(()),
    }
}
