//! Offline checks of a `.ko` against a tree, with the kernel loader's rules.

use std::fmt;

use crate::config::Config;
use crate::modinfo::ModuleInfo;
use crate::symvers::Symvers;

/// One reason the kernel would refuse the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub symbol: String,
    pub expected: String,
    pub found: String,
    /// What the kernel prints when it refuses the module for this reason.
    pub kernel_says: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (expected {}, found {})",
            self.kernel_says, self.expected, self.found
        )
    }
}

/// Every `__versions` CRC compared with the tree's `Module.symvers`
/// (`module_layout` and friends included): a mismatch is
/// `disagrees about version of symbol`.
pub fn versions(module: &ModuleInfo, symvers: &Symvers) -> Vec<Finding> {
    module
        .versions
        .iter()
        .filter_map(|entry| {
            let export = symvers.get(&entry.name)?;
            (export.crc != entry.crc).then(|| Finding {
                symbol: entry.name.clone(),
                expected: format!("{:#010x}", export.crc),
                found: format!("{:#010x}", entry.crc),
                kernel_says: format!(
                    "{}: disagrees about version of symbol {}",
                    module.name(),
                    entry.name
                ),
            })
        })
        .collect()
}

/// Relocation types `apply_relocate_add()` handles on x86_64: NONE, 64,
/// PC32, PLT32, 32, 32S, PC64.
const X86_64_LOADER_RELOCATIONS: &[u32] = &[0, 1, 2, 4, 10, 11, 24];

/// Relocations the x86_64 module loader would refuse (a `GOTPCREL` from
/// PIC code, say): `Unknown rela relocation: N`.
pub fn relocations(module: &ModuleInfo) -> Vec<Finding> {
    module
        .relocation_types
        .iter()
        .filter(|(r_type, _)| !X86_64_LOADER_RELOCATIONS.contains(r_type))
        .map(|(r_type, section)| Finding {
            symbol: format!("relocation type {r_type} in {section}"),
            expected: "NONE, 64, PC32, PLT32, 32, 32S or PC64".into(),
            found: format!("type {r_type}"),
            kernel_says: format!("{}: Unknown rela relocation: {r_type}", module.name()),
        })
        .collect()
}

/// The kernel's `VERMAGIC_STRING` for a tree (`include/linux/vermagic.h`).
pub fn vermagic(release: &str, config: &Config) -> String {
    let mut magic = format!("{release} ");
    if config.is_y("CONFIG_SMP") {
        magic.push_str("SMP ");
    }
    if config.is_y("CONFIG_PREEMPT_RT") {
        magic.push_str("preempt_rt ");
    } else if config.any_y(&["CONFIG_PREEMPT_BUILD", "CONFIG_PREEMPT"]) {
        magic.push_str("preempt ");
    }
    if config.is_y("CONFIG_MODULE_UNLOAD") {
        magic.push_str("mod_unload ");
    }
    if config.is_y("CONFIG_MODVERSIONS") {
        magic.push_str("modversions ");
    }
    magic
}

/// The module's vermagic compared with the tree's, as `same_magic()` does:
/// with CRCs present only the part after the release is compared.
pub fn vermagic_matches(module: &ModuleInfo, release: &str, config: &Config) -> Option<Finding> {
    let expected = vermagic(release, config);
    let found = module.get("vermagic").unwrap_or("");
    let flags = |magic: &str| {
        magic
            .split_once(' ')
            .map_or(String::new(), |(_, rest)| rest.to_owned())
    };
    let same = if module.versions.is_empty() {
        found == expected
    } else {
        flags(found) == flags(&expected)
    };
    (!same).then(|| Finding {
        symbol: "vermagic".into(),
        expected: format!("'{expected}'"),
        found: format!("'{found}'"),
        kernel_says: format!(
            "{}: version magic '{found}' should be '{expected}'",
            module.name()
        ),
    })
}
