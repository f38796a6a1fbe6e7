//! `cargo kmod gen-key`: a module signing key pair ready for Machine Owner
//! Key enrollment (`mokutil --import`), made with `openssl req`.

use camino::Utf8PathBuf;

use super::Global;
use crate::driver::sign;
use crate::error::Result;

#[derive(clap::Args)]
pub struct Args {
    /// Directory for `signing_key.pem` (private) and `signing_key.x509`
    /// (DER certificate, what mokutil imports). Default: the project's
    /// target/kmod/signing.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<Utf8PathBuf>,
    /// The certificate's common name: `modinfo` shows it as the signer.
    #[arg(long, default_value = "kmod-build module signing key")]
    name: String,
    /// Validity in days.
    #[arg(long, default_value_t = 3650)]
    days: u32,
}

impl Args {
    pub fn run(self, global: &Global) -> Result<()> {
        let out_dir = match self.out_dir {
            Some(dir) => dir,
            None => global.project()?.kmod_dir().join("signing"),
        };
        let pair = sign::generate_key(&out_dir, &self.name, self.days)?;
        global.reporter().status(
            "Generated",
            &format!("{} (private, keep it safe) and {}", pair.key, pair.cert),
        );
        println!(
            "Enroll the certificate so a Secure Boot machine trusts modules signed with it:\n\
             \n    sudo mokutil --import {cert}\n\n\
             then reboot and confirm in MokManager with the password you chose.\n\
             Sign with: cargo kmod sign <module.ko> --key {key} --cert {cert}",
            key = pair.key,
            cert = pair.cert,
        );
        Ok(())
    }
}
