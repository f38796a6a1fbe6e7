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
}

impl Args {
    pub fn run(self, global: &Global) -> Result<()> {
        let project = global.project()?;
        let module = project.module(self.module.name())?;
        let options = CheckOptions {
            kernel: self.kernel,
            features: self.features,
        };
        check(&project, module, &options, global.reporter()).map(drop)
    }
}
