//! `cargo kmod sign`: appends a module signature with the tree's own
//! `scripts/sign-file` and the tree's `CONFIG_MODULE_SIG_HASH`.

use camino::Utf8PathBuf;

use super::Global;
use crate::driver::sign::{self, SigningKey};
use crate::error::Result;
use crate::{KernelTree, ModuleInfo};

#[derive(clap::Args)]
pub struct Args {
    /// The `.ko` to sign, in place unless `--output` is given. A signature
    /// already there is replaced.
    module: Utf8PathBuf,
    /// Private key, PEM (e.g. from `gen-key`).
    #[arg(long, value_name = "KEY.pem")]
    key: Utf8PathBuf,
    /// The key's X.509 certificate, DER or PEM.
    #[arg(long, value_name = "CERT")]
    cert: Utf8PathBuf,
    /// Tree whose sign-file and hash to use. Default: the installed tree of
    /// the release in the module's vermagic.
    #[arg(long = "kernel", value_name = "RELEASE|PATH")]
    kernel: Option<String>,
    /// Write the signed module here instead of replacing the input.
    #[arg(long, value_name = "PATH")]
    output: Option<Utf8PathBuf>,
}

impl Args {
    pub fn run(self, global: &Global) -> Result<()> {
        let tree = match &self.kernel {
            Some(spec) => KernelTree::select(spec)?,
            None => sign::tree_of(&ModuleInfo::read(&self.module)?)?,
        };
        let pair = SigningKey {
            key: self.key,
            cert: self.cert,
        };
        let output = self.output.as_ref().unwrap_or(&self.module);
        sign::sign(&self.module, &pair, &tree, output, global.reporter()).map(drop)
    }
}
