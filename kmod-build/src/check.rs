//! Offline checks of a `.ko` against a kernel, in the order and with the
//! messages of the kernel's loader (`kernel/module/main.c`, `version.c`).

pub mod arch;

use std::fmt;

use camino::Utf8PathBuf;
use serde::Serialize;

use crate::config::Config;
use crate::elf;
use crate::errno::Errno;
use crate::error::Result;
use crate::keyring::{Keyring, Trust};
use crate::mitigations::{Mitigations, Problem};
use crate::modinfo::ModuleInfo;
use crate::signature;
use crate::symvers::{ExportKind, Symvers};
use crate::tree::KernelTree;

/// Licenses `license_is_gpl_compatible()` accepts.
const GPL_COMPATIBLE: &[&str] = &[
    "GPL",
    "GPL v2",
    "GPL and additional rights",
    "Dual BSD/GPL",
    "Dual MIT/GPL",
    "Dual MPL/GPL",
];

/// The first release whose loader compares `.gnu.linkonce.this_module`
/// with its own `struct module` (seen refusing on 6.12, not checked by 6.1).
const THIS_MODULE_SIZE_SINCE: (u32, u32) = (6, 4);

/// What the loader looks at, in the order it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    ModuleStructSize,
    ModuleLayout,
    Vermagic,
    Retpoline,
    UnknownSymbol,
    GplOnly,
    SymbolVersion,
    MissingVersion,
    Namespace,
    Relocation,
    /// The appended signature (`module_sig_check()`): unreadable, not
    /// verifying, or by no trusted key.
    Signature,
    /// Not the loader's: code the kernel's mitigations rely on (objtool's
    /// checks for C).
    Mitigation,
    /// The ELF structure (`elf_validity_check()`, `setup_load_info()`,
    /// `simplify_symbols()`'s section indexes).
    Elf,
}

/// One thing the kernel would object to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: Check,
    /// The errno `init_module(2)` fails with; `None` for a warning only.
    pub errno: Option<Errno>,
    /// The symbol, field or section at fault.
    pub subject: String,
    pub expected: String,
    pub found: String,
    /// What the kernel prints.
    pub kernel_says: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.errno.is_some() {
            "error"
        } else {
            "warning"
        };
        write!(
            f,
            "{kind}: {} (expected {}, found {})",
            self.kernel_says, self.expected, self.found
        )
    }
}

/// What a kernel's loader checks modules against, gathered from its tree.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub release: String,
    pub version: (u32, u32, u32),
    pub config: Config,
    pub symvers: Symvers,
    /// `sizeof(struct module)`, read from an in-tree module when one is installed.
    pub this_module_size: Option<u64>,
    /// Debian patches its kernels to refuse imports without a version.
    pub refuses_unversioned: bool,
    /// The keys its loader verifies module signatures with.
    pub keyring: Keyring,
    /// Whether it refuses modules without a signature it can verify
    /// (`CONFIG_MODULE_SIG_FORCE`, or booted with `module.sig_enforce=1`).
    pub sig_enforce: bool,
}

impl Kernel {
    /// The tree's kernel, with the keys built into its installed image.
    pub fn load(tree: &KernelTree) -> Result<Kernel> {
        let config = tree.config()?;
        Ok(Kernel {
            release: tree.release.clone(),
            version: tree.version(),
            keyring: Keyring::of_kernel(&tree.sysroot, &tree.release, &config),
            sig_enforce: config.is_y("CONFIG_MODULE_SIG_FORCE"),
            config,
            symvers: tree.symvers()?,
            this_module_size: tree
                .in_tree_module()
                .and_then(|path| ModuleInfo::read_this_module_size(&path).ok())
                .flatten(),
            refuses_unversioned: tree.path.join(".kernelvariables").is_file(),
        })
    }
}

/// What the kernel's loader would decide about a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "detail", rename_all = "kebab-case")]
pub enum Verdict {
    Loads,
    /// Loads, tainting the kernel with these flags (`P` proprietary, `O`
    /// out-of-tree, `E` no signature by a trusted key, `F` forced: no
    /// symbol versions).
    LoadsWithTaint(String),
    /// `init_module(2)` fails with this errno.
    Refused(Errno),
    /// The answer depends on what could not be established (which keys
    /// the kernel trusts); says what it depends on.
    Undetermined(String),
    /// kmod-build's own verdict: the loader does not refuse the module but
    /// faults on it (an oops that kills `insmod`, or worse).
    WouldCrash(String),
}

/// Every check of one module against one kernel.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub module: String,
    pub path: Utf8PathBuf,
    pub release: String,
    pub findings: Vec<Finding>,
    pub verdict: Verdict,
    pub signature: signature::Summary,
    /// What the kernel's keys make of a readable signature.
    pub trust: Option<Trust>,
    pub sig_enforced: bool,
    pub keyring: Keyring,
}

/// Checks `module` as `kernel`'s loader would. Findings come in the
/// loader's order, so the first refusing one decides the errno.
pub fn check(module: &ModuleInfo, kernel: &Kernel) -> Report {
    let (sig_check, sig_finding, trust) = signature_check(module, kernel);
    let elf = elf_validity(module, kernel);
    let crash = elf
        .as_ref()
        .filter(|f| f.errno.is_none())
        .map(|f| f.found.clone());
    let sig_refuses = sig_finding.as_ref().is_some_and(|f| f.errno.is_some());
    // The loader stops at the first refusal of these two early stages.
    let later = (!sig_refuses && elf.is_none()).then(|| {
        module_struct_size(module, kernel)
            .into_iter()
            .chain(module_layout(module, kernel))
            .chain(vermagic_matches(module, &kernel.release, &kernel.config))
            .chain(retpoline(module, &kernel.config))
            .chain(symbols(module, kernel))
            .chain(arch::relocations(module, &kernel.config))
            .chain(arch::mitigations(module, &kernel.config))
    });
    let findings: Vec<Finding> = sig_finding
        .into_iter()
        .chain(elf.filter(|_| !sig_refuses))
        .chain(later.into_iter().flatten())
        .collect();
    let refusing = findings.iter().find_map(|f| f.errno);
    let taint_letters = |sig_ok| match taint(module, kernel, sig_ok) {
        taint if taint.is_empty() => "none".to_owned(),
        taint => taint,
    };
    let verdict = match (refusing, sig_check) {
        (
            _,
            SigCheck::Undetermined {
                why,
                can_refuse: true,
            },
        ) => Verdict::Undetermined(format!(
            "loads only if the kernel verifies the signature, else refused: {why}"
        )),
        (Some(errno), _) => Verdict::Refused(errno),
        (None, _) if crash.is_some() => Verdict::WouldCrash(crash.unwrap_or_default()),
        (None, SigCheck::Undetermined { why, .. }) => Verdict::Undetermined(format!(
            "loads, tainting the kernel ({}) if it trusts the signing key, ({}) if not: {why}",
            taint_letters(true),
            taint_letters(false)
        )),
        (None, sig_check) => match taint(module, kernel, sig_check == SigCheck::Ok) {
            taint if taint.is_empty() => Verdict::Loads,
            taint => Verdict::LoadsWithTaint(taint),
        },
    };
    Report {
        module: module.name().to_owned(),
        path: module.path.clone(),
        release: kernel.release.clone(),
        findings,
        verdict,
        signature: signature::Summary::of(module.signature.as_ref()),
        trust,
        sig_enforced: kernel.sig_enforce,
        keyring: kernel.keyring.clone(),
    }
}

/// What `module_sig_check()` leaves the rest of the load with.
#[derive(Debug, PartialEq, Eq)]
enum SigCheck {
    /// `sig_ok`: verified by a trusted key.
    Ok,
    /// Loads without `sig_ok` (or is refused by the finding).
    NotOk,
    /// Signatures are not checked (no `CONFIG_MODULE_SIG`).
    Off,
    /// Depends on keys or algorithms not known here; `can_refuse` when the
    /// kernel might then refuse the module rather than only taint it.
    Undetermined { why: String, can_refuse: bool },
}

/// `module_sig_check()` (kernel/module/signing.c, the same in 6.1 and
/// 6.12): a malformed signature (EBADMSG) or one by a trusted key that does
/// not verify (EKEYREJECTED) is refused even when signatures are not
/// enforced; no signature, an unsupported kind (ENOPKG) or an unknown key
/// (ENOKEY) loads without `sig_ok`, or is refused with EKEYREJECTED under
/// enforcement.
fn signature_check(
    module: &ModuleInfo,
    kernel: &Kernel,
) -> (SigCheck, Option<Finding>, Option<Trust>) {
    if !kernel.config.is_y("CONFIG_MODULE_SIG") {
        return (SigCheck::Off, None, None);
    }
    let finding = |errno, expected: &str, found: String, kernel_says: String| Finding {
        check: Check::Signature,
        errno,
        subject: "module signature".into(),
        expected: expected.into(),
        found,
        kernel_says,
    };
    let refused = |errno: Errno, found: String| {
        let says = format!("(nothing; insmod: {})", errno.message());
        finding(Some(errno), "a signature by a trusted key", found, says)
    };
    let (reason, found, trust) = match &module.signature {
        None => ("unsigned module", "no signature".to_owned(), None),
        Some(Err(unreadable)) if unreadable.errno == Errno::EBADMSG => {
            let finding = refused(Errno::EBADMSG, unreadable.why.clone());
            return (SigCheck::NotOk, Some(finding), None);
        }
        Some(Err(unreadable)) => (
            "module with unsupported crypto",
            unreadable.why.clone(),
            None,
        ),
        Some(Ok(signature)) => {
            let trust = kernel.keyring.judge(signature);
            match &trust {
                Trust::Verified { .. } => return (SigCheck::Ok, None, Some(trust)),
                Trust::Rejected { why } => {
                    let finding = refused(Errno::EKEYREJECTED, why.clone());
                    return (SigCheck::NotOk, Some(finding), Some(trust));
                }
                Trust::Unestablished { why, could_reject } => {
                    let check = SigCheck::Undetermined {
                        why: why.clone(),
                        can_refuse: *could_reject || kernel.sig_enforce,
                    };
                    return (check, None, Some(trust));
                }
                Trust::UnknownKey => (
                    "module with unavailable key",
                    format!(
                        "key {} of {:?}, which the kernel does not have",
                        signature.key_id, signature.signer
                    ),
                    Some(trust),
                ),
            }
        }
    };
    if kernel.sig_enforce {
        let says = format!("Loading of {reason} is rejected");
        let finding = finding(
            Some(Errno::EKEYREJECTED),
            "a signature by a trusted key",
            found,
            says,
        );
        return (SigCheck::NotOk, Some(finding), trust);
    }
    let says = format!(
        "{}: module verification failed: signature and/or required key missing - tainting kernel",
        module.name()
    );
    let finding = finding(None, "a signature by a trusted key", found, says);
    (SigCheck::NotOk, Some(finding), trust)
}

/// The loader's ELF checks of `kernel`'s version, failed.
fn elf_validity(module: &ModuleInfo, kernel: &Kernel) -> Option<Finding> {
    let invalid = module
        .elf_validity(
            elf::Rules::for_version(kernel.version),
            elf::Machine::of(&kernel.config),
        )
        .err()?;
    Some(Finding {
        check: Check::Elf,
        errno: invalid.errno,
        subject: "ELF structure".into(),
        expected: "what the loader accepts".into(),
        found: invalid.message.clone(),
        kernel_says: match invalid.errno {
            Some(_) => invalid.message.clone(),
            None => "(an oops in insmod's init_module)".into(),
        },
    })
}

/// The taint letters `load_module()` adds, in the kernel's order (its
/// taint bits, as `/sys/module/<name>/taint` prints them); `E` unless
/// `sig_ok`.
fn taint(module: &ModuleInfo, kernel: &Kernel, sig_ok: bool) -> String {
    let mut taint = String::new();
    if !is_gpl(module) {
        taint.push('P');
    }
    if kernel.config.is_y("CONFIG_MODVERSIONS") && module.versions.is_empty() {
        taint.push('F');
    }
    if module.get("intree") != Some("Y") {
        taint.push('O');
    }
    if kernel.config.is_y("CONFIG_MODULE_SIG") && !sig_ok {
        taint.push('E');
    }
    taint
}

fn is_gpl(module: &ModuleInfo) -> bool {
    module
        .get("license")
        .is_some_and(|license| GPL_COMPATIBLE.contains(&license))
}

/// A module built for another kernel carries another `struct module`.
fn module_struct_size(module: &ModuleInfo, kernel: &Kernel) -> Option<Finding> {
    let (major, minor, _) = kernel.version;
    if (major, minor) < THIS_MODULE_SIZE_SINCE {
        return None;
    }
    let expected = kernel.this_module_size?;
    let found = module.this_module_size.unwrap_or(0);
    (found != expected).then(|| Finding {
        check: Check::ModuleStructSize,
        errno: Some(Errno::ENOEXEC),
        subject: ".gnu.linkonce.this_module".into(),
        expected: format!("{expected} bytes"),
        found: format!("{found} bytes"),
        kernel_says: format!(
            "module {}: .gnu.linkonce.this_module section size must match the kernel's built struct module size at run time",
            module.name()
        ),
    })
}

/// `check_modstruct_version()`: `module_layout` first, refused with
/// ENOEXEC when its CRC differs or (Debian) when `__versions` lacks it.
fn module_layout(module: &ModuleInfo, kernel: &Kernel) -> Option<Finding> {
    let missing = kernel.refuses_unversioned
        && !module.versions.is_empty()
        && kernel.symvers.get("module_layout").is_some()
        && !module.versions.iter().any(|v| v.name == "module_layout");
    let finding = if missing {
        Some(Finding {
            check: Check::ModuleLayout,
            errno: None,
            subject: "module_layout".into(),
            expected: "a __versions entry".into(),
            found: "none".into(),
            kernel_says: format!("{}: no symbol version for module_layout", module.name()),
        })
    } else {
        crc_mismatch(module, "module_layout", &kernel.symvers)
    };
    finding.map(|finding| Finding {
        check: Check::ModuleLayout,
        errno: Some(Errno::ENOEXEC),
        ..finding
    })
}

/// The `__versions` CRC of `symbol` against `Module.symvers`, if they differ.
fn crc_mismatch(module: &ModuleInfo, symbol: &str, symvers: &Symvers) -> Option<Finding> {
    let entry = module.versions.iter().find(|entry| entry.name == symbol)?;
    let export = symvers.get(symbol)?;
    (export.crc != entry.crc).then(|| Finding {
        check: Check::SymbolVersion,
        errno: Some(Errno::EINVAL),
        subject: symbol.to_owned(),
        expected: format!("{:#010x}", export.crc),
        found: format!("{:#010x}", entry.crc),
        kernel_says: format!(
            "{}: disagrees about version of symbol {symbol}",
            module.name()
        ),
    })
}

/// Every `__versions` CRC that disagrees with `Module.symvers`.
pub fn versions(module: &ModuleInfo, symvers: &Symvers) -> Vec<Finding> {
    module
        .versions
        .iter()
        .filter_map(|entry| crc_mismatch(module, &entry.name, symvers))
        .collect()
}

/// Machine code that breaks a mitigation the kernel turns on. The loader
/// does not look, so these are warnings: the module loads and, under IBT,
/// hits a control-protection fault the first time the kernel calls a
/// function without ENDBR; under retpoline or rethunk it stays exposed.
pub fn mitigations(module: &ModuleInfo, config: &Config) -> Vec<Finding> {
    let kernel = Mitigations::from_config(config);
    module
        .mitigation_gaps
        .iter()
        .filter(|gap| kernel.requires(gap.problem))
        .map(|gap| {
            let at = format!("{}+{:#x}", gap.function, gap.offset);
            let (expected, kernel_says) = match gap.problem {
                Problem::IndirectBranch => (
                    "a call/jmp through __x86_indirect_thunk_*",
                    format!("(nothing; objtool would say: {at}: indirect call found in RETPOLINE build)"),
                ),
                Problem::Return => (
                    "jmp __x86_return_thunk",
                    format!("(nothing; objtool would say: {at}: 'naked' return found in RETHUNK build)"),
                ),
                Problem::MissingEndbr => (
                    "endbr64 first",
                    format!("Missing ENDBR: {}+0x0", gap.function),
                ),
            };
            Finding {
                check: Check::Mitigation,
                errno: None,
                subject: at,
                expected: expected.into(),
                found: gap.problem.to_string(),
                kernel_says,
            }
        })
        .collect()
}

/// The kernel's `VERMAGIC_STRING` for a tree (`include/linux/vermagic.h`).
pub fn vermagic(release: &str, config: &Config) -> String {
    let mut magic = format!("{release} ");
    if config.is_y("CONFIG_SMP") {
        magic.push_str("SMP ");
    }
    // vermagic.h's order: PREEMPT_BUILD first, which 6.12's RT kernels
    // also set (so they say "preempt"); PREEMPT_RT only without it (6.1).
    if config.any_y(&["CONFIG_PREEMPT_BUILD", "CONFIG_PREEMPT"]) {
        magic.push_str("preempt ");
    } else if config.is_y("CONFIG_PREEMPT_RT") {
        magic.push_str("preempt_rt ");
    }
    if config.is_y("CONFIG_MODULE_UNLOAD") {
        magic.push_str("mod_unload ");
    }
    if config.is_y("CONFIG_MODVERSIONS") {
        magic.push_str("modversions ");
    }
    magic.push_str(arch::vermagic_suffix(config));
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
        check: Check::Vermagic,
        errno: Some(Errno::ENOEXEC),
        subject: "vermagic".into(),
        expected: format!("'{expected}'"),
        found: format!("'{found}'"),
        kernel_says: format!(
            "{}: version magic '{found}' should be '{expected}'",
            module.name()
        ),
    })
}

/// A retpoline kernel warns about modules modpost did not mark as built
/// with a retpoline compiler.
fn retpoline(module: &ModuleInfo, config: &Config) -> Option<Finding> {
    let retpoline_kernel = config.any_y(&["CONFIG_RETPOLINE", "CONFIG_MITIGATION_RETPOLINE"]);
    (retpoline_kernel && module.get("retpoline") != Some("Y")).then(|| Finding {
        check: Check::Retpoline,
        errno: None,
        subject: "retpoline".into(),
        expected: "retpoline=Y".into(),
        found: module.get("retpoline").unwrap_or("none").into(),
        kernel_says: format!(
            "{}: loading module not compiled with retpoline compiler.",
            module.name()
        ),
    })
}

/// Every imported symbol resolved as `resolve_symbol()` does, in symbol
/// table order: exported at all and visible to the module's license, its
/// version, its namespace imported.
pub fn symbols(module: &ModuleInfo, kernel: &Kernel) -> Vec<Finding> {
    let name = module.name();
    let imported: Vec<&str> = module
        .modinfo
        .iter()
        .filter(|(key, _)| key == "import_ns")
        .map(|(_, ns)| ns.as_str())
        .collect();
    let mut findings = Vec::new();
    for symbol in &module.undefined {
        let finding = |check, errno, expected: String, found: &str, kernel_says: String| Finding {
            check,
            errno,
            subject: symbol.clone(),
            expected,
            found: found.to_owned(),
            kernel_says,
        };
        let unknown = format!(
            "{name}: Unknown symbol {symbol} (err -{})",
            Errno::ENOENT.number()
        );
        let Some(export) = kernel.symvers.get(symbol) else {
            let expected = "an export in Module.symvers".into();
            findings.push(finding(
                Check::UnknownSymbol,
                Some(Errno::ENOENT),
                expected,
                "none",
                unknown,
            ));
            continue;
        };
        if export.kind == ExportKind::GplOnly && !is_gpl(module) {
            let license = module.get("license").unwrap_or("no license");
            let expected = "a GPL-compatible license for this EXPORT_SYMBOL_GPL".into();
            findings.push(finding(
                Check::GplOnly,
                Some(Errno::ENOENT),
                expected,
                license,
                unknown,
            ));
            continue;
        }
        if !module.versions.is_empty() {
            match crc_mismatch(module, symbol, &kernel.symvers) {
                Some(mismatch) => findings.push(mismatch),
                None if !module.versions.iter().any(|v| &v.name == symbol) => {
                    // Upstream only warns; Debian's kernels refuse.
                    let errno = kernel.refuses_unversioned.then_some(Errno::EINVAL);
                    let says = format!("{name}: no symbol version for {symbol}");
                    findings.push(finding(
                        Check::MissingVersion,
                        errno,
                        "a __versions entry".into(),
                        "none",
                        says,
                    ));
                }
                None => {}
            }
        }
        if !export.namespace.is_empty() && !imported.contains(&export.namespace) {
            let ns = export.namespace;
            let says = format!(
                "{name}: module uses symbol ({symbol}) from namespace {ns}, but does not import it."
            );
            findings.push(finding(
                Check::Namespace,
                Some(Errno::EINVAL),
                format!("MODULE_IMPORT_NS({ns})"),
                "no import",
                says,
            ));
        }
    }
    findings
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "  {finding}")?;
        }
        writeln!(f, "  signature: {}", self.signature)?;
        if let Some(trust) = &self.trust {
            writeln!(f, "  trust: {trust}")?;
        }
        let enforced = if self.sig_enforced {
            " (signatures enforced)"
        } else {
            ""
        };
        match &self.verdict {
            Verdict::Loads => write!(f, "{} loads on {}{enforced}", self.module, self.release),
            Verdict::LoadsWithTaint(taint) => {
                write!(
                    f,
                    "{} loads on {}{enforced}, tainting the kernel ({taint})",
                    self.module, self.release
                )
            }
            Verdict::Refused(errno) => write!(
                f,
                "{} is refused by {}{enforced} ({errno})",
                self.module, self.release
            ),
            Verdict::Undetermined(why) => write!(
                f,
                "{} on {}{enforced}: cannot tell; {why}",
                self.module, self.release
            ),
            Verdict::WouldCrash(why) => write!(
                f,
                "{} would crash the loader of {} (refused by kmod-build, not by the kernel): {why}",
                self.module, self.release
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vermagic_follows_the_headers_order_of_preemption_models() {
        let config = |text: &str| Config::parse(text).unwrap();
        let base = "CONFIG_SMP=y\nCONFIG_MODULE_UNLOAD=y\nCONFIG_MODVERSIONS=y\n";
        // 6.1's RT kernels: PREEMPT_RT alone.
        let rt_6_1 = config(&format!("{base}CONFIG_PREEMPT_RT=y\n"));
        assert_eq!(
            vermagic("6.1.0-1-rt-amd64", &rt_6_1),
            "6.1.0-1-rt-amd64 SMP preempt_rt mod_unload modversions "
        );
        // 6.12's set PREEMPT_BUILD too, which vermagic.h looks at first.
        let rt_6_12 = config(&format!(
            "{base}CONFIG_PREEMPT_BUILD=y\nCONFIG_PREEMPT_RT=y\n"
        ));
        assert_eq!(
            vermagic("6.12.1-rt-amd64", &rt_6_12),
            "6.12.1-rt-amd64 SMP preempt mod_unload modversions "
        );
        assert_eq!(
            vermagic("6.1.0-1-amd64", &config(base)),
            "6.1.0-1-amd64 SMP mod_unload modversions "
        );
    }
}
