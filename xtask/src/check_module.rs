//! `cargo xtask check-module`: would this `.ko` load on that kernel?

use anyhow::Result;
use camino::Utf8PathBuf;
use kmod_build::check::{self, Verdict};
use kmod_build::ModuleInfo;

use crate::build_module::select_trees;

#[derive(clap::Args)]
pub struct Args {
    /// The module to check: any `.ko`, built by kmod-build or not.
    pub module: Utf8PathBuf,
    /// Kernel release or tree path to check against; repeat for several.
    /// Default: as for build-module.
    #[arg(long = "kernel", value_name = "RELEASE|PATH")]
    pub kernels: Vec<String>,
}

pub fn run(args: &Args) -> Result<()> {
    let info = ModuleInfo::read(&args.module)?;
    let mut refused = Vec::new();
    for tree in select_trees(&args.kernels)? {
        let report = check::check(&info, &tree.release, &tree.config()?, &tree.symvers()?);
        println!("{report}");
        if let Verdict::Refused(errno) = report.verdict {
            refused.push(format!("{} ({errno})", tree.release));
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(kmod_build::Error::BadModule {
        module: args.module.clone(),
        reason: format!("refused by {}", refused.join(", ")),
    }
    .into())
}
