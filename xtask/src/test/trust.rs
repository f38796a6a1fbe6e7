//! `check`'s signature verdicts against the real kernel: an in-tree module
//! (signed by the key built into the image), the same with one byte
//! changed, `hello` unsigned and `hello` signed with a fresh key, each
//! loaded by a kernel booted once without and once with
//! `module.sig_enforce=1`. `check`'s verdict must be insmod's errno, and its
//! taint letters the module's (`/sys/module/<name>/taint`) and the
//! kernel's (`/proc/sys/kernel/tainted`).

use anyhow::{bail, ensure, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::check::{self, Kernel, Verdict};
use kmod_build::{Errno, KernelTree, ModuleInfo};
use xshell::{cmd, Shell};

use kmod_build::driver::qemu::Guest;
use kmod_build::driver::{sign, Human};

/// One module to load, and what check says of it.
struct Case {
    name: &'static str,
    module: String,
    ko: Utf8PathBuf,
    verdict: Verdict,
    kernel_says: Option<String>,
}

pub fn run(sh: &Shell, tree: &KernelTree, hello: &Utf8Path) -> Result<()> {
    let vmlinuz = Utf8PathBuf::from(format!("/boot/vmlinuz-{}", tree.release));
    let work = hello
        .parent()
        .context("hello.ko has a directory")?
        .join("trust");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {work}"))?;
    let keys = tempfile::tempdir().context("creating a key directory")?;
    let pair = sign::generate_key(
        &Utf8PathBuf::try_from(keys.path().to_owned())?,
        "kmod-build trust test key",
        1,
    )?;
    let in_tree = in_tree_module(sh, tree)?;
    let mut tampered = in_tree.1.clone();
    // EI_PAD: the module is otherwise intact, its signature no longer is.
    tampered[10] ^= 0xff;
    let signed = work.join("hello-signed.ko");
    sign::sign(hello, &pair, tree, &signed, &Human)?;

    let files: Vec<(&str, Utf8PathBuf)> = vec![
        ("in-tree", write(&work, "in-tree.ko", &in_tree.1)?),
        ("in-tree-tampered", write(&work, "tampered.ko", &tampered)?),
        ("hello-unsigned", hello.to_owned()),
        ("hello-fresh-key", signed),
    ];
    let mut agreed = 0;
    for enforce in [false, true] {
        let mut kernel = Kernel::load(tree)?;
        kernel.sig_enforce = enforce;
        // What the loader must do (None: load), so that a copy that breaks
        // nothing cannot agree by accident.
        let expected = |name: &str| match (name, enforce) {
            ("in-tree", _) => None,
            ("in-tree-tampered", _) | (_, true) => Some(Errno::EKEYREJECTED),
            _ => None,
        };
        let mut cases = Vec::new();
        let mut guest = Guest::new(&vmlinuz);
        if enforce {
            guest.kernel_arg("module.sig_enforce=1");
        }
        for (name, ko) in &files {
            let info = ModuleInfo::read(ko)?;
            let report = check::check(&info, &kernel);
            let refused = match report.verdict {
                Verdict::Refused(errno) => Some(errno),
                _ => None,
            };
            ensure!(
                refused == expected(name),
                "{name} (enforced: {enforce}): should be refused with {:?}, check says:\n{report}",
                expected(name)
            );
            guest.file(ko);
            cases.push(Case {
                name,
                module: info.name().to_owned(),
                ko: ko.clone(),
                kernel_says: report
                    .findings
                    .iter()
                    .find(|f| f.errno.is_some() && !f.kernel_says.starts_with("(nothing"))
                    .map(|f| f.kernel_says.clone()),
                verdict: report.verdict,
            });
        }
        let script: String = cases
            .iter()
            .map(|case| {
                format!(
                    "section {0} insmod /modules/{1}\n\
                     section {0}-taint cat /sys/module/{2}/taint\n\
                     section {0}-tainted cat /proc/sys/kernel/tainted\n\
                     section {0}-log dmesg -c\n\
                     rmmod {2} 2>/dev/null\n",
                    case.name,
                    case.ko.file_name().unwrap_or_default(),
                    case.module
                )
            })
            .collect();
        let log = guest.run(&script)?;
        let mut disagreements = Vec::new();
        for case in &cases {
            let returned = log.expect_section(case.name)?.insmod();
            let kernel_log = log.expect_section(&format!("{}-log", case.name))?.output;
            let taint = log.expect_section(&format!("{}-taint", case.name))?;
            let tainted: u64 = log
                .expect_section(&format!("{}-tainted", case.name))?
                .output
                .trim()
                .parse()
                .context("/proc/sys/kernel/tainted is not a number")?;
            let (expected, letters) = match &case.verdict {
                Verdict::Refused(errno) => (Some(*errno), None),
                Verdict::Loads => (None, Some(String::new())),
                Verdict::LoadsWithTaint(letters) => (None, Some(letters.clone())),
                Verdict::Undetermined(why) | Verdict::WouldCrash(why) => {
                    bail!("{}: no errno to compare: {why}", case.name)
                }
            };
            let mut wrong = Vec::new();
            if returned != Ok(expected) {
                wrong.push(format!(
                    "insmod gave {returned:?}, check predicted {expected:?}"
                ));
            }
            if let Some(says) = &case.kernel_says {
                if !kernel_log.contains(says) {
                    wrong.push(format!("the kernel did not say `{says}`"));
                }
            }
            if let (Ok(None), Some(letters)) = (returned, &letters) {
                if taint.output.trim() != letters {
                    wrong.push(format!(
                        "/sys/module/{}/taint is {:?}, check says {letters:?}",
                        case.module,
                        taint.output.trim()
                    ));
                }
                let bits = taint_bits(letters)?;
                if tainted & bits != bits {
                    wrong.push(format!(
                        "/proc/sys/kernel/tainted is {tainted}, without the bits of {letters:?} ({bits})"
                    ));
                }
            }
            if wrong.is_empty() {
                agreed += 1;
            } else {
                disagreements.push(format!(
                    "{} (enforced: {enforce}): {}; check: {:?}\n{kernel_log}",
                    case.name,
                    wrong.join("; "),
                    case.verdict
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
    }
    eprintln!(
        "    {agreed} signature cases agree on {} ({} unenforced and enforced)",
        tree.release, in_tree.0
    );
    Ok(())
}

/// `/proc/sys/kernel/tainted` bits of taint letters (`include/linux/panic.h`).
fn taint_bits(letters: &str) -> Result<u64> {
    letters.chars().try_fold(0, |bits, letter| {
        let bit = match letter {
            'P' => 0,
            'F' => 1,
            'O' => 12,
            'E' => 13,
            other => bail!("no taint bit known for {other:?}"),
        };
        Ok(bits | 1 << bit)
    })
}

/// `crc7` (or, without it, another in-tree module) of `tree`, uncompressed:
/// its path and bytes.
fn in_tree_module(sh: &Shell, tree: &KernelTree) -> Result<(Utf8PathBuf, Vec<u8>)> {
    let lib = tree.sysroot.join(format!(
        "lib/modules/{}/kernel/lib",
        tree.release.trim_start_matches('/')
    ));
    let path = ["crc7.ko", "crc7.ko.xz"]
        .iter()
        .map(|name| lib.join(name))
        .find(|path| path.is_file())
        .or_else(|| tree.in_tree_module())
        .with_context(|| format!("{} has no in-tree module installed", tree.release))?;
    let bytes = if path.extension() == Some("xz") {
        cmd!(sh, "xz -dc {path}").quiet().output()?.stdout
    } else {
        std::fs::read(&path).with_context(|| format!("reading {path}"))?
    };
    Ok((path, bytes))
}

fn write(dir: &Utf8Path, name: &str, bytes: &[u8]) -> Result<Utf8PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).with_context(|| format!("writing {path}"))?;
    Ok(path)
}
