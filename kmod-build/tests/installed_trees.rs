//! Against the real kernel-devel trees installed on this machine (Debian's
//! 6.1 and 6.12 in CI, installed by `.ci/run`).

use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::check::{self, Verdict};
use kmod_build::{CFlags, KernelTree, ModuleInfo, RustFlags};

/// The installed trees; none (each test then passes, saying so) on a
/// machine without any, unless `KMOD_BUILD_REQUIRE_TREES` is set.
fn trees() -> Vec<KernelTree> {
    kmod_build::test_support::installed_trees().unwrap_or_default()
}

#[test]
fn release_is_the_one_uname_reports() {
    for tree in trees() {
        // Debian links /lib/modules/<release>/build to the tree.
        let link = Utf8PathBuf::from(format!("/lib/modules/{}/build", tree.release));
        assert_eq!(
            link.canonicalize_utf8().unwrap(),
            tree.path,
            "{}",
            tree.release
        );
    }
}

#[test]
fn config_and_symvers_parse() {
    for tree in trees() {
        let config = tree.config().unwrap();
        assert!(config.is_y("CONFIG_MODULES"), "{}", tree.release);
        let symvers = tree.symvers().unwrap();
        assert!(
            // Debian's cloud kernels export about 14 000, the others 25 000+.
            symvers.len() > 10_000,
            "{}: {} exports",
            tree.release,
            symvers.len()
        );
        let printk = symvers.get("_printk").expect("_printk is exported");
        assert_ne!(
            printk.crc, 0,
            "{}: MODVERSIONS trees carry CRCs",
            tree.release
        );
    }
}

/// The computed vermagic is the one the distro's own modules carry.
#[test]
fn vermagic_matches_in_tree_modules() {
    for tree in trees() {
        let module = in_tree_module(&tree);
        let info = ModuleInfo::parse(Utf8Path::new("loop.ko"), &module).unwrap();
        assert_eq!(
            info.get("vermagic"),
            Some(check::vermagic(&tree.release, &tree.config().unwrap()).as_str()),
            "{}",
            tree.release
        );
        assert!(
            check::versions(&info, &tree.symvers().unwrap()).is_empty(),
            "{}",
            tree.release
        );
        assert!(
            check::arch::relocations(&info, &tree.config().unwrap()).is_empty(),
            "{}",
            tree.release
        );
    }
}

#[test]
fn probed_c_flags_are_the_trees_own() {
    for tree in trees() {
        let work = tempdir();
        let flags = CFlags::probe(&tree, &work).unwrap();
        assert!(
            flags.args.iter().any(|a| a == "-D__KERNEL__"),
            "{}",
            tree.release
        );
        assert!(
            flags.args.contains(&"-mcmodel=kernel".to_owned()),
            "{}",
            tree.release
        );
        for include in flags.args.iter().filter_map(|a| a.strip_prefix("-I")) {
            assert!(Utf8Path::new(include).is_absolute(), "{include}");
        }
        let ibt = tree.config().unwrap().is_y("CONFIG_X86_KERNEL_IBT");
        assert_eq!(
            flags.args.contains(&"-fcf-protection=branch".to_owned()),
            ibt,
            "{}",
            tree.release
        );
        // Second call is served from the cache, without running make.
        let cached = CFlags::probe(&tree, &work).unwrap();
        assert_eq!(cached, flags);
        assert!(!work.join("probe").exists());
        std::fs::remove_dir_all(&work).unwrap();
    }
}

#[test]
fn rust_flags_follow_each_trees_mitigations() {
    for tree in trees() {
        let config = tree.config().unwrap();
        let flags = RustFlags::for_config(&config).args;
        let has = |flag: &str| flags.iter().any(|f| f == flag);
        assert_eq!(
            has("-Zcf-protection=branch"),
            config.is_y("CONFIG_X86_KERNEL_IBT")
        );
        assert_eq!(
            has("-Zfunction-return=thunk-extern"),
            config.any_y(&["CONFIG_RETHUNK", "CONFIG_MITIGATION_RETHUNK"])
        );
    }
}

/// `check` on the distro's own, signed, in-tree loop.ko (verified by the
/// key built into the kernel image), and on unsigned copies broken one way
/// each. (That the real kernels agree is for the boot tests.)
#[test]
fn check_verdicts_on_broken_copies_of_an_in_tree_module() {
    for tree in trees() {
        let signed = in_tree_module(&tree);
        let kernel = check::Kernel::load(&tree).unwrap();
        let symvers = &kernel.symvers;
        let verdict = |bytes: &[u8]| {
            let report = check::check(
                &ModuleInfo::parse(Utf8Path::new("loop.ko"), bytes).unwrap(),
                &kernel,
            );
            (
                report.verdict.clone(),
                report
                    .findings
                    .iter()
                    .filter(|f| f.check != check::Check::Signature)
                    .map(|f| f.kernel_says.clone())
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            verdict(&signed),
            (Verdict::Loads, vec![]),
            "{}",
            tree.release
        );
        let Some(Ok(signature)) = ModuleInfo::parse(Utf8Path::new("loop.ko"), &signed)
            .unwrap()
            .signature
        else {
            panic!("loop.ko of {} is not signed", tree.release);
        };
        let module = signed[..signature.signed_len].to_vec();
        assert_eq!(
            verdict(&module),
            (Verdict::LoadsWithTaint("E".into()), vec![]),
            "{}",
            tree.release
        );

        let info = ModuleInfo::parse(Utf8Path::new("loop.ko"), &module).unwrap();
        let entry = &info.versions[0];
        let mut flipped = module.clone();
        let at = entry.file_offset as usize;
        flipped[at..at + 4].copy_from_slice(&(entry.crc ^ 1).to_le_bytes());
        let (found, says) = verdict(&flipped);
        assert_eq!(found, Verdict::Refused(kmod_build::Errno::EINVAL));
        assert_eq!(
            says,
            vec![format!(
                "loop: disagrees about version of symbol {}",
                entry.name
            )]
        );

        let (found, says) = verdict(&replace(&module, b" SMP ", b" smp "));
        assert_eq!(found, Verdict::Refused(kmod_build::Errno::ENOEXEC));
        assert!(says[0].starts_with("loop: version magic '"), "{says:?}");

        let gpl_only: Vec<&String> = info
            .undefined
            .iter()
            .filter(|s| symvers.get(s).unwrap().kind == kmod_build::ExportKind::GplOnly)
            .collect();
        assert!(!gpl_only.is_empty());
        let (found, says) = verdict(&replace(&module, b"license=GPL\0", b"license=MIT\0"));
        assert_eq!(found, Verdict::Refused(kmod_build::Errno::ENOENT));
        assert_eq!(says.len(), gpl_only.len(), "{says:?}");

        let symbol = &info.undefined[0];
        let renamed = format!("{}X", &symbol[..symbol.len() - 1]);
        let (found, says) = verdict(&replace(
            &module,
            format!("\0{symbol}\0").as_bytes(),
            format!("\0{renamed}\0").as_bytes(),
        ));
        assert_eq!(found, Verdict::Refused(kmod_build::Errno::ENOENT));
        assert_eq!(
            says,
            vec![format!("loop: Unknown symbol {renamed} (err -2)")]
        );
    }
}

#[test]
fn truncated_modules_are_refused_or_errors_naming_the_file() {
    let Some(tree) = &trees().into_iter().next() else {
        return;
    };
    let module = in_tree_module(tree);
    let dir = tempdir();
    let mut refused = 0;
    // Every cut through the ELF header and section table, and some in between.
    let cuts: Vec<usize> = (0..128)
        .chain((128..module.len()).step_by(module.len() / 64))
        .collect();
    for &len in &cuts {
        let path = dir.join(format!("loop-{len}.ko"));
        std::fs::write(&path, &module[..len]).unwrap();
        match kmod_build::check(&path, tree) {
            // The loader's own ELF checks refuse it, with its message.
            Ok(report) => {
                assert_eq!(
                    report.verdict,
                    Verdict::Refused(kmod_build::Errno::ENOEXEC),
                    "{path}: {report}"
                );
                assert!(
                    report.findings.iter().any(|f| f.check == check::Check::Elf),
                    "{path}: {report}"
                );
                refused += 1;
            }
            Err(error) => {
                let message = error.to_string();
                assert!(message.starts_with(path.as_str()), "{message}");
                assert_eq!(error.exit_code(), 4, "{message}");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, cuts.len());
}

/// `bytes` with every `from` replaced by `to` (same length); there must be one.
fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = bytes.to_vec();
    let mut count = 0;
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            count += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(count > 0, "{:?} not found", String::from_utf8_lossy(from));
    out
}

/// An uncompressed module that every x86 Debian kernel ships.
fn in_tree_module(tree: &KernelTree) -> Vec<u8> {
    let dir = format!("/lib/modules/{}/kernel/drivers/block", tree.release);
    if let Ok(bytes) = std::fs::read(format!("{dir}/loop.ko")) {
        return bytes;
    }
    let output = Command::new("xz")
        .arg("-dc")
        .arg(format!("{dir}/loop.ko.xz"))
        .output()
        .unwrap();
    assert!(output.status.success(), "xz -dc {dir}/loop.ko.xz");
    output.stdout
}

fn tempdir() -> Utf8PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "kmod-build-test-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    Utf8PathBuf::try_from(dir).unwrap()
}

#[test]
fn an_abandoned_link_stops_the_waiting_make() {
    for tree in trees() {
        let dir = tempdir();
        let pending = kmod_build::kbuild::start_link(&tree, "abandoned", &dir).unwrap();
        // Dropping it (the Rust code did not build) tells make to stop and
        // waits for it: this returns, and no module appears.
        drop(pending);
        assert!(!dir.join("abandoned.ko").exists(), "{}", tree.release);
        let part = std::fs::read_to_string(dir.join("kmod.mk")).unwrap();
        assert!(part.contains("$(error"), "{}: {part}", tree.release);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
