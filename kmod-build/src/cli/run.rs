//! `cargo kmod run`.

use camino::Utf8PathBuf;

use super::build::BuildArgs;
use super::{Global, ModuleArg};
use crate::driver::{self, RunOptions};
use crate::error::Result;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    module: ModuleArg,
    #[command(flatten)]
    build: BuildArgs,
    /// A command for the guest's `sh -c`, run after the module is loaded;
    /// repeat for several. The exit code is the first failing one's. Without
    /// any: a shell on the guest's console.
    #[arg(long = "exec", value_name = "CMD")]
    exec: Vec<String>,
    /// A module parameter for insmod; repeat for several.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Copy a host file into the guest (GUEST ending in `/`: into that
    /// directory); repeat for several.
    #[arg(long = "file", value_name = "HOST:GUEST", value_parser = host_and_guest)]
    files: Vec<(Utf8PathBuf, String)>,
    /// An argument passed to QEMU as it is (e.g. `--qemu-arg=-device --qemu-arg=edu`).
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    qemu_args: Vec<String>,
}

fn host_and_guest(value: &str) -> std::result::Result<(Utf8PathBuf, String), String> {
    match value.rsplit_once(':') {
        Some((host, guest)) if !host.is_empty() && !guest.is_empty() => {
            Ok((host.into(), guest.to_owned()))
        }
        _ => Err(format!("{value:?}: expected HOST:GUEST")),
    }
}

impl Args {
    pub fn run(self, global: &Global) -> Result<()> {
        let project = global.project()?;
        let module = project.module(self.module.name())?;
        let options = RunOptions {
            build: self.build.options(&project),
            params: self.params,
            exec: self.exec,
            files: self.files,
            qemu_args: self.qemu_args,
        };
        driver::run(&project, module, &options, global.reporter())
    }
}
