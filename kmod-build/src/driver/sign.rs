//! Module signatures: a key pair ready for Machine Owner Key enrollment,
//! and signing with the tree's own `scripts/sign-file` and
//! `CONFIG_MODULE_SIG_HASH`.

use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};

use super::report::Reporter;
use crate::error::{Error, Result};
use crate::keyring::Trust;
use crate::modinfo::ModuleInfo;
use crate::signature;
use crate::tree::KernelTree;

/// A private key (PEM) and its X.509 certificate (DER or PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub key: Utf8PathBuf,
    pub cert: Utf8PathBuf,
}

impl SigningKey {
    /// The pair [`generate_key`] writes into `dir`.
    pub fn in_dir(dir: &Utf8Path) -> SigningKey {
        SigningKey {
            key: dir.join("signing_key.pem"),
            cert: dir.join("signing_key.x509"),
        }
    }

    /// Fails now, naming the file at fault, rather than after a long build.
    pub fn check(&self) -> Result<()> {
        signature::load_certificate(&self.cert)?;
        check_key(&self.key)
    }
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

/// Writes an RSA-4096 pair into `out_dir` with `openssl req`, refusing to
/// replace an existing key: losing an enrolled key means enrolling again.
pub fn generate_key(out_dir: &Utf8Path, common_name: &str, days: u32) -> Result<SigningKey> {
    let pair = SigningKey::in_dir(out_dir);
    for path in [&pair.key, &pair.cert] {
        if path.exists() {
            return Err(Error::BadInput {
                path: path.clone(),
                why: "already exists; remove it or pick another --out-dir".into(),
            });
        }
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let partial_key = pair.key.with_extension("pem.partial");
    let partial_cert = pair.cert.with_extension("x509.partial");
    let mut openssl = Command::new("openssl");
    openssl
        .args([
            "req", "-new", "-x509", "-newkey", "rsa:4096", "-sha256", "-nodes",
        ])
        .args(["-days", &days.to_string()])
        .args(["-subj", &format!("/CN={common_name}/")])
        .arg("-keyout")
        .arg(&partial_key)
        .args(["-outform", "DER", "-out"])
        .arg(&partial_cert);
    for extension in EXTENSIONS {
        openssl.args(["-addext", extension]);
    }
    // openssl creates the private key file mode 0600.
    let output = openssl.output().map_err(|e| Error::Spawn {
        program: "openssl (apt-get install openssl)".into(),
        why: e.to_string(),
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(Error::BadInput {
            path: out_dir.to_owned(),
            why: format!(
                "openssl req could not make a key pair here: {}",
                stderr.lines().last().unwrap_or("")
            ),
        });
    }
    for (from, to) in [(&partial_key, &pair.key), (&partial_cert, &pair.cert)] {
        std::fs::rename(from, to).map_err(|e| Error::io(to, e))?;
    }
    Ok(pair)
}

/// Signs `module` for `tree` into `output` (which may be `module`), through
/// a temporary file beside it so that a failure leaves no half-signed file, and
/// checks that the result verifies against the certificate.
pub fn sign(
    module: &Utf8Path,
    pair: &SigningKey,
    tree: &KernelTree,
    output: &Utf8Path,
    reporter: &dyn Reporter,
) -> Result<signature::Summary> {
    let cert = signature::load_certificate(&pair.cert)?;
    check_key(&pair.key)?;
    let sign_file = tree.required(
        "scripts/sign-file",
        "install the tree's kbuild tools (Debian: linux-kbuild-<version>)",
    )?;
    let config = tree.config()?;
    let hash = config.get("CONFIG_MODULE_SIG_HASH").unwrap_or("sha256");

    let bytes = std::fs::read(module).map_err(|e| Error::io(module, e))?;
    let info = ModuleInfo::parse(module, &bytes)?;
    let unsigned = match &info.signature {
        None => &bytes[..],
        Some(Ok(old)) => &bytes[..old.signed_len],
        Some(Err(why)) => {
            return Err(Error::BadInput {
                path: module.to_owned(),
                why: format!("has an unreadable signature to replace: {why}"),
            })
        }
    };
    // Removed on every way out but the rename; named as a leftover of
    // `output` (`.<name>.<random>.partial`) should the signer be killed.
    let dir = output.parent().unwrap_or(Utf8Path::new("."));
    let mut partial_file = tempfile::Builder::new()
        .prefix(&format!(".{}.", output.file_name().unwrap_or("module")))
        .suffix(crate::files::PARTIAL_SUFFIX)
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    std::io::Write::write_all(&mut partial_file, unsigned).map_err(|e| Error::io(dir, e))?;
    // A module is world-readable, as Kbuild leaves it (temporary files are 0600).
    partial_file
        .as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(|e| Error::io(dir, e))?;
    let partial =
        Utf8PathBuf::try_from(partial_file.path().to_owned()).map_err(|e| Error::NonUtf8Path {
            path: e.into_path_buf(),
        })?;
    let signed = run_sign_file(&sign_file, hash, pair, &partial).and_then(|()| {
        let signed = ModuleInfo::read(&partial)?;
        let mut summary = signature::Summary::of(signed.signature.as_ref());
        summary.verify(signed.signature.as_ref(), &cert);
        match summary.verified {
            signature::Verified::Yes => Ok(summary),
            _ => Err(Error::BadInput {
                path: pair.key.clone(),
                why: format!("sign-file's signature does not verify: {summary}"),
            }),
        }
    });
    let summary = signed?;
    partial_file
        .persist(output)
        .map_err(|e| Error::io(output, e.error))?;
    reporter.status("Signed", &format!("{output}: {summary}"));
    Ok(summary)
}

/// Warns when `tree`'s kernel does not trust the key that signed `module`:
/// it will taint the kernel `E`, or be refused where signatures are
/// enforced, until the certificate is enrolled as a MOK.
pub fn warn_if_untrusted(
    tree: &KernelTree,
    module: &Utf8Path,
    cert: &Utf8Path,
    reporter: &dyn Reporter,
) -> Result<()> {
    let kernel = crate::check::Kernel::load(tree)?;
    let report = crate::check::check(&ModuleInfo::read(module)?, &kernel);
    let why = match &report.trust {
        Some(Trust::Verified { .. }) | None => return Ok(()),
        Some(Trust::UnknownKey) => format!("{} does not trust this key", tree.release),
        Some(trust) => format!("whether {} trusts it is unknown: {trust}", tree.release),
    };
    reporter.warning(&format!(
        "{module} is signed with {cert}, but {why}: the module will taint the kernel (E), \
         and be refused where signatures are enforced (module.sig_enforce=1, Secure Boot \
         lockdown); to trust it, enroll the certificate as a MOK: sudo mokutil --import {cert} \
         and reboot"
    ));
    Ok(())
}

/// The installed tree a module was built for, from its vermagic.
pub fn tree_of(module: &ModuleInfo) -> Result<KernelTree> {
    let release = module
        .get("vermagic")
        .and_then(|magic| magic.split(' ').next())
        .ok_or_else(|| Error::BadInput {
            path: module.path.clone(),
            why: "no vermagic to pick a kernel tree by; pass --kernel".into(),
        })?;
    KernelTree::select(release)
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
        });
    }
    Ok(())
}

fn run_sign_file(
    sign_file: &Utf8Path,
    hash: &str,
    pair: &SigningKey,
    module: &Utf8Path,
) -> Result<()> {
    let output = Command::new(sign_file)
        .arg(hash)
        .arg(&pair.key)
        .arg(&pair.cert)
        .arg(module)
        .output()
        .map_err(|e| Error::Spawn {
            program: sign_file.to_string(),
            why: e.to_string(),
        })?;
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
        path: pair.key.clone(),
        why: format!(
            "{sign_file} could not sign with this key and {}: {why}",
            pair.cert
        ),
    })
}
