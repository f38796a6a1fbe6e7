//! `cargo kmod test`.

use super::build::BuildArgs;
use super::Global;
use crate::driver::{self, TestOptions};
use crate::error::Result;

#[derive(clap::Args)]
pub struct Args {
    /// The module crate (a staticlib package of the workspace). Default: the
    /// one the current directory is in, else the workspace's only one.
    #[arg(short = 'p', long = "package", value_name = "MODULE")]
    package: Option<String>,
    #[command(flatten)]
    build: BuildArgs,
    /// Run only the tests whose name (`<module>::<function>`) contains it.
    #[arg(value_name = "FILTER")]
    filter: Option<String>,
}

impl Args {
    pub fn run(self, global: &Global) -> Result<()> {
        let project = global.project()?;
        let module = project.module(self.package.as_deref())?;
        let options = TestOptions {
            build: self.build.options(&project),
            filter: self.filter,
        };
        driver::test(&project, module, &options, global.reporter())
    }
}
