//! `cargo xtask`: this repository's chores (its test suite, benchmarks and
//! fuzzing) beside every `cargo kmod` command, which kmod-build's CLI
//! provides to any project (rust-analyzer's xtask pattern).

mod bench;
mod fuzz;
mod status;
mod test;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, check and test Rust kernel modules; this repository's test suite"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: kmod_build::cli::Global,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Kmod(kmod_build::cli::Command),
    /// Time the Rust hello against its C twin on every installed tree; write BENCHMARKS.md.
    Bench(bench::Args),
    /// Fuzz the parsers of Module.symvers, configs and .ko files (cargo-fuzz).
    Fuzz(fuzz::Args),
    /// Run the whole test suite: unit tests, then every example built and
    /// loaded in QEMU by each installed kernel.
    Test(test::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every build this runs shares one job budget and stops on Ctrl-C.
    if let Err(error) = kmod_build::process::supervise() {
        return cli.global.fail(&error.to_string(), error.exit_code());
    }
    let result = match cli.command {
        Command::Kmod(command) => command.run(&cli.global).map_err(anyhow::Error::from),
        Command::Bench(args) => bench::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
        Command::Test(args) => test::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let code = error
                .downcast_ref::<kmod_build::Error>()
                .map_or(1, kmod_build::Error::exit_code);
            cli.global.fail(&format!("{error:#}"), code)
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
