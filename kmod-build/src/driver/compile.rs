//! `cargo build` of a module crate for one tree: the profile, target,
//! codegen flags and environment every module build needs, supplied here
//! so that a project writes none of them.

use std::io::BufRead;
use std::process::{Command, Stdio};

use camino::{Utf8Path, Utf8PathBuf};

use super::bindings::Overrides;
use super::report::{Event, Reporter};
use crate::error::{Error, Result};
use crate::rustflags::RustFlags;
use crate::tree::KernelTree;

/// The `kmod` profile modules and their `core` are built with: one fat-LTO
/// object (the link extracts it), no unwinding, and optimized build
/// scripts (bindgen runs in them). Passed as `--config`, so a workspace
/// needs no `[profile.kmod]` of its own.
const PROFILE: &[(&str, &str)] = &[
    ("inherits", "\"release\""),
    ("panic", "\"abort\""),
    ("lto", "\"fat\""),
    ("codegen-units", "1"),
    ("opt-level", "2"),
    ("debug", "false"),
    ("build-override.opt-level", "2"),
];

/// The profile's name as cargo knows it.
pub const PROFILE_NAME: &str = "kmod";

/// `--config profile.kmod.<key>=<value>` for every setting of the profile
/// modules build with: what a cargo command on their outputs (`cargo clean
/// --profile kmod`, say) needs, as no manifest defines the profile.
pub fn profile_args() -> Vec<String> {
    PROFILE
        .iter()
        .flat_map(|(key, value)| {
            [
                "--config".to_owned(),
                format!("profile.{PROFILE_NAME}.{key}={value}"),
            ]
        })
        .collect()
}

/// A `cargo` command for kernel code: `RUSTC_BOOTSTRAP` for the unstable
/// codegen flags (the kernel's own Rust build does the same on stable
/// compilers), the flags in `CARGO_ENCODED_RUSTFLAGS` and nothing from the
/// user's `RUSTFLAGS`, which would change the codegen the tree needs.
pub(crate) fn cargo(cwd: &Utf8Path, encoded_rustflags: &str) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .current_dir(cwd)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_ENCODED_RUSTFLAGS", encoded_rustflags)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET");
    command
}

/// What the kernel crates of a build are compiled with: the target, the
/// codegen flags and the sysroot (see `seed`, which prefers a cargo
/// directory of the same).
pub(crate) fn codegen(flags: &RustFlags, sysroot: &Utf8Path) -> String {
    format!(
        "--target={} {} --sysroot={sysroot}",
        flags.target,
        flags.encoded()
    )
}

/// What one module compile needs to know.
pub(crate) struct Compile<'a> {
    pub workspace: &'a Utf8Path,
    pub manifest: &'a Utf8Path,
    pub package: &'a str,
    pub target_dir: &'a Utf8Path,
    pub cache_dir: &'a Utf8Path,
    pub sysroot: &'a Utf8Path,
    pub tree: &'a KernelTree,
    pub flags: &'a RustFlags,
    /// Cargo features of the module crate.
    pub features: &'a [String],
    /// A test build: `--cfg kmod_test` (see `kmod_runtime::tests`).
    pub tests: bool,
    /// The build scripts the driver stands in for.
    pub overrides: &'a Overrides,
}

impl Compile<'_> {
    /// `cargo <subcommand>` of the module exactly as a build of it for the
    /// tree runs: target, profile, sysroot, codegen flags, environment and
    /// target dir. Its stdout (cargo's messages) is piped.
    fn command(&self, subcommand: &str, reporter: &dyn Reporter) -> Command {
        let mut encoded = format!("{}\x1f--sysroot={}", self.flags.encoded(), self.sysroot);
        if self.tests {
            encoded.push_str("\x1f--cfg\x1fkmod_test");
        }
        let mut command = cargo(self.workspace, &encoded);
        command
            .args([subcommand, "--message-format"])
            .arg(reporter.cargo_message_format())
            .arg("--manifest-path")
            .arg(self.manifest)
            .args(["-p", self.package, "--profile", PROFILE_NAME, "--target"])
            .arg(self.flags.target)
            .arg("--target-dir")
            .arg(self.target_dir)
            .args(profile_args())
            .args(
                (!self.features.is_empty())
                    .then(|| ["--features".to_owned(), self.features.join(",")])
                    .into_iter()
                    .flatten(),
            )
            .args(
                self.overrides
                    .config
                    .iter()
                    .flat_map(|config| ["--config", config.as_str()]),
            )
            .env(crate::KERNEL_ENV, &self.tree.path)
            .env(crate::CACHE_ENV, self.cache_dir)
            .stdout(Stdio::piped());
        command
    }

    /// Builds the staticlib; returns the C shims of this build: the
    /// overrides' and those build scripts left in their `OUT_DIR`s.
    /// Cargo's JSON goes to the reporter line by line.
    pub fn run(&self, reporter: &dyn Reporter) -> Result<Vec<Utf8PathBuf>> {
        let mut shims = self.overrides.shims.clone();
        self.stream("build", &[], reporter, |line| {
            // Cargo reports every build script of the build, fresh or
            // not, with its OUT_DIR: only this build's shims are
            // linked, never stale ones.
            if let Ok(cargo_metadata::Message::BuildScriptExecuted(script)) =
                serde_json::from_str(line)
            {
                let shim = script.out_dir.join(crate::SHIM_FILE);
                if shim.is_file() {
                    shims.push(shim);
                }
            }
        })?;
        Ok(shims)
    }

    /// `cargo check` of the module as [`Compile::run`] would build it (its
    /// build scripts run, so the bindings exist), without linking: what an
    /// editor runs. Cargo's messages go to the reporter.
    pub fn check(&self, reporter: &dyn Reporter) -> Result<()> {
        self.stream("check", &[], reporter, |_| {})
    }

    /// `cargo clippy` of the module and the workspace's crates it uses, as
    /// [`Compile::check`] does it, every warning an error.
    pub fn clippy(&self, reporter: &dyn Reporter) -> Result<()> {
        self.stream("clippy", &["--", "-D", "warnings"], reporter, |_| {})
    }

    /// Runs `cargo <subcommand> ... <trailing>`, each line of its stdout to
    /// the reporter and to `each_line`.
    fn stream(
        &self,
        subcommand: &str,
        trailing: &[&str],
        reporter: &dyn Reporter,
        mut each_line: impl FnMut(&str),
    ) -> Result<()> {
        let mut command = self.command(subcommand, reporter);
        command.args(trailing);
        let shown = format!(
            "cargo {subcommand} -p {} --target {} ({})",
            self.package, self.flags.target, self.tree.release
        );
        let mut child = crate::process::spawn(&mut command, "cargo")?;
        if let Some(stdout) = child.take_stdout() {
            for line in std::io::BufReader::new(stdout).lines() {
                let line = line.map_err(|e| Error::io("cargo's output", e))?;
                reporter.report(Event::Cargo(&line));
                each_line(&line);
            }
        }
        let status = child.wait()?;
        if !status.success() {
            return Err(Error::Compile {
                module: self.package.to_owned(),
                release: self.tree.release.clone(),
                command: shown,
                status: status.to_string(),
            });
        }
        for message in &self.overrides.messages {
            reporter.report(Event::Cargo(message));
        }
        Ok(())
    }
}
