//! `cargo kmod cargo-check`: what rust-analyzer runs in a module crate.

use super::{Global, ModuleArg};
use crate::driver::editor::{check, CheckOptions};
use crate::error::Result;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    module: ModuleArg,
    /// Kernel release or tree path to check against. Default: `KDIR`, else
    /// the running kernel's tree, else the installed tree of the newest release.
    #[arg(long, value_name = "RELEASE|PATH")]
    kernel: Option<String>,
    /// Cargo features of the module crate to enable (comma-separated or repeated).
    #[arg(short = 'F', long, value_delimiter = ',', value_name = "FEATURES")]
    features: Vec<String>,
    /// Run `cargo clippy -- -D warnings` instead: the module and the
    /// workspace's crates it uses, linted against this kernel's bindings.
    #[arg(long)]
    clippy: bool,
}

impl Args {
    pub fn run(self, global: &Global) -> Result<()> {
        let project = global.project()?;
        let module = project.module(self.module.name())?;
        let options = CheckOptions {
            kernel: self.kernel,
            features: self.features,
            clippy: self.clippy,
        };
        check(&project, module, &options, global.reporter()).map(drop)
    }
}
