//! `cargo xtask bench`: the Rust hello against its C twin (`examples/c-hello`
//! built with plain `make M=`) on every installed tree, in the same run, as
//! ratios of medians; then `check` timings; with `--dkms`, DKMS package
//! sizes and builds (bench/dkms.rs). Writes `BENCHMARKS.md`.

mod dkms;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::{check, KernelTree, ModuleInfo};
use xshell::{cmd, Shell};

use crate::workspace::{self, ModuleCrate};
use crate::{project_root, status};

#[derive(clap::Args)]
pub struct Args {
    /// Runs per case; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Kernels to measure on (release or tree path); default: every installed tree.
    #[arg(long = "kernel", value_name = "RELEASE|PATH")]
    kernels: Vec<String>,
    /// Only time `check` (needs hello built); prints without writing BENCHMARKS.md.
    #[arg(long)]
    check_only: bool,
    /// Also package hello and the C hello for DKMS and time `dkms build`
    /// for each kernel (root; one run each, minutes).
    #[arg(long)]
    dkms: bool,
    /// Only the DKMS part: its section of BENCHMARKS.md is replaced.
    #[arg(long, conflicts_with = "check_only")]
    dkms_only: bool,
}

/// One row: the C and Rust medians of a case on one tree.
struct Row {
    case: String,
    c: Duration,
    rust: Duration,
    goal: &'static str,
}

pub fn run(args: &Args) -> Result<()> {
    ensure!(args.runs > 0, "--runs must be at least 1");
    let sh = Shell::new()?;
    let trees = workspace::trees_or_every_installed(&args.kernels)?;
    let hello = ModuleCrate::find("hello")?;
    if args.check_only {
        let checks = trees
            .iter()
            .map(|tree| measure_check(&hello.ko_path(tree), tree))
            .collect::<Result<Vec<_>>>()?;
        println!("{}", check_table(&checks));
        return Ok(());
    }
    if args.dkms_only {
        status::step("Measuring", "DKMS packages and builds");
        let dkms = dkms::measure(&sh, &hello, &trees)?;
        let path = project_root().join("BENCHMARKS.md");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let mut report = match old.find(dkms::HEADING) {
            Some(at) => old[..at].trim_end().to_owned(),
            None => old.trim_end().to_owned(),
        };
        report.push('\n');
        dkms.render(&mut report);
        std::fs::write(&path, &report).with_context(|| format!("writing {path}"))?;
        println!("{report}");
        status::step("Wrote", path.as_str());
        return Ok(());
    }
    // Warm the caches the "warm" cases assume: core, flags, bindings.
    status::step("Warming", "core, flags and bindings for every tree");
    build_rust(&sh, &trees)?;

    let mut rows = Vec::new();
    let mut checks = Vec::new();
    for tree in &trees {
        let release = &tree.release;
        let c_dir = c_hello_copy(&hello, tree)?;
        let rust = |sh: &Shell| build_rust(sh, std::slice::from_ref(tree));
        let c = |sh: &Shell| make(sh, tree, &c_dir, "modules");

        status::step("Measuring", &format!("clean builds ({release})"));
        let c_clean = median(args.runs, || {
            make(&sh, tree, &c_dir, "clean")?;
            time(|| c(&sh))
        })?;
        let rust_clean = median(args.runs, || {
            clean_rust(&sh, &hello, tree)?;
            time(|| rust(&sh))
        })?;
        rows.push(row(
            release,
            "clean build (warm caches)",
            c_clean,
            rust_clean,
            "≤ 1.3×",
        ));

        status::step("Measuring", &format!("rebuilds after a touch ({release})"));
        let c_touch = median(args.runs, || {
            touch(&c_dir.join("hello.c"))?;
            time(|| c(&sh))
        })?;
        let lib_rs = project_root().join("examples/hello/src/lib.rs");
        let rust_touch = median(args.runs, || {
            touch(&lib_rs)?;
            time(|| rust(&sh))
        })?;
        rows.push(row(
            release,
            "rebuild, one source touched",
            c_touch,
            rust_touch,
            "≤ 1.3×",
        ));

        status::step("Measuring", &format!("no-op builds ({release})"));
        let c_noop = median(args.runs, || time(|| c(&sh)))?;
        let rust_noop = median(args.runs, || time(|| rust(&sh)))?;
        rows.push(row(release, "no-op build", c_noop, rust_noop, "≤ 0.3×"));

        checks.push(measure_check(&hello.ko_path(tree), tree)?);
    }

    let parallel = if trees.len() > 1 {
        status::step(
            "Measuring",
            &format!("clean builds for {} kernels", trees.len()),
        );
        let one_by_one = median(args.runs, || {
            let mut total = Duration::ZERO;
            for tree in &trees {
                clean_rust(&sh, &hello, tree)?;
                total += time(|| build_rust(&sh, std::slice::from_ref(tree)))?;
            }
            Ok(total)
        })?;
        let together = median(args.runs, || {
            for tree in &trees {
                clean_rust(&sh, &hello, tree)?;
            }
            time(|| build_rust(&sh, &trees))
        })?;
        Some((trees.len(), one_by_one, together))
    } else {
        None
    };

    let dkms = if args.dkms {
        status::step("Measuring", "DKMS packages and builds");
        Some(dkms::measure(&sh, &hello, &trees)?)
    } else {
        None
    };

    let mut report = render(args.runs, &rows, &checks, parallel);
    if let Some(dkms) = &dkms {
        dkms.render(&mut report);
    }
    println!("{report}");
    let path = project_root().join("BENCHMARKS.md");
    std::fs::write(&path, &report).with_context(|| format!("writing {path}"))?;
    status::step("Wrote", path.as_str());
    Ok(())
}

fn row(release: &str, case: &str, c: Duration, rust: Duration, goal: &'static str) -> Row {
    Row {
        case: format!("{case} ({release})"),
        c,
        rust,
        goal,
    }
}

/// `build-module hello` as a user runs it: this program, in a new process.
fn build_rust(sh: &Shell, trees: &[KernelTree]) -> Result<()> {
    let xtask = std::env::current_exe().context("locating the xtask binary")?;
    let kernels: Vec<String> = trees
        .iter()
        .flat_map(|t| ["--kernel".to_owned(), t.path.to_string()])
        .collect();
    cmd!(sh, "{xtask} build-module hello {kernels...}")
        .quiet()
        .ignore_stderr()
        .run()
        .context("building hello (run `cargo xtask build-module hello` to see why)")?;
    Ok(())
}

/// Forgets hello's own build for `tree` (`cargo clean -p hello`, its Kbuild
/// dir, its `.ko`), keeping what building any module leaves for the next:
/// `core`, `kmod-runtime`, the probed flags, the bindings cache.
fn clean_rust(sh: &Shell, hello: &ModuleCrate, tree: &KernelTree) -> Result<()> {
    let out = hello.output_dir(tree);
    let target_dir = out.join("cargo");
    let manifest = project_root().join("Cargo.toml");
    let target = tree.rust_target();
    let profile = kmod_build::driver::profile_args();
    cmd!(sh, "cargo clean --quiet -p hello --manifest-path {manifest} --target-dir {target_dir} --target {target} --profile kmod {profile...}")
        .quiet()
        .run()?;
    for path in [out.join("kbuild/hello"), hello.ko_path(tree)] {
        if path.is_dir() {
            std::fs::remove_dir_all(&path).with_context(|| format!("removing {path}"))?;
        } else if path.is_file() {
            std::fs::remove_file(&path).with_context(|| format!("removing {path}"))?;
        }
    }
    Ok(())
}

/// A fresh copy of `examples/c-hello` next to the Rust build for `tree`.
fn c_hello_copy(hello: &ModuleCrate, tree: &KernelTree) -> Result<Utf8PathBuf> {
    let dir = hello.output_dir(tree).join("bench/c-hello");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
    for file in ["hello.c", "Kbuild"] {
        let source = project_root().join("examples/c-hello").join(file);
        std::fs::copy(&source, dir.join(file)).with_context(|| format!("copying {source}"))?;
    }
    Ok(dir)
}

fn make(sh: &Shell, tree: &KernelTree, dir: &Utf8Path, goal: &str) -> Result<()> {
    let tree = &tree.path;
    cmd!(sh, "make -s -C {tree} M={dir} {goal}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()?;
    Ok(())
}

fn touch(path: &Utf8Path) -> Result<()> {
    let file = std::fs::File::options()
        .append(true)
        .open(path)
        .with_context(|| format!("opening {path}"))?;
    file.set_modified(std::time::SystemTime::now())
        .with_context(|| format!("touching {path}"))
}

fn time(f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed())
}

fn median(runs: usize, mut f: impl FnMut() -> Result<Duration>) -> Result<Duration> {
    let mut times = (0..runs).map(|_| f()).collect::<Result<Vec<_>>>()?;
    times.sort();
    Ok(times[times.len() / 2])
}

/// `check` timings on one tree: all of what `check-module` does (read the
/// `.ko`, load the kernel's tables: its config, `Module.symvers` and an
/// in-tree module's size; every check), and the checks alone.
struct CheckTimes {
    release: String,
    exports: usize,
    whole: Duration,
    checks_only: Duration,
}

fn measure_check(ko: &Utf8Path, tree: &KernelTree) -> Result<CheckTimes> {
    const RUNS: usize = 51;
    let whole = median(RUNS, || {
        time(|| {
            std::hint::black_box(kmod_build::check(ko, tree)?);
            Ok(())
        })
    })?;
    let kernel = check::Kernel::load(tree)?;
    let module = ModuleInfo::read(ko)?;
    let checks_only = median(RUNS, || {
        time(|| {
            std::hint::black_box(check::check(&module, &kernel));
            Ok(())
        })
    })?;
    Ok(CheckTimes {
        release: tree.release.clone(),
        exports: kernel.symvers.len(),
        whole,
        checks_only,
    })
}

fn render(
    runs: usize,
    rows: &[Row],
    checks: &[CheckTimes],
    parallel: Option<(usize, Duration, Duration)>,
) -> String {
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let mut out = String::from("# Benchmarks\n\n");
    let _ = writeln!(
        out,
        "Written by `cargo xtask bench` (median of {runs} runs) on {}, {} cores. \
         Rust times are `xtask build-module hello` in a new process (add ~0.1 s \
         for `cargo xtask`'s own freshness check); C times are plain \
         `make -C <tree> M=<dir>` of `examples/c-hello`, in the same run. \
         A clean build starts from `cargo clean -p hello` and no Kbuild \
         directory (`make clean` for C), keeping what building any other \
         module leaves: the sysroot (`core`, `alloc`), bindings and C flags.\n",
        cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    out.push_str("| case | C | Rust | Rust / C | goal |\n|---|---|---|---|---|\n");
    for row in rows {
        let ratio = row.rust.as_secs_f64() / row.c.as_secs_f64();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {ratio:.2}× | {} |",
            row.case,
            secs(row.c),
            secs(row.rust),
            row.goal
        );
    }
    if let Some((kernels, one_by_one, together)) = parallel {
        let _ = writeln!(
            out,
            "\nClean builds for {kernels} kernels: {} one after the other, {} in one \
             `build-module` (kernels in parallel): {:.2}× speed-up.",
            secs(one_by_one),
            secs(together),
            one_by_one.as_secs_f64() / together.as_secs_f64()
        );
    }
    out.push('\n');
    out.push_str(&check_table(checks));
    out
}

fn check_table(checks: &[CheckTimes]) -> String {
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    let mut out = String::from(
        "| check of hello.ko | exports | read .ko + load config, Module.symvers + check | checks only | goal |\n|---|---|---|---|---|\n",
    );
    for check in checks {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | well under 20 ms |",
            check.release,
            check.exports,
            ms(check.whole),
            ms(check.checks_only)
        );
    }
    out
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".into())
}
