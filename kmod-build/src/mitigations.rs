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

use iced_x86::{Decoder, DecoderOptions, FlowControl, Mnemonic};
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
    section: SectionIndex,
    address: u64,
    code: &'a [u8],
}

/// A relocation in a section: where it is and the code address it names
/// (`None` when the symbol is not defined in this object).
struct Reloc {
    offset: u64,
    target: Option<(SectionIndex, u64)>,
    pc_relative: bool,
}

/// Scans an x86_64 relocatable ELF (`.ko` or `.o`) for code that does not
/// follow `mitigations`. Input that is not a 64-bit x86_64 ELF, or sections
/// that cannot be read, yield no violations: this check judges code, other
/// checks reject malformed modules.
pub fn scan(elf_bytes: &[u8], mitigations: &Mitigations) -> Vec<Violation> {
    let Ok(file) = ElfFile64::<Endianness>::parse(elf_bytes) else {
        return Vec::new();
    };
    if file.architecture() != Architecture::X86_64 {
        return Vec::new();
    }
    let section_name = |index: SectionIndex| {
        file.section_by_index(index)
            .ok()
            .and_then(|s| s.name().ok().map(str::to_owned))
            .unwrap_or_default()
    };

    // One entry per code range: aliases share an address, keep the first name.
    let mut functions: BTreeMap<(SectionIndex, u64), Function> = BTreeMap::new();
    for symbol in file.symbols() {
        let (Some(section), Ok(name)) = (symbol.section_index(), symbol.name()) else {
            continue;
        };
        if symbol.kind() != SymbolKind::Text || symbol.size() == 0 {
            continue;
        }
        let Ok(text) = file.section_by_index(section) else {
            continue;
        };
        if text.kind() != SectionKind::Text {
            continue;
        }
        let code = text
            .data_range(symbol.address(), symbol.size())
            .ok()
            .flatten()
            .unwrap_or_default();
        functions
            .entry((section, symbol.address()))
            .or_insert(Function {
                name,
                section,
                address: symbol.address(),
                code,
            });
    }

    let mut relocations: BTreeMap<SectionIndex, Vec<Reloc>> = BTreeMap::new();
    for section in file.sections() {
        for (offset, relocation) in section.relocations() {
            let target = match relocation.target() {
                RelocationTarget::Symbol(index) => file.symbol_by_index(index).ok().and_then(|s| {
                    let address = s.address().wrapping_add_signed(relocation.addend());
                    s.section_index().map(|section| (section, address))
                }),
                _ => None,
            };
            let pc_relative = !matches!(relocation.kind(), RelocationKind::Absolute);
            relocations.entry(section.index()).or_default().push(Reloc {
                offset,
                target,
                pc_relative,
            });
        }
    }
    for relocs in relocations.values_mut() {
        relocs.sort_by_key(|r| r.offset);
    }

    let mut violations = Vec::new();
    // Code addresses whose address is taken (loaded, stored, or in data).
    let mut taken: BTreeSet<(SectionIndex, u64)> = BTreeSet::new();
    for (index, relocs) in &relocations {
        let is_code = file
            .section_by_index(*index)
            .is_ok_and(|s| s.kind() == SectionKind::Text);
        if !is_code && !ibt_ignores_relocations_from(&section_name(*index)) {
            taken.extend(relocs.iter().filter_map(|r| r.target));
        }
    }

    let mut targets = Vec::new();
    for function in functions.values() {
        let patched = PATCHED_TEXT.contains(&section_name(function.section).as_str());
        let relocs = relocations
            .get(&function.section)
            .map_or(&[][..], Vec::as_slice);
        let mut decoder =
            Decoder::with_ip(64, function.code, function.address, DecoderOptions::NONE);
        for instruction in &mut decoder {
            let offset = instruction.ip() - function.address;
            let mut report = |problem| {
                violations.push(Violation {
                    function: function.name.to_owned(),
                    offset,
                    problem,
                })
            };
            match instruction.flow_control() {
                FlowControl::IndirectBranch | FlowControl::IndirectCall => {
                    if mitigations.retpoline && !patched {
                        report(Problem::IndirectBranch);
                    }
                    continue;
                }
                FlowControl::Return => {
                    if mitigations.rethunk && !patched && instruction.mnemonic() == Mnemonic::Ret {
                        report(Problem::Return);
                    }
                    continue;
                }
                // Branches name their target; they do not take its address.
                FlowControl::Next => {}
                _ => continue,
            }
            if instruction.mnemonic() == Mnemonic::Nop {
                continue;
            }
            // References from this instruction: its relocations, or a
            // `lea` the assembler resolved within the section.
            let (start, end) = (instruction.ip(), instruction.next_ip());
            let first = relocs.partition_point(|r| r.offset < start);
            let mut any = false;
            for r in relocs[first..].iter().take_while(|r| r.offset < end) {
                any = true;
                // A pc-relative field counts from the end of the instruction.
                let adjust = if r.pc_relative { end - r.offset } else { 0 };
                if let Some((section, address)) = r.target {
                    targets.push((section, address.wrapping_add(adjust)));
                }
            }
            if !any
                && instruction.mnemonic() == Mnemonic::Lea
                && instruction.is_ip_rel_memory_operand()
            {
                targets.push((function.section, instruction.ip_rel_memory_address()));
            }
        }
        // As objtool: a function referring into itself is not an indirect
        // branch target (e.g. a loop reloading its own address).
        let own = function.address..function.address + function.code.len() as u64;
        taken.extend(
            targets.drain(..).filter(|(section, address)| {
                *section != function.section || !own.contains(address)
            }),
        );
    }

    if mitigations.ibt {
        for function in functions.values() {
            if taken.contains(&(function.section, function.address))
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
