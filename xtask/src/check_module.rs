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
    /// Verify the module's signature against this certificate (DER or PEM),
    /// taken as one the kernel trusts: a signature it did not make is
    /// reported invalid, and the module refused (EKEYREJECTED).
    #[arg(long, value_name = "CERT")]
    pub cert: Option<Utf8PathBuf>,
    /// Print the reports as a JSON array.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let info = ModuleInfo::read(&args.module)?;
    let cert = args
        .cert
        .as_deref()
        .map(kmod_build::signature::load_certificate)
        .transpose()?;
    let mut notes = std::collections::BTreeSet::new();
    let reports = select_trees(&args.kernels)?
        .iter()
        .map(|tree| {
            let kernel = Kernel::load(tree)?;
            notes.extend(check::arch::mitigation_scan_note(&kernel.config));
            let mut report = check::check(&info, &kernel);
            if let Some(cert) = &cert {
                report.verify_signature(&info, cert);
            }
            Ok(report)
        })
        .collect::<Result<Vec<_>>>()?;
    for note in notes {
        crate::status::step("Note", note);
    }
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
