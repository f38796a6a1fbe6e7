//! `check` against the real kernel: good modules and copies broken one way
//! each, judged offline by `check` and then loaded by the kernel in QEMU.
//! The verdicts must agree (same errno, the same message in the log).

use anyhow::{bail, ensure, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::check::{self, Kernel, Verdict};
use kmod_build::{Errno, KernelTree, ModuleInfo};
use object::{Object, ObjectSection};
use xshell::{cmd, Shell};

use crate::project_root;
use kmod_build::driver::qemu::Guest;

/// One module the kernel is asked to load.
struct Case {
    name: String,
    ko: Utf8PathBuf,
    verdict: Verdict,
    /// What the kernel should print first when it refuses the module.
    kernel_says: Option<String>,
}

/// `hello` for `tree` (and for `others`, built for other kernels) plus the
/// C fixture, each intact and broken.
pub fn run(
    sh: &Shell,
    tree: &KernelTree,
    hello: &Utf8Path,
    others: &[(&KernelTree, Utf8PathBuf)],
) -> Result<()> {
    let vmlinuz = tree.image();
    let work = hello
        .parent()
        .context("hello.ko has a directory")?
        .join("agreement");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {work}"))?;
    let cimports = build_cimports(sh, tree, &work)?;
    let hello_bytes = read(hello)?;
    let cimports_bytes = read(&cimports)?;
    let release_digit = format!("vermagic={}", &tree.release[..1]);
    let other_digit = if tree.release.starts_with('5') {
        "vermagic=4"
    } else {
        "vermagic=5"
    };

    // Each copy with the errno the loader must refuse it with (`None`:
    // loads), so a copy that breaks nothing cannot agree by accident.
    let mut copies: Vec<(&str, Expected, Vec<u8>)> = vec![
        ("hello", Expected::Loads, hello_bytes.clone()),
        ("cimports", Expected::Loads, cimports_bytes.clone()),
        (
            "crc-flipped",
            Expected::Refused(Errno::EINVAL),
            flip_crc(hello, &hello_bytes, "_printk")?,
        ),
        (
            "vermagic-flags",
            Expected::Refused(Errno::ENOEXEC),
            replace(&hello_bytes, b" SMP ", b" smp ")?,
        ),
        // same_magic() skips the release when the module has CRCs.
        (
            "vermagic-release",
            Expected::Loads,
            replace(
                &hello_bytes,
                release_digit.as_bytes(),
                other_digit.as_bytes(),
            )?,
        ),
        (
            "unresolved",
            Expected::Refused(Errno::ENOENT),
            replace(&hello_bytes, b"\0_printk\0", b"\0_printX\0")?,
        ),
        (
            "gotpcrel",
            Expected::Refused(Errno::ENOEXEC),
            gotpcrel(&hello_bytes)?,
        ),
        (
            "gpl-only-non-gpl",
            Expected::Refused(Errno::ENOENT),
            replace(&cimports_bytes, b"license=GPL\0", b"license=MIT\0")?,
        ),
        (
            "namespace-not-imported",
            Expected::Refused(Errno::EINVAL),
            replace(&cimports_bytes, b"import_ns=", b"import_nX=")?,
        ),
    ];
    for (other, ko) in others {
        let name: &str = other.release.as_str();
        copies.push((name, Expected::from_other(tree, other), read(ko)?));
    }

    let kernel = Kernel::load(tree)?;
    let mut guest = Guest::new(&vmlinuz);
    let mut cases = Vec::new();
    for (index, (name, expected, bytes)) in copies.into_iter().enumerate() {
        let ko = work.join(format!("{index}-{name}.ko"));
        std::fs::write(&ko, &bytes).with_context(|| format!("writing {ko}"))?;
        let report = check::check(&ModuleInfo::parse(&ko, &bytes)?, &kernel);
        let refused = match report.verdict {
            Verdict::Refused(errno) => Some(errno),
            Verdict::Loads
            | Verdict::LoadsWithTaint(_)
            | Verdict::Undetermined(_)
            | Verdict::WouldCrash(_) => None,
        };
        ensure!(
            expected.allows(refused),
            "{index}-{name}: the copy should be {expected:?}, check says {:?}:\n{report}",
            report.verdict
        );
        let kernel_says = report
            .findings
            .iter()
            .find(|f| f.errno.is_some())
            .map(|f| f.kernel_says.clone());
        guest.file(&ko);
        cases.push(Case {
            name: format!("{index}-{name}"),
            ko,
            verdict: report.verdict,
            kernel_says,
        });
    }

    // Each case: insmod, its kernel log, unload whatever loaded.
    let script: String = cases
        .iter()
        .map(|case| {
            let file = case.ko.file_name().unwrap_or_default();
            format!(
                "section {0} insmod /modules/{file}\nsection {0}-log dmesg -c\nrmmod hello 2>/dev/null; rmmod cimports 2>/dev/null\n",
                case.name
            )
        })
        .collect();
    let log = guest.run(&script)?;

    let mut disagreements = Vec::new();
    for case in &cases {
        let returned = log.expect_section(&case.name)?.insmod();
        let kernel_log = log.expect_section(&format!("{}-log", case.name))?.output;
        let expected = match case.verdict {
            Verdict::Refused(errno) => Some(errno),
            Verdict::Loads | Verdict::LoadsWithTaint(_) => None,
            Verdict::Undetermined(ref why) | Verdict::WouldCrash(ref why) => {
                bail!("{}: no errno to compare: {why}", case.name)
            }
        };
        let said = case
            .kernel_says
            .as_deref()
            .is_none_or(|says| kernel_log.contains(says));
        if returned != Ok(expected) || !said {
            disagreements.push(format!(
                "{}: check says {:?} (`{}`), the kernel returned {returned:?}:\n{kernel_log}",
                case.name,
                case.verdict,
                case.kernel_says.as_deref().unwrap_or("")
            ));
        }
    }
    if !disagreements.is_empty() {
        bail!(
            "check and {} disagree:\n{}",
            tree.release,
            disagreements.join("\n")
        );
    }
    eprintln!("    {} cases agree on {}", cases.len(), tree.release);
    Ok(())
}

/// What a copy must do before the kernel is asked.
#[derive(Clone, Copy, Debug)]
enum Expected {
    Loads,
    Refused(Errno),
    /// A sibling flavour's module: the kernel alone knows whether every
    /// CRC it imports matches.
    KernelDecides,
}

impl Expected {
    /// A module built for `other`: refused when it differs from `tree` in
    /// version or machine. Flavours of one version and machine may share
    /// every CRC a module imports (6.12's amd64 and cloud-amd64 do, and
    /// same_magic() skips the release when there are CRCs), or not (6.1's).
    fn from_other(tree: &KernelTree, other: &KernelTree) -> Expected {
        if tree.version() != other.version() || tree.arch != other.arch {
            Expected::Refused(Errno::ENOEXEC)
        } else {
            Expected::KernelDecides
        }
    }

    fn allows(self, refused: Option<Errno>) -> bool {
        match self {
            Expected::Loads => refused.is_none(),
            Expected::Refused(errno) => refused == Some(errno),
            Expected::KernelDecides => true,
        }
    }
}

/// The C fixture built with the tree's own Kbuild in `work`.
fn build_cimports(sh: &Shell, tree: &KernelTree, work: &Utf8Path) -> Result<Utf8PathBuf> {
    let dir = work.join("cimports");
    std::fs::create_dir_all(&dir)?;
    for file in ["cimports.c", "Kbuild"] {
        let source = project_root().join("xtask/fixtures/cimports").join(file);
        std::fs::copy(&source, dir.join(file)).with_context(|| format!("copying {source}"))?;
    }
    let tree_path = &tree.path;
    let make_args = tree.compiler().make_args();
    cmd!(sh, "make -s -C {tree_path} M={dir} {make_args...} modules")
        .quiet()
        .ignore_stdout()
        .run()?;
    Ok(dir.join("cimports.ko"))
}

fn read(path: &Utf8Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {path}"))
}

/// `bytes` with every `from` replaced by the same-length `to`; one at least.
pub fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Result<Vec<u8>> {
    ensure!(from.len() == to.len(), "replacement changes the length");
    let mut out = bytes.to_vec();
    let mut found = 0;
    let mut at = 0;
    while let Some(offset) = out[at..]
        .windows(from.len())
        .position(|window| window == from)
    {
        let start = at + offset;
        out[start..start + to.len()].copy_from_slice(to);
        found += 1;
        at = start + from.len();
    }
    ensure!(
        found > 0,
        "`{}` not found",
        String::from_utf8_lossy(from).escape_debug()
    );
    Ok(out)
}

/// A copy with the `__versions` CRC of `symbol` inverted.
pub fn flip_crc(ko: &Utf8Path, bytes: &[u8], symbol: &str) -> Result<Vec<u8>> {
    let info = ModuleInfo::parse(ko, bytes)?;
    let entry = info
        .versions
        .iter()
        .find(|e| e.name == symbol)
        .with_context(|| format!("{ko} has no __versions entry for {symbol}"))?;
    let at = usize::try_from(entry.file_offset)?;
    let mut out = bytes.to_vec();
    out[at..at + 4].copy_from_slice(&(entry.crc ^ 0xffff_ffff).to_le_bytes());
    Ok(out)
}

/// A copy whose first relocation in `init_module` is `R_X86_64_GOTPCREL`
/// (9), as PIC code would have.
fn gotpcrel(bytes: &[u8]) -> Result<Vec<u8>> {
    let file = object::File::parse(bytes)?;
    let rela = file
        .section_by_name(".rela.text.init_module")
        .or_else(|| file.section_by_name(".rela.text"))
        .context("no .rela.text section")?;
    let (offset, _) = rela.file_range().context(".rela.text has no file range")?;
    // Elf64_Rela: r_offset, then r_info whose low 32 bits are the type.
    let r_type = usize::try_from(offset)? + 8;
    let mut out = bytes.to_vec();
    out[r_type..r_type + 4].copy_from_slice(&9u32.to_le_bytes());
    Ok(out)
}
