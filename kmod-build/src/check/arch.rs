//! What the loader checks differently per architecture: the relocation
//! types `apply_relocate_add()` handles, the `MODULE_ARCH_VERMAGIC` suffix,
//! and whether the (x86-only) mitigation scan means anything.

use crate::config::Config;
use crate::errno::Errno;
use crate::modinfo::ModuleInfo;

use super::{Check, Finding};

/// Relocation types `apply_relocate_add()` handles on x86_64: NONE, 64,
/// PC32, PLT32, 32, 32S, PC64.
const X86_64_LOADER_RELOCATIONS: &[u32] = &[0, 1, 2, 4, 10, 11, 24];

/// Relocation types arm64's `apply_relocate_add()`
/// (`arch/arm64/kernel/module.c`, 6.1 and 6.12) handles: `R_ARM_NONE`,
/// `R_AARCH64_NONE`, the data relocations (`ABS*`, `PREL*`), the `MOVW_*`
/// groups, the address-forming `LD_PREL_LO19`, `ADR_PREL_*`,
/// `ADD_ABS_LO12_NC`, `LDST*_ABS_LO12_NC`, and the branches `TSTBR14`,
/// `CONDBR19`, `JUMP26`, `CALL26`. Anything else: "unsupported RELA
/// relocation". GOT-forming ones (`ADR_GOT_PAGE`, `LD64_GOT_LO12_NC`) are
/// not among them.
const ARM64_LOADER_RELOCATIONS: &[(u32, &str)] = &[
    (0, "R_ARM_NONE"),
    (256, "NONE"),
    (257, "ABS64"),
    (258, "ABS32"),
    (259, "ABS16"),
    (260, "PREL64"),
    (261, "PREL32"),
    (262, "PREL16"),
    (263, "MOVW_UABS_G0"),
    (264, "MOVW_UABS_G0_NC"),
    (265, "MOVW_UABS_G1"),
    (266, "MOVW_UABS_G1_NC"),
    (267, "MOVW_UABS_G2"),
    (268, "MOVW_UABS_G2_NC"),
    (269, "MOVW_UABS_G3"),
    (270, "MOVW_SABS_G0"),
    (271, "MOVW_SABS_G1"),
    (272, "MOVW_SABS_G2"),
    (273, "LD_PREL_LO19"),
    (274, "ADR_PREL_LO21"),
    (275, "ADR_PREL_PG_HI21"),
    (276, "ADR_PREL_PG_HI21_NC"),
    (277, "ADD_ABS_LO12_NC"),
    (278, "LDST8_ABS_LO12_NC"),
    (279, "TSTBR14"),
    (280, "CONDBR19"),
    (282, "JUMP26"),
    (283, "CALL26"),
    (284, "LDST16_ABS_LO12_NC"),
    (285, "LDST32_ABS_LO12_NC"),
    (286, "LDST64_ABS_LO12_NC"),
    (287, "MOVW_PREL_G0"),
    (288, "MOVW_PREL_G0_NC"),
    (289, "MOVW_PREL_G1"),
    (290, "MOVW_PREL_G1_NC"),
    (291, "MOVW_PREL_G2"),
    (292, "MOVW_PREL_G2_NC"),
    (293, "MOVW_PREL_G3"),
    (299, "LDST128_ABS_LO12_NC"),
];

fn is_arm64(config: &Config) -> bool {
    config.is_y("CONFIG_ARM64")
}

/// Relocations the kernel's loader would refuse, by the kernel's
/// architecture.
pub fn relocations(module: &ModuleInfo, config: &Config) -> Vec<Finding> {
    if !is_arm64(config) {
        return x86_64_relocations(module);
    }
    module
        .relocation_types
        .iter()
        .filter(|(r_type, _)| !ARM64_LOADER_RELOCATIONS.iter().any(|(t, _)| t == *r_type))
        .map(|(r_type, section)| Finding {
            check: Check::Relocation,
            errno: Some(Errno::ENOEXEC),
            subject: format!("relocation type {r_type} in {section}"),
            expected: "a relocation arm64's apply_relocate_add() handles (ABS, PREL, MOVW, ADR/ADD/LDST *_LO12, branches)".into(),
            found: format!("type {r_type}"),
            kernel_says: format!(
                "module {}: unsupported RELA relocation: {r_type}",
                module.name()
            ),
        })
        .collect()
}

/// Relocations the x86_64 module loader would refuse (a `GOTPCREL` from
/// PIC code, say): `Unknown rela relocation: N`.
fn x86_64_relocations(module: &ModuleInfo) -> Vec<Finding> {
    module
        .relocation_types
        .iter()
        .filter(|(r_type, _)| !X86_64_LOADER_RELOCATIONS.contains(r_type))
        .map(|(r_type, section)| Finding {
            check: Check::Relocation,
            errno: Some(Errno::ENOEXEC),
            subject: format!("relocation type {r_type} in {section}"),
            expected: "NONE, 64, PC32, PLT32, 32, 32S or PC64".into(),
            found: format!("type {r_type}"),
            kernel_says: format!("{}: Unknown rela relocation: {r_type}", module.name()),
        })
        .collect()
}

/// The mitigation scan reads x86 machine code for x86's mitigations
/// (retpoline, rethunk, IBT); other architectures get nothing from it (see
/// [`mitigation_scan_note`]).
pub fn mitigations(module: &ModuleInfo, config: &Config) -> Vec<Finding> {
    if config.is_y("CONFIG_X86") {
        super::mitigations(module, config)
    } else {
        Vec::new()
    }
}

/// What to tell the user, once, when the mitigation scan does not apply.
pub fn mitigation_scan_note(config: &Config) -> Option<&'static str> {
    is_arm64(config).then_some(
        "the mitigation scan is x86-only (retpoline, rethunk, IBT) and does not apply to arm64: \
         its BTI/PAC hardening comes from the codegen flags",
    )
}

/// `MODULE_ARCH_VERMAGIC`, the last word of `VERMAGIC_STRING`
/// (`arch/arm64/include/asm/module.h`: "aarch64"; x86_64's generic CPU
/// adds nothing).
pub fn vermagic_suffix(config: &Config) -> &'static str {
    if is_arm64(config) {
        "aarch64"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_vermagic_ends_with_aarch64() {
        let config = Config::parse(
            "CONFIG_ARM64=y\nCONFIG_SMP=y\nCONFIG_MODULE_UNLOAD=y\nCONFIG_MODVERSIONS=y\n",
        )
        .unwrap();
        assert_eq!(
            super::super::vermagic("6.1.0-57-arm64", &config),
            "6.1.0-57-arm64 SMP mod_unload modversions aarch64"
        );
        let x86 = Config::parse("CONFIG_X86=y\nCONFIG_SMP=y\n").unwrap();
        assert_eq!(
            super::super::vermagic("6.1.0-57-amd64", &x86),
            "6.1.0-57-amd64 SMP "
        );
        assert!(mitigation_scan_note(&config).is_some());
        assert!(mitigation_scan_note(&x86).is_none());
    }
}
