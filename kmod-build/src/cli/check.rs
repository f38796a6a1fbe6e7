//! `cargo kmod check`: would this `.ko` load on that kernel?

use camino::Utf8PathBuf;

use super::Global;
use crate::check::{self, Kernel, Verdict};
use crate::driver::select;
use crate::error::{Error, Result};
use crate::ModuleInfo;

#[derive(clap::Args)]
pub struct Args {
    /// The module to check: any `.ko` or `.ko.xz`, built by kmod-build or not.
    module: Utf8PathBuf,
    /// Kernel release or tree path to check against; repeat for several.
    /// Default: as for build.
    #[arg(long = "kernel", value_name = "RELEASE|PATH")]
    kernels: Vec<String>,
    /// Verify the module's signature against this certificate (DER or PEM),
    /// taken as one the kernel trusts: a signature it did not make is
    /// reported invalid, and the module refused (EKEYREJECTED).
    #[arg(long, value_name = "CERT")]
    cert: Option<Utf8PathBuf>,
    /// Print the reports as a JSON array.
    #[arg(long)]
    json: bool,
}

impl Args {
    pub fn run(self, global: &Global) -> Result<()> {
        let info = ModuleInfo::read(&self.module)?;
        let cert = self
            .cert
            .as_deref()
            .map(crate::signature::load_certificate)
            .transpose()?;
        let reports = select::trees(&self.kernels, global.reporter())?
            .iter()
            .map(|tree| {
                let mut report = check::check(&info, &Kernel::load(tree)?);
                if let Some(cert) = &cert {
                    report.verify_signature(&info, cert);
                }
                Ok(report)
            })
            .collect::<Result<Vec<_>>>()?;
        if self.json {
            let json = serde_json::to_string_pretty(&reports).map_err(|e| Error::Internal {
                what: format!("serializing the reports: {e}"),
            })?;
            println!("{json}");
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
        Err(Error::BadModule {
            module: self.module,
            reason: format!("refused by {}", refused.join(", ")),
        })
    }
}
