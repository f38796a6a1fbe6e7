//! Whether a module's machine code honours the kernel's speculative-execution
//! and CFI mitigations, as objtool checks them when Kbuild builds C: no raw
//! indirect branch under retpoline, no bare `ret` under rethunk, and an
//! `endbr64` at every function whose address is taken under IBT.
//!
//! Code is decoded per function symbol (STT_FUNC with a size), never linearly
//! over a section: `.text` also holds int3 padding and data. In a `.ko` the
//! rel32 fields are still zero, so which function a reference points to comes
//! from the ELF relocations.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind};
use object::read::elf::ElfFile64;
use object::{
    Architecture, Endianness, Object, ObjectSection, ObjectSymbol, RelocationKind,
    RelocationTarget, SectionIndex, SectionKind, SymbolKind,
};

use crate::Config;

/// Which mitigations the kernel's config turns on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mitigations {
    pub retpoline: bool,
    pub rethunk: bool,
    pub ibt: bool,
}

impl Mitigations {
    /// Every mitigation: what a module must honour to suit any kernel.
    pub const ALL: Mitigations = Mitigations {
        retpoline: true,
        rethunk: true,
        ibt: true,
    };

    /// Whether `problem` breaks a mitigation this kernel turns on.
    pub fn requires(&self, problem: Problem) -> bool {
        match problem {
            Problem::IndirectBranch => self.retpoline,
            Problem::Return => self.rethunk,
            Problem::MissingEndbr => self.ibt,
        }
    }

    /// From a parsed config; the options were renamed `CONFIG_MITIGATION_*`
    /// in 6.9.
    pub fn from_config(config: &Config) -> Mitigations {
        Mitigations {
            retpoline: config.any_y(&["CONFIG_RETPOLINE", "CONFIG_MITIGATION_RETPOLINE"]),
            rethunk: config.any_y(&["CONFIG_RETHUNK", "CONFIG_MITIGATION_RETHUNK"]),
            ibt: config.is_y("CONFIG_X86_KERNEL_IBT"),
        }
    }
}

/// One place where the code does not follow a mitigation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    pub function: String,
    /// Byte offset of the instruction within the function.
    pub offset: u64,
    pub problem: Problem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Problem {
    /// `call`/`jmp` through a register or memory instead of
    /// `__x86_indirect_thunk_*` (retpoline).
    IndirectBranch,
    /// A `ret` instead of `jmp __x86_return_thunk` (rethunk).
    Return,
    /// A function whose address is taken does not start with `endbr64` (IBT).
    MissingEndbr,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Problem::IndirectBranch => "indirect call/jmp without a retpoline thunk",
            Problem::Return => "bare `ret` instead of `jmp __x86_return_thunk`",
            Problem::MissingEndbr => "address-taken function does not start with endbr64",
        })
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{:#x}: {}", self.function, self.offset, self.problem)
    }
}

const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];

/// Executable sections whose code is not run as written, so is exempt:
/// `.altinstr_replacement` only holds bytes `apply_alternatives()` copies
/// over annotated sites; `.static_call.text` holds static-call trampolines
/// that `arch_static_call_transform()` rewrites (a NULL one is `ret` until
/// then, patched to the return thunk under rethunk).
const PATCHED_TEXT: &[&str] = &[".altinstr_replacement", ".static_call.text"];

/// Tables of code sites the kernel rewrites at boot or load time
/// (`apply_alternatives()`, `apply_paravirt()`): an indirect `call
/// *pv_ops+N` there is replaced before it runs, as objtool's
/// `ANNOTATE_RETPOLINE_SAFE` says, an annotation the `.ko` no longer has.
const PATCH_SITE_TABLES: &[&str] = &[".altinstructions", ".parainstructions"];

/// Data sections whose relocations point into code without making it an
/// indirect-branch target (objtool's `validate_ibt()` list, plus the site
/// tables objtool itself writes after that check).
fn ibt_ignores_relocations_from(section: &str) -> bool {
    const NAMES: &[&str] = &[
        ".altinstructions",
        ".call_sites",
        ".ibt_endbr_seal",
        ".kcfi_traps",
        ".orc_unwind_ip",
        ".parainstructions",
        ".retpoline_sites",
        ".return_sites",
        ".smp_locks",
        ".static_call_sites",
        "_error_injection_whitelist",
        "_kprobe_blacklist",
        "__bug_table",
        "__ex_table",
        "__jump_table",
        "__mcount_loc",
    ];
    NAMES.contains(&section)
        || (section.starts_with(".discard") && section != ".discard.ibt_endbr_noseal")
        || section.starts_with(".debug")
        || section.contains("__patchable_function_entries")
}

struct Function<'a> {
    name: &'a str,
    section: usize,
    address: u64,
    code: &'a [u8],
}

/// A relocation: where it applies and the code address it names (`None`
/// when its symbol is not defined in this object).
struct Reloc {
    offset: u64,
    target: Option<(usize, u64)>,
    pc_relative: bool,
}

/// Scans an x86_64 relocatable ELF (`.ko` or `.o`) for code that does not
/// follow `mitigations`, sorted by function and offset. Input that is not a
/// 64-bit x86_64 ELF, and symbols or sections that cannot be read, yield no
/// violations: this check judges code, other checks reject malformed modules.
pub fn scan(elf_bytes: &[u8], mitigations: &Mitigations) -> Vec<Violation> {
    let Ok(file) = ElfFile64::<Endianness>::parse(elf_bytes) else {
        return Vec::new();
    };
    if file.architecture() != Architecture::X86_64 {
        return Vec::new();
    }
    let section = |index: usize| file.section_by_index(SectionIndex(index)).ok();
    let is_text = |index: usize| section(index).is_some_and(|s| s.kind() == SectionKind::Text);
    let name_of = |index: usize| section(index).and_then(|s| s.name().ok().map(str::to_owned));

    // Keyed by (section, address): aliases share code, keep the first name.
    let mut functions: BTreeMap<(usize, u64), Function> = BTreeMap::new();
    for symbol in file.symbols() {
        let (Some(index), Ok(name)) = (symbol.section_index(), symbol.name()) else {
            continue;
        };
        if symbol.kind() != SymbolKind::Text || symbol.size() == 0 || !is_text(index.0) {
            continue;
        }
        let Some(code) = section(index.0)
            .and_then(|s| s.data_range(symbol.address(), symbol.size()).ok().flatten())
        else {
            continue;
        };
        let address = symbol.address();
        functions.entry((index.0, address)).or_insert(Function {
            name,
            section: index.0,
            address,
            code,
        });
    }

    let mut relocations: BTreeMap<usize, Vec<Reloc>> = BTreeMap::new();
    for section in file.sections() {
        for (offset, relocation) in section.relocations() {
            let target = match relocation.target() {
                RelocationTarget::Symbol(index) => file.symbol_by_index(index).ok().and_then(|s| {
                    let address = s.address().wrapping_add_signed(relocation.addend());
                    s.section_index().map(|section| (section.0, address))
                }),
                _ => None,
            };
            relocations
                .entry(section.index().0)
                .or_default()
                .push(Reloc {
                    offset,
                    target,
                    pc_relative: relocation.kind() != RelocationKind::Absolute,
                });
        }
    }

    // Code addresses that are taken: named from data, or loaded by code.
    let mut taken: BTreeSet<(usize, u64)> = BTreeSet::new();
    let mut patch_sites: BTreeSet<(usize, u64)> = BTreeSet::new();
    for (index, relocs) in relocations.iter_mut() {
        relocs.sort_by_key(|r| r.offset);
        let name = name_of(*index).unwrap_or_default();
        if PATCH_SITE_TABLES.contains(&name.as_str()) {
            patch_sites.extend(relocs.iter().filter_map(|r| r.target));
        } else if !is_text(*index) && !ibt_ignores_relocations_from(&name) {
            taken.extend(relocs.iter().filter_map(|r| r.target));
        }
    }

    let mut violations = Vec::new();
    for function in functions.values() {
        let patched = name_of(function.section).is_some_and(|n| PATCHED_TEXT.contains(&&*n));
        let relocs = relocations
            .get(&function.section)
            .map_or(&[][..], Vec::as_slice);
        let own = function.address..function.address.saturating_add(function.code.len() as u64);
        let decoder = Decoder::with_ip(64, function.code, function.address, DecoderOptions::NONE);
        for instruction in decoder {
            let mut report = |problem| {
                violations.push(Violation {
                    function: function.name.to_owned(),
                    offset: instruction.ip() - function.address,
                    problem,
                })
            };
            let direct = matches!(
                instruction.op0_kind(),
                OpKind::NearBranch16
                    | OpKind::NearBranch32
                    | OpKind::NearBranch64
                    | OpKind::FarBranch16
                    | OpKind::FarBranch32
            );
            match instruction.mnemonic() {
                Mnemonic::Call | Mnemonic::Jmp if !direct => {
                    let site = (function.section, instruction.ip());
                    if mitigations.retpoline && !patched && !patch_sites.contains(&site) {
                        report(Problem::IndirectBranch);
                    }
                    continue;
                }
                Mnemonic::Ret => {
                    if mitigations.rethunk && !patched {
                        report(Problem::Return);
                    }
                    continue;
                }
                // Branches name their target without taking its address;
                // nops are padding (or `call __fentry__` patched out).
                Mnemonic::Nop => continue,
                _ if direct => continue,
                _ => {}
            }
            // As objtool: a reference into the function itself (e.g. its
            // own address reloaded) does not make it an indirect target.
            let mut take = |target: (usize, u64)| {
                if target.0 != function.section || !own.contains(&target.1) {
                    taken.insert(target);
                }
            };
            let (start, end) = (instruction.ip(), instruction.next_ip());
            let first = relocs.partition_point(|r| r.offset < start);
            let mut relocated = false;
            for r in relocs[first..].iter().take_while(|r| r.offset < end) {
                relocated = true;
                // A pc-relative field counts from the end of the instruction.
                let adjust = if r.pc_relative { end - r.offset } else { 0 };
                if let Some((section, address)) = r.target {
                    take((section, address.wrapping_add(adjust)));
                }
            }
            // The assembler resolves a `lea` to a local symbol of the same
            // section without a relocation.
            if !relocated
                && instruction.mnemonic() == Mnemonic::Lea
                && instruction.is_ip_rel_memory_operand()
            {
                take((function.section, instruction.ip_rel_memory_address()));
            }
        }
    }

    if mitigations.ibt {
        for function in functions.values() {
            // Static-call trampolines are only ever called directly (their
            // address in a `struct tracepoint` is for `static_call_update`).
            let patched = name_of(function.section).is_some_and(|n| PATCHED_TEXT.contains(&&*n));
            if taken.contains(&(function.section, function.address))
                && !patched
                && !function.code.starts_with(&ENDBR64)
            {
                violations.push(Violation {
                    function: function.name.to_owned(),
                    offset: 0,
                    problem: Problem::MissingEndbr,
                });
            }
        }
    }
    violations.sort();
    violations
}
