//! `cargo xtask gen-key`: a module signing key pair ready for Machine Owner
//! Key enrollment (`mokutil --import`), made with `openssl req`.

use anyhow::{Context, Result};
use camino::Utf8PathBuf;
use kmod_build::Error;
use xshell::{cmd, Shell};

use crate::{project_root, status};

#[derive(clap::Args)]
pub struct Args {
    /// Directory for `signing_key.pem` (private) and `signing_key.x509`
    /// (DER certificate, what mokutil imports).
    #[arg(long, value_name = "DIR", default_value_t = project_root().join("target/kmod/signing"))]
    pub out_dir: Utf8PathBuf,
    /// The certificate's common name: `modinfo` shows it as the signer.
    #[arg(long, default_value = "kmod-build module signing key")]
    pub name: String,
    /// Validity in days.
    #[arg(long, default_value_t = 3650)]
    pub days: u32,
}

/// The extensions of the kernel's own `certs/default_x509.genkey`, with
/// the code-signing usage shim/MokManager expect for module keys.
const EXTENSIONS: &[&str] = &[
    "basicConstraints=critical,CA:FALSE",
    "keyUsage=digitalSignature",
    "extendedKeyUsage=codeSigning",
    "subjectKeyIdentifier=hash",
    "authorityKeyIdentifier=keyid",
];

pub fn run(args: &Args) -> Result<()> {
    let sh = Shell::new()?;
    let (key, cert) = generate(&sh, args)?;
    status::step(
        "Generated",
        &format!("{key} (private, keep it safe) and {cert}"),
    );
    println!(
        "Enroll the certificate so a Secure Boot machine trusts modules signed with it:\n\
         \n    sudo mokutil --import {cert}\n\n\
         then reboot and confirm in MokManager with the password you chose.\n\
         Sign with: cargo xtask sign <module.ko> --key {key} --cert {cert}"
    );
    Ok(())
}

/// Writes the pair, refusing to replace an existing key: losing an
/// enrolled key means enrolling a new one.
pub fn generate(sh: &Shell, args: &Args) -> Result<(Utf8PathBuf, Utf8PathBuf)> {
    let key = args.out_dir.join("signing_key.pem");
    let cert = args.out_dir.join("signing_key.x509");
    for path in [&key, &cert] {
        if path.exists() {
            return Err(Error::BadInput {
                path: path.clone(),
                why: "already exists; remove it or pick another --out-dir".into(),
            }
            .into());
        }
    }
    std::fs::create_dir_all(&args.out_dir).with_context(|| format!("creating {}", args.out_dir))?;
    let subject = format!("/CN={}/", args.name);
    let days = args.days.to_string();
    let extensions = EXTENSIONS.iter().flat_map(|ext| ["-addext", ext]);
    let (partial_key, partial_cert) = (
        key.with_extension("pem.partial"),
        cert.with_extension("x509.partial"),
    );
    // openssl creates the private key file mode 0600.
    let output = cmd!(sh, "openssl req -new -x509 -newkey rsa:4096 -sha256 -nodes -days {days} -subj {subject} -keyout {partial_key} -outform DER -out {partial_cert} {extensions...}")
        .ignore_status()
        .output()
        .context("running openssl req (apt-get install openssl)")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        anyhow::bail!(
            "openssl req could not make a key pair in {}: {}",
            args.out_dir,
            stderr.lines().last().unwrap_or("")
        );
    }
    std::fs::rename(&partial_key, &key).with_context(|| format!("renaming {partial_key}"))?;
    std::fs::rename(&partial_cert, &cert).with_context(|| format!("renaming {partial_cert}"))?;
    Ok((key, cert))
}
