//! A kernel's first build of a project starts from compiled build-script
//! dependencies when some exist: bindgen and what it needs take minutes on
//! two cores, and are the same for every kernel (cargo gives the kernel's
//! codegen flags to target crates only). Sources, first found first: the
//! cargo directory of another kernel in this project, then the copy the
//! first cold build on this machine left in the cache home (what a DKMS
//! build after a kernel update, or a new project, starts from). Cargo then
//! rebuilds whatever does differ: the runtime with its bindings, crates of
//! other codegen flags, anything of another version.

use std::sync::Mutex;

use camino::{Utf8Path, Utf8PathBuf};

use super::compile::PROFILE_NAME;
use super::lock::{try_lock_file, FileLock};
use super::report::Reporter;
use crate::error::Result;
use crate::files::{collect_leftovers, copy_dir, read_cache_entry, write_cache_entry, CacheEntry};
use crate::files::{file_stamp, PARTIAL_SUFFIX};
use crate::stable_hash::StableHash;

/// Held by a build whose cargo directory does not exist yet, so that of a
/// project's cold builds for several kernels (one `cargo kmod build`) one
/// compiles the dependencies and the others copy them.
static COLD_BUILDS: Mutex<()> = Mutex::new(());

/// Waits for the project's other cold builds in this process when
/// `target_dir` is cold; hold the guard until the compile is done.
pub(crate) fn wait_for_cold_builds(
    target_dir: &Utf8Path,
) -> Option<std::sync::MutexGuard<'static, ()>> {
    (!target_dir.exists()).then(|| COLD_BUILDS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// What [`seed`] did.
#[derive(Debug, PartialEq, Eq)]
enum Seeded {
    /// The directory was there already.
    Warm,
    /// Copied from another kernel's build or the machine's copy.
    Copied,
    /// Nothing to copy: the build compiles everything (then [`publish`]).
    Cold,
}

/// Gives `target_dir` (`<kmod dir>/<release>/cargo`) a copy of compiled
/// dependencies to start from. Copies are taken holding cargo's own locks
/// of the directory copied, so never of a build half-way through; one in
/// use is passed over. Best effort: without a copy the build starts from
/// nothing, as it would have.
fn seed(
    workspace: &Utf8Path,
    target_dir: &Utf8Path,
    codegen: &str,
    reporter: &dyn Reporter,
) -> Seeded {
    seed_from(target_dir, codegen, || machine_copy(workspace), reporter)
}

/// Where a cargo directory says what codegen its kernel crates were last
/// built with ([`compile_seeded`] writes it after each compile).
const CODEGEN_FILE: &str = "kmod-codegen";

/// [`seed`], with the machine's copy where `machine` says.
fn seed_from(
    target_dir: &Utf8Path,
    codegen: &str,
    machine: impl FnOnce() -> Option<Utf8PathBuf>,
    reporter: &dyn Reporter,
) -> Seeded {
    if target_dir.exists() {
        return Seeded::Warm;
    }
    let (Some(release_dir), Some(name)) = (target_dir.parent(), target_dir.file_name()) else {
        return Seeded::Cold;
    };
    // What a killed seeding left (no lock covers these).
    collect_leftovers(release_dir, &format!(".{name}."), false);
    // Those whose kernel crates have this codegen first (cargo rebuilds
    // only what depends on the tree then), each kind the most recently
    // built first: an old one may hold crates of an older kmod-build,
    // which cargo would all rebuild.
    let same_codegen = |dir: &Utf8Path| {
        std::fs::read_to_string(dir.join(CODEGEN_FILE)).is_ok_and(|text| text == codegen)
    };
    let mut siblings: Vec<((bool, std::time::SystemTime), Utf8PathBuf)> = release_dir
        .parent()
        .and_then(|kmod_dir| kmod_dir.read_dir_utf8().ok())
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join(name))
        .filter(|dir| dir != target_dir)
        .filter_map(|dir| Some(((same_codegen(&dir), host_built_at(&dir)?), dir)))
        .collect();
    siblings.sort_by_key(|sibling| std::cmp::Reverse(sibling.0));
    for (_, from) in siblings {
        let Some(_locks) = lock_cargo_dir(&from) else {
            continue;
        };
        if copy_into(&from, target_dir, reporter) {
            return Seeded::Copied;
        }
    }
    let Some(machine) = machine() else {
        return Seeded::Cold;
    };
    match whole(&machine) {
        Ok(()) => {}
        Err(None) => return Seeded::Cold,
        Err(Some(why)) => {
            reporter.warning(&format!(
                "ignoring the damaged copy of compiled build-script dependencies {machine} \
                 ({why}); removing it"
            ));
            let _ = std::fs::remove_dir_all(&machine);
            return Seeded::Cold;
        }
    }
    if copy_into(&machine, target_dir, reporter) {
        Seeded::Copied
    } else {
        Seeded::Cold
    }
}

/// When cargo last wrote a host crate in `cargo_dir`; `None` if it has
/// none, or no build of its release ever finished (no `*.fingerprint`
/// beside it: a build killed half-way would be copied half-built).
fn host_built_at(cargo_dir: &Utf8Path) -> Option<std::time::SystemTime> {
    let finished = cargo_dir
        .parent()?
        .read_dir_utf8()
        .ok()?
        .flatten()
        .any(|entry| entry.file_name().ends_with(".fingerprint"));
    if !finished {
        return None;
    }
    cargo_dir
        .join(PROFILE_NAME)
        .join("deps")
        .metadata()
        .and_then(|m| m.modified())
        .ok()
}

/// Runs `compile` (a cargo command on `target_dir` for kernel crates of
/// `codegen`: the target and flags, as the build gives them) after
/// [`seed`], and [`publish`]es the directory when it had to start from
/// nothing.
pub(crate) fn compile_seeded<T>(
    workspace: &Utf8Path,
    target_dir: &Utf8Path,
    codegen: &str,
    reporter: &dyn Reporter,
    compile: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let seeded = seed(workspace, target_dir, codegen, reporter);
    let compiled = compile()?;
    // Only a preference among siblings: failing to write it is harmless.
    let _ = std::fs::write(target_dir.join(CODEGEN_FILE), codegen);
    if seeded == Seeded::Cold {
        publish(workspace, target_dir);
    }
    Ok(compiled)
}

/// After a cold build's compile: leaves a copy of its host-side crates
/// (cargo's `<target dir>/kmod`) in the cache home for later cold builds,
/// unless one is there. Best effort, like [`seed`].
fn publish(workspace: &Utf8Path, target_dir: &Utf8Path) {
    let Some(machine) = machine_copy(workspace) else {
        return;
    };
    if machine.exists() {
        return;
    }
    let Some(parent) = machine.parent() else {
        return;
    };
    let Some(_locks) = lock_cargo_dir(target_dir) else {
        return;
    };
    let _ = std::fs::create_dir_all(parent);
    collect_leftovers(parent, ".", false);
    let Ok(partial) = tempfile::Builder::new()
        .prefix(".")
        .suffix(PARTIAL_SUFFIX)
        .tempdir_in(parent)
    else {
        return;
    };
    let Some(into) = Utf8Path::from_path(partial.path()) else {
        return;
    };
    let host = target_dir.join(PROFILE_NAME);
    let published = copy_dir(&host, &into.join(PROFILE_NAME), &keep)
        .and_then(|()| manifest(into))
        .and_then(|listing| write_cache_entry(&into.join(COMPLETE), &listing));
    if published.is_ok() {
        // Another build may have published first: then that copy stays.
        let _ = std::fs::rename(into, &machine);
    }
}

/// Written last into the machine's copy: the copy is whole. A cache entry
/// listing every file with its size and mtime.
const COMPLETE: &str = ".complete";

/// The machine's copy for the toolchain `workspace` selects (none if rustc
/// cannot say which).
fn machine_copy(workspace: &Utf8Path) -> Option<Utf8PathBuf> {
    let toolchain = super::run_output(
        std::process::Command::new("rustc")
            .arg("-vV")
            .current_dir(workspace),
    )
    .ok()?;
    let mut key = StableHash::new();
    key.part(&toolchain).part(env!("CARGO_PKG_VERSION"));
    Some(crate::cache_home().join("build-deps").join(key.hex16()))
}

/// Cargo's locks of `cargo_dir`, host directory first as cargo takes them;
/// `None` if it is not a cargo directory with compiled host crates or a
/// cargo holds it.
fn lock_cargo_dir(cargo_dir: &Utf8Path) -> Option<Vec<FileLock>> {
    let host = cargo_dir.join(PROFILE_NAME);
    if !host.join(".fingerprint").is_dir() {
        return None;
    }
    let mut locks = vec![try_lock_file(&host.join(".cargo-lock")).ok()??];
    for entry in cargo_dir.read_dir_utf8().ok()?.flatten() {
        let lock = entry.path().join(PROFILE_NAME).join(".cargo-lock");
        if entry.path() != host && lock.is_file() {
            locks.push(try_lock_file(&lock).ok()??);
        }
    }
    Some(locks)
}

/// Neither incremental state nor cargo's lock files are copied.
fn keep(path: &Utf8Path, _: std::fs::FileType) -> bool {
    !matches!(
        path.file_name(),
        Some("incremental" | ".cargo-lock" | COMPLETE)
    )
}

/// Copies `from` to a temporary directory beside `to`, then renames it
/// there; false if either failed (another build may have made `to`).
fn copy_into(from: &Utf8Path, to: &Utf8Path, reporter: &dyn Reporter) -> bool {
    let (Some(parent), Some(name)) = (to.parent(), to.file_name()) else {
        return false;
    };
    // A first build may not have made its release's directory yet.
    if std::fs::create_dir_all(parent).is_err() {
        return false;
    }
    let Ok(partial) = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(PARTIAL_SUFFIX)
        .tempdir_in(parent)
    else {
        return false;
    };
    let Some(into) = Utf8Path::from_path(partial.path()) else {
        return false;
    };
    reporter.status(
        "Seeding",
        &format!("{to} from {from} (compiled build-script dependencies)"),
    );
    copy_dir(from, into, &keep).is_ok() && std::fs::rename(into, to).is_ok()
}

/// Every file below `dir` but the manifest, as `<size> <mtime> <path>`.
fn manifest(dir: &Utf8Path) -> Result<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(at) = stack.pop() {
        for entry in at.read_dir_utf8().map_err(|e| crate::Error::io(&at, e))? {
            let entry = entry.map_err(|e| crate::Error::io(&at, e))?;
            let path = entry.path();
            if path.is_dir() {
                stack.push(path.to_owned());
            } else if path != dir.join(COMPLETE) {
                let relative = path.strip_prefix(dir).unwrap_or(path);
                files.push(format!("{} {relative}", file_stamp(path)));
            }
        }
    }
    files.sort();
    Ok(files.join("\n"))
}

/// `Ok` if the machine's copy at `dir` is as published; `Err(None)`: there
/// is none; `Err(Some(why))`: damaged.
fn whole(dir: &Utf8Path) -> std::result::Result<(), Option<String>> {
    let complete = dir.join(COMPLETE);
    let listed = match read_cache_entry(&complete) {
        CacheEntry::Valid(text) => text,
        CacheEntry::Missing if !dir.exists() => return Err(None),
        CacheEntry::Missing => return Err(Some(format!("{complete} is missing"))),
        CacheEntry::Damaged(why) => return Err(Some(format!("{complete}: {why}"))),
    };
    match manifest(dir) {
        Ok(found) if found == listed => Ok(()),
        Ok(_) => Err(Some("a file changed since it was copied".into())),
        Err(error) => Err(Some(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::report::Event;

    /// The statuses a seeding said.
    #[derive(Default)]
    struct Said(Mutex<Vec<String>>);

    impl Reporter for Said {
        fn report(&self, event: Event<'_>) {
            let line = match event {
                Event::Status { verb, message } => format!("{verb} {message}"),
                Event::Warning { message } => format!("warning {message}"),
                _ => return,
            };
            self.0.lock().unwrap().push(line);
        }
    }

    /// A cargo directory with one host crate, its mtime `age` seconds ago,
    /// beside a finished build's fingerprint.
    fn built(cargo_dir: &Utf8Path, crate_name: &str, age: u64) {
        std::fs::create_dir_all(cargo_dir).unwrap();
        std::fs::write(cargo_dir.with_file_name("hello.fingerprint"), "").unwrap();
        let deps = cargo_dir.join("kmod/deps");
        std::fs::create_dir_all(cargo_dir.join("kmod/.fingerprint")).unwrap();
        std::fs::create_dir_all(&deps).unwrap();
        std::fs::write(deps.join(format!("lib{crate_name}.rlib")), crate_name).unwrap();
        std::fs::write(cargo_dir.join("kmod/.cargo-lock"), "").unwrap();
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age);
        std::fs::File::open(&deps)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    #[test]
    fn a_first_build_copies_the_newest_other_kernel_and_keeps_mtimes() {
        let dir = tempfile::tempdir().unwrap();
        let kmod = Utf8Path::from_path(dir.path()).unwrap();
        built(&kmod.join("6.1.0-1-amd64/cargo"), "old", 3600);
        built(&kmod.join("6.1.0-2-amd64/cargo"), "new", 60);
        // Newer still, but no build of it finished.
        built(&kmod.join("6.1.0-4-amd64/cargo"), "killed", 1);
        std::fs::remove_file(kmod.join("6.1.0-4-amd64/hello.fingerprint")).unwrap();
        // Its release's directory not made yet, as for a first build.
        let target = kmod.join("6.1.0-3-amd64/cargo");
        let said = Said::default();
        assert_eq!(seed_from(&target, "", || None, &said), Seeded::Copied);
        let copied = target.join("kmod/deps/libnew.rlib");
        assert!(copied.is_file(), "{:?}", said.0.lock().unwrap());
        assert!(!target.join("kmod/deps/libold.rlib").exists());
        assert!(!target.join("kmod/deps/libkilled.rlib").exists());
        let original = kmod.join("6.1.0-2-amd64/cargo/kmod/deps/libnew.rlib");
        assert_eq!(file_stamp(&copied), file_stamp(&original));
        assert!(!target.join("kmod/.cargo-lock").exists());
        assert!(said.0.lock().unwrap()[0].starts_with("Seeding"));
        // There now: left as it is.
        assert_eq!(seed_from(&target, "", || None, &said), Seeded::Warm);
    }

    #[test]
    fn a_kernel_of_the_same_codegen_is_copied_before_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let kmod = Utf8Path::from_path(dir.path()).unwrap();
        built(&kmod.join("6.1.0-1-amd64/cargo"), "same", 3600);
        std::fs::write(
            kmod.join("6.1.0-1-amd64/cargo").join(CODEGEN_FILE),
            "x86 flags",
        )
        .unwrap();
        built(&kmod.join("6.12.1-amd64/cargo"), "other", 60);
        std::fs::write(
            kmod.join("6.12.1-amd64/cargo").join(CODEGEN_FILE),
            "ibt flags",
        )
        .unwrap();
        let target = kmod.join("6.1.0-2-amd64/cargo");
        let said = Said::default();
        assert_eq!(
            seed_from(&target, "x86 flags", || None, &said),
            Seeded::Copied
        );
        assert!(target.join("kmod/deps/libsame.rlib").is_file());
        assert!(!target.join("kmod/deps/libother.rlib").exists());
    }

    #[test]
    fn a_directory_a_cargo_holds_is_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let kmod = Utf8Path::from_path(dir.path()).unwrap();
        let busy = kmod.join("6.1.0-1-amd64/cargo");
        built(&busy, "busy", 60);
        let _cargo = try_lock_file(&busy.join("kmod/.cargo-lock"))
            .unwrap()
            .unwrap();
        let target = kmod.join("6.1.0-2-amd64/cargo");
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        assert_eq!(
            seed_from(&target, "", || None, &Said::default()),
            Seeded::Cold
        );
        assert!(!target.join("kmod/deps/libbusy.rlib").exists());
    }

    #[test]
    fn without_another_kernel_the_machine_copy_is_used_unless_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        let machine = root.join("cache/build-deps/0123");
        built(&machine, "bindgen", 60);
        write_cache_entry(&machine.join(COMPLETE), &manifest(&machine).unwrap()).unwrap();
        let target = root.join("project/target/kmod/6.1.0-1-amd64/cargo");
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let said = Said::default();
        assert_eq!(
            seed_from(&target, "", || Some(machine.clone()), &said),
            Seeded::Copied
        );
        assert!(target.join("kmod/deps/libbindgen.rlib").is_file());
        assert!(!target.join(COMPLETE).exists());

        std::fs::write(machine.join("kmod/deps/libbindgen.rlib"), "garbled").unwrap();
        let other = root.join("project/target/kmod/6.1.0-2-amd64/cargo");
        std::fs::remove_dir_all(&target).unwrap();
        let said = Said::default();
        assert_eq!(
            seed_from(&other, "", || Some(machine.clone()), &said),
            Seeded::Cold
        );
        let warned = said.0.lock().unwrap().join("\n");
        assert!(
            warned.contains("warning ignoring the damaged copy"),
            "{warned}"
        );
        assert!(!machine.exists(), "the damaged copy was kept");
        assert!(!other.exists());
    }

    #[test]
    fn a_changed_file_makes_the_copy_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        assert_eq!(whole(dir), Err(Some(format!("{dir}/.complete is missing"))));
        std::fs::create_dir_all(dir.join("kmod/deps")).unwrap();
        let rlib = dir.join("kmod/deps/libbindgen-0123.rlib");
        std::fs::write(&rlib, "an rlib").unwrap();
        std::fs::write(dir.join("kmod/deps/bindgen-0123.d"), "dep info").unwrap();
        write_cache_entry(&dir.join(COMPLETE), &manifest(dir).unwrap()).unwrap();
        assert_eq!(whole(dir), Ok(()));

        std::fs::write(&rlib, "an rl").unwrap();
        assert!(matches!(whole(dir), Err(Some(why)) if why.contains("changed")));
        std::fs::remove_file(&rlib).unwrap();
        assert!(matches!(whole(dir), Err(Some(_))));
        std::fs::write(dir.join(COMPLETE), "garbage").unwrap();
        assert!(matches!(whole(dir), Err(Some(why)) if why.contains(".complete")));
        assert_eq!(whole(&dir.join("none")), Err(None));
    }
}
