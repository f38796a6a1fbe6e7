//! Linking through the tree's own Kbuild: `make -C <tree> M=<dir>` runs
//! modpost (vermagic, `.mod.c`, `__versions`), objtool and the final link.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use camino::{Utf8Path, Utf8PathBuf};

use crate::error::{Error, Result};
use crate::files::{collect_leftovers, write_atomically};
use crate::make::{check_kbuild_path, command_output, shown};
use crate::process::Supervised;
use crate::shim::SHIM_USE_PREFIX;
use crate::tree::KernelTree;

/// A module Kbuild linked.
#[derive(Debug, Clone)]
pub struct Linked {
    pub ko: Utf8PathBuf,
    /// Warnings modpost and objtool printed; a clean module has none.
    pub warnings: Vec<String>,
    /// The `.cmd` file of the first shim's object, if there are shims:
    /// the tree's own compiler command for an ordinary module object.
    pub shim_command: Option<Utf8PathBuf>,
}

/// Links the Rust staticlib `staticlib` (which defines `init_module` and
/// `cleanup_module`) and the C `shims` (see [`crate::SHIM_FILE`]) into
/// `<build_dir>/<name>.ko` with the tree's Kbuild.
///
/// Only the crate's own objects (with `lto = "fat"`, one) are linked: not
/// `compiler_builtins`, whose hand-written assembly (`__rust_probestack`)
/// has neither return thunks nor ENDBR. What the Rust code still needs from
/// it, `memcpy`, `memset` and friends, the kernel exports; anything else
/// stays undefined and modpost fails the build. Every Rust global but the
/// entry points is made local, so nothing the Rust code defines can clash
/// with the C objects. The shims are ordinary module objects: Kbuild
/// compiles them with the module's flags and links them with the Rust one.
pub fn link(
    tree: &KernelTree,
    name: &str,
    staticlib: &Utf8Path,
    shims: &[Utf8PathBuf],
    build_dir: &Utf8Path,
) -> Result<Linked> {
    start_link(tree, name, build_dir)?.finish(staticlib, shims)
}

/// [`link`] in two steps, so that Kbuild's own setup overlaps the Rust
/// compile: for a small module, `make` spends most of its time reading the
/// tree's Makefiles and probing the compiler (0.7 s of 1.3 s on 6.1), none
/// of which needs the Rust code. [`start_link`] starts `make` with a Kbuild
/// file that waits for the module's part (`kmod.mk`), which
/// [`PendingLink::finish`] writes once the staticlib exists. Dropping the
/// pending link instead makes `make` stop and waits for it.
pub fn start_link(tree: &KernelTree, name: &str, build_dir: &Utf8Path) -> Result<PendingLink> {
    check_kbuild_path(build_dir)?;
    std::fs::create_dir_all(build_dir).map_err(|e| Error::io(build_dir, e))?;
    let module_part = build_dir.join(MODULE_PART);
    remove_if_exists(&module_part)?;
    remove_if_exists(&build_dir.join(WAITING_MARKER))?;
    // Whoever links in `build_dir` owns it: a killed link's parts.
    collect_leftovers(build_dir, ".", true);
    write_if_changed(
        &build_dir.join("Kbuild"),
        waiting_kbuild_file(&module_part, std::process::id()).as_bytes(),
    )?;
    let mut make = Command::new("make");
    // The Rust object and the shims are independent until the module link;
    // a supervised make takes its jobs from the driver's budget instead.
    if !crate::process::has_jobserver() {
        let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
        make.arg(format!("-j{jobs}"));
    }
    make.arg("-C")
        .arg(&tree.path)
        .arg(format!("M={build_dir}"))
        .args(tree.compiler().make_args())
        .arg("modules")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = shown(&make);
    let child = crate::process::spawn(&mut make, "make")?;
    Ok(PendingLink {
        make: Some(child),
        shown,
        name: name.to_owned(),
        build_dir: build_dir.to_owned(),
        released: Arc::default(),
    })
}

/// The Kbuild part [`PendingLink::finish`] writes, which the Kbuild file
/// waits for.
const MODULE_PART: &str = "kmod.mk";

/// A `make` started by [`start_link`], waiting for the Rust code.
#[derive(Debug)]
pub struct PendingLink {
    /// `None` once waited for.
    make: Option<Supervised>,
    shown: String,
    name: String,
    build_dir: Utf8PathBuf,
    /// Set once `make` was released (and so no longer needs a job slot
    /// for its setup).
    released: Arc<AtomicBool>,
}

impl PendingLink {
    /// Holds `slot` (of the driver's job budget) until `make` has finished
    /// its setup and waits for the Rust objects, or ends.
    pub fn release_when_waiting(&self, slot: crate::process::JobSlot) {
        let marker = self.build_dir.join(WAITING_MARKER);
        let released = Arc::clone(&self.released);
        std::thread::spawn(move || {
            while !marker.exists() && !released.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            drop(slot);
        });
    }

    /// Puts the crate's objects and `shims` where the Kbuild file expects
    /// them, releases `make` and waits for the `.ko`.
    pub fn finish(mut self, staticlib: &Utf8Path, shims: &[Utf8PathBuf]) -> Result<Linked> {
        let (name, build_dir) = (&self.name, &self.build_dir);
        let crate_objects = crate_objects(staticlib)?;
        for (index, object) in crate_objects.iter().enumerate() {
            write_if_changed(&build_dir.join(format!("{name}_crate{index}.o")), object)?;
        }
        let mut shim_sources = String::new();
        for (index, shim) in shims.iter().enumerate() {
            copy_if_changed(shim, &build_dir.join(format!("{name}_shim{index}.c")))?;
            shim_sources += &std::fs::read_to_string(shim).map_err(|e| Error::io(shim, e))?;
        }
        let used_helpers: Vec<String> = undefined_symbols(staticlib, &crate_objects)?
            .into_iter()
            .filter(|symbol| {
                shim_sources.contains(&format!("#ifdef {}{symbol}\n", SHIM_USE_PREFIX))
            })
            .collect();
        let part = module_kbuild(name, crate_objects.len(), shims.len(), &used_helpers);
        let ko = build_dir.join(format!("{name}.ko"));
        let shim_command =
            (!shims.is_empty()).then(|| build_dir.join(format!(".{name}_shim0.o.cmd")));
        let output = self.release(&part)?;
        if !ko.is_file() {
            return Err(Error::Command {
                command: self.shown.clone(),
                status: format!(": {ko} was not produced"),
                output,
            });
        }
        let warnings = output
            .lines()
            .filter(|line| line.contains("WARNING:") || line.contains("warning:"))
            .map(String::from)
            .collect();
        Ok(Linked {
            ko,
            warnings,
            shim_command,
        })
    }

    /// Writes the module's Kbuild part whole (the waiting `make` reads it as
    /// soon as it exists) and waits for `make`; its output, or an error
    /// holding it.
    fn release(&mut self, part: &str) -> Result<String> {
        self.released.store(true, Ordering::SeqCst);
        write_atomically(&self.build_dir.join(MODULE_PART), part)?;
        let Some(make) = self.make.take() else {
            return Ok(String::new());
        };
        let output = make.wait_with_output()?;
        command_output(&self.shown, output)
    }
}

impl Drop for PendingLink {
    /// The Rust code did not build: stop `make` at the Kbuild file rather
    /// than leave it waiting (or kill it halfway through writing files).
    fn drop(&mut self) {
        if self.make.is_some() {
            let _ = self.release("$(error kmod-build: the Rust code did not build)\n");
        }
    }
}

/// Made by the waiting Kbuild file when `make`'s setup is done.
const WAITING_MARKER: &str = "kmod.waiting";

/// Waits (a shell loop: 10 ms polls for a second, then 100 ms ones) until
/// `module_part` exists or process `pid` (the driver) is gone, then
/// includes it; first it makes [`WAITING_MARKER`]. Read twice, by
/// Makefile.build and Makefile.modpost; the second time it exists.
fn waiting_kbuild_file(module_part: &Utf8Path, pid: u32) -> String {
    let marker = module_part.with_file_name(WAITING_MARKER);
    format!(
        "# Generated by kmod-build: make starts while cargo compiles the Rust code;\n\
         # the module's part follows in {MODULE_PART}.\n\
         $(shell : > {marker}; n=0; while [ ! -e {module_part} ] && kill -0 {pid} 2>/dev/null; do \
         if [ $$n -lt 100 ]; then sleep 0.01; else sleep 0.1; fi; n=$$((n+1)); done)\n\
         include {module_part}\n"
    )
}

/// The members of a Rust staticlib that are the crate's code, without
/// `compiler_builtins`.
fn crate_objects(staticlib: &Utf8Path) -> Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(staticlib).map_err(|e| Error::io(staticlib, e))?;
    let bad = |why: String| Error::BadBuildOutput {
        path: staticlib.to_owned(),
        why,
    };
    let archive = object::read::archive::ArchiveFile::parse(&*bytes)
        .map_err(|e| bad(format!("not an archive: {e}")))?;
    let mut objects = Vec::new();
    for member in archive.members() {
        let member = member.map_err(|e| bad(format!("unreadable member: {e}")))?;
        let member_name = String::from_utf8_lossy(member.name());
        if member_name.ends_with(".o") && !member_name.starts_with("compiler_builtins-") {
            let data = member
                .data(&*bytes)
                .map_err(|e| bad(format!("member {member_name}: {e}")))?;
            objects.push(data.to_vec());
        }
    }
    if objects.is_empty() {
        return Err(bad("no object of the crate in the archive".into()));
    }
    Ok(objects)
}

/// Whether the crate's own objects in `staticlib` define `symbol`.
pub(crate) fn defines(staticlib: &Utf8Path, symbol: &str) -> Result<bool> {
    use object::{Object, ObjectSymbol};
    for data in crate_objects(staticlib)? {
        let file = object::File::parse(&*data).map_err(|e| Error::BadBuildOutput {
            path: staticlib.to_owned(),
            why: format!("unreadable object: {e}"),
        })?;
        if file
            .symbols()
            .any(|s| s.is_definition() && s.name() == Ok(symbol))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What the Rust objects refer to but do not define, sorted: kernel
/// symbols and the shims' helpers.
fn undefined_symbols(staticlib: &Utf8Path, objects: &[Vec<u8>]) -> Result<Vec<String>> {
    use object::{Object, ObjectSymbol};
    let mut names = Vec::new();
    for data in objects {
        let file = object::File::parse(&**data).map_err(|e| Error::BadBuildOutput {
            path: staticlib.to_owned(),
            why: format!("unreadable object: {e}"),
        })?;
        for symbol in file.symbols().filter(|s| s.is_undefined()) {
            if let Ok(name) = symbol.name() {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

fn module_kbuild(
    name: &str,
    crate_objects: usize,
    shims: usize,
    used_helpers: &[String],
) -> String {
    let shim_objects: String = (0..shims).map(|i| format!(" {name}_shim{i}.o")).collect();
    let used_helpers: String = used_helpers
        .iter()
        .map(|symbol| format!(" -D{}{symbol}", SHIM_USE_PREFIX))
        .collect();
    let rust_inputs: String = (0..crate_objects)
        .map(|i| format!(" $(obj)/{name}_crate{i}.o"))
        .collect();
    format!(
        "# Generated by kmod-build: links the Rust staticlib lib{name}.a into {name}.ko.\n\
         obj-m := {name}.o\n\
         {name}-y := {name}_rust.o{shim_objects}\n\
         # The shims compile only the helpers the Rust code calls.\n\
         ccflags-y :={used_helpers}\n\
         \n\
         # A custom rule with if_changed (not *.o_shipped): modpost reads the .cmd file\n\
         # of every object of a MODVERSIONS module.\n\
         quiet_cmd_link_rust = LD [R]  $@\n      \
         cmd_link_rust = $(LD) $(KBUILD_LDFLAGS) -r -o $@ $(real-prereqs) && \\\n\t\
         $(OBJCOPY) --remove-section=.llvmbc --remove-section=.llvmcmd \\\n\t\
         --keep-global-symbol=init_module --keep-global-symbol=cleanup_module $@\n\
         \n\
         $(obj)/{name}_rust.o:{rust_inputs} FORCE\n\
         \t$(call if_changed,link_rust)\n\
         targets += {name}_rust.o\n"
    )
}

fn remove_if_exists(path: &Utf8Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// Keeps timestamps (and so Kbuild's no-op) when nothing changed.
fn copy_if_changed(from: &Utf8Path, to: &Utf8Path) -> Result<()> {
    let bytes = std::fs::read(from).map_err(|e| Error::io(from, e))?;
    if std::fs::read(to).ok().as_deref() != Some(&bytes[..]) {
        std::fs::write(to, bytes).map_err(|e| Error::io(to, e))?;
    }
    Ok(())
}

fn write_if_changed(path: &Utf8Path, contents: &[u8]) -> Result<()> {
    if std::fs::read(path).ok().as_deref() != Some(contents) {
        std::fs::write(path, contents).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A staticlib cargo left damaged is a build failure (exit 1) naming
    /// it, not a module the kernel would refuse (exit 4).
    #[test]
    fn damaged_staticlibs_are_build_failures() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        let garbage = dir.join("libgarbage.a");
        std::fs::write(&garbage, b"\x7fELF, or so it claims").unwrap();
        // A real archive whose member is not an object.
        let member = dir.join("hello-0123.o");
        std::fs::write(&member, b"not an object").unwrap();
        let archive = dir.join("libhello.a");
        let status = Command::new("ar")
            .arg("rc")
            .args([&archive, &member])
            .status()
            .unwrap();
        assert!(status.success());
        let not_archive = crate_objects(&garbage).unwrap_err();
        let objects = crate_objects(&archive).unwrap();
        let not_object = undefined_symbols(&archive, &objects).unwrap_err();
        for (error, path) in [(not_archive, &garbage), (not_object, &archive)] {
            assert!(
                matches!(&error, Error::BadBuildOutput { path: at, .. } if at == path),
                "{error:?}"
            );
            assert_eq!(error.exit_code(), 1, "{error}");
            assert!(error.to_string().starts_with(path.as_str()), "{error}");
        }
    }

    #[test]
    fn paths_kbuild_cannot_use_are_refused() {
        assert!(check_kbuild_path(Utf8Path::new("/tmp/has space/x")).is_err());
        assert!(check_kbuild_path(Utf8Path::new("/tmp/a:b")).is_err());
        assert!(check_kbuild_path(Utf8Path::new("/tmp/fine")).is_ok());
    }

    #[test]
    fn module_kbuild_links_the_named_archive() {
        let text = module_kbuild("hello", 1, 1, &["kmod_bug".to_owned()]);
        assert!(text.contains("ccflags-y := -DKMOD_SHIM_USE_kmod_bug\n"));
        assert!(text.contains("obj-m := hello.o\n"));
        assert!(text.contains("hello-y := hello_rust.o hello_shim0.o\n"));
        assert!(module_kbuild("hello", 1, 2, &[])
            .contains("hello-y := hello_rust.o hello_shim0.o hello_shim1.o\n"));
        assert!(text.contains(
            "$(obj)/hello_rust.o: $(obj)/hello_crate0.o FORCE\n\t$(call if_changed,link_rust)"
        ));
    }
}
