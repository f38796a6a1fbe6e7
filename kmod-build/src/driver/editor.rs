//! What an editor needs of a module crate: `cargo check` of it for one
//! kernel, exactly as a build for that kernel compiles it (target, sysroot,
//! codegen flags, `KMOD_BUILD_KERNEL`), so its build scripts run, its
//! bindings exist and cargo's JSON messages are what rust-analyzer reads;
//! and the rust-analyzer settings `new` writes that run it.

use super::compile::Compile;
use super::project::{ModuleCrate, Project};
use super::report::Reporter;
use super::{prerequisites, seed, select, sysroot};
use crate::error::Result;
use crate::tree::KernelTree;
use crate::{doctor, RustFlags};

/// What [`check`] is asked for.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// A kernel release or tree path; `None`: see [`select::one_tree`].
    pub kernel: Option<String>,
    /// Cargo features of the module crate to enable.
    pub features: Vec<String>,
    /// `cargo clippy -- -D warnings` instead of `cargo check`.
    pub clippy: bool,
}

/// `cargo check` of `module` for one tree, cargo's messages to `reporter`
/// (with [`super::Json`], on stdout as `cargo check --message-format json`
/// prints them); the tree it checked against. Nothing is installed: an
/// editor runs this unattended, so what is missing is only named.
pub fn check(
    project: &Project,
    module: &ModuleCrate,
    options: &CheckOptions,
    reporter: &dyn Reporter,
) -> Result<KernelTree> {
    let tree_named = options.kernel.is_some() || std::env::var_os("KDIR").is_some();
    let needs = prerequisites::for_build(&project.cache_dir(), tree_named);
    prerequisites::ensure(&needs, false, reporter)?;
    let tree = select::one_tree(options.kernel.as_deref(), reporter)?;
    doctor::diagnose(&tree).into_result(&tree)?;
    let flags = RustFlags::for_config(&tree.config()?);
    let sysroot = sysroot::ensure(&project.root, &flags, reporter)?;
    // A build's own directory: the build scripts' outputs (bindings) and
    // their compiled dependencies serve both, and cargo's lock keeps a
    // check and a build of it from running at once.
    let target_dir = project.output_dir(&tree).join("cargo");
    let overrides = super::bindings::for_tree(
        project,
        &tree,
        flags.target,
        super::bindings::Confirm::Probe,
    )?;
    let codegen = super::compile::codegen(&flags, &sysroot);
    seed::compile_seeded(&project.root, &target_dir, &codegen, reporter, || {
        let compile = Compile {
            workspace: &project.root,
            manifest: &project.manifest,
            package: &module.name,
            target_dir: &target_dir,
            cache_dir: &project.cache_dir(),
            sysroot: &sysroot,
            tree: &tree,
            flags: &flags,
            features: &options.features,
            tests: project.tests,
            overrides: &overrides,
        };
        if options.clippy {
            compile.clippy(reporter)
        } else {
            compile.check(reporter)
        }
    })
    .map_err(crate::process::unless_interrupted)?;
    Ok(tree)
}

/// The command rust-analyzer runs for both its check and its build
/// scripts: `cargo kmod cargo-check` with JSON messages, for `kernel` if
/// given, else for the tree [`select::one_tree`] picks at each run.
pub fn command(kernel: Option<&str>) -> Vec<String> {
    let mut command: Vec<String> = ["cargo", "kmod", "cargo-check", "--message-format", "json"]
        .map(String::from)
        .to_vec();
    if let Some(kernel) = kernel {
        command.extend(["--kernel".to_owned(), kernel.to_owned()]);
    }
    command
}

/// The rust-analyzer settings of a project whose module is checked for
/// `kernel` (see [`command`]), built for `target`, as `(file, contents)`:
/// `.vscode/settings.json` for VS Code and `rust-analyzer.toml` for other
/// editors (rust-analyzer reads it from the workspace root). Both run the
/// command instead of `cargo check`, for diagnostics and for build scripts
/// (without which there are no bindings).
pub fn settings(target: &str, kernel: Option<&str>) -> [(&'static str, String); 2] {
    let command = command(kernel);
    let settings = [
        ("cargo.target", serde_json::json!(target)),
        ("check.overrideCommand", serde_json::json!(command)),
        (
            "cargo.buildScripts.overrideCommand",
            serde_json::json!(command),
        ),
    ];
    let vscode: serde_json::Map<String, serde_json::Value> = settings
        .iter()
        .map(|(key, value)| (format!("rust-analyzer.{key}"), value.clone()))
        .collect();
    // JSON strings and arrays of strings are TOML values as they are.
    let toml: String = settings
        .iter()
        .map(|(key, value)| format!("{key} = {value}\n"))
        .collect();
    [
        (
            ".vscode/settings.json",
            serde_json::to_string_pretty(&vscode).unwrap_or_default() + "\n",
        ),
        ("rust-analyzer.toml", toml),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TOML string or array of strings as JSON.
    fn as_json(item: &toml_edit::Item) -> serde_json::Value {
        match item.as_array() {
            Some(array) => array.iter().map(|v| v.as_str()).collect::<Vec<_>>().into(),
            None => item.as_str().into(),
        }
    }

    #[test]
    fn both_files_run_the_command_for_the_target() {
        let [(_, json), (_, toml)] =
            settings("aarch64-unknown-none-softfloat", Some("6.1.0-57-arm64"));
        let command = command(Some("6.1.0-57-arm64"));
        assert_eq!(command[command.len() - 2..], ["--kernel", "6.1.0-57-arm64"]);
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        let toml: toml_edit::DocumentMut = toml.parse().unwrap();
        for (key, expected) in [
            (
                "cargo.target",
                serde_json::json!("aarch64-unknown-none-softfloat"),
            ),
            ("check.overrideCommand", serde_json::json!(command)),
            (
                "cargo.buildScripts.overrideCommand",
                serde_json::json!(command),
            ),
        ] {
            let in_toml = key
                .split('.')
                .try_fold(toml.as_item(), |item, part| item.get(part))
                .unwrap_or_else(|| panic!("{key} missing in rust-analyzer.toml"));
            assert_eq!(as_json(in_toml), expected, "{key} in rust-analyzer.toml");
            assert_eq!(json[format!("rust-analyzer.{key}")], expected, "{key}");
        }
    }
}
