//! `cargo xtask`: the project's commands (rust-analyzer's xtask pattern).

mod bench;
mod build_module;
mod check_module;
mod dkms;
mod doctor;
mod fetch;
mod fuzz;
mod gen_key;
mod kernels;
mod prerequisites;
mod qemu;
mod sign;
mod status;
mod sysroot;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, check and test Rust kernel modules"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Time the Rust hello against its C twin on every installed tree; write BENCHMARKS.md.
    Bench(bench::Args),
    /// Build a module crate (e.g. `hello`) into target/kmod/<release>/<name>.ko.
    BuildModule(build_module::Args),
    /// Predict, offline, whether a .ko loads on a kernel, with the kernel's reasons.
    CheckModule(check_module::Args),
    /// List every kernel-devel tree installed, with its layout and whether it is usable.
    Kernels(kernels::Args),
    /// Check that a tree can build and link a module; name what is missing and what provides it.
    Doctor(doctor::Args),
    /// Download and unpack kernels not installed here (Debian's packages), or `--list` them.
    Fetch(fetch::Args),
    /// Fuzz the parsers of Module.symvers, configs and .ko files (cargo-fuzz).
    Fuzz(fuzz::Args),
    /// Sign a module with the tree's sign-file and CONFIG_MODULE_SIG_HASH.
    Sign(sign::Args),
    /// Generate a module signing key pair ready for `mokutil --import`.
    GenKey(gen_key::Args),
    /// Write a DKMS source package of a module crate that builds offline.
    Dkms(dkms::Args),
    /// Run the whole test suite: unit tests, then every example built and
    /// loaded in QEMU by each installed kernel.
    Test(test::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(&args),
        Command::BuildModule(args) => build_module::run(&args),
        Command::CheckModule(args) => check_module::run(&args),
        Command::Kernels(args) => kernels::run(&args),
        Command::Doctor(args) => doctor::run(&args),
        Command::Fetch(args) => fetch::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
        Command::Sign(args) => sign::run(&args),
        Command::GenKey(args) => gen_key::run(&args),
        Command::Dkms(args) => dkms::run(&args),
        Command::Test(args) => test::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            status::error(&format!("{error:#}"));
            let code = error
                .downcast_ref::<kmod_build::Error>()
                .map_or(1, kmod_build::Error::exit_code);
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}

/// The workspace root: xtask lives one level below it.
fn project_root() -> camino::Utf8PathBuf {
    camino::Utf8Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_owned()
}
