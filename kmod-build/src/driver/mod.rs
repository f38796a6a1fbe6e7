//! The build driver: from a cargo workspace to checked `.ko` files, and
//! what comes after (signing, DKMS). Every front end (`cargo kmod`, a
//! project's `cargo xtask`) is a thin layer over these calls.
//!
//! The library's stages run one way: discovery and the doctor find and
//! vet a tree, [`RustFlags`](crate::RustFlags) derive the codegen,
//! [`build::build`] compiles (cargo), links (Kbuild) and checks each
//! module, and [`report::Reporter`] carries what happens to the front end.

pub mod bindings;
pub mod build;
mod compile;
pub mod dkms;
pub mod editor;
mod fingerprint;
pub mod install;
mod lock;
pub mod new;
pub mod prerequisites;
pub mod project;
pub mod qemu;
pub mod report;
pub mod run;
mod seed;
pub mod select;
pub mod sign;
mod sysroot;
pub mod test;

use std::process::{Command, Output, Stdio};

pub use build::{build, build_for, BuildOptions};
pub use compile::{profile_args, PROFILE_NAME};
pub use install::{install, InstallOptions, Installed};
pub use project::{ModuleCrate, Project};
pub use report::{Artifact, Event, Human, Json, Reporter};
pub use run::{run, RunOptions};
pub use test::{test, TestOptions};

use crate::error::{Error, Result};

/// `command`'s stdout; a failure carries its stderr.
pub(crate) fn run_output(command: &mut Command) -> Result<String> {
    let output = spawn(command)?;
    checked(command, output).map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `command` with its output going to the user's terminal.
pub(crate) fn run_status(command: &mut Command, what: &str) -> Result<()> {
    let status = crate::process::spawn(command, &program(command))?.wait()?;
    if status.success() {
        return Ok(());
    }
    Err(Error::Command {
        command: what.to_owned(),
        status: format!(" ({status})"),
        output: String::new(),
    })
}

fn spawn(command: &mut Command) -> Result<Output> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    crate::process::spawn(command, &program(command))?.wait_with_output()
}

fn checked(command: &Command, output: Output) -> Result<Output> {
    if output.status.success() {
        return Ok(output);
    }
    let shown: Vec<String> = std::iter::once(program(command))
        .chain(command.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect();
    Err(Error::Command {
        command: shown.join(" "),
        status: format!(" ({})", output.status),
        output: String::from_utf8_lossy(&output.stderr)
            .trim_end()
            .to_owned(),
    })
}

fn program(command: &Command) -> String {
    command.get_program().to_string_lossy().into_owned()
}
