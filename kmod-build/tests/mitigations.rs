//! `mitigations::scan` against real code: the distribution's in-tree modules
//! (built by Kbuild, checked by objtool) must pass, and a tiny Rust object
//! built without the mitigation flags must fail where expected.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kmod_build::mitigations::{scan, Mitigations, Problem};
use kmod_build::KernelTree;

/// In-tree modules scanned per release; `KMOD_MITIGATIONS_SAMPLE=0` scans all.
const DEFAULT_SAMPLE: usize = 60;

fn trees() -> Vec<(KernelTree, Mitigations)> {
    kmod_build::test_support::installed_trees()
        .unwrap_or_default()
        .into_iter()
        .map(|tree| {
            let mitigations = Mitigations::from_config(&tree.config().unwrap());
            (tree, mitigations)
        })
        .collect()
}

fn find_modules(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            find_modules(&path, found);
        } else if path.to_string_lossy().ends_with(".ko")
            || path.to_string_lossy().ends_with(".ko.xz")
        {
            found.push(path);
        }
    }
}

/// Reads a `.ko`, or a `.ko.xz` through `xz -dc`.
fn read_module(path: &Path) -> Vec<u8> {
    if path.extension().is_some_and(|e| e == "xz") {
        let output = Command::new("xz").arg("-dc").arg(path).output().unwrap();
        assert!(output.status.success(), "xz -dc {}", path.display());
        output.stdout
    } else {
        std::fs::read(path).unwrap()
    }
}

#[test]
fn in_tree_modules_pass() {
    let sample = std::env::var("KMOD_MITIGATIONS_SAMPLE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_SAMPLE);
    let mut failures = Vec::new();
    for (tree, mitigations) in trees() {
        let mut modules = Vec::new();
        find_modules(
            &Path::new("/lib/modules").join(&tree.release).join("kernel"),
            &mut modules,
        );
        modules.sort();
        assert!(
            modules.len() > 100,
            "{}: in-tree modules installed",
            tree.release
        );
        // An even spread over the tree, so every subsystem is represented.
        let step = if sample == 0 {
            1
        } else {
            modules.len().div_ceil(sample)
        };
        let start = Instant::now();
        let mut scanned = 0;
        for path in modules.iter().step_by(step) {
            let violations = scan(&read_module(path), &mitigations);
            scanned += 1;
            if !violations.is_empty() {
                failures.push(format!("{}: {:?}", path.display(), violations));
            }
        }
        eprintln!(
            "{}: {mitigations:?}: {scanned} modules scanned in {:.1?}",
            tree.release,
            start.elapsed()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A function called through a pointer, and the caller: the smallest code
/// each mitigation changes.
const INDIRECT_CALL: &str = r#"
#![no_std]
#[inline(never)]
#[no_mangle]
pub extern "C" fn target(x: u32) -> u32 { x.wrapping_mul(3) }
#[no_mangle]
pub static TAKEN: extern "C" fn(u32) -> u32 = target;
#[no_mangle]
pub extern "C" fn call_through(f: extern "C" fn(u32) -> u32, x: u32) -> u32 {
    f(x).wrapping_add(1)
}
"#;

/// Compiles `INDIRECT_CALL` to an object with the kernel code model plus `flags`.
fn compile(name: &str, flags: &[&str]) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("kmod-build-mitigations-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("indirect.rs");
    std::fs::write(&source, INDIRECT_CALL).unwrap();
    let object = dir.join(format!("{name}.o"));
    let status = Command::new("rustc")
        .args([
            "--crate-type=lib",
            "--emit=obj",
            "-O",
            "--target",
            // The scan reads x86 code: the x86 target, whatever the trees.
            "x86_64-unknown-none",
        ])
        .args(["-Ccode-model=kernel", "-Crelocation-model=static"])
        .args(flags)
        // The prebuilt `core` lacks these flags; this object never calls it.
        .arg("-Cunsafe-allow-abi-mismatch=retpoline,retpoline-external-thunk")
        .arg("-o")
        .arg(&object)
        .arg(&source)
        .env("RUSTC_BOOTSTRAP", "1")
        .status()
        .unwrap();
    assert!(status.success(), "rustc {flags:?}");
    std::fs::read(&object).unwrap()
}

fn problems(object: &[u8]) -> Vec<(String, Problem)> {
    scan(object, &Mitigations::ALL)
        .into_iter()
        .map(|v| (v.function, v.problem))
        .collect()
}

#[test]
fn rust_code_without_the_flags_is_caught() {
    let found = problems(&compile("plain", &[]));
    for expected in [
        ("call_through".to_owned(), Problem::IndirectBranch),
        ("call_through".to_owned(), Problem::Return),
        ("target".to_owned(), Problem::Return),
        ("target".to_owned(), Problem::MissingEndbr),
    ] {
        assert!(found.contains(&expected), "{expected:?} not in {found:?}");
    }
}

#[test]
fn rust_code_with_the_kernels_flags_passes() {
    let flags = [
        "-Zretpoline-external-thunk",
        "-Zfunction-return=thunk-extern",
        "-Zcf-protection=branch",
    ];
    let found = problems(&compile("mitigated", &flags));
    assert!(found.is_empty(), "{found:?}");
}
