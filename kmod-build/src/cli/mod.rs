//! The command-line front end `cargo kmod` and a project's `cargo xtask`
//! share: one file per command, each turning its arguments into a call of
//! [`crate::driver`].

mod build;
mod cargo_check;
mod check;
mod dkms;
mod doctor;
mod fetch;
mod gen_key;
mod install;
mod kernels;
mod new;
mod run;
mod sign;
mod test;

use std::process::ExitCode;

use camino::Utf8PathBuf;
use clap::{Parser, Subcommand, ValueEnum};

use crate::driver::{report, Human, Json, Project, Reporter};
use crate::error::Result;

/// The commands, as `cargo kmod <command>`; `build-module` and
/// `check-module` are the names `cargo xtask` has always had.
#[derive(Subcommand)]
pub enum Command {
    /// Build a module crate into target/kmod/<release>/<module>.ko, checked.
    #[command(alias = "build-module")]
    Build(build::Args),
    /// `cargo check` a module crate for one kernel as a build compiles it, bindings
    /// included: what rust-analyzer runs (see the settings `new` writes).
    CargoCheck(cargo_check::Args),
    /// Predict, offline, whether a .ko loads on a kernel, with the kernel's reasons.
    #[command(alias = "check-module")]
    Check(check::Args),
    /// List every kernel-devel tree installed, with its layout and whether it is usable.
    Kernels(kernels::Args),
    /// Check that a tree can build and link a module; name what is missing and what provides it.
    Doctor(doctor::Args),
    /// Sign a module with the tree's sign-file and CONFIG_MODULE_SIG_HASH.
    Sign(sign::Args),
    /// Generate a module signing key pair ready for `mokutil --import`.
    GenKey(gen_key::Args),
    /// Write a DKMS source package of a module crate that builds offline.
    Dkms(dkms::Args),
    /// Build a module and install it under /lib/modules/<release>/updates (or a
    /// staging --root), run depmod, and modprobe it with --load.
    Install(install::Args),
    /// Build a module, boot its kernel in QEMU, load it, run commands (or a
    /// shell) in the guest, then unload it and report what the kernel printed.
    Run(Box<run::Args>),
    /// Create a new project with one module crate.
    New(new::Args),
    /// Download and unpack kernels not installed here (Debian's packages), or `--list` them.
    Fetch(fetch::Args),
}

/// Options every command takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Global {
    /// The workspace's Cargo.toml; default: the one cargo finds from the
    /// current directory.
    #[arg(long, global = true, value_name = "PATH")]
    pub manifest_path: Option<Utf8PathBuf>,
    /// `human`: cargo-style status lines on stderr; `json`: one JSON object
    /// per line on stdout, cargo's own messages passed through.
    #[arg(long, global = true, value_enum, default_value_t = MessageFormat::Human)]
    pub message_format: MessageFormat,
}

#[derive(ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MessageFormat {
    #[default]
    Human,
    Json,
}

/// Which module crate a command is about: `-p MODULE`, or a plain
/// argument as `cargo xtask build-module hello` has always taken it.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ModuleArg {
    /// The module crate (a staticlib package of the workspace). Default: the
    /// one the current directory is in, else the workspace's only one.
    #[arg(short = 'p', long = "package", value_name = "MODULE")]
    package: Option<String>,
    /// The module crate, as `cargo xtask build-module hello` names it.
    #[arg(value_name = "MODULE", conflicts_with = "package")]
    module: Option<String>,
}

impl ModuleArg {
    pub fn name(&self) -> Option<&str> {
        self.package.as_deref().or(self.module.as_deref())
    }
}

impl Global {
    pub fn reporter(&self) -> &'static dyn Reporter {
        match self.message_format {
            MessageFormat::Human => &Human,
            MessageFormat::Json => &Json,
        }
    }

    fn project(&self) -> Result<Project> {
        Project::load(self.manifest_path.as_deref())
    }

    /// Prints `error` the way the message format wants; the exit code its
    /// kind maps to (see [`crate::Error::exit_code`]).
    pub fn fail(&self, message: &str, exit_code: i32) -> ExitCode {
        if self.message_format == MessageFormat::Json {
            println!("{}", report::error_json(message, exit_code));
        }
        Human.error(message);
        ExitCode::from(u8::try_from(exit_code).unwrap_or(1))
    }
}

impl Command {
    pub fn run(self, global: &Global) -> Result<()> {
        match self {
            Command::Build(args) => args.run(global),
            Command::CargoCheck(args) => args.run(global),
            Command::Check(args) => args.run(global),
            Command::Kernels(args) => args.run(global),
            Command::Doctor(args) => args.run(global),
            Command::Sign(args) => args.run(global),
            Command::GenKey(args) => args.run(global),
            Command::Dkms(args) => args.run(global),
            Command::Install(args) => args.run(global),
            Command::Run(args) => args.run(global),
            Command::New(args) => args.run(global),
            Command::Fetch(args) => args.run(global),
        }
    }
}

/// What `cargo kmod` (and a project's xtask) runs: the commands, and
/// `test`, which this repository's own xtask has a suite under.
#[derive(Subcommand)]
enum TopCommand {
    #[command(flatten)]
    Common(Command),
    /// Build a test build of a module and run its #[kmod_runtime::tests] inside
    /// each kernel under QEMU; libtest-style results, exit code 101 if any failed.
    Test(test::Args),
}

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: TopCommand,
    #[command(flatten)]
    global: Global,
}

fn main_as(name: &'static str, args: Vec<std::ffi::OsString>) -> ExitCode {
    let cli = Cli::command_named(name).get_matches_from(args);
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&cli) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    if let Err(error) = crate::process::supervise() {
        return cli.global.fail(&error.to_string(), error.exit_code());
    }
    let ran = match cli.command {
        TopCommand::Common(command) => command.run(&cli.global),
        TopCommand::Test(args) => args.run(&cli.global),
    };
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => cli.global.fail(&error.to_string(), error.exit_code()),
    }
}

impl Cli {
    fn command_named(name: &'static str) -> clap::Command {
        <Cli as clap::CommandFactory>::command()
            .name(name)
            .bin_name(name)
            .about("Build, check and ship Linux kernel modules written in Rust")
    }
}

/// `main` of the `cargo-kmod` binary: cargo runs it as `cargo-kmod kmod ...`.
pub fn cargo_kmod_main() -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|arg| arg == "kmod") {
        args.remove(1);
    }
    main_as("cargo kmod", args)
}

/// `main` of a project's `xtask` (what `cargo kmod new` writes).
pub fn xtask_main() -> ExitCode {
    main_as("cargo xtask", std::env::args_os().collect())
}
