//! `cargo xtask sign`: appends a module signature with the tree's own
//! `scripts/sign-file` and the tree's `CONFIG_MODULE_SIG_HASH`.

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::keyring::Trust;
use kmod_build::{check, signature, Error, KernelTree, ModuleInfo};
use xshell::{cmd, Shell};

use crate::status;

#[derive(clap::Args)]
pub struct Args {
    /// The `.ko` to sign, in place unless `--output` is given. A signature
    /// already there is replaced.
    pub module: Utf8PathBuf,
    /// Private key, PEM (e.g. from `cargo xtask gen-key`).
    #[arg(long, value_name = "KEY.pem")]
    pub key: Utf8PathBuf,
    /// The key's X.509 certificate, DER or PEM.
    #[arg(long, value_name = "CERT")]
    pub cert: Utf8PathBuf,
    /// Tree whose sign-file and hash to use. Default: the installed tree of
    /// the release in the module's vermagic.
    #[arg(long = "kernel", value_name = "RELEASE|PATH")]
    pub kernel: Option<String>,
    /// Write the signed module here instead of replacing the input.
    #[arg(long, value_name = "PATH")]
    pub output: Option<Utf8PathBuf>,
}

pub fn run(args: &Args) -> Result<()> {
    let sh = Shell::new()?;
    let tree = match &args.kernel {
        Some(spec) => KernelTree::select(spec)?,
        None => tree_of(&ModuleInfo::read(&args.module)?)?,
    };
    let output = args.output.as_ref().unwrap_or(&args.module);
    sign(&sh, &args.module, &args.key, &args.cert, &tree, output)
}

/// The installed tree a module was built for, from its vermagic.
fn tree_of(module: &ModuleInfo) -> Result<KernelTree> {
    let release = module
        .get("vermagic")
        .and_then(|magic| magic.split(' ').next())
        .ok_or_else(|| Error::BadInput {
            path: module.path.clone(),
            why: "no vermagic to pick a kernel tree by; pass --kernel".into(),
        })?;
    Ok(KernelTree::select(release)?)
}

/// Signs `module` for `tree` into `output`, through `<output>.partial` so
/// that a failure leaves no half-signed file, and checks the result
/// verifies against `cert`.
pub fn sign(
    sh: &Shell,
    module: &Utf8Path,
    key: &Utf8Path,
    cert_path: &Utf8Path,
    tree: &KernelTree,
    output: &Utf8Path,
) -> Result<()> {
    let cert = signature::load_certificate(cert_path)?;
    check_key(key)?;
    let sign_file = tree.required(
        "scripts/sign-file",
        "install the tree's kbuild tools (Debian: linux-kbuild-<version>)",
    )?;
    let config = tree.config()?;
    let hash = config.get("CONFIG_MODULE_SIG_HASH").unwrap_or("sha256");

    let bytes = std::fs::read(module).with_context(|| format!("reading {module}"))?;
    let info = ModuleInfo::parse(module, &bytes)?;
    let unsigned = match &info.signature {
        None => &bytes[..],
        Some(Ok(old)) => &bytes[..old.signed_len],
        Some(Err(why)) => {
            return Err(Error::BadInput {
                path: module.to_owned(),
                why: format!("has an unreadable signature to replace: {why}"),
            }
            .into())
        }
    };
    let partial = Utf8PathBuf::from(format!("{output}.partial"));
    std::fs::write(&partial, unsigned).with_context(|| format!("writing {partial}"))?;
    let result = run_sign_file(sh, &sign_file, hash, key, cert_path, &partial).and_then(|()| {
        let signed = ModuleInfo::read(&partial)?;
        let mut summary = signature::Summary::of(signed.signature.as_ref());
        summary.verify(signed.signature.as_ref(), &cert);
        match summary.verified {
            signature::Verified::Yes => Ok(summary),
            _ => Err(Error::BadInput {
                path: key.to_owned(),
                why: format!("sign-file's signature does not verify: {summary}"),
            }
            .into()),
        }
    });
    let summary = match result {
        Ok(summary) => summary,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
    };
    std::fs::rename(&partial, output).with_context(|| format!("renaming {partial} to {output}"))?;
    status::step("Signed", &format!("{output}: {summary}"));
    Ok(())
}

/// Warns when `tree`'s kernel does not trust the key that signed `module`:
/// it will taint the kernel `E`, or be refused where signatures are
/// enforced, until the certificate is enrolled as a MOK.
pub fn warn_if_untrusted(tree: &KernelTree, module: &Utf8Path, cert: &Utf8Path) -> Result<()> {
    let kernel = check::Kernel::load(tree)?;
    let report = check::check(&ModuleInfo::read(module)?, &kernel);
    let why = match &report.trust {
        Some(Trust::Verified { .. }) => return Ok(()),
        Some(Trust::UnknownKey) => format!("{} does not trust this key", tree.release),
        Some(trust) => format!("whether {} trusts it is unknown: {trust}", tree.release),
        None => return Ok(()),
    };
    status::warning(&format!(
        "{module} is signed with {cert}, but {why}: the module will taint the kernel (E), and be refused where signatures are enforced (module.sig_enforce=1, Secure Boot lockdown); to trust it, enroll the certificate as a MOK: sudo mokutil --import {cert} and reboot"
    ));
    Ok(())
}

/// A key sign-file can read: a PEM file (PKCS#11 URIs are not handled).
pub fn check_key(key: &Utf8Path) -> Result<()> {
    let text = std::fs::read(key).map_err(|e| Error::BadInput {
        path: key.to_owned(),
        why: format!("cannot read the signing key: {e}"),
    })?;
    if !text.starts_with(b"-----BEGIN") {
        return Err(Error::BadInput {
            path: key.to_owned(),
            why: "not a PEM private key".into(),
        }
        .into());
    }
    Ok(())
}

fn run_sign_file(
    sh: &Shell,
    sign_file: &Utf8Path,
    hash: &str,
    key: &Utf8Path,
    cert: &Utf8Path,
    module: &Utf8Path,
) -> Result<()> {
    let output = cmd!(sh, "{sign_file} {hash} {key} {cert} {module}")
        .ignore_status()
        .output()
        .with_context(|| format!("running {sign_file}"))?;
    if output.status.success() {
        return Ok(());
    }
    // sign-file prints OpenSSL's error queue (`- SSL error:...: key values
    // mismatch: <source>`) between lines that name only its own code.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let why = lines
        .iter()
        .find_map(|line| line.strip_prefix("- SSL "))
        .or(lines.last().copied())
        .unwrap_or("no message");
    Err(Error::BadInput {
        path: key.to_owned(),
        why: format!("{sign_file} could not sign with this key and {cert}: {why}"),
    }
    .into())
}
