//! rust-analyzer in a project `cargo kmod new` made: the command its
//! settings give for checks and build scripts, run as rust-analyzer runs it
//! (in the workspace root, JSON on stdout), succeeds with the runtime's
//! bindings generated, then reports a type error planted in the module
//! where it is. Each installed kernel is chosen the documented way, `KDIR`.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::KernelTree;
use xshell::{cmd, Shell};

use super::new_project::cargo_kmod_path;
use super::Results;
use crate::project_root;

const NAME: &str = "kmod-editor-test";

pub fn run(sh: &Shell, trees: &[KernelTree], results: &mut Results) {
    let outcome = tempfile::Builder::new()
        .prefix("kmod-editor-")
        .tempdir()
        .context("creating a directory outside the checkout")
        .and_then(|dir| {
            let parent = Utf8PathBuf::try_from(dir.path().to_owned())?;
            Ok((dir, new_project(sh, &parent)?))
        });
    let (_keep, project, path, command) = match outcome {
        Ok((keep, (project, path, command))) => (keep, project, path, command),
        Err(error) => {
            for tree in trees {
                results.record(
                    format!("editor::rust_analyzer_check::{}", tree.release),
                    Err(anyhow::anyhow!("{error:#}")),
                );
            }
            return;
        }
    };
    for tree in trees {
        results.record(
            format!("editor::rust_analyzer_check::{}", tree.release),
            check(&project, &path, &command, tree),
        );
    }
}

/// `cargo kmod new`; the project, the `PATH` with `cargo kmod` on it, and
/// the command rust-analyzer is told to run (the same for both settings).
fn new_project(sh: &Shell, parent: &Utf8Path) -> Result<(Utf8PathBuf, String, Vec<String>)> {
    let path = cargo_kmod_path(sh)?;
    let root = project_root();
    let dir = parent.join(NAME);
    cmd!(sh, "cargo kmod new {dir} --local {root}")
        .env("PATH", &path)
        .run()
        .context("cargo kmod new")?;
    let file = dir.join(".vscode/settings.json");
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
    let settings: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {file}"))?;
    let command = |key: &str| -> Result<Vec<String>> {
        settings[key]
            .as_array()
            .and_then(|args| args.iter().map(|a| a.as_str().map(str::to_owned)).collect())
            .with_context(|| format!("{file} has no {key} list of strings:\n{text}"))
    };
    let check = command("rust-analyzer.check.overrideCommand")?;
    let build_scripts = command("rust-analyzer.cargo.buildScripts.overrideCommand")?;
    ensure!(
        check == build_scripts,
        "{file}: rust-analyzer would check with {check:?} but run build scripts with \
         {build_scripts:?}, so its bindings and diagnostics could disagree"
    );
    ensure!(
        settings["rust-analyzer.cargo.target"].is_string(),
        "{file} sets no rust-analyzer.cargo.target:\n{text}"
    );
    Ok((dir, path, check))
}

/// One run of `command` for `tree`, as rust-analyzer runs it: in the
/// workspace root; the exit status and stdout's messages.
fn run_command(
    project: &Utf8Path,
    path: &str,
    command: &[String],
    tree: &KernelTree,
) -> Result<(bool, Vec<serde_json::Value>, String)> {
    let (program, args) = command.split_first().context("an empty command")?;
    let started = Instant::now();
    let output = Command::new(program)
        .args(args)
        .current_dir(project)
        .env("PATH", path)
        .env("KDIR", &tree.path)
        .output()
        .with_context(|| format!("running {command:?}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    eprintln!(
        "    {command:?} for {} took {:.1}s",
        tree.release,
        started.elapsed().as_secs_f64()
    );
    let mut messages = Vec::new();
    for line in stdout.lines() {
        let message: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("stdout has a line that is not JSON: {line}"))?;
        messages.push(message);
    }
    Ok((output.status.success(), messages, stderr))
}

fn check(project: &Utf8Path, path: &str, command: &[String], tree: &KernelTree) -> Result<()> {
    let (ok, messages, stderr) = run_command(project, path, command, tree)?;
    ensure!(ok, "{command:?} failed for {}:\n{stderr}", tree.release);
    // What rust-analyzer takes from the build scripts: the runtime's
    // OUT_DIR, with this kernel's bindings in it, and the variable naming
    // them (cargo kmod stands in for the runtime's build script and says
    // what it would have said).
    let runtime = messages
        .iter()
        .find(|m| {
            m["reason"] == "build-script-executed"
                && m["package_id"]
                    .as_str()
                    .is_some_and(|id| id.contains("kmod-runtime"))
        })
        .with_context(|| format!("no build-script-executed message for kmod-runtime:\n{stderr}"))?;
    let out_dir = Utf8PathBuf::from(runtime["out_dir"].as_str().unwrap_or_default());
    ensure!(
        out_dir.starts_with(project.join("target/kmod").join(&tree.release)),
        "kmod-runtime's OUT_DIR {out_dir} is not in {}'s target dir",
        tree.release
    );
    let generated = std::fs::read_dir(&out_dir)
        .with_context(|| format!("reading {out_dir}"))?
        .flatten()
        .any(|entry| entry.path().extension().is_some_and(|ext| ext == "rs"));
    ensure!(generated, "no bindings (.rs file) in {out_dir}");
    let bindings = runtime["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|pair| pair[0] == kmod_build::BINDINGS_ENV)
        .and_then(|pair| pair[1].as_str())
        .with_context(|| {
            format!(
                "kmod-runtime's build script sets no {}",
                kmod_build::BINDINGS_ENV
            )
        })?;
    ensure!(
        Utf8Path::new(bindings).is_file(),
        "{} is {bindings}, which is not a file",
        kmod_build::BINDINGS_ENV
    );
    ensure!(
        messages
            .iter()
            .any(|m| m["reason"] == "compiler-artifact"
                && m["target"]["name"] == NAME.replace('-', "_")),
        "no compiler-artifact message for {NAME}:\n{stderr}"
    );

    let source = project.join(NAME).join("src/lib.rs");
    let original = std::fs::read_to_string(&source)?;
    let line = original.lines().count() + 4;
    std::fs::write(
        &source,
        format!(
            "{original}\n#[allow(dead_code)]\nfn planted() {{\n    let _x: u32 = \"text\";\n}}\n"
        ),
    )?;
    let planted = run_command(project, path, command, tree);
    std::fs::write(&source, &original)?;
    let (ok, messages, stderr) = planted?;
    ensure!(!ok, "{command:?} succeeded with a type error in {source}");
    let relative = format!("{NAME}/src/lib.rs");
    let found = messages.iter().any(|m| {
        let message = &m["message"];
        m["reason"] == "compiler-message"
            && message["level"] == "error"
            && message["code"]["code"] == "E0308"
            && message["spans"].as_array().is_some_and(|spans| {
                spans.iter().any(|span| {
                    span["is_primary"] == true
                        && span["file_name"] == relative.as_str()
                        && span["line_start"] == line
                })
            })
    });
    if !found {
        let diagnostics: Vec<&serde_json::Value> = messages
            .iter()
            .filter(|m| m["reason"] == "compiler-message")
            .collect();
        bail!("no E0308 error at {relative}:{line} among {diagnostics:#?}\n{stderr}");
    }
    Ok(())
}
