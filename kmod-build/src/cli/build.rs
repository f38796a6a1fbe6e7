//! `cargo kmod build`.

use camino::Utf8PathBuf;

use super::{Global, ModuleArg};
use crate::driver::{self, sign::SigningKey, BuildOptions, Project};
use crate::error::Result;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    module: ModuleArg,
    #[command(flatten)]
    build: BuildArgs,
}

/// What every command that builds takes (`build`, `install`).
#[derive(clap::Args)]
pub struct BuildArgs {
    /// Kernel release or tree path to build for; repeat for several.
    /// Default: the running kernel's tree if installed, else every installed tree.
    #[arg(long = "kernel", value_name = "RELEASE|PATH")]
    pub kernels: Vec<String>,
    /// Never install missing system packages; say which command would.
    #[arg(long)]
    no_install: bool,
    /// Build for every installed or fetched tree (and any `--kernel`), going
    /// on past a kernel that fails; a summary at the end, non-zero exit if
    /// any failed.
    #[arg(long)]
    pub all_kernels: bool,
    /// Sign each module with the tree's sign-file (`--key`/`--cert`, by
    /// default the pair `gen-key` made in target/kmod/signing).
    #[arg(long)]
    sign: bool,
    /// The private key to sign with (PEM).
    #[arg(long, requires = "sign", value_name = "KEY.pem")]
    key: Option<Utf8PathBuf>,
    /// The key's X.509 certificate (DER or PEM).
    #[arg(long, requires = "sign", value_name = "CERT")]
    cert: Option<Utf8PathBuf>,
    /// Cargo features of the module crate to enable (comma-separated or repeated).
    #[arg(short = 'F', long, value_delimiter = ',', value_name = "FEATURES")]
    features: Vec<String>,
}

impl Args {
    pub fn run(self, global: &Global) -> Result<()> {
        let project = global.project()?;
        let module = project.module(self.module.name())?;
        let options = self.build.options(&project);
        driver::build(&project, module, &options, global.reporter()).map(drop)
    }
}

impl BuildArgs {
    pub fn options(self, project: &Project) -> BuildOptions {
        let sign = self.sign.then(|| {
            let default = SigningKey::in_dir(&project.kmod_dir().join("signing"));
            SigningKey {
                key: self.key.unwrap_or(default.key),
                cert: self.cert.unwrap_or(default.cert),
            }
        });
        BuildOptions {
            kernels: self.kernels,
            all_kernels: self.all_kernels,
            install_prerequisites: !self.no_install,
            sign,
            features: self.features,
        }
    }
}
