//! The keys a kernel verifies module signatures with: the certificates
//! compiled into its image (`certs/system_certificates.S`:
//! `system_certificate_list`, DER certificates back to back, followed at
//! the next 8-byte boundary by `system_certificate_list_size`), plus any
//! the user says the kernel trusts (an enrolled MOK).

use std::io::Read;
use std::time::UNIX_EPOCH;

use camino::{Utf8Path, Utf8PathBuf};
use const_oid::db::rfc4519;
use der::Decode;
use serde::Serialize;
use x509_cert::ext::pkix::SubjectKeyIdentifier;
use x509_cert::Certificate;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::signature::Signature;

/// Where distributions install a release's kernel image.
const IMAGES: &[&str] = &[
    "/boot/vmlinuz-{release}",
    "/lib/modules/{release}/vmlinuz",
    "/usr/lib/modules/{release}/vmlinuz",
];

/// Where a trusted key came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeySource {
    /// Compiled into this kernel image (the builtin trusted keys).
    BuiltIn(Utf8PathBuf),
    /// A certificate the user named (`--cert`): an enrolled MOK, say.
    Added(Utf8PathBuf),
}

/// One key the kernel verifies signatures with.
#[derive(Debug, Clone, Serialize)]
pub struct TrustedKey {
    /// The certificate's subject common name.
    pub subject: String,
    /// The subject key identifier (lowercase hex, as `/proc/keys` shows
    /// it), or the serial number without one.
    pub key_id: String,
    pub source: KeySource,
    #[serde(skip)]
    pub certificate: Certificate,
}

/// Every key one kernel trusts for modules, as far as it could be read.
#[derive(Debug, Clone, Serialize)]
pub struct Keyring {
    pub keys: Vec<TrustedKey>,
    /// Why the kernel's own keys are not in `keys` (no image found, ...):
    /// a signature by none of `keys` may then still be one it trusts.
    pub built_in_unknown: Option<String>,
}

/// What the kernel's PKCS#7 verification (`verify_pkcs7_signature()`)
/// makes of a readable signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Trust {
    /// Made by a trusted key over this module: `sig_ok`.
    Verified { key: String },
    /// No trusted key has the signer's identity: ENOKEY.
    UnknownKey,
    /// The digest or the signature does not match: EKEYREJECTED.
    Rejected { why: String },
    /// Not decidable here: which keys the kernel has, or how to verify;
    /// `could_reject` when a trusted key was found (so EKEYREJECTED is
    /// one possible answer).
    Unestablished { why: String, could_reject: bool },
}

impl Keyring {
    /// A keyring holding only the keys added to it.
    pub fn empty() -> Keyring {
        Keyring {
            keys: Vec::new(),
            built_in_unknown: None,
        }
    }

    /// The keys built into the image of `release` under `sysroot`; when
    /// there is no readable image, no keys and `built_in_unknown` saying why.
    pub fn of_kernel(sysroot: &Utf8Path, release: &str, config: &Config) -> Keyring {
        let candidates: Vec<Utf8PathBuf> = IMAGES
            .iter()
            .map(|pattern| {
                sysroot.join(
                    pattern
                        .replace("{release}", release)
                        .trim_start_matches('/'),
                )
            })
            .collect();
        let Some(image) = candidates.iter().find(|path| path.is_file()) else {
            return Keyring {
                keys: Vec::new(),
                built_in_unknown: Some(format!(
                    "no kernel image found (looked for {})",
                    candidates
                        .iter()
                        .map(|path| path.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            };
        };
        match Keyring::built_in(image, config) {
            Ok(keyring) => keyring,
            Err(error) => Keyring {
                keys: Vec::new(),
                built_in_unknown: Some(error.to_string()),
            },
        }
    }

    /// The certificates compiled into the kernel image at `image` (a
    /// bzImage, an ELF vmlinux, or either compressed), cached per image.
    pub fn built_in(image: &Utf8Path, config: &Config) -> Result<Keyring> {
        let list = cached_list(image, config)?;
        let keys = split_list(&list)
            .into_iter()
            .filter_map(|der| Certificate::from_der(der).ok())
            .map(|certificate| TrustedKey::new(certificate, KeySource::BuiltIn(image.to_owned())))
            .collect();
        Ok(Keyring {
            keys,
            built_in_unknown: None,
        })
    }

    /// Trusts `certificate` as well (read from `path`).
    pub fn add(&mut self, certificate: Certificate, path: &Utf8Path) {
        self.keys.push(TrustedKey::new(
            certificate,
            KeySource::Added(path.to_owned()),
        ));
    }

    /// `verify_pkcs7_signature()` against these keys: the signed
    /// attributes' digest first (`pkcs7_digest()`), then the key named by
    /// the signer (`pkcs7_validate_trust()`), then its signature.
    pub fn judge(&self, signature: &Signature) -> Trust {
        if let Some(why) = signature.attributes_disagree() {
            return Trust::Rejected { why: why.into() };
        }
        let Some(key) = self
            .keys
            .iter()
            .find(|key| signature.names(&key.certificate))
        else {
            return match &self.built_in_unknown {
                None => Trust::UnknownKey,
                Some(why) => Trust::Unestablished {
                    why: format!(
                        "key {} is not among the keys given, and the kernel's own keys could not be read: {why}",
                        signature.key_id
                    ),
                    could_reject: false,
                },
            };
        };
        match signature.verify_with(&key.certificate) {
            Ok(()) => Trust::Verified {
                key: key.to_string(),
            },
            Err(why) if why.unsupported => Trust::Unestablished {
                why: format!("{key}: {}", why.why),
                could_reject: true,
            },
            Err(why) => Trust::Rejected {
                why: format!("{key}: {}", why.why),
            },
        }
    }
}

impl TrustedKey {
    fn new(certificate: Certificate, source: KeySource) -> TrustedKey {
        let tbs = &certificate.tbs_certificate;
        let key_id = match tbs.get::<SubjectKeyIdentifier>() {
            Ok(Some((_, SubjectKeyIdentifier(id)))) => lower_hex(id.as_bytes()),
            _ => lower_hex(tbs.serial_number.as_bytes()),
        };
        let subject = tbs
            .subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .find(|attribute| attribute.oid == rfc4519::CN)
            .and_then(|attribute| std::str::from_utf8(attribute.value.value()).ok())
            .map_or_else(|| tbs.subject.to_string(), str::to_owned);
        TrustedKey {
            subject,
            key_id,
            source,
            certificate,
        }
    }
}

impl std::fmt::Display for TrustedKey {
    /// As `/proc/keys` describes an X.509 key: `<CN>: <key id>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            KeySource::BuiltIn(image) => format!("built into {image}"),
            KeySource::Added(path) => format!("from {path}"),
        };
        write!(f, "{}: {} ({source})", self.subject, self.key_id)
    }
}

impl std::fmt::Display for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self.keys.iter().map(ToString::to_string).collect();
        match (&self.built_in_unknown, keys.is_empty()) {
            (None, true) => write!(f, "no trusted keys"),
            (None, false) => write!(f, "{}", keys.join("; ")),
            (Some(why), true) => write!(f, "trust could not be established: {why}"),
            (Some(why), false) => write!(
                f,
                "{}; the kernel's own keys are unknown: {why}",
                keys.join("; ")
            ),
        }
    }
}

impl std::fmt::Display for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trust::Verified { key } => write!(f, "verified by {key}"),
            Trust::UnknownKey => write!(f, "made by a key the kernel does not trust"),
            Trust::Rejected { why } => write!(f, "does not verify: {why}"),
            Trust::Unestablished { why, .. } => write!(f, "not established: {why}"),
        }
    }
}

/// The certificate list of `image`, from the per-user cache when the image
/// has not changed (decompressing a kernel takes a second or two).
fn cached_list(image: &Utf8Path, config: &Config) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(image).map_err(|e| Error::io(image, e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let name = image.as_str().replace('/', "%");
    let cache = crate::cache_home()
        .join("keyrings")
        .join(format!("{name}-{}-{mtime}.der", meta.len()));
    if let Ok(list) = std::fs::read(&cache) {
        return Ok(list);
    }
    let bytes = std::fs::read(image).map_err(|e| Error::io(image, e))?;
    let bad = |why: String| Error::BadInput {
        path: image.to_owned(),
        why,
    };
    let vmlinux = decompress(&bytes).map_err(bad)?;
    let list = find_list(&vmlinux, extra_certificate_space(config))
        .ok_or_else(|| bad("no system_certificate_list found in the kernel image".into()))?
        .to_vec();
    // A cache that cannot be written only costs the next run the time again.
    if let Some(dir) = cache.parent() {
        let partial = cache.with_extension("partial");
        let _ = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&partial, &list))
            .and_then(|()| std::fs::rename(&partial, &cache));
    }
    Ok(list)
}

/// `CONFIG_SYSTEM_EXTRA_CERTIFICATE_SIZE` bytes reserved after the list
/// (for a certificate inserted later), before its size.
fn extra_certificate_space(config: &Config) -> Option<usize> {
    config
        .is_y("CONFIG_SYSTEM_EXTRA_CERTIFICATE")
        .then(|| {
            config
                .get("CONFIG_SYSTEM_EXTRA_CERTIFICATE_SIZE")?
                .parse()
                .ok()
        })
        .flatten()
}

/// The kernel proper out of an image: a bzImage's payload (its setup
/// header's `payload_offset`/`payload_length`), or the whole file, each
/// decompressed by its magic; uncompressed data is returned as it is.
fn decompress(image: &[u8]) -> Result<Vec<u8>, String> {
    let payload = bzimage_payload(image)?;
    let (data, sized) = match payload {
        Some(payload) => (payload, true),
        None => (image, false),
    };
    // Every bzImage compressor but gzip gets the size appended.
    let unsized_data = |data: &[u8]| -> Vec<u8> {
        if sized && data.len() > 4 {
            data[..data.len() - 4].to_vec()
        } else {
            data.to_vec()
        }
    };
    let read_all = |mut reader: Box<dyn Read + '_>, what: &str| -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        reader
            .read_to_end(&mut out)
            .map_err(|e| format!("the kernel image's {what} data does not decompress: {e}"))?;
        Ok(out)
    };
    if data.starts_with(b"\xfd7zXZ\0") {
        let stream = unsized_data(data);
        read_all(
            Box::new(lzma_rust2::XzReader::new(&stream[..], false)),
            "xz",
        )
    } else if data.starts_with(b"\x28\xb5\x2f\xfd") {
        let decoder = ruzstd::decoding::StreamingDecoder::new(data)
            .map_err(|e| format!("the kernel image's zstd data: {e}"))?;
        read_all(Box::new(decoder), "zstd")
    } else if data.starts_with(b"\x1f\x8b") {
        read_all(Box::new(flate2::read::GzDecoder::new(data)), "gzip")
    } else if data.starts_with(LZ4_LEGACY_MAGIC) {
        lz4_legacy(&unsized_data(data))
    } else if data.starts_with(b"\x7fELF") || !sized {
        Ok(data.to_vec())
    } else {
        let magic: Vec<String> = data.iter().take(4).map(|b| format!("{b:02x}")).collect();
        Err(format!(
            "the kernel image is compressed with a method not supported here (magic {}; gzip, xz, zstd and lz4 are)",
            magic.join(" ")
        ))
    }
}

/// What the kernel's `lz4 -l` images start with (Debian's cloud kernels).
const LZ4_LEGACY_MAGIC: &[u8] = b"\x02\x21\x4c\x18";

/// LZ4's legacy format, as the kernel's `unlz4` reads it: after the magic,
/// blocks of at most 8 MiB each, every one after its 32-bit little-endian
/// compressed size; a magic may start another stream, a zero size (or
/// padding too short for a size) ends the data.
fn lz4_legacy(data: &[u8]) -> Result<Vec<u8>, String> {
    const BLOCK: usize = 8 << 20;
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((size, after)) = rest.split_first_chunk::<4>() {
        if size == LZ4_LEGACY_MAGIC {
            rest = after;
            continue;
        }
        let size = u32::from_le_bytes(*size) as usize;
        if size == 0 {
            break;
        }
        let block = after.get(..size).ok_or_else(|| {
            format!("the kernel image's lz4 data ends inside a {size}-byte block")
        })?;
        let start = out.len();
        out.resize(start + BLOCK, 0);
        let written = lz4_flex::block::decompress_into(block, &mut out[start..])
            .map_err(|e| format!("the kernel image's lz4 data does not decompress: {e}"))?;
        out.truncate(start + written);
        rest = &after[size..];
    }
    Ok(out)
}

/// The compressed kernel inside an x86 bzImage (boot protocol 2.08+), or
/// `None` for anything else.
fn bzimage_payload(image: &[u8]) -> Result<Option<&[u8]>, String> {
    let u32_at = |at: usize| {
        image
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    if image.get(0x202..0x206) != Some(b"HdrS") {
        return Ok(None);
    }
    let version = image
        .get(0x206..0x208)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    if version < 0x208 {
        return Err(format!(
            "boot protocol {version:#x} bzImage: no payload_offset (needs 2.08+)"
        ));
    }
    let setup_sects = match image[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let (Some(offset), Some(length)) = (u32_at(0x248), u32_at(0x24c)) else {
        return Err("truncated bzImage setup header".into());
    };
    let start = (setup_sects + 1) * 512 + offset;
    image.get(start..start + length).map(Some).ok_or_else(|| {
        format!("the bzImage payload ({length} bytes at {start:#x}) is past the end of the file")
    })
}

/// `system_certificate_list`: at an 8-byte boundary, certificates (each
/// `30 82 <u16 length>`) back to back until, at the next 8-byte boundary
/// (after `extra` reserved bytes and an `int` if configured), a `u64` that
/// is their total length. Only the real list ends in its own length.
fn find_list(vmlinux: &[u8], extra: Option<usize>) -> Option<&[u8]> {
    let align8 = |n: usize| n.checked_add(7).map(|n| n & !7);
    let size_at = |end: usize| match extra {
        None => align8(end),
        // .fill extra, .align 4, .int system_extra_cert_used, .align 8
        Some(extra) => align8((end.checked_add(extra)?.checked_add(3)? & !3) + 4),
    };
    let u64_at = |at: usize| {
        vmlinux
            .get(at..at.checked_add(8)?)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    };
    memchr::memmem::find_iter(vmlinux, b"\x30\x82")
        .filter(|start| start % 8 == 0)
        .find_map(|start| {
            let mut end = start;
            while let Some(len) = der_length(&vmlinux[end..]) {
                end += len;
                let total = (end - start) as u64;
                if size_at(end).and_then(u64_at) == Some(total) {
                    return Some(&vmlinux[start..end]);
                }
            }
            None
        })
}

/// The length of the `30 82 <u16>` SEQUENCE at the start of `data`, if it
/// fits (what `x509_load_certificate_list()` accepts as one certificate).
fn der_length(data: &[u8]) -> Option<usize> {
    match data {
        [0x30, 0x82, hi, lo, ..] => {
            let len = 4 + (usize::from(*hi) << 8 | usize::from(*lo));
            (len <= data.len()).then_some(len)
        }
        _ => None,
    }
}

/// The list cut into certificates.
fn split_list(mut list: &[u8]) -> Vec<&[u8]> {
    let mut certificates = Vec::new();
    while let Some(len) = der_length(list) {
        certificates.push(&list[..len]);
        list = &list[len..];
    }
    certificates
}

fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lz4_legacy_streams_decompress_as_the_kernel_reads_them() {
        let first: Vec<u8> = (0..100_000u32)
            .flat_map(|n| (n % 251).to_le_bytes())
            .collect();
        let second = b"the second stream".to_vec();
        let mut data = LZ4_LEGACY_MAGIC.to_vec();
        for (index, part) in [&first, &second].into_iter().enumerate() {
            if index > 0 {
                data.extend_from_slice(LZ4_LEGACY_MAGIC);
            }
            let block = lz4_flex::block::compress(part);
            data.extend_from_slice(&(block.len() as u32).to_le_bytes());
            data.extend_from_slice(&block);
        }
        let whole = [first.clone(), second].concat();
        assert_eq!(lz4_legacy(&data).unwrap(), whole);
        // bzImage payloads may end in zero padding.
        assert_eq!(
            lz4_legacy(&[data.clone(), vec![0; 6]].concat()).unwrap(),
            whole
        );
        let cut = &data[..data.len() - 3];
        assert!(lz4_legacy(cut).unwrap_err().contains("ends inside"));
    }

    fn fake_cert(len: usize, fill: u8) -> Vec<u8> {
        let body = len - 4;
        let mut cert = vec![0x30, 0x82, (body >> 8) as u8, body as u8];
        cert.resize(len, fill);
        cert
    }

    #[test]
    fn the_list_is_the_one_followed_by_its_size() {
        let mut image = vec![0u8; 64];
        // A lone certificate-like SEQUENCE with no size after it.
        image.extend(fake_cert(300, 1));
        image.resize(512, 0);
        let start = image.len();
        image.extend(fake_cert(300, 2));
        image.extend(fake_cert(301, 3));
        let end = image.len();
        image.resize(end.next_multiple_of(8), 0);
        image.extend(((end - start) as u64).to_le_bytes());
        image.extend([0x30, 0x82, 0, 0]);
        let list = find_list(&image, None).expect("the list");
        assert_eq!(list, &image[start..end]);
        assert_eq!(split_list(list).len(), 2);
        assert!(find_list(&image[..end], None).is_none());
    }

    #[test]
    fn the_size_follows_the_extra_certificate_space() {
        let mut image = fake_cert(299, 4);
        let end = image.len();
        image.resize(end + 100, 0); // extra space
        image.resize(image.len().next_multiple_of(4) + 4, 0); // system_extra_cert_used
        image.resize(image.len().next_multiple_of(8), 0);
        image.extend((end as u64).to_le_bytes());
        assert_eq!(find_list(&image, Some(100)), Some(&image[..end]));
        assert_eq!(find_list(&image, None), None);
    }

    #[test]
    fn images_that_are_not_kernels_are_errors() {
        let mut header = vec![0u8; 0x260];
        header[0x202..0x206].copy_from_slice(b"HdrS");
        header[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        header[0x24c..0x250].copy_from_slice(&1000u32.to_le_bytes());
        let err = decompress(&header).unwrap_err();
        assert!(err.contains("past the end"), "{err}");
        header[0x24c..0x250].copy_from_slice(&4u32.to_le_bytes());
        header.resize(0x1400, 0);
        header[0xa00..0xa04].copy_from_slice(b"BZh9");
        header[0x248..0x24c].copy_from_slice(&0u32.to_le_bytes());
        let err = decompress(&header).unwrap_err();
        assert!(err.contains("not supported"), "{err}");
    }
}
