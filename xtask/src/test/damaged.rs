//! Damaged modules: copies of `hello.ko` each damaged in one place (ELF
//! header, section headers, symbol table, string tables, `.modinfo`,
//! `__versions`), judged by `check` and loaded by the real kernel in small
//! batches per guest, so that an oops cannot hide the other cases. A copy
//! `check` says would crash the loader is booted alone and must oops it.

use anyhow::{bail, ensure, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::check::{self, Kernel, Verdict};
use kmod_build::elf::Rules;
use kmod_build::{Errno, KernelTree, ModuleInfo};
use object::{Object, ObjectSection, ObjectSymbol};

use kmod_build::driver::qemu::Guest;

/// Cases loaded in one guest.
const BATCH: usize = 8;

/// What the loader must do with a copy: load it, refuse it with an errno,
/// or crash; `None` in `by_6_1`/`by_6_12` where the loaders differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Loads,
    Refused(Errno),
    Crashes,
}

struct Copy {
    name: &'static str,
    bytes: Vec<u8>,
    by_6_1: Expect,
    by_6_12: Expect,
}

/// Offsets into hello.ko that the damage needs.
struct Layout {
    shoff: usize,
    shnum: usize,
    index: std::collections::HashMap<String, usize>,
    /// File offset of the first defined global symbol's entry.
    defined_symbol: usize,
    /// File range of `.shstrtab`.
    shstrtab: (usize, usize),
}

impl Layout {
    fn of(bytes: &[u8]) -> Result<Layout> {
        let file = object::File::parse(bytes)?;
        let index = file
            .sections()
            .filter_map(|s| Some((s.name().ok()?.to_owned(), s.index().0)))
            .collect();
        let symtab = file
            .section_by_name(".symtab")
            .context("hello.ko has no .symtab")?;
        let (symtab_at, _) = symtab.file_range().context(".symtab has no file range")?;
        let defined = file
            .symbols()
            .find(|s| s.is_global() && !s.is_undefined())
            .context("hello.ko defines no global symbol")?;
        let shstrtab = file
            .section_by_name(".shstrtab")
            .and_then(|s| s.file_range())
            .context("hello.ko has no .shstrtab")?;
        Ok(Layout {
            shoff: u64::from_le_bytes(bytes[40..48].try_into()?) as usize,
            shnum: usize::from(u16::from_le_bytes([bytes[60], bytes[61]])),
            index,
            defined_symbol: symtab_at as usize + defined.index().0 * 24,
            shstrtab: (shstrtab.0 as usize, shstrtab.1 as usize),
        })
    }

    /// File offset of field `at` of the header of section `name`.
    fn shdr(&self, name: &str, at: usize) -> Result<usize> {
        let index = self
            .index
            .get(name)
            .with_context(|| format!("hello.ko has no section {name}"))?;
        Ok(self.shoff + index * 64 + at)
    }
}

/// The corpus, each copy with what each loader does with it (from reading
/// kernel/module/main.c of 6.1 and 6.12; check is held to the kernel, and
/// to these, so that a copy that damages nothing cannot agree by accident).
fn corpus(hello: &[u8]) -> Result<Vec<Copy>> {
    use Expect::*;
    let layout = Layout::of(hello)?;
    let enoexec = Refused(Errno::ENOEXEC);
    let mut copies = Vec::new();
    let mut add = |name, by_6_1, by_6_12, bytes| {
        copies.push(Copy {
            name,
            bytes,
            by_6_1,
            by_6_12,
        });
    };
    // hello.ko with `value` written at `at`.
    let put = |at: usize, value: &[u8]| {
        let mut bytes = hello.to_vec();
        bytes[at..at + value.len()].copy_from_slice(value);
        bytes
    };
    let loads = Loads;
    // ELF header.
    add("ident-class", loads, loads, put(4, &[1]));
    add("ident-data", loads, loads, put(5, &[2]));
    add("e_type", enoexec, enoexec, put(16, &2u16.to_le_bytes()));
    add("e_machine", enoexec, enoexec, put(18, &3u16.to_le_bytes()));
    add(
        "e_shentsize",
        enoexec,
        enoexec,
        put(58, &40u16.to_le_bytes()),
    );
    add(
        "e_shoff",
        enoexec,
        enoexec,
        put(40, &u64::MAX.to_le_bytes()),
    );
    add(
        "e_shnum",
        enoexec,
        enoexec,
        put(60, &u16::MAX.to_le_bytes()),
    );
    add(
        "e_shstrndx-zero",
        enoexec,
        enoexec,
        put(62, &0u16.to_le_bytes()),
    );
    let shnum = layout.shnum as u16;
    add(
        "e_shstrndx-past",
        enoexec,
        enoexec,
        put(62, &shnum.to_le_bytes()),
    );
    // Section headers.
    let len = hello.len() as u64;
    let text_offset = layout.shdr(".text", 24)?;
    add(
        "sh_offset-past-end",
        enoexec,
        enoexec,
        put(text_offset, &len.to_le_bytes()),
    );
    let modinfo_size = layout.shdr(".modinfo", 32)?;
    add(
        "sh_size-huge",
        enoexec,
        enoexec,
        put(modinfo_size, &(u64::MAX / 2).to_le_bytes()),
    );
    let zero_size = layout.shoff + 32;
    add(
        "section-0-size",
        enoexec,
        enoexec,
        put(zero_size, &1u64.to_le_bytes()),
    );
    let shstrtab_type = layout.shdr(".shstrtab", 4)?;
    add(
        "shstrtab-type",
        loads,
        enoexec,
        put(shstrtab_type, &1u32.to_le_bytes()),
    );
    let shstrtab_last = layout.shstrtab.0 + layout.shstrtab.1 - 1;
    add(
        "shstrtab-unterminated",
        enoexec,
        enoexec,
        put(shstrtab_last, b"x"),
    );
    // 6.1 checks names of allocated sections only; past its name table
    // inside the file, another name is read; outside it, the loader faults.
    let comment_name = layout.shdr(".comment", 0)?;
    let past_table = (layout.shstrtab.1 + 8) as u32;
    add(
        "unallocated-sh_name-past-table",
        loads,
        enoexec,
        put(comment_name, &past_table.to_le_bytes()),
    );
    add(
        "unallocated-sh_name-outside",
        Crashes,
        enoexec,
        put(comment_name, &0x7fff_0000u32.to_le_bytes()),
    );
    let this_module_flags = layout.shdr(".gnu.linkonce.this_module", 8)?;
    add(
        "this_module-not-alloc",
        enoexec,
        enoexec,
        put(this_module_flags, &0u64.to_le_bytes()),
    );
    let comment_type = layout.shdr(".comment", 4)?;
    add(
        "second-symtab",
        enoexec,
        enoexec,
        put(comment_type, &2u32.to_le_bytes()),
    );
    let symtab_link = layout.shdr(".symtab", 40)?;
    add(
        "symtab-link-zero",
        enoexec,
        enoexec,
        put(symtab_link, &0u32.to_le_bytes()),
    );
    // Symbol table.
    let symbol = layout.defined_symbol;
    add(
        "st_shndx-invalid",
        enoexec,
        enoexec,
        put(symbol + 6, &0xfff0u16.to_le_bytes()),
    );
    add(
        "st_shndx-common",
        enoexec,
        enoexec,
        put(symbol + 6, &0xfff2u16.to_le_bytes()),
    );
    add(
        "st_name-outside",
        Crashes,
        Crashes,
        put(symbol, &0x7fff_0000u32.to_le_bytes()),
    );
    // .modinfo: without name= the loader names the module from
    // `struct module`.
    let no_name = super::agreement::replace(hello, b"\0name=hello\0", b"\0nome=hello\0")?;
    add("modinfo-no-name", loads, loads, no_name);
    // __versions: a partial last entry is not read, nor is an
    // unterminated name matched; Debian refuses a symbol without a version
    // (EINVAL), and check_modstruct_version() module_layout without one
    // (ENOEXEC; modpost writes it last).
    let info = ModuleInfo::parse(Utf8Path::new("hello.ko"), hello)?;
    let without = |name: &str| match name {
        "module_layout" => enoexec,
        _ => Refused(Errno::EINVAL),
    };
    let last = info.versions.last().context("hello.ko has no __versions")?;
    let versions_size = layout.shdr("__versions", 32)?;
    let size = info.versions.len() as u64 * 64 - 1;
    let partial = without(&last.name);
    add(
        "versions-partial",
        partial,
        partial,
        put(versions_size, &size.to_le_bytes()),
    );
    let first = &info.versions[0];
    let unterminated = without(&first.name);
    add(
        "versions-unterminated",
        unterminated,
        unterminated,
        put(first.file_offset as usize + 8, &[b'x'; 56]),
    );
    Ok(copies)
}

pub fn run(tree: &KernelTree, hello: &Utf8Path) -> Result<()> {
    let vmlinuz = Utf8PathBuf::from(format!("/boot/vmlinuz-{}", tree.release));
    let work = hello
        .parent()
        .context("hello.ko has a directory")?
        .join("damaged");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {work}"))?;
    let bytes = std::fs::read(hello).with_context(|| format!("reading {hello}"))?;
    let kernel = Kernel::load(tree)?;
    let rules = Rules::for_version(kernel.version);
    let mut cases = Vec::new();
    for (index, copy) in corpus(&bytes)?.into_iter().enumerate() {
        let ko = work.join(format!("{index}-{}.ko", copy.name));
        std::fs::write(&ko, &copy.bytes).with_context(|| format!("writing {ko}"))?;
        let report = check::check(&ModuleInfo::parse(&ko, &copy.bytes)?, &kernel);
        let expected = match rules {
            Rules::V6_1 => copy.by_6_1,
            Rules::V6_12 => copy.by_6_12,
        };
        let said = match &report.verdict {
            Verdict::Loads | Verdict::LoadsWithTaint(_) => Expect::Loads,
            Verdict::Refused(errno) => Expect::Refused(*errno),
            Verdict::WouldCrash(_) => Expect::Crashes,
            Verdict::Undetermined(why) => bail!("{ko}: check cannot tell: {why}"),
        };
        ensure!(
            said == expected,
            "{ko}: the loader of {} should give {expected:?}, check says:\n{report}",
            tree.release
        );
        let kernel_says = report
            .findings
            .iter()
            .find(|f| f.errno.is_some())
            .map(|f| printable_prefix(&f.kernel_says));
        cases.push((ko, expected, kernel_says));
    }

    let (crashing, loading): (Vec<_>, Vec<_>) = cases
        .iter()
        .partition(|(_, expected, _)| *expected == Expect::Crashes);
    let mut disagreements = Vec::new();
    for batch in loading.chunks(BATCH) {
        let mut guest = Guest::new(&vmlinuz);
        let mut script = String::new();
        for (ko, _, _) in batch {
            guest.file(ko);
            let file = ko.file_name().unwrap_or_default();
            script.push_str(&format!(
                "section {file} insmod /modules/{file}\nsection {file}-log dmesg -c\nrmmod hello 2>/dev/null\n"
            ));
        }
        let log = guest.run(&script)?;
        for (ko, expected, kernel_says) in batch {
            let file = ko.file_name().unwrap_or_default();
            let returned = log.expect_section(file)?.insmod();
            let kernel_log = log.expect_section(&format!("{file}-log"))?.output;
            let expected_errno = match expected {
                Expect::Refused(errno) => Some(*errno),
                _ => None,
            };
            let said = kernel_says
                .as_deref()
                .is_none_or(|says| kernel_log.contains(says));
            if returned != Ok(expected_errno) || !said || kernel_log.contains("BUG:") {
                disagreements.push(format!(
                    "{file}: check says {expected:?} (`{}`), insmod gave {returned:?}:\n{kernel_log}",
                    kernel_says.as_deref().unwrap_or("")
                ));
            }
        }
    }
    for (ko, _, _) in &crashing {
        let file = ko.file_name().unwrap_or_default();
        let outcome = Guest::new(&vmlinuz)
            .file(ko)
            .run(&format!("section {file} insmod /modules/{file}\n"));
        // An oops kills insmod (or the guest); either way it did not load.
        let crashed = match &outcome {
            Err(_) => true,
            Ok(log) => {
                log.console.contains("BUG:")
                    || log.console.contains("Oops")
                    || log.section(file).is_none_or(|s| s.rc > 128)
            }
        };
        if !crashed {
            disagreements.push(format!(
                "{file}: check says the loader crashes, it did not:\n{}",
                outcome.map(|log| log.tail(20)).unwrap_or_default()
            ));
        }
    }
    if !disagreements.is_empty() {
        bail!(
            "check and {} disagree on damaged modules:\n{}",
            tree.release,
            disagreements.join("\n")
        );
    }
    eprintln!(
        "    {} damaged copies agree on {} ({} crash the loader)",
        cases.len(),
        tree.release,
        crashing.len()
    );
    Ok(())
}

/// The message up to its first unprintable byte (the magic's 0x7f).
fn printable_prefix(message: &str) -> String {
    message
        .split(|c: char| c.is_control())
        .next()
        .unwrap_or_default()
        .to_owned()
}
