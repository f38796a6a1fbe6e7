//! `cargo xtask fuzz`: the cargo-fuzz targets in `fuzz/`, each run for a
//! bounded time from a seed corpus cut from the installed trees' real files.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::KernelTree;
use xshell::{cmd, Shell};

use crate::{project_root, status};

/// Every target in `fuzz/fuzz_targets`.
const TARGETS: &[&str] = &["symvers", "config", "cmd_file", "module", "cache_entry"];

/// Lines per seed cut from a `Module.symvers` or `auto.conf`: libFuzzer
/// mutates small inputs far better than 27k-line files.
const LINES_PER_SEED: usize = 64;
const SEEDS_PER_FILE: usize = 8;
/// Smallest in-tree modules taken as seeds, per tree.
const MODULE_SEEDS: usize = 6;

#[derive(clap::Args)]
pub struct Args {
    /// Targets to run (default: all).
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    pub targets: Vec<String>,
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u32,
}

pub fn run(args: &Args) -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    ensure_cargo_fuzz(&sh)?;
    let trees = KernelTree::installed();
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        args.targets.iter().map(String::as_str).collect()
    };
    let seconds = args.seconds.to_string();
    for target in targets {
        let corpus = project_root().join("fuzz/corpus").join(target);
        let seeds = write_seeds(&sh, target, &trees, &corpus)?;
        status::step(
            "Fuzzing",
            &format!("{target} for {seconds}s from {seeds} seeds in {corpus}"),
        );
        // The pinned toolchain is stable; cargo-fuzz needs -Zsanitizer.
        let output = cmd!(sh, "cargo fuzz run --fuzz-dir fuzz {target} {corpus} -- -max_total_time={seconds} -max_len=65536 -print_final_stats=1")
            .env("RUSTC_BOOTSTRAP", "1")
            .ignore_status()
            .output()?;
        let log = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        if !output.status.success() {
            bail!(
                "fuzz target {target} failed; the input that broke it is in fuzz/artifacts/{target}/:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let runs = log
            .lines()
            .find_map(|line| line.strip_prefix("stat::number_of_executed_units:"))
            .map_or("?", str::trim);
        status::step("Fuzzed", &format!("{target}: {runs} inputs, no crash"));
    }
    Ok(())
}

fn ensure_cargo_fuzz(sh: &Shell) -> Result<()> {
    if which::which("cargo-fuzz").is_ok() {
        return Ok(());
    }
    status::step(
        "Installing",
        "cargo-fuzz (cargo install cargo-fuzz --locked)",
    );
    cmd!(sh, "cargo install cargo-fuzz --locked")
        .run()
        .context("installing cargo-fuzz; run `cargo install cargo-fuzz --locked` yourself")?;
    Ok(())
}

/// Writes `target`'s seeds into `corpus` (kept between runs, so libFuzzer's
/// finds accumulate); returns how many there are.
fn write_seeds(sh: &Shell, target: &str, trees: &[KernelTree], corpus: &Utf8Path) -> Result<usize> {
    std::fs::create_dir_all(corpus).with_context(|| format!("creating {corpus}"))?;
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    for tree in trees {
        let release = &tree.release;
        match target {
            "symvers" => seeds.extend(line_seeds(release, &tree.path.join("Module.symvers"))?),
            "config" => seeds.extend(line_seeds(
                release,
                &tree.path.join("include/config/auto.conf"),
            )?),
            "cmd_file" => seeds.extend(cmd_file_seeds(release)?),
            "cache_entry" => seeds.extend(cache_entry_seeds(release)?),
            _ => seeds.extend(module_seeds(sh, tree)?),
        }
    }
    if seeds.is_empty() {
        bail!("no seeds for {target}: install a kernel-devel tree (apt-get install linux-headers-amd64)");
    }
    for (name, bytes) in &seeds {
        let path = corpus.join(format!("seed-{name}"));
        std::fs::write(&path, bytes).with_context(|| format!("writing {path}"))?;
    }
    Ok(seeds.len())
}

/// Runs of consecutive lines spread over `file`.
fn line_seeds(release: &str, file: &Utf8Path) -> Result<Vec<(String, Vec<u8>)>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
    let lines: Vec<&str> = text.lines().collect();
    let chunks: Vec<&[&str]> = lines.chunks(LINES_PER_SEED).collect();
    let step = chunks.len().div_ceil(SEEDS_PER_FILE).max(1);
    Ok(chunks
        .iter()
        .step_by(step)
        .enumerate()
        .map(|(index, chunk)| {
            let name = format!("{release}-{}-{index}", file.file_name().unwrap_or("file"));
            (name, (chunk.join("\n") + "\n").into_bytes())
        })
        .collect())
}

/// The `.cmd` files Kbuild wrote for the modules built here (the boot
/// tests build hello and a C module for every tree).
fn cmd_file_seeds(release: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut seeds = Vec::new();
    for dir in ["kbuild/hello", "agreement/cimports"] {
        let dir = project_root().join("target/kmod").join(release).join(dir);
        let Ok(entries) = dir.read_dir_utf8() else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.starts_with('.') && name.ends_with(".o.cmd") {
                let path = entry.path();
                let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
                seeds.push((format!("{release}-{name}"), bytes));
            }
        }
    }
    Ok(seeds)
}

/// The cache entries the builds here left for `release`: C flags,
/// bindings' header lists, fingerprints (bindings themselves are large).
fn cache_entry_seeds(release: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut seeds = Vec::new();
    let kmod = project_root().join("target/kmod");
    for dir in [kmod.join("cache").join(release), kmod.join(release)] {
        let Ok(entries) = dir.read_dir_utf8() else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name == "cflags" || name.ends_with(".headers") || name.ends_with(".fingerprint") {
                let path = entry.path();
                let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
                seeds.push((format!("{release}-{name}"), bytes));
            }
        }
    }
    Ok(seeds)
}

/// The smallest in-tree modules, decompressed, and the `.ko` files the
/// boot tests made.
fn module_seeds(sh: &Shell, tree: &KernelTree) -> Result<Vec<(String, Vec<u8>)>> {
    let release = &tree.release;
    let mut modules: Vec<(u64, Utf8PathBuf)> = Vec::new();
    collect_modules(
        &Utf8PathBuf::from(format!("/lib/modules/{release}/kernel")),
        &mut modules,
    );
    modules.sort();
    modules.truncate(MODULE_SEEDS);
    // hello and the boot tests' broken copies of it, where built.
    collect_modules(
        &project_root()
            .join("target/kmod")
            .join(release)
            .join("agreement"),
        &mut modules,
    );
    let mut seeds = Vec::new();
    for (_, path) in modules {
        let bytes = if path.extension() == Some("xz") {
            cmd!(sh, "xz -dc {path}").quiet().output()?.stdout
        } else {
            std::fs::read(&path).with_context(|| format!("reading {path}"))?
        };
        let file = path.file_name().unwrap_or("module");
        seeds.push((format!("{release}-{file}"), bytes));
    }
    Ok(seeds)
}

fn collect_modules(dir: &Utf8Path, found: &mut Vec<(u64, Utf8PathBuf)>) {
    let Ok(entries) = dir.read_dir_utf8() else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path().to_owned();
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if metadata.is_dir() {
            collect_modules(&path, found);
        } else if path.as_str().ends_with(".ko") || path.as_str().ends_with(".ko.xz") {
            found.push((metadata.len(), path));
        }
    }
}
