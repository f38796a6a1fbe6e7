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
    /// A certificate (DER or PEM) the kernel trusts besides the keys built
    /// into its image (an enrolled MOK); repeat for several.
    #[arg(long, value_name = "CERT")]
    cert: Vec<Utf8PathBuf>,
    /// Predict a kernel that enforces signatures (booted with
    /// `module.sig_enforce=1`); `CONFIG_MODULE_SIG_FORCE` trees always do.
    #[arg(long)]
    sig_enforce: bool,
    /// Print the reports as a JSON array.
    #[arg(long)]
    json: bool,
}

impl Args {
    pub fn run(self, global: &Global) -> Result<()> {
        let info = ModuleInfo::read(&self.module)?;
        let certs = self
            .cert
            .iter()
            .map(|path| Ok((crate::signature::load_certificate(path)?, path)))
            .collect::<Result<Vec<_>>>()?;
        let mut notes = std::collections::BTreeSet::new();
        let reports = select::trees(&self.kernels, global.reporter())?
            .iter()
            .map(|tree| {
                let mut kernel = Kernel::load(tree)?;
                notes.extend(check::arch::mitigation_scan_note(&kernel.config));
                for (cert, path) in &certs {
                    kernel.keyring.add(cert.clone(), path);
                }
                kernel.sig_enforce |= self.sig_enforce;
                Ok(check::check(&info, &kernel))
            })
            .collect::<Result<Vec<_>>>()?;
        for note in notes {
            global.reporter().status("Note", note);
        }
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
        Err(Error::BadModule {
            module: self.module,
            reason: format!("refused by {}", refused.join(", ")),
        })
    }
}
