//! Offline checks of a `.ko` against a tree, with the kernel loader's rules.

use std::fmt;

use crate::config::Config;
use crate::modinfo::ModuleInfo;
use crate::symvers::{ExportKind, Symvers};

/// Licenses `license_is_gpl_compatible()` accepts.
const GPL_COMPATIBLE: &[&str] = &[
    "GPL",
    "GPL v2",
    "GPL and additional rights",
    "Dual BSD/GPL",
    "Dual MIT/GPL",
    "Dual MPL/GPL",
];

/// One reason the kernel would refuse the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The errno `init_module(2)` fails with.
    pub errno: &'static str,
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
                errno: "EINVAL",
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
            errno: "ENOEXEC",
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
        errno: "ENOEXEC",
        symbol: "vermagic".into(),
        expected: format!("'{expected}'"),
        found: format!("'{found}'"),
        kernel_says: format!(
            "{}: version magic '{found}' should be '{expected}'",
            module.name()
        ),
    })
}

/// Every symbol the module imports resolved as `resolve_symbol()` does:
/// exported at all, visible to the module's license, imported from its
/// namespace, and (with `__versions`) carrying a version.
pub fn symbols(module: &ModuleInfo, symvers: &Symvers) -> Vec<Finding> {
    let name = module.name();
    let gpl = module
        .get("license")
        .is_some_and(|license| GPL_COMPATIBLE.contains(&license));
    let imported: Vec<&str> = module
        .modinfo
        .iter()
        .filter(|(key, _)| key == "import_ns")
        .map(|(_, ns)| ns.as_str())
        .collect();
    let mut findings = Vec::new();
    for symbol in &module.undefined {
        let finding = |errno, expected: String, found: &str, kernel_says: String| Finding {
            errno,
            symbol: symbol.clone(),
            expected,
            found: found.to_owned(),
            kernel_says,
        };
        let Some(export) = symvers.get(symbol) else {
            findings.push(finding(
                "ENOENT",
                "an export in Module.symvers".into(),
                "none",
                format!("{name}: Unknown symbol {symbol} (err -2)"),
            ));
            continue;
        };
        if export.kind == ExportKind::GplOnly && !gpl {
            findings.push(finding(
                "ENOENT",
                "a GPL-compatible license for this EXPORT_SYMBOL_GPL".into(),
                module.get("license").unwrap_or("no license"),
                format!("{name}: Unknown symbol {symbol} (err -2)"),
            ));
        }
        if !export.namespace.is_empty() && !imported.contains(&export.namespace.as_str()) {
            findings.push(finding(
                "EINVAL",
                format!("MODULE_IMPORT_NS({})", export.namespace),
                "no import",
                format!(
                    "{name}: module uses symbol {symbol} from namespace {}, but does not import it.",
                    export.namespace
                ),
            ));
        }
        if !module.versions.is_empty() && !module.versions.iter().any(|v| &v.name == symbol) {
            // Upstream only warns; Debian's kernels refuse the module.
            findings.push(finding(
                "EINVAL",
                "a __versions entry".into(),
                "none",
                format!("{name}: no symbol version for {symbol}"),
            ));
        }
    }
    findings
}

/// What the kernel's loader would decide about a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Loads,
    /// Loads, tainting the kernel with these flags (`O` out-of-tree, `E`
    /// unsigned, `P` proprietary).
    LoadsWithTaint(String),
    /// `init_module(2)` fails with this errno.
    Refused(&'static str),
}

/// Every check of one module against one tree.
#[derive(Debug, Clone)]
pub struct Report {
    pub module: String,
    pub release: String,
    pub findings: Vec<Finding>,
    pub verdict: Verdict,
}

/// Checks `module` against a tree's release, config and exports as the
/// kernel's loader would (signature enforcement aside): vermagic,
/// `__versions` CRCs, symbol resolution, relocations.
pub fn check(module: &ModuleInfo, release: &str, config: &Config, symvers: &Symvers) -> Report {
    // The loader's order: vermagic and CRCs first, then symbols, then
    // relocations; the first failure decides the errno.
    let findings: Vec<Finding> = vermagic_matches(module, release, config)
        .into_iter()
        .chain(versions(module, symvers))
        .chain(symbols(module, symvers))
        .chain(relocations(module))
        .collect();
    let verdict = match findings.first() {
        Some(first) => Verdict::Refused(first.errno),
        None => {
            let mut taint = String::new();
            if module
                .get("license")
                .is_some_and(|l| !GPL_COMPATIBLE.contains(&l))
            {
                taint.push('P');
            }
            if module.get("intree") != Some("Y") {
                taint.push('O');
            }
            if config.is_y("CONFIG_MODULE_SIG") && !module.signed {
                taint.push('E');
            }
            if taint.is_empty() {
                Verdict::Loads
            } else {
                Verdict::LoadsWithTaint(taint)
            }
        }
    };
    Report {
        module: module.name().to_owned(),
        release: release.to_owned(),
        findings,
        verdict,
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "  {finding}")?;
        }
        match &self.verdict {
            Verdict::Loads => write!(f, "{} loads on {}", self.module, self.release),
            Verdict::LoadsWithTaint(taint) => {
                write!(
                    f,
                    "{} loads on {}, tainting the kernel ({taint})",
                    self.module, self.release
                )
            }
            Verdict::Refused(errno) => write!(
                f,
                "{} is refused by {} ({errno})",
                self.module, self.release
            ),
        }
    }
}
