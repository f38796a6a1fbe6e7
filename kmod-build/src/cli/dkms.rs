//! `cargo kmod dkms`: a DKMS source package of a module crate.

use camino::Utf8PathBuf;

use super::{Global, ModuleArg};
use crate::driver::dkms::{self, DkmsOptions};
use crate::error::Result;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    module: ModuleArg,
    /// Where to write `<module>-<version>/` (what `dkms add` takes).
    /// Default: the project's target/kmod/dkms.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<Utf8PathBuf>,
}

impl Args {
    pub fn run(self, global: &Global) -> Result<()> {
        let project = global.project()?;
        let module = project.module(self.module.name())?;
        let options = DkmsOptions {
            out_dir: self
                .out_dir
                .unwrap_or_else(|| project.kmod_dir().join("dkms")),
        };
        let package = dkms::package(&project, module, &options, global.reporter())?;
        println!(
            "Register it, then build and install it for each installed kernel\n\
             (AUTOINSTALL rebuilds it for kernels installed later):\n\
             \n    sudo dkms add {package}\n    sudo dkms install {}/{} -k <release>\n",
            module.name, module.version
        );
        Ok(())
    }
}
