//! Linking through the tree's own Kbuild: `make -C <tree> M=<dir>` runs
//! modpost (vermagic, `.mod.c`, `__versions`), objtool and the final link.

use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};

use crate::error::{Error, Result};
use crate::tree::KernelTree;

/// A module Kbuild linked.
#[derive(Debug, Clone)]
pub struct Linked {
    pub ko: Utf8PathBuf,
    /// Warnings modpost and objtool printed; a clean module has none.
    pub warnings: Vec<String>,
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
    check_kbuild_path(build_dir)?;
    std::fs::create_dir_all(build_dir).map_err(|e| Error::io(build_dir, e))?;
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
            shim_sources.contains(&format!(
                "#ifdef {}{symbol}\n",
                crate::module::SHIM_USE_PREFIX
            ))
        })
        .collect();
    write_if_changed(
        &build_dir.join("Kbuild"),
        kbuild_file(name, crate_objects.len(), shims.len(), &used_helpers).as_bytes(),
    )?;
    let mut make = Command::new("make");
    make.arg("-C")
        .arg(&tree.path)
        .arg(format!("M={build_dir}"))
        .args(tree.compiler().make_args())
        .arg("modules");
    let output = run(&mut make)?;
    let ko = build_dir.join(format!("{name}.ko"));
    if !ko.is_file() {
        return Err(Error::Command {
            command: format!("make -C {} M={build_dir} modules", tree.path),
            status: format!(": {ko} was not produced"),
            output,
        });
    }
    let warnings = output
        .lines()
        .filter(|line| line.contains("WARNING:") || line.contains("warning:"))
        .map(String::from)
        .collect();
    Ok(Linked { ko, warnings })
}

/// The members of a Rust staticlib that are the crate's code, without
/// `compiler_builtins`.
fn crate_objects(staticlib: &Utf8Path) -> Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(staticlib).map_err(|e| Error::io(staticlib, e))?;
    let bad = |why: String| Error::BadModule {
        module: staticlib.to_owned(),
        reason: why,
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

/// What the Rust objects refer to but do not define, sorted: kernel
/// symbols and the shims' helpers.
fn undefined_symbols(staticlib: &Utf8Path, objects: &[Vec<u8>]) -> Result<Vec<String>> {
    use object::{Object, ObjectSymbol};
    let mut names = Vec::new();
    for data in objects {
        let file = object::File::parse(&**data).map_err(|e| Error::BadModule {
            module: staticlib.to_owned(),
            reason: format!("unreadable object: {e}"),
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

fn kbuild_file(name: &str, crate_objects: usize, shims: usize, used_helpers: &[String]) -> String {
    let shim_objects: String = (0..shims).map(|i| format!(" {name}_shim{i}.o")).collect();
    let used_helpers: String = used_helpers
        .iter()
        .map(|symbol| format!(" -D{}{symbol}", crate::module::SHIM_USE_PREFIX))
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

/// Kbuild splits `M=` on spaces and colons.
pub fn check_kbuild_path(dir: &Utf8Path) -> Result<()> {
    if dir.as_str().contains([' ', ':']) {
        return Err(Error::Prerequisite {
            what: format!("a build directory Kbuild can use ({dir} contains a space or colon)"),
            help: "move the project (or CARGO_TARGET_DIR) to a path without spaces or colons"
                .into(),
        });
    }
    Ok(())
}

/// Runs `command` with a stable locale; returns its stdout and stderr, or an
/// error holding both.
pub(crate) fn run(command: &mut Command) -> Result<String> {
    command.env("LC_ALL", "C");
    let shown = format!(
        "{} {}",
        command.get_program().to_string_lossy(),
        command
            .get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let output = command.output().map_err(|e| Error::Command {
        command: shown.clone(),
        status: String::new(),
        output: e.to_string(),
    })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(Error::Command {
            command: shown,
            status: format!(" ({})", output.status),
            output: text,
        })
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

    #[test]
    fn paths_kbuild_cannot_use_are_refused() {
        assert!(check_kbuild_path(Utf8Path::new("/tmp/has space/x")).is_err());
        assert!(check_kbuild_path(Utf8Path::new("/tmp/a:b")).is_err());
        assert!(check_kbuild_path(Utf8Path::new("/tmp/fine")).is_ok());
    }

    #[test]
    fn kbuild_file_links_the_named_archive() {
        let text = kbuild_file("hello", 1, 1, &["kmod_bug".to_owned()]);
        assert!(text.contains("ccflags-y := -DKMOD_SHIM_USE_kmod_bug\n"));
        assert!(text.contains("obj-m := hello.o\n"));
        assert!(text.contains("hello-y := hello_rust.o hello_shim0.o\n"));
        assert!(kbuild_file("hello", 1, 2, &[])
            .contains("hello-y := hello_rust.o hello_shim0.o hello_shim1.o\n"));
        assert!(text.contains(
            "$(obj)/hello_rust.o: $(obj)/hello_crate0.o FORCE\n\t$(call if_changed,link_rust)"
        ));
    }
}
