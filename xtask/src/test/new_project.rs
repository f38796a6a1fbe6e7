//! The path a new user takes: `cargo kmod new` outside this checkout,
//! `cargo kmod build` there for every installed tree, the project's own
//! `cargo xtask build-module`, and each `.ko` loaded and unloaded by the
//! real kernel in QEMU. This checkout must not change.

use anyhow::{bail, ensure, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::KernelTree;
use xshell::{cmd, Shell};

use super::{ensure_clean, Results};
use crate::project_root;
use kmod_build::driver::qemu::Guest;

/// The module crate the test creates (a name with a `-`, which the kernel
/// knows with a `_`).
const NAME: &str = "kmod-new-test";

pub fn run(sh: &Shell, trees: &[KernelTree], results: &mut Results) {
    let before = git_status(sh);
    let project = tempfile::Builder::new()
        .prefix("kmod-new-")
        .tempdir()
        .context("creating a directory outside the checkout")
        .and_then(|dir| {
            let built = build_everywhere(sh, &Utf8PathBuf::try_from(dir.path().to_owned())?, trees);
            Ok((dir, built?))
        });
    match project {
        Err(error) => {
            for tree in trees {
                results.record(
                    format!("boot::cargo_kmod_new::{}", tree.release),
                    Err(anyhow::anyhow!("{error:#}")),
                );
            }
        }
        Ok((_dir, kos)) => {
            for (tree, ko) in trees.iter().zip(kos) {
                results.record(
                    format!("boot::cargo_kmod_new::{}", tree.release),
                    boot(tree, &ko),
                );
            }
        }
    }
    let after = git_status(sh);
    results.record(
        "cargo_kmod_new::checkout_unchanged".into(),
        match (before, after) {
            (Ok(before), Ok(after)) if before == after => Ok(()),
            (Ok(before), Ok(after)) => Err(anyhow::anyhow!(
                "git status changed:\nbefore:\n{before}\nafter:\n{after}"
            )),
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
    );
}

fn git_status(sh: &Shell) -> Result<String> {
    let root = project_root();
    Ok(cmd!(sh, "git -C {root} status --porcelain --ignored=no").read()?)
}

/// Builds this checkout's cargo-kmod; a `PATH` on which cargo finds it as
/// `cargo kmod`.
pub(super) fn cargo_kmod_path(sh: &Shell) -> Result<String> {
    let root = project_root();
    cmd!(
        sh,
        "cargo build --quiet --manifest-path {root}/Cargo.toml -p cargo-kmod"
    )
    .run()?;
    Ok(format!(
        "{}:{}",
        root.join("target/debug"),
        std::env::var("PATH").unwrap_or_default()
    ))
}

/// `cargo kmod new`, then `cargo kmod build` for every tree with JSON
/// messages; the `.ko` of each tree, in `trees`' order.
fn build_everywhere(
    sh: &Shell,
    parent: &Utf8Path,
    trees: &[KernelTree],
) -> Result<Vec<Utf8PathBuf>> {
    let root = project_root();
    let path = cargo_kmod_path(sh)?;
    let dir = parent.join(NAME);
    cmd!(sh, "cargo kmod new {dir} --local {root}")
        .env("PATH", &path)
        .run()
        .context("cargo kmod new")?;
    let _in_project = sh.push_dir(&dir);
    // Each tree named: `--all-kernels` would build the fetched ones too.
    let kernels = trees
        .iter()
        .flat_map(|tree| ["--kernel", tree.release.as_str()]);
    let output = cmd!(sh, "cargo kmod build {kernels...} --message-format json")
        .env("PATH", &path)
        .read()
        .context("cargo kmod build in the new project")?;
    let mut kos = Vec::new();
    for tree in trees {
        let artifact = output
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|message| {
                message["reason"] == "kmod-artifact" && message["release"] == tree.release.as_str()
            })
            .with_context(|| format!("no kmod-artifact message for {}:\n{output}", tree.release))?;
        let ko = Utf8PathBuf::from(artifact["path"].as_str().unwrap_or_default());
        let expected = dir.join(format!("target/kmod/{}/{NAME}.ko", tree.release));
        ensure!(ko == expected, "the module is at {ko}, not {expected}");
        ensure!(ko.is_file(), "{ko} is missing");
        kos.push(ko);
    }
    // Cargo's own messages come through unchanged.
    ensure!(
        output.contains("\"reason\":\"compiler-artifact\""),
        "no cargo message in the JSON output:\n{output}"
    );
    // The project's xtask is the same front end.
    let release = &trees[0].release;
    cmd!(sh, "cargo xtask build-module {NAME} --kernel {release}")
        .run()
        .context("cargo xtask build-module in the new project")?;
    Ok(kos)
}

fn boot(tree: &KernelTree, ko: &Utf8Path) -> Result<()> {
    let vmlinuz = Utf8PathBuf::from(format!("/boot/vmlinuz-{}", tree.release));
    let module = NAME.replace('-', "_");
    let log = Guest::new(&vmlinuz).file(ko).run(&format!(
        "section load insmod /modules/{NAME}.ko\n\
         section unload rmmod {module}\n\
         section log dmesg -r\n"
    ))?;
    log.expect_success("load")?;
    log.expect_success("unload")?;
    let kernel_log = log.expect_section("log")?.output;
    for message in [
        format!("{module}: loaded, built for {}", tree.release),
        format!("{module}: unloaded"),
    ] {
        if !kernel_log.contains(&message) {
            bail!("no `{message}` in the kernel log:\n{kernel_log}");
        }
    }
    ensure_clean(kernel_log.lines())
}
