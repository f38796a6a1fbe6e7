//! The runtime's soundness rules, held by the compiler: each case of the
//! `soundness` fixture (xtask/fixtures/soundness) adds unsound code that
//! must fail to compile with rustc's error for that rule, and the fixture
//! without any case (every sound counterpart) must build. That build is
//! then read for the lock class keys: one distinct static per construction
//! site, each passed to the C lock initialiser.

use std::collections::BTreeSet;

use anyhow::{bail, ensure, Context, Result};
use camino::Utf8PathBuf;
use kmod_build::KernelTree;
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget};

use crate::project_root;
use crate::workspace::{Diagnostics, ModuleCrate};

/// Each case and what rustc must say about it.
const CASES: &[(&str, &str)] = &[
    ("lock_moved", "`PhantomPinned` cannot be unpinned"),
    (
        "spinlock_guard_sent",
        "`*mut ()` cannot be sent between threads safely",
    ),
    (
        "mutex_guard_sent",
        "`*mut ()` cannot be sent between threads safely",
    ),
    (
        "module_not_send",
        "`*mut ()` cannot be sent between threads safely",
    ),
    ("timer_moved", "`PhantomPinned` cannot be unpinned"),
    ("timer_not_pinned", "no method named `schedule` found"),
    (
        "timer_data_not_sync",
        "`Cell<u32>` cannot be shared between threads safely",
    ),
    (
        "read_value_not_from_bytes",
        "the trait bound `bool: FromBytes` is not satisfied",
    ),
    ("write_value_padding", "has 3 total byte(s) of padding"),
    ("wait_queue_moved", "`PhantomPinned` cannot be unpinned"),
    (
        "wait_queue_swapped",
        "trait `DerefMut` is required to modify through a dereference",
    ),
    (
        "poll_queue_short_lived",
        "`queue` does not live long enough",
    ),
    ("work_moved", "`PhantomPinned` cannot be unpinned"),
    ("work_not_pinned", "no method named `queue` found"),
    (
        "work_data_not_sync",
        "`Cell<u32>` cannot be shared between threads safely",
    ),
    (
        "work_data_not_send",
        "`*mut ()` cannot be sent between threads safely",
    ),
    ("completion_moved", "`PhantomPinned` cannot be unpinned"),
    (
        "sysfs_data_not_sync",
        "`Cell<u32>` cannot be shared between threads safely",
    ),
    (
        "arc_data_not_sync",
        "`Cell<u32>` cannot be shared between threads safely",
    ),
    (
        "shared_not_sync",
        "`Cell<u32>` cannot be shared between threads safely",
    ),
    (
        "shared_not_send",
        "`*mut ()` cannot be sent between threads safely",
    ),
    (
        "file_borrows_shared",
        "borrowed data escapes outside of associated function",
    ),
    (
        "irq_handler_not_sync",
        "`Cell<u32>` cannot be shared between threads safely",
    ),
    (
        "pci_data_not_sync",
        "`Cell<u32>` cannot be shared between threads safely",
    ),
    (
        "pci_device_kept",
        "borrowed data escapes outside of associated function",
    ),
    (
        "dma_written_shared",
        "cannot borrow `*buffer` as mutable, as it is behind a `&` reference",
    ),
];

const FIXTURE: &str = "soundness";

pub fn run(tree: &KernelTree) -> Result<()> {
    let ko = build_case(tree, None).context("the sound counterparts must build")?;
    lock_class_keys(&ko)?;
    for (case, says) in CASES {
        match build_case(tree, Some(case)) {
            Ok(_) => bail!("case {case}: compiled, but the runtime must refuse it"),
            Err(error) => {
                let message = format!("{error:#}");
                ensure!(
                    message.contains("error[E") && message.contains(says),
                    "case {case}: rustc did not say {says:?}:\n{message}"
                );
            }
        }
    }
    Ok(())
}

/// The one place the fixture meets the build driver: the feature `case`
/// adds that case's code (none: only the sound counterparts). A failed
/// build's error carries rustc's diagnostics.
fn build_case(tree: &KernelTree, case: Option<&str>) -> Result<Utf8PathBuf> {
    let diagnostics = Diagnostics::default();
    let features: Vec<String> = case.map(str::to_owned).into_iter().collect();
    ModuleCrate::find(FIXTURE)?
        .build_with(tree, &features, &diagnostics)
        .with_context(|| diagnostics.rendered())
}

/// The `.ko` has one lock class key (a `KEY` static of `new_spinlock!`,
/// `new_mutex!`, `new_wait_queue!`, `new_work!` or `new_completion!`) per
/// construction site in the fixture's and the runtime's
/// sources, each at its own address and referenced from code.
fn lock_class_keys(ko: &Utf8PathBuf) -> Result<()> {
    let sites = construction_sites()?;
    let data = std::fs::read(ko).with_context(|| format!("reading {ko}"))?;
    let file = object::File::parse(&*data).with_context(|| format!("parsing {ko}"))?;
    let mut keys = Vec::new();
    for symbol in file.symbols() {
        let name = symbol.name().unwrap_or_default();
        if is_key(name) {
            keys.push((
                symbol.section_index().map(|index| index.0),
                symbol.address(),
            ));
        }
    }
    let addresses: BTreeSet<_> = keys.iter().collect();
    ensure!(
        keys.len() == sites && addresses.len() == sites,
        "{ko}: {} lock class key statics at {} addresses, expected one for each of the {sites} construction sites",
        keys.len(),
        addresses.len()
    );
    // Code refers to a key by its symbol, or by its section's symbol plus
    // its offset (-4 for the PC-relative forms, from the instruction's end).
    let mut referenced = BTreeSet::new();
    for section in file.sections() {
        if section.kind() != object::SectionKind::Text {
            continue;
        }
        for (_, relocation) in section.relocations() {
            let RelocationTarget::Symbol(index) = relocation.target() else {
                continue;
            };
            let symbol = file.symbol_by_index(index)?;
            if symbol.kind() == object::SymbolKind::Section {
                for offset in [relocation.addend(), relocation.addend() + 4] {
                    if let Ok(offset) = u64::try_from(offset) {
                        referenced.insert((symbol.section_index().map(|index| index.0), offset));
                    }
                }
            } else {
                referenced.insert((
                    symbol.section_index().map(|index| index.0),
                    symbol.address(),
                ));
            }
        }
    }
    let unreferenced = keys.iter().filter(|key| !referenced.contains(*key)).count();
    ensure!(
        unreferenced == 0,
        "{ko}: {unreferenced} lock class key(s) no code refers to"
    );
    Ok(())
}

/// A Rust static named `KEY`: v0 mangling (`_R...3KEY`, what the kernel
/// target uses) or legacy (`_ZN...3KEY17h<hash>E`).
fn is_key(name: &str) -> bool {
    let legacy = name
        .strip_prefix("_ZN")
        .and_then(|rest| rest.strip_suffix('E'))
        .and_then(|rest| rest.rsplit_once("3KEY17h"))
        .is_some_and(|(_, hash)| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
    legacy || (name.starts_with("_R") && name.ends_with("3KEY"))
}

/// Calls of the macros that make a key (`new_spinlock!(` and the like) in
/// the fixture and the runtime.
fn construction_sites() -> Result<usize> {
    let root = project_root();
    let mut files = vec![root.join("xtask/fixtures/soundness/src/lib.rs")];
    let runtime = root.join("kmod-runtime/src");
    for entry in std::fs::read_dir(&runtime).with_context(|| format!("reading {runtime}"))? {
        let path = Utf8PathBuf::try_from(entry?.path())?;
        if path.extension() == Some("rs") {
            files.push(path);
        }
    }
    let mut sites = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
        sites += text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .map(|line| {
                [
                    "new_spinlock!(",
                    "new_mutex!(",
                    "new_wait_queue!(",
                    "new_work!(",
                    "new_completion!(",
                ]
                .iter()
                .map(|call| line.matches(call).count())
                .sum::<usize>()
            })
            .sum::<usize>();
    }
    Ok(sites)
}

#[cfg(test)]
mod tests {
    use super::is_key;

    #[test]
    fn key_symbols() {
        assert!(is_key("_ZN9soundness10lock_moved3KEY17h0123456789abcdefE"));
        assert!(is_key("_RNvNvCsefrbCO959NN_9soundness10lock_moved3KEY"));
        assert!(!is_key("_RNvNvCsefrbCO959NN_9soundness10lock_moved4LKEY"));
        assert!(!is_key(
            "_ZN9soundness10lock_moved4KEYS17h0123456789abcdefE"
        ));
        assert!(!is_key("_ZN9soundness10lock_moved3KEY17h0123E"));
        assert!(!is_key("kmod_spin_lock_init"));
    }
}
