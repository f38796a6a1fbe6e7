//! `cargo kmod install`.

use camino::Utf8PathBuf;

use super::build::BuildArgs;
use super::{Global, ModuleArg};
use crate::driver::install::{self, InstallOptions};
use crate::driver::BuildOptions;
use crate::error::Result;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    module: ModuleArg,
    #[command(flatten)]
    build: BuildArgs,
    /// Install under this directory (a staging root: DIR/lib/modules/<release>/updates,
    /// `depmod -b DIR`) instead of `/`; needs no root.
    #[arg(long, value_name = "DIR")]
    root: Option<Utf8PathBuf>,
    /// Load the module with modprobe afterwards; only for the running kernel's release.
    #[arg(long)]
    load: bool,
}

impl Args {
    pub fn run(self, global: &Global) -> Result<()> {
        let argv: Vec<String> = std::env::args().collect();
        let mut options = InstallOptions {
            // The kernels alone, for the preflight; the rest once the project is read.
            build: BuildOptions {
                kernels: self.build.kernels.clone(),
                all_kernels: self.build.all_kernels,
                ..BuildOptions::default()
            },
            root: self.root,
            load: self.load,
            command: shlex::try_join(argv.iter().map(String::as_str))
                .unwrap_or_else(|_| argv.join(" ")),
        };
        // Before cargo reads the workspace: a user who is not root hears
        // that first, not after a build.
        install::preflight(&options)?;
        let project = global.project()?;
        let module = project.module(self.module.name())?;
        options.build = self.build.options(&project);
        install::install(&project, module, &options, global.reporter()).map(drop)
    }
}
