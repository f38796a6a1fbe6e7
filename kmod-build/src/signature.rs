//! The signature `scripts/sign-file` appends to a module: the PKCS#7
//! (CMS `SignedData`, detached) message, a `struct module_signature`
//! (`include/linux/module_signature.h`) and the marker
//! `~Module signature appended~\n`. The kernel verifies it against its
//! trusted keys; here it is read, and verified (RSA or ECDSA P-256/P-384)
//! against a certificate the caller names.

use camino::Utf8Path;
use cms::cert::IssuerAndSerialNumber;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use const_oid::db::{rfc4519, rfc5911, rfc5912, DB};
use der::{Decode, DecodePem, Encode};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use serde::Serialize;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};
use x509_cert::ext::pkix::SubjectKeyIdentifier;
use x509_cert::name::Name;
use x509_cert::Certificate;

use crate::errno::Errno;
use crate::error::{Error, Result};

/// What `sign-file` appends last.
pub const MARKER: &[u8] = b"~Module signature appended~\n";

/// `sizeof(struct module_signature)`: algo, hash, id_type, signer_len,
/// key_id_len, 3 bytes of padding, big-endian `sig_len`.
const INFO_LEN: usize = 12;

/// `id_type` of a PKCS#7 signature, the only kind the kernel accepts.
const PKEY_ID_PKCS7: u8 = 2;

/// A module's appended signature, as far as it can be read without a key.
#[derive(Debug, Clone, Serialize)]
pub struct Signature {
    /// Digest algorithm, as `CONFIG_MODULE_SIG_HASH` names it (`sha256`).
    pub hash: String,
    /// Public-key algorithm of the signature (`rsaEncryption`).
    pub algorithm: String,
    /// The signing certificate's issuer common name (what `modinfo` shows
    /// as `signer`), or the whole issuer name without one.
    pub signer: String,
    /// The certificate's serial number (`modinfo`'s `sig_key`), or its
    /// subject key identifier when the signature names the key by that.
    pub key_id: String,
    /// Bytes of the module the signature covers (everything before it).
    pub signed_len: usize,
    #[serde(skip)]
    sid: SignerIdentifier,
    #[serde(skip)]
    value: Vec<u8>,
    /// Digest of what the RSA signature covers (the module, or the signed
    /// attributes when there are any); `None` for a digest we cannot compute.
    #[serde(skip)]
    signed_digest: Option<Vec<u8>>,
    /// With signed attributes: why their `messageDigest` is not the module's.
    #[serde(skip)]
    attributes_disagree: Option<String>,
}

impl Signature {
    /// The signature appended to `module`: `None` without the marker, an
    /// error when the kernel could not use it.
    pub fn find(module: &[u8]) -> Option<Result<Signature, Unreadable>> {
        let rest = module.strip_suffix(MARKER)?;
        Some(Signature::parse(rest))
    }

    /// `mod_check_sig()`'s checks, in its order, then the PKCS#7 parse.
    fn parse(rest: &[u8]) -> Result<Signature, Unreadable> {
        let bad = |why: String| Unreadable {
            errno: Errno::EBADMSG,
            why,
        };
        let info_at = rest
            .len()
            .checked_sub(INFO_LEN)
            .filter(|&at| at > 0)
            .ok_or_else(|| bad("the module is no longer than a struct module_signature".into()))?;
        let info = &rest[info_at..];
        let sig_len = u32::from_be_bytes(info[8..12].try_into().expect("4 bytes")) as usize;
        if sig_len >= info_at {
            return Err(bad(format!(
                "sig_len {sig_len} is not shorter than the module"
            )));
        }
        if info[2] != PKEY_ID_PKCS7 {
            return Err(Unreadable {
                errno: Errno::ENOPKG,
                why: format!(
                    "key identifier type {} (only PKCS#7, type {PKEY_ID_PKCS7}, is supported)",
                    info[2]
                ),
            });
        }
        if info[..8].iter().enumerate().any(|(i, &b)| i != 2 && b != 0) {
            return Err(bad(
                "PKCS#7 signature info has unexpected non-zero params".into()
            ));
        }
        let signed_len = info_at - sig_len;
        Signature::parse_pkcs7(&rest[..signed_len], &rest[signed_len..info_at]).map_err(bad)
    }

    fn parse_pkcs7(body: &[u8], pkcs7: &[u8]) -> Result<Signature, String> {
        let signed_len = body.len();
        let content = ContentInfo::from_der(pkcs7).map_err(|e| format!("PKCS#7: {e}"))?;
        if content.content_type != rfc5911::ID_SIGNED_DATA {
            return Err(format!(
                "PKCS#7 content is {}, not signedData",
                content.content_type
            ));
        }
        let signed_data: SignedData = content
            .content
            .decode_as()
            .map_err(|e| format!("PKCS#7 SignedData: {e}"))?;
        let signer = signed_data
            .signer_infos
            .0
            .iter()
            .next()
            .ok_or("PKCS#7 SignedData has no signer")?;
        let body_digest = digest(&signer.digest_alg.oid, body);
        let (signed_digest, attributes_disagree) = signed_digest(signer, body_digest.as_deref())?;
        let (issuer, key_id) = match &signer.sid {
            SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer,
                serial_number,
            }) => (common_name(issuer), hex(serial_number.as_bytes())),
            SignerIdentifier::SubjectKeyIdentifier(SubjectKeyIdentifier(id)) => {
                (String::new(), hex(id.as_bytes()))
            }
        };
        Ok(Signature {
            hash: hash_name(&signer.digest_alg.oid),
            algorithm: oid_name(&signer.signature_algorithm.oid),
            signer: issuer,
            key_id,
            signed_len,
            sid: signer.sid.clone(),
            value: signer.signature.as_bytes().to_vec(),
            signed_digest,
            attributes_disagree,
        })
    }

    /// Whether the signature names `cert` as its signer (issuer and serial,
    /// or subject key identifier), as the kernel looks its key up.
    pub fn names(&self, cert: &Certificate) -> bool {
        let tbs = &cert.tbs_certificate;
        match &self.sid {
            SignerIdentifier::IssuerAndSerialNumber(id) => {
                id.issuer == tbs.issuer && id.serial_number == tbs.serial_number
            }
            SignerIdentifier::SubjectKeyIdentifier(id) => {
                matches!(tbs.get::<SubjectKeyIdentifier>(), Ok(Some((_, own))) if own == *id)
            }
        }
    }

    /// With signed attributes, why their `messageDigest` is not the
    /// module's (the kernel rejects that before it looks for a key).
    pub fn attributes_disagree(&self) -> Option<&str> {
        self.attributes_disagree.as_deref()
    }

    /// Whether `cert` made this signature over the module, as the kernel
    /// would decide if it trusted `cert`; `Err` says why not.
    pub fn verify(&self, cert: &Certificate) -> Result<(), String> {
        let tbs = &cert.tbs_certificate;
        if !self.names(cert) {
            return Err(format!(
                "signed by key {} of {:?}, not by this certificate (serial {}, issuer {:?})",
                self.key_id,
                self.signer,
                hex(tbs.serial_number.as_bytes()),
                common_name(&tbs.issuer)
            ));
        }
        if let Some(why) = &self.attributes_disagree {
            return Err(why.clone());
        }
        self.verify_with(cert).map_err(|e| e.why)
    }

    /// The signature checked with `cert`'s public key, whatever the
    /// signer's identity.
    pub fn verify_with(&self, cert: &Certificate) -> Result<(), NotVerified> {
        let unsupported = |why: String| NotVerified {
            why,
            unsupported: true,
        };
        let tbs = &cert.tbs_certificate;
        let digest = self.signed_digest.as_deref().ok_or_else(|| {
            unsupported(format!(
                "digest algorithm {} is not supported here",
                self.hash
            ))
        })?;
        let spki = &tbs.subject_public_key_info;
        let key = spki.subject_public_key.raw_bytes();
        let matches = match spki.algorithm.oid {
            rfc5912::RSA_ENCRYPTION => RsaPublicKey::from_pkcs1_der(key)
                .map_err(|e| unsupported(format!("the certificate's RSA key: {e}")))?
                .verify(padding(&self.hash), digest, &self.value)
                .is_ok(),
            rfc5912::ID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok());
                verify_ecdsa(curve, key, digest, &self.value)?
            }
            other => {
                return Err(unsupported(format!(
                "the certificate's key is {}: only RSA and ECDSA (P-256, P-384) are supported here",
                oid_name(&other)
            )))
            }
        };
        if matches {
            Ok(())
        } else {
            Err(NotVerified {
                why: format!(
                    "the {} signature does not match the module's {} digest: the module or its signature changed after signing",
                    self.algorithm, self.hash
                ),
                unsupported: false,
            })
        }
    }
}

/// Whether the DER `(r, s)` signature over `digest` verifies with the SEC1
/// public key `key` on `curve`.
fn verify_ecdsa(
    curve: Option<der::asn1::ObjectIdentifier>,
    key: &[u8],
    digest: &[u8],
    signature: &[u8],
) -> Result<bool, NotVerified> {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let bad_key = |e: p256::ecdsa::Error| NotVerified {
        why: format!("the certificate's EC key: {e}"),
        unsupported: true,
    };
    // The kernel's DER decoder of (r, s) fails the same way: EBADMSG is
    // not told apart here from a signature that does not match.
    let bad_signature = |e: p256::ecdsa::Error| NotVerified {
        why: format!("the ECDSA signature: {e}"),
        unsupported: false,
    };
    Ok(match curve {
        Some(rfc5912::SECP_256_R_1) => p256::ecdsa::VerifyingKey::from_sec1_bytes(key)
            .map_err(bad_key)?
            .verify_prehash(
                digest,
                &p256::ecdsa::Signature::from_der(signature).map_err(bad_signature)?,
            )
            .is_ok(),
        Some(rfc5912::SECP_384_R_1) => p384::ecdsa::VerifyingKey::from_sec1_bytes(key)
            .map_err(bad_key)?
            .verify_prehash(
                digest,
                &p384::ecdsa::Signature::from_der(signature).map_err(bad_signature)?,
            )
            .is_ok(),
        other => {
            return Err(NotVerified {
                why: format!(
                    "the certificate's curve is {}: only P-256 and P-384 are supported here",
                    other.map_or("unnamed".into(), |oid| oid_name(&oid))
                ),
                unsupported: true,
            })
        }
    })
}

/// Why a signature did not verify with a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotVerified {
    pub why: String,
    /// The key, curve or digest is one this crate cannot check (the kernel
    /// may well): no answer rather than a rejection.
    pub unsupported: bool,
}

/// A signature `module_sig_check()` cannot use, and what it makes of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    /// `EBADMSG` refuses the module even where signatures are not enforced;
    /// `ENOPKG` (a kind of signature the kernel does not support) only
    /// leaves it unverified.
    pub errno: Errno,
    pub why: String,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

/// The signature section of a check report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub present: bool,
    /// Digest and public-key algorithm, e.g. `sha256`, `rsaEncryption`.
    pub hash: Option<String>,
    pub algorithm: Option<String>,
    pub signer: Option<String>,
    pub key_id: Option<String>,
    pub verified: Verified,
}

/// Whether the signature verifies against a certificate the user named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "why", rename_all = "kebab-case")]
pub enum Verified {
    NotChecked,
    Yes,
    No(String),
}

impl Summary {
    /// The summary of a module's [`ModuleInfo::signature`](crate::ModuleInfo).
    pub fn of(signature: Option<&Result<Signature, Unreadable>>) -> Summary {
        let parsed = match signature {
            Some(Ok(signature)) => Some(signature),
            _ => None,
        };
        Summary {
            present: signature.is_some(),
            hash: parsed.map(|s| s.hash.clone()),
            algorithm: parsed.map(|s| s.algorithm.clone()),
            signer: parsed.map(|s| s.signer.clone()),
            key_id: parsed.map(|s| s.key_id.clone()),
            verified: Verified::NotChecked,
        }
    }

    /// Checks the module's signature against `cert`.
    pub fn verify(
        &mut self,
        signature: Option<&Result<Signature, Unreadable>>,
        cert: &Certificate,
    ) {
        self.verified = match signature {
            None => Verified::No("the module is not signed".into()),
            Some(Err(why)) => Verified::No(format!("unreadable signature: {why}")),
            Some(Ok(signature)) => match signature.verify(cert) {
                Ok(()) => Verified::Yes,
                Err(why) => Verified::No(why),
            },
        };
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.present, &self.signer) {
            (false, _) => write!(f, "not signed")?,
            (true, None) => write!(f, "signed, unreadable")?,
            (true, Some(signer)) => write!(
                f,
                "signed by {signer:?} (key {}), {} with {}",
                self.key_id.as_deref().unwrap_or("?"),
                self.hash.as_deref().unwrap_or("?"),
                self.algorithm.as_deref().unwrap_or("?")
            )?,
        }
        match &self.verified {
            Verified::NotChecked => Ok(()),
            Verified::Yes => write!(f, "; verifies against the certificate"),
            Verified::No(why) => write!(f, "; INVALID against the certificate: {why}"),
        }
    }
}

/// Reads an X.509 certificate, PEM or DER.
pub fn load_certificate(path: &Utf8Path) -> Result<Certificate> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let parsed = if bytes.starts_with(b"-----BEGIN") {
        Certificate::from_pem(&bytes)
    } else {
        Certificate::from_der(&bytes)
    };
    parsed.map_err(|e| Error::BadInput {
        path: path.to_owned(),
        why: format!("not an X.509 certificate (PEM or DER): {e}"),
    })
}

/// What the RSA signature covers: the module's digest, or without signed
/// attributes; with them, their DER's digest, after checking that their
/// `messageDigest` is the module's.
fn signed_digest(
    signer: &SignerInfo,
    body_digest: Option<&[u8]>,
) -> Result<(Option<Vec<u8>>, Option<String>), String> {
    let Some(attributes) = &signer.signed_attrs else {
        return Ok((body_digest.map(<[u8]>::to_vec), None));
    };
    let der = attributes
        .to_der()
        .map_err(|e| format!("PKCS#7 signed attributes: {e}"))?;
    let message_digest = attributes
        .iter()
        .find(|attribute| attribute.oid == rfc5911::ID_MESSAGE_DIGEST)
        .and_then(|attribute| attribute.values.iter().next())
        .map(|value| value.value().to_vec())
        .ok_or("PKCS#7 signed attributes have no messageDigest")?;
    let disagree = (body_digest.is_some_and(|d| d != message_digest)).then(|| {
        "the module's digest is not the signed messageDigest: the module changed after signing"
            .to_owned()
    });
    Ok((digest(&signer.digest_alg.oid, &der), disagree))
}

fn digest(algorithm: &der::asn1::ObjectIdentifier, data: &[u8]) -> Option<Vec<u8>> {
    Some(match *algorithm {
        rfc5912::ID_SHA_224 => Sha224::digest(data).to_vec(),
        rfc5912::ID_SHA_256 => Sha256::digest(data).to_vec(),
        rfc5912::ID_SHA_384 => Sha384::digest(data).to_vec(),
        rfc5912::ID_SHA_512 => Sha512::digest(data).to_vec(),
        _ => return None,
    })
}

/// PKCS#1 v1.5 padding with the DigestInfo prefix for `hash`.
fn padding(hash: &str) -> Pkcs1v15Sign {
    match hash {
        "sha224" => Pkcs1v15Sign::new::<Sha224>(),
        "sha384" => Pkcs1v15Sign::new::<Sha384>(),
        "sha512" => Pkcs1v15Sign::new::<Sha512>(),
        _ => Pkcs1v15Sign::new::<Sha256>(),
    }
}

/// `sha256` for id-sha256: the names `CONFIG_MODULE_SIG_HASH` uses.
fn hash_name(algorithm: &der::asn1::ObjectIdentifier) -> String {
    let name = oid_name(algorithm);
    name.strip_prefix("id-")
        .map_or(name.clone(), |short| short.replace('-', ""))
}

fn oid_name(oid: &der::asn1::ObjectIdentifier) -> String {
    DB.by_oid(oid)
        .map_or_else(|| oid.to_string(), str::to_owned)
}

fn common_name(name: &Name) -> String {
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|attribute| attribute.oid == rfc4519::CN)
        .and_then(|attribute| std::str::from_utf8(attribute.value.value()).ok())
        .map_or_else(|| name.to_string(), str::to_owned)
}

/// `66:F5:4E`, as `modinfo` prints key ids.
fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trailer(id_type: u8, sig_len: u32) -> Vec<u8> {
        let mut info = vec![0, 0, id_type, 0, 0, 0, 0, 0];
        info.extend(sig_len.to_be_bytes());
        info.extend(MARKER);
        info
    }

    #[test]
    fn unsigned_has_no_signature() {
        assert!(Signature::find(b"\x7fELF...").is_none());
    }

    #[test]
    fn malformed_signatures_are_errors_not_panics() {
        let errno = |bytes: &[u8]| Signature::find(bytes).unwrap().unwrap_err().errno;
        let short = [&b"x"[..], MARKER].concat();
        assert_eq!(errno(&short), Errno::EBADMSG);
        let too_long = [b"module".to_vec(), trailer(PKEY_ID_PKCS7, 1000)].concat();
        let err = Signature::find(&too_long).unwrap().unwrap_err();
        assert!(err.why.contains("sig_len 1000"), "{err}");
        assert_eq!(errno(&too_long), Errno::EBADMSG);
        // The kernel only skips a signature of another kind.
        let not_pkcs7 = [b"module".to_vec(), trailer(1, 0)].concat();
        let err = Signature::find(&not_pkcs7).unwrap().unwrap_err();
        assert!(err.why.contains("only PKCS#7"), "{err}");
        assert_eq!(err.errno, Errno::ENOPKG);
        let mut params = [b"module".to_vec(), trailer(PKEY_ID_PKCS7, 0)].concat();
        params[6] = 1;
        assert_eq!(errno(&params), Errno::EBADMSG);
        let garbage = [b"module-junk".to_vec(), trailer(PKEY_ID_PKCS7, 4)].concat();
        let err = Signature::find(&garbage).unwrap().unwrap_err();
        assert!(err.why.starts_with("PKCS#7"), "{err}");
        assert_eq!(err.errno, Errno::EBADMSG);
    }

    #[test]
    fn hash_names_match_the_kernel_config() {
        assert_eq!(hash_name(&rfc5912::ID_SHA_256), "sha256");
        assert_eq!(hash_name(&rfc5912::ID_SHA_512), "sha512");
    }
}
