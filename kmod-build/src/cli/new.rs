//! `cargo kmod new`: a new project with one module crate.

use camino::Utf8PathBuf;

use super::Global;
use crate::driver::new::{new_project, NewOptions};
use crate::error::Result;

#[derive(clap::Args)]
pub struct Args {
    /// The project directory to create; its name names the module.
    dir: Utf8PathBuf,
    /// Depend on this kmod-build checkout by path instead of on the
    /// registry's kmod-runtime and kmod-build.
    #[arg(long, value_name = "CHECKOUT")]
    local: Option<Utf8PathBuf>,
    /// The kernel (release or tree path) the editor settings check the module
    /// against. Default: `KDIR`, else the running kernel's tree, else the newest
    /// installed one, chosen at each check.
    #[arg(long, value_name = "RELEASE|PATH")]
    kernel: Option<String>,
}

impl Args {
    pub fn run(self, global: &Global) -> Result<()> {
        let dir = new_project(
            &NewOptions {
                dir: self.dir,
                local: self.local,
                kernel: self.kernel,
            },
            global.reporter(),
        )?;
        println!("Build it with:\n\n    cd {dir}\n    cargo kmod build\n");
        Ok(())
    }
}
