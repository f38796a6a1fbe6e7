//! The loader's own ELF checks on a module's bytes, before it reads
//! anything else: `elf_validity_check()` and `setup_load_info()` of
//! kernel/module/main.c (6.1), split into `elf_validity_cache_*()` by 6.12,
//! plus the symbol table bounds `simplify_symbols()` checks and those it
//! does not (which crash the loader). It reads the bytes as the x86_64
//! loader does: little-endian 64-bit structures whatever `e_ident` says
//! (the loader looks only at the magic of `e_ident`).

use serde::Serialize;

use crate::errno::Errno;

const EHDR_LEN: usize = 64;
const SHDR_LEN: usize = 64;
const SYM_LEN: u64 = 24;
const ET_REL: u16 = 1;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const SHT_NULL: u32 = 0;
const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;
const SHT_NOBITS: u32 = 8;
const SHF_ALLOC: u64 = 2;
const SHN_UNDEF: u16 = 0;
const SHN_LIVEPATCH: u16 = 0xff20;
const SHN_ABS: u16 = 0xfff1;
const SHN_COMMON: u16 = 0xfff2;
/// What the loader names a module whose `.modinfo` has no `name=`.
const NO_NAME: &str = "(missing .modinfo section or name field)";

/// Which loader's checks apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// `elf_validity_check()` + `setup_load_info()`, as in 6.1: section
    /// names checked only for `SHF_ALLOC` sections, the first `SHT_SYMTAB`
    /// and the first allocated `.gnu.linkonce.this_module` taken.
    V6_1,
    /// The `elf_validity_cache_*()` split (6.11 on, read in 6.12): every
    /// section's name checked, the name and symbol string tables must be
    /// `SHT_STRTAB`, exactly one `.modinfo`, `.gnu.linkonce.this_module` and
    /// symbol table.
    V6_12,
}

impl Rules {
    pub fn for_version((major, minor, _): (u32, u32, u32)) -> Rules {
        if (major, minor) >= (6, 11) {
            Rules::V6_12
        } else {
            Rules::V6_1
        }
    }
}

/// The architecture whose loader checks: `elf_check_arch()` wants its own
/// `e_machine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    X86_64,
    Aarch64,
}

impl Machine {
    /// Every architecture kmod-build builds for.
    pub const ALL: [Machine; 2] = [Machine::X86_64, Machine::Aarch64];

    /// The kernel's architecture, from its config.
    pub fn of(config: &crate::Config) -> Machine {
        if config.is_y("CONFIG_ARM64") {
            Machine::Aarch64
        } else {
            Machine::X86_64
        }
    }

    fn e_machine(self) -> u16 {
        match self {
            Machine::X86_64 => EM_X86_64,
            Machine::Aarch64 => EM_AARCH64,
        }
    }
}

/// Why the loader refuses the bytes, or would crash on them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invalid {
    /// `None`: the loader does not refuse it but faults reading outside
    /// the module (kmod-build's own verdict).
    pub errno: Option<Errno>,
    /// What the kernel prints (or, for a crash, what it would read).
    pub message: String,
}

/// One section header, as the loader reads it.
#[derive(Debug, Clone, Copy)]
struct Shdr {
    name: u32,
    kind: u32,
    flags: u64,
    addr: u64,
    offset: u64,
    size: u64,
    link: u32,
}

struct Elf<'a> {
    bytes: &'a [u8],
    shdrs: Vec<Shdr>,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |x| u16::from_le_bytes([x[0], x[1]]))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|x| x.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn refuse(message: String) -> Invalid {
    Invalid {
        errno: Some(Errno::ENOEXEC),
        message,
    }
}

impl Elf<'_> {
    /// The NUL-terminated string at `offset` of the section name table, or
    /// `None` if it runs out of the file.
    fn cstr(&self, offset: u64) -> Option<&[u8]> {
        let rest = self.bytes.get(usize::try_from(offset).ok()?..)?;
        let end = memchr::memchr(0, rest)?;
        Some(&rest[..end])
    }

    fn section_name(&self, secstrings: u64, shdr: &Shdr) -> Option<&[u8]> {
        self.cstr(secstrings.checked_add(u64::from(shdr.name))?)
    }

    fn section_in_file(&self, shdr: &Shdr) -> bool {
        shdr.offset
            .checked_add(shdr.size)
            .is_some_and(|end| end <= self.bytes.len() as u64)
    }

    /// `get_modinfo(info, "name")` of the section at `index`.
    fn modinfo_name(&self, index: Option<usize>) -> String {
        let name = index.and_then(|index| {
            let shdr = self.shdrs[index];
            let start = usize::try_from(shdr.offset).ok()?;
            let end = start.checked_add(usize::try_from(shdr.size).ok()?)?;
            let data = self.bytes.get(start..end)?;
            data.split(|&b| b == 0)
                .find_map(|entry| entry.strip_prefix(b"name="))
                .map(|name| String::from_utf8_lossy(name).into_owned())
        });
        name.unwrap_or_else(|| NO_NAME.to_owned())
    }
}

/// The checks `rules`' loader applies to `bytes` (the module without its
/// signature), in its order; `Ok` when it goes on to load the module.
/// `this_module_size` is the kernel's `sizeof(struct module)` where known
/// (6.12 compares it here).
pub fn validity(
    bytes: &[u8],
    rules: Rules,
    machine: Machine,
    this_module_size: Option<u64>,
) -> Result<(), Invalid> {
    let len = bytes.len() as u64;
    if bytes.len() < EHDR_LEN {
        return Err(refuse(format!("Invalid ELF header len {len}")));
    }
    if &bytes[..4] != b"\x7fELF" {
        return Err(refuse("Invalid ELF header magic: != \u{7f}ELF".into()));
    }
    let e_type = u16_at(bytes, 16);
    if e_type != ET_REL {
        return Err(refuse(format!(
            "Invalid ELF header type: {e_type} != {ET_REL}"
        )));
    }
    let e_machine = u16_at(bytes, 18);
    if e_machine != machine.e_machine() {
        return Err(refuse(format!(
            "Invalid architecture in ELF header: {e_machine}"
        )));
    }
    if usize::from(u16_at(bytes, 58)) != SHDR_LEN {
        return Err(refuse("Invalid ELF section header size".into()));
    }
    let shoff = u64_at(bytes, 40);
    let shnum = u16_at(bytes, 60);
    let shstrndx = u16_at(bytes, 62);
    if shoff >= len || u64::from(shnum) * SHDR_LEN as u64 > len - shoff {
        return Err(refuse("Invalid ELF section header overflow".into()));
    }
    let shdrs = (0..usize::from(shnum))
        .map(|i| {
            let at = shoff as usize + i * SHDR_LEN;
            Shdr {
                name: u32_at(bytes, at),
                kind: u32_at(bytes, at + 4),
                flags: u64_at(bytes, at + 8),
                addr: u64_at(bytes, at + 16),
                offset: u64_at(bytes, at + 24),
                size: u64_at(bytes, at + 32),
                link: u32_at(bytes, at + 40),
            }
        })
        .collect();
    let elf = Elf { bytes, shdrs };
    match rules {
        Rules::V6_1 => validity_6_1(&elf, shnum, shstrndx),
        Rules::V6_12 => validity_6_12(&elf, shnum, shstrndx, this_module_size),
    }
}

fn shstrndx_invalid(shstrndx: u16, shnum: u16) -> Invalid {
    refuse(format!(
        "Invalid ELF section name index: {shstrndx} || e_shstrndx ({shstrndx}) >= e_shnum ({shnum})"
    ))
}

fn section_zero(shdrs: &[Shdr]) -> Result<(), Invalid> {
    match shdrs.first() {
        Some(zero) if zero.kind != SHT_NULL || zero.size != 0 || zero.addr != 0 => {
            Err(refuse(format!(
                "ELF Spec violation: section 0 type({})!=SH_NULL or non-zero len or addr",
                zero.kind as i32
            )))
        }
        _ => Ok(()),
    }
}

/// The section name table's size, after its own checks.
fn name_table(elf: &Elf, strhdr: &Shdr) -> Result<(), Invalid> {
    if strhdr.size == 0 {
        return Err(refuse("empty section name table".into()));
    }
    let last = strhdr.offset + strhdr.size - 1;
    if elf.bytes.get(last as usize) != Some(&0) {
        return Err(refuse(
            "ELF Spec violation: section name table isn't null terminated".into(),
        ));
    }
    Ok(())
}

fn bad_link(link: u32, shnum: u16) -> Invalid {
    refuse(format!(
        "Invalid ELF sh_link!=SHN_UNDEF({link}) or (sh_link({link}) >= hdr->e_shnum({shnum})"
    ))
}

fn validity_6_1(elf: &Elf, shnum: u16, shstrndx: u16) -> Result<(), Invalid> {
    if shstrndx == 0 || shstrndx >= shnum {
        return Err(shstrndx_invalid(shstrndx, shnum));
    }
    let strhdr = elf.shdrs[usize::from(shstrndx)];
    if !elf.section_in_file(&strhdr) {
        return Err(refuse(format!(
            "Invalid ELF section hdr(type {})",
            strhdr.kind
        )));
    }
    name_table(elf, &strhdr)?;
    section_zero(&elf.shdrs)?;
    for (i, shdr) in elf.shdrs.iter().enumerate().skip(1) {
        if shdr.kind == SHT_NULL || shdr.kind == SHT_NOBITS {
            continue;
        }
        if shdr.kind == SHT_SYMTAB && (shdr.link == 0 || shdr.link >= u32::from(shnum)) {
            return Err(bad_link(shdr.link, shnum));
        }
        if !elf.section_in_file(shdr) {
            return Err(refuse(format!(
                "Invalid ELF section in module (section {i} type {})",
                shdr.kind
            )));
        }
        if shdr.flags & SHF_ALLOC != 0 && u64::from(shdr.name) >= strhdr.size {
            return Err(refuse(format!(
                "Invalid ELF section name in module (section {i} type {})",
                shdr.kind
            )));
        }
    }
    // setup_load_info(): find_sec() looks only at SHF_ALLOC sections.
    let find_sec = |name: &[u8]| {
        elf.shdrs.iter().enumerate().skip(1).find_map(|(i, shdr)| {
            (shdr.flags & SHF_ALLOC != 0 && elf.section_name(strhdr.offset, shdr) == Some(name))
                .then_some(i)
        })
    };
    let name = elf.modinfo_name(find_sec(b".modinfo"));
    let Some(symtab) = elf.shdrs.iter().skip(1).find(|s| s.kind == SHT_SYMTAB) else {
        return Err(refuse(format!("{name}: module has no symbols (stripped?)")));
    };
    if find_sec(b".gnu.linkonce.this_module").is_none() {
        return Err(refuse(format!("{name}: No module found in object")));
    }
    symbols(elf, symtab, &name, shnum)?;
    // Unchecked names of unallocated sections are read all the same: by
    // find_sec() once kallsyms made the symbol tables SHF_ALLOC, and by
    // x86's module_finalize(), which compares every section's name.
    let len = elf.bytes.len() as u64;
    match elf
        .shdrs
        .iter()
        .position(|shdr| strhdr.offset + u64::from(shdr.name) >= len)
    {
        Some(i) => Err(Invalid {
            errno: None,
            message: format!(
                "section {i}'s name (sh_name {:#x}) is outside the module: the loader reads it and faults",
                elf.shdrs[i].name
            ),
        }),
        None => Ok(()),
    }
}

fn validity_6_12(
    elf: &Elf,
    shnum: u16,
    shstrndx: u16,
    this_module_size: Option<u64>,
) -> Result<(), Invalid> {
    section_zero(&elf.shdrs)?;
    for (i, shdr) in elf.shdrs.iter().enumerate().skip(1) {
        if shdr.kind != SHT_NULL && shdr.kind != SHT_NOBITS && !elf.section_in_file(shdr) {
            return Err(refuse(format!(
                "Invalid ELF section in module (section {i} type {})",
                shdr.kind
            )));
        }
    }
    if shstrndx == 0 || shstrndx >= shnum {
        return Err(shstrndx_invalid(shstrndx, shnum));
    }
    let strhdr = elf.shdrs[usize::from(shstrndx)];
    if strhdr.kind != SHT_STRTAB {
        return Err(refuse(format!(
            "Invalid ELF section name table type: {}",
            strhdr.kind
        )));
    }
    name_table(elf, &strhdr)?;
    for (i, shdr) in elf.shdrs.iter().enumerate() {
        if shdr.kind != SHT_NULL && u64::from(shdr.name) >= strhdr.size {
            return Err(refuse(format!(
                "Invalid ELF section name in module (section {i} type {})",
                shdr.kind
            )));
        }
    }
    // find_any_unique_sec(): by name only, SHF_ALLOC or not.
    let named = |name: &[u8]| -> Vec<usize> {
        (1..elf.shdrs.len())
            .filter(|&i| elf.section_name(strhdr.offset, &elf.shdrs[i]) == Some(name))
            .collect()
    };
    let modinfo = named(b".modinfo");
    if modinfo.len() > 1 {
        return Err(refuse("Only one .modinfo section must exist.".into()));
    }
    let name = elf.modinfo_name(modinfo.first().copied());
    let this_module = named(b".gnu.linkonce.this_module");
    let [this_module] = this_module[..] else {
        return Err(refuse(format!(
            "module {name}: Exactly one .gnu.linkonce.this_module section must exist."
        )));
    };
    let shdr = elf.shdrs[this_module];
    if shdr.kind == SHT_NOBITS {
        return Err(refuse(format!(
            "module {name}: .gnu.linkonce.this_module section must have a size set"
        )));
    }
    if shdr.flags & SHF_ALLOC == 0 {
        return Err(refuse(format!(
            "module {name}: .gnu.linkonce.this_module must occupy memory during process execution"
        )));
    }
    if this_module_size.is_some_and(|size| size != shdr.size) {
        return Err(refuse(format!(
            "module {name}: .gnu.linkonce.this_module section size must match the kernel's built struct module size at run time"
        )));
    }
    let symtabs: Vec<&Shdr> = elf
        .shdrs
        .iter()
        .skip(1)
        .filter(|s| s.kind == SHT_SYMTAB)
        .collect();
    let [symtab] = symtabs[..] else {
        return Err(refuse(format!("{name}: module has no symbols (stripped?)")));
    };
    if symtab.link == 0 || symtab.link >= u32::from(shnum) {
        return Err(bad_link(symtab.link, shnum));
    }
    let strtab = elf.shdrs[symtab.link as usize];
    if strtab.kind != SHT_STRTAB {
        return Err(refuse(format!(
            "Invalid ELF symbol string table type: {}",
            strtab.kind
        )));
    }
    symbols(elf, symtab, &name, shnum)
}

/// `simplify_symbols()` (the same in 6.1 and 6.12): a symbol in a section
/// that does not exist is refused, a common symbol too; a name outside the
/// module is read all the same (by it, or by kallsyms' `layout_symtab()`),
/// and the loader faults.
fn symbols(elf: &Elf, symtab: &Shdr, name: &str, shnum: u16) -> Result<(), Invalid> {
    let strtab = elf.shdrs.get(symtab.link as usize).copied();
    let count = symtab.size / SYM_LEN;
    let mut refused = None;
    for i in 1..count {
        let at = (symtab.offset + i * SYM_LEN) as usize;
        let st_name = u32_at(elf.bytes, at);
        let shndx = u16_at(elf.bytes, at + 6);
        // 6.1 does not check the string table's own bounds: saturate.
        let symbol_name =
            strtab.and_then(|strtab| elf.cstr(strtab.offset.saturating_add(u64::from(st_name))));
        let Some(symbol_name) = symbol_name else {
            return Err(Invalid {
                errno: None,
                message: format!(
                    "symbol {i}'s name (st_name {st_name:#x}) is outside the module: the loader reads it and faults"
                ),
            });
        };
        let symbol_name = String::from_utf8_lossy(symbol_name);
        match shndx {
            SHN_COMMON if !symbol_name.starts_with("__gnu_lto") => {
                refused = Some(format!("{name}: please compile with -fno-common"));
            }
            SHN_COMMON | SHN_UNDEF | SHN_ABS | SHN_LIVEPATCH => {}
            shndx if shndx >= shnum => {
                refused = Some(format!(
                    "{name}: Symbol {symbol_name} has an invalid section index {shndx} (max {})",
                    shnum - 1
                ));
            }
            _ => {}
        }
    }
    // The loop goes on past an error: the last one is returned.
    match refused {
        Some(message) => Err(refuse(message)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal module: section 0, .shstrtab, .symtab (one null and one
    /// symbol), .strtab, .gnu.linkonce.this_module.
    fn module() -> Vec<u8> {
        let shstrtab = b"\0.shstrtab\0.symtab\0.strtab\0.gnu.linkonce.this_module\0".to_vec();
        let strtab = b"\0sym\0".to_vec();
        let mut symtab = vec![0u8; 48];
        symtab[24..28].copy_from_slice(&1u32.to_le_bytes());
        symtab[30..32].copy_from_slice(&4u16.to_le_bytes());
        let this_module = vec![0u8; 16];
        let mut bytes = vec![0u8; EHDR_LEN];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[16..18].copy_from_slice(&ET_REL.to_le_bytes());
        bytes[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        let mut sections = vec![(0, 0, 0, 0, Vec::new())];
        sections.push((1, SHT_STRTAB, 0, 0, shstrtab));
        sections.push((11, SHT_SYMTAB, 0, 3, symtab));
        sections.push((19, SHT_STRTAB, 0, 0, strtab));
        sections.push((27, 1, SHF_ALLOC, 0, this_module));
        let mut headers = Vec::new();
        for (name, kind, flags, link, data) in &sections {
            let offset = if data.is_empty() {
                0
            } else {
                bytes.len() as u64
            };
            bytes.extend(data);
            let mut h = vec![0u8; SHDR_LEN];
            h[0..4].copy_from_slice(&u32::to_le_bytes(*name));
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[8..16].copy_from_slice(&flags.to_le_bytes());
            h[24..32].copy_from_slice(&offset.to_le_bytes());
            h[32..40].copy_from_slice(&(data.len() as u64).to_le_bytes());
            h[40..44].copy_from_slice(&u32::to_le_bytes(*link));
            headers.extend(h);
        }
        let shoff = bytes.len() as u64;
        bytes.extend(headers);
        bytes[40..48].copy_from_slice(&shoff.to_le_bytes());
        bytes[58..60].copy_from_slice(&(SHDR_LEN as u16).to_le_bytes());
        bytes[60..62].copy_from_slice(&(sections.len() as u16).to_le_bytes());
        bytes[62..64].copy_from_slice(&1u16.to_le_bytes());
        bytes
    }

    fn shdr_at(bytes: &[u8], index: usize) -> usize {
        u64_at(bytes, 40) as usize + index * SHDR_LEN
    }

    fn both(bytes: &[u8]) -> (Result<(), Invalid>, Result<(), Invalid>) {
        (
            validity(bytes, Rules::V6_1, Machine::X86_64, Some(16)),
            validity(bytes, Rules::V6_12, Machine::X86_64, Some(16)),
        )
    }

    fn message(result: Result<(), Invalid>) -> String {
        result.expect_err("refused").message
    }

    #[test]
    fn an_intact_module_passes_both() {
        assert_eq!(both(&module()), (Ok(()), Ok(())));
    }

    #[test]
    fn the_loader_ignores_class_and_data_encoding() {
        let mut bytes = module();
        bytes[4] = 1;
        bytes[5] = 2;
        assert_eq!(both(&bytes), (Ok(()), Ok(())));
    }

    #[test]
    fn each_loader_wants_its_own_machine() {
        let x86 = module();
        assert_eq!(
            validity(&x86, Rules::V6_1, Machine::X86_64, Some(16)),
            Ok(())
        );
        let refused = validity(&x86, Rules::V6_1, Machine::Aarch64, Some(16)).unwrap_err();
        assert_eq!(refused.message, "Invalid architecture in ELF header: 62");
        let mut arm = x86.clone();
        arm[18..20].copy_from_slice(&EM_AARCH64.to_le_bytes());
        assert_eq!(
            validity(&arm, Rules::V6_12, Machine::Aarch64, Some(16)),
            Ok(())
        );
        assert!(validity(&arm, Rules::V6_12, Machine::X86_64, Some(16)).is_err());
    }

    #[test]
    fn header_damage_is_refused_with_the_kernels_message() {
        let mut bytes = module();
        bytes[18] = 3;
        assert_eq!(
            message(both(&bytes).1),
            "Invalid architecture in ELF header: 3"
        );
        let mut bytes = module();
        bytes[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            message(both(&bytes).0),
            "Invalid ELF section header overflow"
        );
        assert_eq!(
            message(validity(
                &module()[..40],
                Rules::V6_12,
                Machine::X86_64,
                None
            )),
            "Invalid ELF header len 40"
        );
    }

    #[test]
    fn a_section_past_the_end_is_refused() {
        let mut bytes = module();
        let at = shdr_at(&bytes, 3) + 24;
        bytes[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let (old, new) = both(&bytes);
        assert_eq!(
            message(old),
            "Invalid ELF section in module (section 3 type 3)"
        );
        assert_eq!(
            message(new),
            "Invalid ELF section in module (section 3 type 3)"
        );
    }

    #[test]
    fn versions_differ_on_names_of_unallocated_sections() {
        let mut bytes = module();
        let at = shdr_at(&bytes, 3);
        // Past the name table, inside the file: 6.1 reads another name.
        bytes[at..at + 4].copy_from_slice(&60u32.to_le_bytes());
        let (old, new) = both(&bytes);
        assert_eq!(old, Ok(()));
        assert_eq!(
            message(new),
            "Invalid ELF section name in module (section 3 type 3)"
        );
        // Outside the file: 6.1 faults.
        bytes[at..at + 4].copy_from_slice(&100_000u32.to_le_bytes());
        let (old, new) = both(&bytes);
        assert_eq!(old.unwrap_err().errno, None);
        assert!(new.is_err());
    }

    #[test]
    fn symbols_in_missing_sections_are_refused_and_names_outside_crash() {
        let mut bytes = module();
        let symtab = u64_at(&bytes, shdr_at(&bytes, 2) + 24) as usize;
        bytes[symtab + 24 + 6..symtab + 24 + 8].copy_from_slice(&77u16.to_le_bytes());
        assert_eq!(
            message(both(&bytes).0),
            "(missing .modinfo section or name field): Symbol sym has an invalid section index 77 (max 4)"
        );
        let mut bytes = module();
        bytes[symtab + 24..symtab + 28].copy_from_slice(&0xfff0_0000u32.to_le_bytes());
        let crash = both(&bytes).1.unwrap_err();
        assert_eq!(crash.errno, None, "{crash:?}");
    }
}
