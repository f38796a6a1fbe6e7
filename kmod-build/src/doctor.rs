//! Whether a tree can build and link a module, checked before `make` runs:
//! each missing or broken piece is named with what provides it on the
//! tree's distro, instead of surfacing as a cryptic Kbuild error.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};

use crate::config::Config;
use crate::distro::{compiler_package, fix_at, install, Piece};
use crate::error::{Error, Result};
use crate::tree::KernelTree;

/// One thing that keeps a tree from building a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, tool or component at fault, as the user would look for it.
    pub subject: String,
    /// The path at fault, for files and host tools.
    pub path: Option<Utf8PathBuf>,
    pub why: String,
    /// The command or package that provides it on the tree's distro.
    pub fix: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}; fix: {}", self.subject, self.why, self.fix)
    }
}

/// Everything wrong with one tree (and with this machine, for that tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub problems: Vec<Problem>,
}

impl Diagnosis {
    pub fn is_usable(&self) -> bool {
        self.problems.is_empty()
    }

    /// `Ok` for a usable tree, else [`Error::BrokenTree`] with the first
    /// problem.
    pub fn into_result(self, tree: &KernelTree) -> Result<()> {
        let mut problems = self.problems.into_iter();
        match problems.next() {
            None => Ok(()),
            Some(first) => Err(Error::BrokenTree {
                tree: tree.path.clone(),
                problem: first.to_string(),
                more: problems.count(),
            }),
        }
    }
}

/// Checks `tree` and the machine's tools for it: required files, host
/// tools that actually run here, the kernel's compiler, libclang, Rust.
pub fn diagnose(tree: &KernelTree) -> Diagnosis {
    let mut problems = tree_problems(tree);
    problems.extend(machine_problems(tree));
    Diagnosis { problems }
}

/// The tree's own pieces: paths Kbuild can use, files, host tools.
pub fn tree_problems(tree: &KernelTree) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut dirs = vec![&tree.path];
    if tree.source != tree.path {
        dirs.push(&tree.source);
    }
    for dir in dirs {
        if dir.as_str().contains([' ', ':']) {
            problems.push(Problem {
                subject: dir.to_string(),
                path: Some(dir.clone()),
                why: "the path contains a space or colon, which Kbuild's `make -C`/`M=` cannot handle".into(),
                fix: "move the tree (or the package's files) to a path without spaces or colons".into(),
            });
        }
    }
    let objtree = |relative: &str| tree.path.join(relative);
    let srctree = |relative: &str| tree.source.join(relative);
    let mut require = |path: Utf8PathBuf, role: &str, piece: Piece| {
        if !path.exists() {
            problems.push(missing(tree, path, role, piece));
        }
    };
    let makefile = objtree("Makefile");
    let has_makefile = makefile.exists();
    require(makefile, "the tree's top Makefile", Piece::Source);
    // Without the top Makefile the source half is unknown: nothing to check there.
    if has_makefile {
        if tree.source != tree.path {
            require(srctree("Makefile"), "Kbuild's main Makefile", Piece::Source);
        }
        require(
            srctree(&format!("arch/{}/Makefile", tree.arch)),
            "the architecture's Makefile",
            Piece::Source,
        );
        for script in KBUILD_SCRIPTS {
            require(srctree(script), "Kbuild's rules", Piece::Source);
        }
    }
    require(
        objtree("include/config/auto.conf"),
        "the kernel's config as Kbuild reads it",
        Piece::Generated,
    );
    require(
        objtree("include/generated/autoconf.h"),
        "the kernel's config as C reads it",
        Piece::Generated,
    );
    require(
        objtree("include/generated/utsrelease.h"),
        "the kernel release for vermagic",
        Piece::Generated,
    );
    // Makefile.modfinal links with the first of these that exists; Debian
    // ships only the arch one (its scripts/ is shared across flavours).
    let linker_scripts = [
        objtree("scripts/module.lds"),
        objtree(&format!("arch/{}/module.lds", tree.arch)),
    ];
    if !linker_scripts.iter().any(|path| path.exists()) {
        let [generic, arch] = linker_scripts;
        let mut problem = missing(
            tree,
            arch.clone(),
            "the module linker script",
            Piece::Generated,
        );
        problem.subject = format!("{arch} (or {generic})");
        problems.push(problem);
    }
    let symvers = objtree("Module.symvers");
    if !symvers.is_file() {
        problems.push(missing(
            tree,
            symvers,
            "the kernel's exports for modpost",
            Piece::Symvers,
        ));
    } else if let Err(error) = tree.symvers() {
        problems.push(unreadable(tree, symvers, error, Piece::Symvers));
    }
    // The build reads the config with this very parser (`check::Kernel::load`).
    let auto_conf = objtree("include/config/auto.conf");
    if auto_conf.is_file() {
        if let Err(error) = tree.config() {
            problems.push(unreadable(tree, auto_conf, error, Piece::Generated));
        }
    }
    problems.extend(host_tool_problems(tree));
    problems
}

/// Kbuild's own rules for an external module build (`$(srctree)/scripts/`).
const KBUILD_SCRIPTS: &[&str] = &[
    "scripts/Kbuild.include",
    "scripts/Makefile.build",
    "scripts/Makefile.lib",
    "scripts/Makefile.modpost",
    "scripts/Makefile.modfinal",
];

fn missing(tree: &KernelTree, path: Utf8PathBuf, role: &str, piece: Piece) -> Problem {
    Problem {
        subject: path.to_string(),
        why: format!("missing from the kernel-devel tree ({role})"),
        fix: fix_at(&tree.packaged(), piece, Some(&path)),
        path: Some(path),
    }
}

/// A file of the tree that is there but that the build cannot read or
/// parse: the line at fault, as the build would stop on it.
fn unreadable(tree: &KernelTree, path: Utf8PathBuf, error: Error, piece: Piece) -> Problem {
    let (subject, why) = match error {
        Error::Parse { path, line, why } if line > 0 => (format!("{path}:{line}"), why),
        Error::Parse { path, why, .. } => (path.to_string(), why),
        other => (path.to_string(), other.to_string()),
    };
    Problem {
        subject,
        why: format!("damaged (the build stops here): {why}"),
        fix: fix_at(&tree.packaged(), piece, Some(&path)),
        path: Some(path),
    }
}

/// Host programs Kbuild runs for a module: `fixdep` on every object,
/// `modpost` for `.mod.c`, `objtool` when the config has it. `genksyms` is
/// not needed: Kbuild runs it only on objects that export symbols
/// (`__ksymtab` in 6.1, `__export_symbol_*` in 6.12, scripts/Makefile.build),
/// and a kmod-build module exports nothing.
fn host_tool_problems(tree: &KernelTree) -> Vec<Problem> {
    let config = tree.config().unwrap_or_default();
    let mut tools = vec!["scripts/basic/fixdep", "scripts/mod/modpost"];
    if config.any_y(&["CONFIG_OBJTOOL", "CONFIG_STACK_VALIDATION"]) {
        tools.push("tools/objtool/objtool");
    }
    let mut problems = Vec::new();
    for tool in tools {
        let path = tree.path.join(tool);
        if !path.exists() {
            problems.push(missing(
                tree,
                path,
                "a host program Kbuild runs",
                Piece::HostTool,
            ));
            continue;
        }
        let mut broken = vec![(path.clone(), run_problem(tree, &path))];
        if let Some(real) = debian_real_binary(&path, tree, &config) {
            let why = if real.exists() {
                run_problem(tree, &real)
            } else {
                Some(format!("missing (what the {tool} wrapper runs)"))
            };
            broken.push((real, why));
        }
        for (path, why) in broken {
            if let Some(why) = why {
                problems.push(Problem {
                    subject: path.to_string(),
                    why,
                    fix: fix_at(&tree.packaged(), Piece::HostTool, Some(&path)),
                    path: Some(path),
                });
            }
        }
    }
    problems
}

/// Debian's `modpost` and (6.12) `objtool` are wrappers that exec
/// `<tool>.real-<variant>`; the variant this kernel uses must run too.
fn debian_real_binary(tool: &Utf8Path, tree: &KernelTree, config: &Config) -> Option<Utf8PathBuf> {
    let name = tool.file_name()?;
    let prefix = format!("{name}.real-");
    let dir = tool.parent()?;
    let is_wrapper = dir
        .read_dir_utf8()
        .ok()?
        .flatten()
        .any(|entry| entry.file_name().starts_with(&prefix));
    if !is_wrapper {
        return None;
    }
    let variant = match name {
        "modpost" => format!(
            "{}-{}",
            if config.is_y("CONFIG_CPU_BIG_ENDIAN") {
                "msb"
            } else {
                "lsb"
            },
            if config.is_y("CONFIG_64BIT") {
                "64"
            } else {
                "32"
            }
        ),
        _ => tree.arch.clone(),
    };
    Some(dir.join(format!("{prefix}{variant}")))
}

/// Runs a host tool with no input to see that this machine can execute it;
/// `None` when it ran (a usage message and exit code 1 are fine).
fn run_problem(tree: &KernelTree, tool: &Utf8Path) -> Option<String> {
    const TIMEOUT: Duration = Duration::from_secs(5);
    let spawned = Command::new(tool)
        // Debian's objtool wrapper picks its binary by SRCARCH.
        .env("SRCARCH", &tree.arch)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return Some(spawn_failure(tool, &e)),
    };
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                use std::os::unix::process::ExitStatusExt;
                return match (status.code(), status.signal()) {
                    // What a shell (or Debian's wrapper) reports when exec fails.
                    (Some(code @ (126 | 127)), _) => {
                        Some(format!("cannot be executed here (exit status {code})"))
                    }
                    (_, Some(signal)) => Some(format!("crashed when run (signal {signal})")),
                    _ => None,
                };
            }
            Ok(None) if started.elapsed() < TIMEOUT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Some(format!(
                    "did not exit within {}s when run with no arguments",
                    TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Some(format!("cannot be waited for: {e}")),
        }
    }
}

/// Why `exec` refused `tool`, in the kernel's words plus what the ELF
/// header says.
fn spawn_failure(tool: &Utf8Path, error: &std::io::Error) -> String {
    const ENOEXEC: i32 = 8;
    const ENOENT: i32 = 2;
    const EACCES: i32 = 13;
    let elf = elf_machine(tool);
    match error.raw_os_error() {
        Some(ENOEXEC) => match elf {
            Some(machine) => format!(
                "Exec format error: it is built for {machine}, this machine is {}",
                std::env::consts::ARCH
            ),
            None => "Exec format error: not an executable this machine can run".to_owned(),
        },
        // The file exists, so this is its ELF interpreter.
        Some(ENOENT) => {
            "cannot be executed: its ELF interpreter (dynamic loader) is missing".to_owned()
        }
        Some(EACCES) => "cannot be executed: permission denied (not executable?)".to_owned(),
        _ => format!("cannot be executed: {error}"),
    }
}

/// The `e_machine` of an ELF file, named, if `path` is one.
fn elf_machine(path: &Utf8Path) -> Option<String> {
    use object::read::elf::FileHeader;
    let data = std::fs::read(path).ok()?;
    let machine = match object::FileKind::parse(&*data).ok()? {
        object::FileKind::Elf64 => {
            let header = object::elf::FileHeader64::<object::Endianness>::parse(&*data).ok()?;
            header.e_machine(header.endian().ok()?)
        }
        object::FileKind::Elf32 => {
            let header = object::elf::FileHeader32::<object::Endianness>::parse(&*data).ok()?;
            header.e_machine(header.endian().ok()?)
        }
        _ => return None,
    };
    Some(
        match machine {
            object::elf::EM_386 => "i386",
            object::elf::EM_MIPS => "mips",
            object::elf::EM_PPC => "powerpc",
            object::elf::EM_PPC64 => "powerpc64",
            object::elf::EM_S390 => "s390",
            object::elf::EM_ARM => "arm",
            object::elf::EM_X86_64 => "x86_64",
            object::elf::EM_AARCH64 => "aarch64",
            object::elf::EM_RISCV => "riscv",
            object::elf::EM_LOONGARCH => "loongarch",
            other => return Some(format!("ELF machine {other:#x}")),
        }
        .to_owned(),
    )
}

/// What this machine needs for the tree: its compiler, make, libclang for
/// bindgen, the Rust toolchain's `rust-src` for `-Zbuild-std`.
pub fn machine_problems(tree: &KernelTree) -> Vec<Problem> {
    let mut problems = Vec::new();
    let compiler = tree.compiler();
    if find_program(&compiler.command).is_none() {
        let native = crate::tree::arch_targets(crate::host_arch()).map(|(_, _, triplet)| triplet);
        let package = compiler_package(&compiler.command, compiler.is_clang, native);
        problems.push(Problem {
            subject: compiler.command.clone(),
            path: None,
            why: format!(
                "not on PATH: it is the compiler the kernel was built with ({})",
                compiler
                    .version_text
                    .as_deref()
                    .unwrap_or("CONFIG_CC_VERSION_TEXT unknown")
            ),
            fix: install(tree.layout, &package),
        });
    }
    if find_program("make").is_none() {
        problems.push(Problem {
            subject: "make".into(),
            path: None,
            why: "not on PATH".into(),
            fix: install(tree.layout, "make"),
        });
    }
    if let Err(Error::Prerequisite { what, help }) = crate::check_libclang() {
        problems.push(Problem {
            subject: what,
            path: None,
            why: "cannot be loaded".into(),
            fix: help,
        });
    }
    problems.extend(rust_problem());
    problems
}

/// `rustc` and its `rust-src` component (`-Zbuild-std` rebuilds `core`).
fn rust_problem() -> Option<Problem> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .stdin(Stdio::null())
        .output();
    let sysroot = match sysroot {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        }
        _ => {
            return Some(Problem {
                subject: "rustc".into(),
                path: None,
                why: "not on PATH or does not run".into(),
                fix: "install rustup (https://rustup.rs); rust-toolchain.toml pins the rest".into(),
            })
        }
    };
    let core = Utf8PathBuf::from(sysroot).join("lib/rustlib/src/rust/library/core");
    (!core.is_dir()).then(|| Problem {
        subject: "rust-src".into(),
        path: Some(core),
        why: "missing: -Zbuild-std rebuilds core from it".into(),
        fix: "rustup component add rust-src".into(),
    })
}

/// `program` on PATH (or as given, when it is a path).
fn find_program(program: &str) -> Option<Utf8PathBuf> {
    if program.contains('/') {
        return Some(Utf8PathBuf::from(program)).filter(|p| p.is_file());
    }
    let path = std::env::var("PATH").ok()?;
    path.split(':')
        .map(|dir| Utf8Path::new(dir).join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_machine_of_a_non_elf_is_none() {
        let path = Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        assert_eq!(elf_machine(&path), None);
    }
}
