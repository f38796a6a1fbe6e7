//! `cargo kmod test`: a project made by `cargo kmod new` (whose template
//! has one passing in-kernel test) gets one failing test planted; each
//! kernel must report exactly "1 passed; 1 failed" with the failure's
//! message, and the command must exit 101. A passing test that leaks an
//! allocation, run alone (a filter), must fail the run too: the module is
//! unloaded after its tests and the runtime reports the leak. Then the
//! examples' own in-kernel tests must all pass on every kernel.

use anyhow::{ensure, Context, Result};
use camino::Utf8PathBuf;
use kmod_build::KernelTree;
use xshell::{cmd, Shell};

use super::new_project::cargo_kmod_path;
use super::Results;
use crate::project_root;

const NAME: &str = "kmod-ktest";
const PLANTED: &str = "planted failure";
/// The test that passes but leaks (`black_box`: an allocation nothing
/// reads would be optimized away), and what unloading must report.
const LEAKS: &str = "#[test]\n    fn leaks() {\n        core::mem::forget(core::hint::black_box(alloc::vec![1u8; 16]));\n    }\n";
const LEAK_REPORT: &str = "memory leak: 1 allocation(s) still live after exit";

pub fn run(sh: &Shell, trees: &[KernelTree], results: &mut Results) {
    let output = tempfile::Builder::new()
        .prefix("kmod-ktest-")
        .tempdir()
        .context("creating a directory outside the checkout")
        .and_then(|dir| {
            let output =
                test_new_project(sh, &Utf8PathBuf::try_from(dir.path().to_owned())?, trees);
            drop(dir);
            output
        });
    let checks: [(&str, ReportCheck); 2] = [
        ("cargo_kmod_test", per_kernel),
        ("cargo_kmod_test_leak", leak_reported),
    ];
    for (name, check) in checks {
        for tree in trees {
            let release = &tree.release;
            let result = output
                .as_ref()
                .map_err(|e| anyhow::anyhow!("{e:#}"))
                .and_then(|output| check(output, release));
            results.record(format!("boot::{name}::{release}"), result);
        }
    }
    let examples: Vec<(&str, Result<(String, usize)>)> = EXAMPLES_WITH_TESTS
        .iter()
        .map(|example| (*example, example_tests(sh, example, trees)))
        .collect();
    for tree in trees {
        let result = examples.iter().try_for_each(|(example, output)| {
            let (text, tests) = output
                .as_ref()
                .map_err(|e| anyhow::anyhow!("{example}: {e:#}"))?;
            example_passed(example, text, *tests, &tree.release)
        });
        results.record(format!("boot::example_tests::{}", tree.release), result);
    }
}

/// A check of one kernel's part of the new project's output.
type ReportCheck = fn(&str, &str) -> Result<()>;

/// Examples of this repository with in-kernel tests of their own.
const EXAMPLES_WITH_TESTS: &[&str] = &["params", "chardev"];

/// `cargo kmod test -p <example>` on every tree, which must exit 0: its
/// output, and how many `#[test]`s the example's source has.
fn example_tests(sh: &Shell, example: &str, trees: &[KernelTree]) -> Result<(String, usize)> {
    let root = project_root();
    let path = cargo_kmod_path(sh)?;
    let lib = root.join("examples").join(example).join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).with_context(|| format!("reading {lib}"))?;
    let tests = source.matches("#[test]").count();
    ensure!(tests > 0, "{lib} has no #[test]");
    let _in_root = sh.push_dir(&root);
    let kernels = trees
        .iter()
        .flat_map(|tree| ["--kernel", tree.release.as_str()]);
    let output = cmd!(sh, "cargo kmod test -p {example} {kernels...}")
        .env("PATH", &path)
        .ignore_status()
        .output()
        .with_context(|| format!("cargo kmod test -p {example}"))?;
    let text = joined(&output);
    ensure!(
        output.status.success(),
        "cargo kmod test -p {example} exited {}:\n{text}",
        output.status
    );
    Ok((text, tests))
}

/// Every one of the example's `tests` passed on `release`.
fn example_passed(example: &str, output: &str, tests: usize, release: &str) -> Result<()> {
    let passed = format!("test result: ok. {tests} passed; 0 failed;");
    expect_in_report(output, tests, release, &[&passed]).with_context(|| example.to_owned())
}

/// Where stderr starts in [`joined`] output.
const STDERR: &str = "\n==== stderr\n";

/// A `cargo kmod test`'s stdout (the reports), then its stderr.
fn joined(output: &std::process::Output) -> String {
    format!(
        "{}{STDERR}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The report of `tests` tests on `release` in `output` (up to the next
/// kernel's, or stderr) must hold every one of `expected`.
fn expect_in_report(output: &str, tests: usize, release: &str, expected: &[&str]) -> Result<()> {
    let start = format!("running {tests} tests ({release})");
    let report = output
        .split_once(&start)
        .map(|(_, rest)| rest)
        .with_context(|| format!("no `{start}` in:\n{output}"))?;
    let report = [STDERR, "\nrunning "].iter().fold(report, |report, end| {
        report.split_once(end).map_or(report, |(r, _)| r)
    });
    for expected in expected {
        ensure!(
            report.contains(expected),
            "no `{expected}` in the {release} report:\n{report}"
        );
    }
    Ok(())
}

/// `cargo kmod new`, a failing test planted beside the template's, then
/// `cargo kmod test` on every tree; then [`LEAKS`] planted and run alone.
/// Both runs' output (stdout and stderr), one after the other.
fn test_new_project(sh: &Shell, parent: &camino::Utf8Path, trees: &[KernelTree]) -> Result<String> {
    let root = project_root();
    let path = cargo_kmod_path(sh)?;
    let dir = parent.join(NAME);
    cmd!(sh, "cargo kmod new {dir} --local {root}")
        .env("PATH", &path)
        .run()
        .context("cargo kmod new")?;
    let lib = dir.join(NAME).join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).with_context(|| format!("reading {lib}"))?;
    ensure!(
        source.contains("mod tests {"),
        "the template has no `mod tests {{`:\n{source}"
    );
    let planted = source.replacen(
        "mod tests {",
        &format!("mod tests {{\n    #[test]\n    fn fails() {{\n        assert_eq!(1 + 1, 3, \"{PLANTED}\");\n    }}\n"),
        1,
    );
    std::fs::write(&lib, planted).with_context(|| format!("writing {lib}"))?;
    let _in_project = sh.push_dir(&dir);
    let first = cargo_kmod_test(sh, &path, trees, &[])?;
    let with_leak = std::fs::read_to_string(&lib)
        .with_context(|| format!("reading {lib}"))?
        .replacen("mod tests {\n", &format!("mod tests {{\n    {LEAKS}"), 1);
    std::fs::write(&lib, with_leak).with_context(|| format!("writing {lib}"))?;
    let second = cargo_kmod_test(sh, &path, trees, &["leaks"])?;
    Ok(format!("{first}{LEAK_RUN}{second}"))
}

/// Where the second run's output starts in [`test_new_project`]'s.
const LEAK_RUN: &str = "\n==== the leaking test alone\n";

/// `cargo kmod test [ARGS] --kernel ...` in the current directory, which
/// must exit 101: its stdout and stderr.
fn cargo_kmod_test(sh: &Shell, path: &str, trees: &[KernelTree], args: &[&str]) -> Result<String> {
    let kernels = trees
        .iter()
        .flat_map(|tree| ["--kernel", tree.release.as_str()]);
    let output = cmd!(sh, "cargo kmod test {kernels...} {args...}")
        .env("PATH", path)
        .ignore_status()
        .output()
        .context("cargo kmod test in the new project")?;
    let text = joined(&output);
    ensure!(
        output.status.code() == Some(101),
        "cargo kmod test {args:?} exited {} (expected 101 for failed tests):\n{text}",
        output.status
    );
    Ok(text)
}

/// The leaking test passed alone on `release`, and the unload after it
/// reported its allocation.
fn leak_reported(output: &str, release: &str) -> Result<()> {
    let (_, output) = output
        .split_once(LEAK_RUN)
        .with_context(|| format!("no second run in:\n{output}"))?;
    expect_in_report(
        output,
        1,
        release,
        &[
            "test tests::leaks ... ok",
            "test result: ok. 1 passed; 0 failed; 2 filtered out;",
            "unload after the tests ... FAILED",
            LEAK_REPORT,
        ],
    )
}

/// The report of one kernel: both tests, the counts, the message.
fn per_kernel(output: &str, release: &str) -> Result<()> {
    let output = output
        .split_once(LEAK_RUN)
        .map_or(output, |(first, _)| first);
    expect_in_report(
        output,
        2,
        release,
        &[
            "test tests::allocates ... ok",
            "test tests::fails ... FAILED",
            PLANTED,
            "lib.rs:",
            "test result: FAILED. 1 passed; 1 failed;",
        ],
    )
}
