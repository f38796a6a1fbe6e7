//! `cargo xtask check-module`: would this `.ko` load on that kernel?

use anyhow::Result;
use camino::Utf8PathBuf;
use kmod_build::check::{self, Kernel, Verdict};
use kmod_build::ModuleInfo;

use crate::build_module::select_trees;

#[derive(clap::Args)]
pub struct Args {
    /// The module to check: any `.ko` or `.ko.xz`, built by kmod-build or not.
    pub module: Utf8PathBuf,
    /// Kernel release or tree path to check against; repeat for several.
    /// Default: as for build-module.
    #[arg(long = "kernel", value_name = "RELEASE|PATH")]
    pub kernels: Vec<String>,
    /// A certificate (DER or PEM) the kernel trusts besides the keys built
    /// into its image (an enrolled MOK); repeat for several.
    #[arg(long, value_name = "CERT")]
    pub cert: Vec<Utf8PathBuf>,
    /// Predict a kernel that enforces signatures (booted with
    /// `module.sig_enforce=1`); `CONFIG_MODULE_SIG_FORCE` trees always do.
    #[arg(long)]
    pub sig_enforce: bool,
    /// Print the reports as a JSON array.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let info = ModuleInfo::read(&args.module)?;
    let certs = args
        .cert
        .iter()
        .map(|path| Ok((kmod_build::signature::load_certificate(path)?, path)))
        .collect::<Result<Vec<_>>>()?;
    let reports = select_trees(&args.kernels)?
        .iter()
        .map(|tree| {
            let mut kernel = Kernel::load(tree)?;
            for (cert, path) in &certs {
                kernel.keyring.add(cert.clone(), path);
            }
            kernel.sig_enforce |= args.sig_enforce;
            Ok(check::check(&info, &kernel))
        })
        .collect::<Result<Vec<_>>>()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for report in &reports {
            println!("{report}");
        }
    }
    let refused: Vec<String> = reports
        .iter()
        .filter_map(|r| match r.verdict {
            Verdict::Refused(errno) => Some(format!("{} ({errno})", r.release)),
            Verdict::WouldCrash(_) => Some(format!(
                "{} (kmod-build: the loader would crash)",
                r.release
            )),
            _ => None,
        })
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(kmod_build::Error::BadModule {
        module: args.module.clone(),
        reason: format!("refused by {}", refused.join(", ")),
    }
    .into())
}
