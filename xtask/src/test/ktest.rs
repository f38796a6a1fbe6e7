//! `cargo kmod test`: a project made by `cargo kmod new` (whose template
//! has one passing in-kernel test) gets one failing test planted; each
//! kernel must report exactly "1 passed; 1 failed" with the failure's
//! message, and the command must exit 101. Then the examples' own
//! in-kernel tests must all pass on every kernel.

use anyhow::{ensure, Context, Result};
use camino::Utf8PathBuf;
use kmod_build::KernelTree;
use xshell::{cmd, Shell};

use super::new_project::cargo_kmod_path;
use super::Results;
use crate::project_root;

const NAME: &str = "kmod-ktest";
const PLANTED: &str = "planted failure";

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
    for tree in trees {
        let release = &tree.release;
        let result = output
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .and_then(|output| per_kernel(output, release));
        results.record(format!("boot::cargo_kmod_test::{release}"), result);
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
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        output.status.success(),
        "cargo kmod test -p {example} exited {}:\n{text}",
        output.status
    );
    Ok((text, tests))
}

/// Every one of the example's `tests` passed on `release`.
fn example_passed(example: &str, output: &str, tests: usize, release: &str) -> Result<()> {
    let start = format!("running {tests} tests ({release})");
    let report = output
        .split_once(&start)
        .map(|(_, rest)| rest)
        .with_context(|| format!("{example}: no `{start}` in:\n{output}"))?;
    let passed = format!("test result: ok. {tests} passed; 0 failed;");
    let report = report.split_once("finished in").map_or(report, |(r, _)| r);
    ensure!(
        report.contains(&passed),
        "{example}: no `{passed}` in the {release} report:\n{report}"
    );
    Ok(())
}

/// `cargo kmod new`, a failing test planted beside the template's, then
/// `cargo kmod test` on every tree: its output (stdout and stderr).
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
    let kernels = trees
        .iter()
        .flat_map(|tree| ["--kernel", tree.release.as_str()]);
    let output = cmd!(sh, "cargo kmod test {kernels...}")
        .env("PATH", &path)
        .ignore_status()
        .output()
        .context("cargo kmod test in the new project")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        output.status.code() == Some(101),
        "cargo kmod test exited {} (expected 101 for failed tests):\n{text}",
        output.status
    );
    Ok(text)
}

/// The report of one kernel: both tests, the counts, the message.
fn per_kernel(output: &str, release: &str) -> Result<()> {
    let start = format!("running 2 tests ({release})");
    let report = output
        .split_once(&start)
        .map(|(_, rest)| rest)
        .with_context(|| format!("no `{start}` in:\n{output}"))?;
    let report = report
        .split_once("finished in")
        .map_or(report, |(report, _)| report);
    for expected in [
        "test tests::allocates ... ok",
        "test tests::fails ... FAILED",
        PLANTED,
        "lib.rs:",
        "test result: FAILED. 1 passed; 1 failed;",
    ] {
        ensure!(
            report.contains(expected),
            "no `{expected}` in the {release} report:\n{report}"
        );
    }
    Ok(())
}
