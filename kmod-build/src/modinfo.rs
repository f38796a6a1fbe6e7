use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use object::{Object, ObjectSection, ObjectSymbol};

use crate::elf::{self, Invalid, Machine, Rules};
use crate::error::{Error, Result};
use crate::mitigations::{self, Mitigations, Violation};
use crate::signature::{self, Signature};

/// Size of one `struct modversion_info` on 64-bit kernels: a `u64` CRC and
/// a NUL-padded 56-byte name.
const VERSION_ENTRY_SIZE: usize = 64;

/// One `__versions` entry: the CRC the module was built against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEntry {
    pub name: String,
    pub crc: u32,
    /// Where the CRC sits in the file (to report, or to patch in tests).
    pub file_offset: u64,
}

/// What the kernel's loader reads from a `.ko` before it runs any of it.
#[derive(Debug, Clone)]
pub struct ModuleInfo {
    pub path: Utf8PathBuf,
    /// `.modinfo` `key=value` strings, in file order.
    pub modinfo: Vec<(String, String)>,
    pub versions: Vec<VersionEntry>,
    /// Symbols the module needs from the kernel or other modules.
    pub undefined: Vec<String>,
    /// Each ELF relocation type used, with a section that uses it.
    pub relocation_types: BTreeMap<u32, String>,
    /// Whether a module signature is appended to the file.
    pub signed: bool,
    /// The appended signature, or why the kernel could not use it.
    pub signature: Option<Result<Signature, signature::Unreadable>>,
    /// Size of `.gnu.linkonce.this_module`: the `struct module` it was built with.
    pub this_module_size: Option<u64>,
    /// Code that would break each mitigation a kernel may turn on; a check
    /// against one kernel keeps those its config enables.
    pub mitigation_gaps: Vec<Violation>,
    /// What each loader's ELF checks make of the bytes it checks (the
    /// module without its signature).
    pub elf_validity: Vec<(Rules, Machine, Result<(), Invalid>)>,
}

impl ModuleInfo {
    /// Reads a `.ko`, or a `.ko.xz` as distributions install them.
    pub fn read(path: &Utf8Path) -> Result<ModuleInfo> {
        ModuleInfo::parse(path, &read_elf(path)?)
    }

    /// Only the size of `.gnu.linkonce.this_module` (the kernel's `struct
    /// module`), without reading or disassembling the rest.
    pub fn read_this_module_size(path: &Utf8Path) -> Result<Option<u64>> {
        let bytes = read_elf(path)?;
        let file = object::File::parse(&*bytes).map_err(|e| Error::BadModule {
            module: path.to_owned(),
            reason: format!("not an ELF object: {e}"),
        })?;
        Ok(file
            .section_by_name(".gnu.linkonce.this_module")
            .map(|s| s.size()))
    }

    /// Reads a module's bytes. One that every loader refuses, or would
    /// crash on, for its ELF structure gives a `ModuleInfo` with only the
    /// signature and `elf_validity` filled in.
    pub fn parse(path: &Utf8Path, bytes: &[u8]) -> Result<ModuleInfo> {
        let signature = Signature::find(bytes);
        let checked = match &signature {
            Some(Ok(signature)) => &bytes[..signature.signed_len],
            _ => bytes,
        };
        let elf_validity: Vec<_> = [Rules::V6_1, Rules::V6_12]
            .into_iter()
            .flat_map(|rules| Machine::ALL.map(|machine| (rules, machine)))
            .map(|(rules, machine)| (rules, machine, elf::validity(checked, rules, machine, None)))
            .collect();
        // The loader reads 64-bit little-endian whatever e_ident's class and
        // data encoding say; so does this parse.
        let mut normalized = bytes.to_vec();
        if normalized.len() > 6 && normalized.starts_with(b"\x7fELF") {
            normalized[4..7].copy_from_slice(&[2, 1, 1]);
        }
        match ModuleInfo::parse_elf(path, &normalized, signature.clone(), elf_validity.clone()) {
            Err(_) if elf_validity.iter().all(|(_, _, result)| result.is_err()) => Ok(ModuleInfo {
                path: path.to_owned(),
                modinfo: Vec::new(),
                versions: Vec::new(),
                undefined: Vec::new(),
                relocation_types: BTreeMap::new(),
                signed: bytes.ends_with(signature::MARKER),
                signature,
                this_module_size: None,
                mitigation_gaps: Vec::new(),
                elf_validity,
            }),
            parsed => parsed,
        }
    }

    fn parse_elf(
        path: &Utf8Path,
        bytes: &[u8],
        signature: Option<Result<Signature, signature::Unreadable>>,
        elf_validity: Vec<(Rules, Machine, Result<(), Invalid>)>,
    ) -> Result<ModuleInfo> {
        let bad = |reason: String| Error::BadModule {
            module: path.to_owned(),
            reason,
        };
        let file =
            object::File::parse(bytes).map_err(|e| bad(format!("not an ELF object: {e}")))?;
        if file.kind() != object::ObjectKind::Relocatable {
            return Err(bad("not a relocatable object (a .ko is ET_REL)".into()));
        }
        let section_data = |name: &str| -> Result<Option<(&[u8], u64)>> {
            let Some(section) = file.section_by_name(name) else {
                return Ok(None);
            };
            let data = section
                .data()
                .map_err(|e| bad(format!("section {name}: {e}")))?;
            let offset = section.file_range().map_or(0, |(offset, _)| offset);
            Ok(Some((data, offset)))
        };
        let modinfo = match section_data(".modinfo")? {
            Some((data, _)) => parse_modinfo(data),
            None => Vec::new(),
        };
        // 6.14+ (CONFIG_EXTENDED_MODVERSIONS) writes CRCs and names in two
        // parallel sections, which the loader prefers to `__versions`.
        let extended = (
            section_data("__version_ext_crcs")?,
            section_data("__version_ext_names")?,
        );
        let versions = match (extended, section_data("__versions")?) {
            ((Some((crcs, offset)), Some((names, _))), _) => {
                parse_extended_versions(crcs, offset, names).map_err(bad)?
            }
            (_, Some((data, offset))) => parse_versions(data, offset).map_err(bad)?,
            (_, None) => Vec::new(),
        };
        let undefined = file
            .symbols()
            .filter(|symbol| symbol.is_undefined() && symbol.is_global())
            .filter_map(|symbol| {
                symbol
                    .name()
                    .ok()
                    .filter(|n| !n.is_empty())
                    .map(String::from)
            })
            .collect();
        let mut relocation_types = BTreeMap::new();
        for section in file.sections() {
            for (_, relocation) in section.relocations() {
                if let object::RelocationFlags::Elf { r_type } = relocation.flags() {
                    relocation_types
                        .entry(r_type)
                        .or_insert_with(|| section.name().unwrap_or("?").to_owned());
                }
            }
        }
        Ok(ModuleInfo {
            path: path.to_owned(),
            modinfo,
            versions,
            undefined,
            relocation_types,
            signed: bytes.ends_with(signature::MARKER),
            signature,
            this_module_size: file
                .section_by_name(".gnu.linkonce.this_module")
                .map(|s| s.size()),
            mitigation_gaps: mitigations::scan(bytes, &Mitigations::ALL),
            elf_validity,
        })
    }

    /// What the ELF checks of `machine`'s loader with `rules` make of the
    /// module.
    pub fn elf_validity(&self, rules: Rules, machine: Machine) -> Result<(), &Invalid> {
        self.elf_validity
            .iter()
            .find(|(r, m, _)| *r == rules && *m == machine)
            .map_or(Ok(()), |(_, _, result)| result.as_ref().map(|_| ()))
    }

    /// The first value of `key` in `.modinfo`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.modinfo
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The module's name as the kernel knows it (modpost's `name=`).
    pub fn name(&self) -> &str {
        self.get("name").unwrap_or_else(|| {
            let file = self.path.file_name().unwrap_or("module");
            file.split('.').next().unwrap_or(file)
        })
    }
}

/// The ELF bytes of a `.ko` or `.ko.xz`.
fn read_elf(path: &Utf8Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if path.extension() != Some("xz") {
        return Ok(bytes);
    }
    let mut elf = Vec::new();
    lzma_rs::xz_decompress(&mut &bytes[..], &mut elf).map_err(|e| Error::BadModule {
        module: path.to_owned(),
        reason: format!("not a valid xz file: {e}"),
    })?;
    Ok(elf)
}

fn parse_modinfo(data: &[u8]) -> Vec<(String, String)> {
    data.split(|&b| b == 0)
        .filter(|entry| !entry.is_empty())
        .filter_map(|entry| {
            let text = String::from_utf8_lossy(entry);
            let (key, value) = text.split_once('=')?;
            Some((key.to_owned(), value.to_owned()))
        })
        .collect()
}

/// `__versions` as `check_version()` reads it: whole entries only (it
/// divides the size), a name without NUL matching no symbol.
fn parse_versions(data: &[u8], section_offset: u64) -> Result<Vec<VersionEntry>, String> {
    data.chunks_exact(VERSION_ENTRY_SIZE)
        .enumerate()
        .map(|(index, entry)| {
            let (crc, name) = entry.split_at(8);
            let crc = u64::from_le_bytes(crc.try_into().expect("split_at(8)"));
            let name_len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            Ok(VersionEntry {
                name: String::from_utf8_lossy(&name[..name_len]).into_owned(),
                crc: u32::try_from(crc).map_err(|_| {
                    format!("__versions entry {index}: CRC {crc:#x} is over 32 bits")
                })?,
                file_offset: section_offset + (index * VERSION_ENTRY_SIZE) as u64,
            })
        })
        .collect()
}

/// `__version_ext_crcs` (32-bit CRCs) and `__version_ext_names`
/// (NUL-terminated names, no length limit), entry by entry.
fn parse_extended_versions(
    crcs: &[u8],
    crcs_offset: u64,
    names: &[u8],
) -> Result<Vec<VersionEntry>, String> {
    if !crcs.len().is_multiple_of(4) {
        return Err(format!(
            "__version_ext_crcs is {} bytes, not a multiple of 4",
            crcs.len()
        ));
    }
    let names: Vec<&[u8]> = match names.strip_suffix(b"\0") {
        Some(names) => names.split(|&b| b == 0).collect(),
        None if names.is_empty() => Vec::new(),
        None => return Err("__version_ext_names does not end with NUL".into()),
    };
    if names.len() != crcs.len() / 4 {
        return Err(format!(
            "__version_ext_names has {} names for {} CRCs in __version_ext_crcs",
            names.len(),
            crcs.len() / 4
        ));
    }
    Ok(crcs
        .chunks_exact(4)
        .zip(names)
        .enumerate()
        .map(|(index, (crc, name))| VersionEntry {
            name: String::from_utf8_lossy(name).into_owned(),
            crc: u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]),
            file_offset: crcs_offset + (index * 4) as u64,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(crc: u64, name: &str) -> Vec<u8> {
        let mut bytes = crc.to_le_bytes().to_vec();
        bytes.extend(name.as_bytes());
        bytes.resize(VERSION_ENTRY_SIZE, 0);
        bytes
    }

    #[test]
    fn versions_entries_with_offsets() {
        let data = [entry(0xdeadbeef, "module_layout"), entry(0x1234, "_printk")].concat();
        let versions = parse_versions(&data, 0x100).unwrap();
        assert_eq!(
            versions[0],
            VersionEntry {
                name: "module_layout".into(),
                crc: 0xdeadbeef,
                file_offset: 0x100
            }
        );
        assert_eq!(versions[1].file_offset, 0x140);
        assert_eq!(versions[1].name, "_printk");
    }

    #[test]
    fn malformed_versions_read_as_the_loader_reads_them() {
        assert_eq!(parse_versions(&[0; 63], 0).unwrap(), vec![]);
        let mut unterminated = vec![0; 8];
        unterminated.extend([b'x'; 56]);
        let unterminated = parse_versions(&unterminated, 0).unwrap();
        assert_eq!(unterminated[0].name, "x".repeat(56));
        assert!(parse_versions(&entry(1 << 40, "big"), 0).is_err());
    }

    #[test]
    fn extended_versions_pair_crcs_with_names() {
        let crcs = [0x1234_5678u32.to_le_bytes(), 0xdead_beefu32.to_le_bytes()].concat();
        let long_name = "a".repeat(80); // longer than a __versions entry holds
        let names = format!("_printk\0{long_name}\0");
        let versions = parse_extended_versions(&crcs, 0x40, names.as_bytes()).unwrap();
        assert_eq!(versions.len(), 2);
        assert_eq!(
            versions[1],
            VersionEntry {
                name: long_name,
                crc: 0xdead_beef,
                file_offset: 0x44
            }
        );
        assert_eq!(versions[0].name, "_printk");
    }

    #[test]
    fn malformed_extended_versions_are_errors() {
        let crc = 1u32.to_le_bytes();
        assert!(parse_extended_versions(&crc, 0, b"a\0b\0").is_err());
        assert!(parse_extended_versions(&crc, 0, b"a").is_err());
        assert!(parse_extended_versions(&crc[..3], 0, b"a\0").is_err());
        assert_eq!(parse_extended_versions(&[], 0, b"").unwrap(), vec![]);
    }

    #[test]
    fn modinfo_splits_on_nul() {
        let parsed = parse_modinfo(b"license=GPL\0\0author=a=b\0junk\0");
        assert_eq!(
            parsed,
            vec![
                ("license".into(), "GPL".into()),
                ("author".into(), "a=b".into())
            ]
        );
    }

    #[test]
    fn garbage_is_refused_by_every_loader() {
        let info = ModuleInfo::parse(Utf8Path::new("x.ko"), b"not an elf").unwrap();
        for rules in [Rules::V6_1, Rules::V6_12] {
            for machine in Machine::ALL {
                let invalid = info.elf_validity(rules, machine).unwrap_err();
                assert_eq!(invalid.message, "Invalid ELF header len 10");
            }
        }
    }
}
