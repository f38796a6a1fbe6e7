//! `cargo kmod run` as an author uses it: the real `cargo kmod` (this
//! checkout's `cargo-kmod`, found on PATH by cargo) on the hello example,
//! booting each installed kernel: commands with their output and exit
//! status, a file copied into the guest, a shell fed from stdin, and a
//! missing file refused before anything is built.

use std::process::Output;

use anyhow::{ensure, Context, Result};
use kmod_build::KernelTree;
use xshell::{cmd, Shell};

use super::Results;
use crate::project_root;

pub fn run(sh: &Shell, trees: &[KernelTree], results: &mut Results) {
    let setup = cmd!(sh, "cargo build --quiet -p cargo-kmod")
        .run()
        .context("building cargo-kmod")
        .and_then(|()| Ok(tempfile::tempdir()?));
    let dir = match setup {
        Ok(dir) => dir,
        Err(error) => {
            for tree in trees {
                results.record(
                    format!("boot::cargo_kmod_run::{}", tree.release),
                    Err(anyhow::anyhow!("setting up: {error:#}")),
                );
            }
            return;
        }
    };
    results.record(
        "cargo_kmod_run::missing_file_refused".into(),
        missing_file(sh, &trees[0]),
    );
    for tree in trees {
        results.record(
            format!("boot::cargo_kmod_run::{}", tree.release),
            in_kernel(sh, tree, dir.path()),
        );
    }
}

/// `cargo kmod run -p hello --kernel <release> <args>` from the checkout,
/// with a time limit on each guest.
fn cargo_kmod_run(sh: &Shell, tree: &KernelTree, args: &[&str], stdin: &str) -> Result<Output> {
    let root = project_root();
    let path = format!(
        "{}:{}",
        root.join("target/debug"),
        std::env::var("PATH").unwrap_or_default()
    );
    let release = &tree.release;
    let _in_root = sh.push_dir(&root);
    let output = cmd!(sh, "cargo kmod run -p hello --kernel {release} {args...}")
        .env("PATH", &path)
        .env("KMOD_QEMU_TIMEOUT", "180")
        .stdin(stdin)
        .ignore_status()
        .output()?;
    Ok(output)
}

fn shown(output: &Output) -> String {
    format!(
        "exit status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A `--file` that is not there fails before the build, naming it.
fn missing_file(sh: &Shell, tree: &KernelTree) -> Result<()> {
    let missing = project_root().join("target/no-such-dir/test.sh");
    let arg = format!("{missing}:/root/");
    let output = cargo_kmod_run(sh, tree, &["--file", &arg, "--exec", "true"], "")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.code() == Some(2) && stderr.contains(missing.as_str()),
        "expected exit status 2 and an error naming {missing}:\n{}",
        shown(&output)
    );
    ensure!(
        !stderr.contains("Booting") && !stderr.contains("Compiling"),
        "it went on to build or boot:\n{}",
        shown(&output)
    );
    Ok(())
}

fn in_kernel(sh: &Shell, tree: &KernelTree, scratch: &std::path::Path) -> Result<()> {
    let release = &tree.release;
    // Commands and their output; a script copied in; the kernel log.
    let script = scratch.join("report.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"report: $1 on $(uname -r), $(grep -c '^hello ' /proc/modules) hello\"\n",
    )?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let file = format!("{}:/root/bin/", script.display());
    let output = cargo_kmod_run(
        sh,
        tree,
        &[
            "--file",
            &file,
            "--exec",
            "cat /proc/modules",
            "--exec",
            "/root/bin/report.sh first",
        ],
        "",
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "cargo kmod run --exec 'cat /proc/modules' failed:\n{}",
        shown(&output)
    );
    ensure!(
        stdout.lines().any(|line| line.starts_with("hello ")),
        "no `hello` line of /proc/modules in the output:\n{}",
        shown(&output)
    );
    let report = format!("report: first on {release}, 1 hello");
    ensure!(
        stdout.contains(&report),
        "the copied script did not print `{report}`:\n{}",
        shown(&output)
    );
    let loaded = format!("hello: loaded, built for {release}");
    ensure!(
        stdout.contains(&loaded) && stdout.contains("hello: unloaded, goodbye"),
        "the kernel log was not streamed (`{loaded}`, `hello: unloaded, goodbye`):\n{}",
        shown(&output)
    );

    // The first failing command's status is the run's; the rest still run.
    let output = cargo_kmod_run(
        sh,
        tree,
        &["--exec", "exit 3", "--exec", "echo after; exit 5"],
        "",
    )?;
    ensure!(
        output.status.code() == Some(3)
            && String::from_utf8_lossy(&output.stdout).contains("after"),
        "--exec 'exit 3' then 'echo after; exit 5': expected exit status 3 and `after`:\n{}",
        shown(&output)
    );

    // No --exec: a shell on the console, here fed from a pipe; the pipe's
    // end ends it.
    let output = cargo_kmod_run(sh, tree, &[], "echo shell-$((6*7))\n")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success() && stdout.lines().any(|line| line.trim() == "shell-42"),
        "the shell did not print shell-42:\n{}",
        shown(&output)
    );
    Ok(())
}
