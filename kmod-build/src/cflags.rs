use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};

use crate::error::{read_to_string, Error, Result};
use crate::files::{
    collect_leftovers, read_cache_entry, write_cache_entry, CacheEntry, PARTIAL_SUFFIX,
};
use crate::tree::KernelTree;

/// gcc flags libclang does not accept (measured with clang 14 on Debian's
/// 6.1 and 6.12 trees, amd64 and arm64); they change code generation, not
/// what a header means.
const CLANG_REJECTS: &[&str] = &[
    // arm64: clang's aarch64 target knows no `lp64` ABI name (it is the only one).
    "-mabi=lp64",
    "-ftrivial-auto-var-init=zero",
    "-fconserve-stack",
    "-fno-allow-store-data-races",
    "-mfunction-return=thunk-extern",
    "-mindirect-branch=thunk-extern",
    "-mindirect-branch-register",
    "-mindirect-branch-cs-prefix",
    "-mpreferred-stack-boundary=3",
    "-mrecord-mcount",
];

/// The C flags the tree's Kbuild passes to the compiler for a module object,
/// read from the `.cmd` file of a probe object built with the tree's own
/// `make M=`: nothing is hard-coded, so every distro's choices come along.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CFlags {
    pub args: Vec<String>,
}

impl CFlags {
    /// Builds a one-line probe module in `work_dir` and reads its flags.
    /// The result is cached in `work_dir` until the tree's config changes.
    pub fn probe(tree: &KernelTree, work_dir: &Utf8Path) -> Result<CFlags> {
        if let Some(flags) = CFlags::cached(tree, work_dir) {
            return Ok(flags);
        }
        collect_leftovers(work_dir, ".probe.", false);
        // A directory of its own: build scripts of several packages (and
        // several builds) probe at once.
        let probe = tempfile::Builder::new()
            .prefix(".probe.")
            .suffix(PARTIAL_SUFFIX)
            .tempdir_in(work_dir)
            .map_err(|e| Error::io(work_dir, e))?;
        let probe_dir = Utf8Path::from_path(probe.path())
            .ok_or_else(|| Error::NonUtf8Path {
                path: probe.path().to_owned(),
            })?
            .to_owned();
        crate::make::check_kbuild_path(&probe_dir)?;
        write(
            &probe_dir.join("probe.c"),
            "#include <linux/module.h>\nMODULE_LICENSE(\"GPL\");\n",
        )?;
        write(&probe_dir.join("Kbuild"), "obj-m := probe.o\n")?;
        let mut make = Command::new("make");
        make.arg("-s")
            .arg("-C")
            .arg(&tree.path)
            .arg(format!("M={probe_dir}"))
            .args(tree.compiler().make_args())
            .arg("probe.o");
        crate::make::run(&mut make)?;
        let flags = CFlags::parse_cmd_file(
            &read_to_string(&probe_dir.join(".probe.o.cmd"))?,
            &tree.path,
        )
        .ok_or_else(|| Error::Parse {
            path: probe_dir.join(".probe.o.cmd"),
            line: 1,
            why: "no compiler command line (cmd_/savedcmd_) found".into(),
        })?;
        flags.store(tree, work_dir)?;
        Ok(flags)
    }

    /// The flags [`CFlags::probe`] would read for `tree`, from the `.cmd`
    /// file of a module object Kbuild compiled for it anyway (a module's C
    /// shim): the object's and module's names made the probe's, and the
    /// object's own defines (`-D<own_prefix>...`) dropped. Cached in
    /// `work_dir` as a probe's are.
    pub fn learn(
        tree: &KernelTree,
        work_dir: &Utf8Path,
        cmd_file: &Utf8Path,
        own_prefix: &str,
    ) -> Result<CFlags> {
        let object =
            CFlags::parse_cmd_file(&read_to_string(cmd_file)?, &tree.path).ok_or_else(|| {
                Error::Parse {
                    path: cmd_file.to_owned(),
                    line: 1,
                    why: "no compiler command line (cmd_/savedcmd_) found".into(),
                }
            })?;
        let flags = CFlags {
            args: object
                .args
                .into_iter()
                .filter(|arg| {
                    !arg.strip_prefix("-D")
                        .is_some_and(|define| define.starts_with(own_prefix))
                })
                .map(as_the_probes)
                .collect(),
        };
        flags.store(tree, work_dir)?;
        Ok(flags)
    }

    fn store(&self, tree: &KernelTree, work_dir: &Utf8Path) -> Result<()> {
        write_cache_entry(
            &work_dir.join(CACHE_FILE),
            &format!("{}{}\n", cache_stamp(tree), self.args.join("\n")),
        )
    }

    /// The flags [`CFlags::probe`] cached for `tree` in `work_dir`, if they
    /// were probed from the tree as it is now.
    pub fn cached(tree: &KernelTree, work_dir: &Utf8Path) -> Option<CFlags> {
        let cache = work_dir.join(CACHE_FILE);
        match read_cache_entry(&cache) {
            CacheEntry::Valid(text) => CFlags::from_cache(&cache_stamp(tree), &text),
            CacheEntry::Damaged(why) => {
                crate::build_script::warn(&format!(
                    "ignoring the damaged C flags cache entry {cache} ({why}); probing again"
                ));
                None
            }
            CacheEntry::Missing => None,
        }
    }

    /// A guess at `tree`'s flags, from those the newest probe of another
    /// tree of its architecture and series cached beside `work_dir` (caches are per
    /// release: `<cache>/<release>/`), that tree's paths made `tree`'s.
    /// Right where the two trees' Makefiles and configs agree on the flags
    /// (the flavours and ABIs of one series); only a probe says, so a
    /// caller compares it with one.
    pub fn guess(tree: &KernelTree, work_dir: &Utf8Path) -> Option<CFlags> {
        let newest = work_dir
            .parent()?
            .read_dir_utf8()
            .ok()?
            .flatten()
            .map(|entry| entry.path().join(CACHE_FILE))
            .filter(|file| file.parent() != Some(work_dir))
            .filter_map(|file| Some((file.metadata().ok()?.modified().ok()?, file)))
            .max_by_key(|(modified, _)| *modified)?;
        let CacheEntry::Valid(text) = read_cache_entry(&newest.1) else {
            return None;
        };
        let mut lines = text.lines();
        let (path, _) = lines.next()?.strip_prefix("# ")?.rsplit_once(' ')?;
        let (path, release) = path.rsplit_once(' ')?;
        let series = |release: &str| {
            let (major, minor, _) = crate::tree::version_key(release);
            (major, minor)
        };
        if series(release) != series(&tree.release) {
            return None;
        }
        let (arch, source) = lines.next()?.strip_prefix("# source ")?.split_once(' ')?;
        if arch != tree.arch {
            return None;
        }
        // The longer first: one may hold the other (openSUSE's objtree is
        // beside its source, `linux-<ver>-obj`).
        let mut renames = [(path, tree.path.as_str()), (source, tree.source.as_str())];
        renames.sort_by_key(|(old, _)| std::cmp::Reverse(old.len()));
        let args = lines
            .map(|arg| {
                renames
                    .iter()
                    .fold(arg.to_owned(), |arg, (old, new)| arg.replace(old, new))
            })
            .collect();
        Some(CFlags { args })
    }

    /// The flags a cache entry holds, if it was probed from the tree state
    /// `stamp` names and holds flags at all.
    pub fn from_cache(stamp: &str, text: &str) -> Option<CFlags> {
        let args: Vec<String> = text
            .strip_prefix(stamp)?
            .lines()
            .map(String::from)
            .collect();
        // Every Kbuild compile defines __KERNEL__: an entry without it is not one.
        args.iter()
            .any(|arg| arg == "-D__KERNEL__")
            .then_some(CFlags { args })
    }

    /// Reads the compiler command from a Kbuild `.cmd` file (`cmd_` in 6.1,
    /// `savedcmd_` in 6.12), stopping before objtool's `;`-chained tail, and
    /// resolves the tree-relative paths `make -C` made them relative to.
    pub fn parse_cmd_file(text: &str, tree: &Utf8Path) -> Option<CFlags> {
        let line = text
            .lines()
            .find(|l| l.starts_with("cmd_") || l.starts_with("savedcmd_"))?;
        let command = line.split_once(":=")?.1.split(';').next()?;
        let mut words = shlex::split(command)?.into_iter();
        words.next()?; // the compiler
        let mut args = Vec::new();
        while let Some(word) = words.next() {
            match word.as_str() {
                "-c" => {}
                // Outputs and the probe's own source are not flags.
                "-o" => {
                    words.next();
                }
                _ if word.starts_with("-Wp,") || word.ends_with(".c") => {}
                "-include" | "-isystem" => {
                    let path = words.next()?;
                    args.push(word);
                    args.push(absolute(&path, tree));
                }
                _ => match word.strip_prefix("-I") {
                    Some(path) => args.push(format!("-I{}", absolute(path, tree))),
                    None => args.push(word),
                },
            }
        }
        Some(CFlags { args })
    }

    /// The flags libclang (bindgen) needs to read the headers as the kernel's
    /// compiler does: preprocessor and target flags, without gcc-only codegen
    /// options, warnings, or the probe's module name.
    pub fn for_clang(&self, module_name: &str, clang_target: &str) -> Vec<String> {
        let mut out = vec![format!("--target={clang_target}")];
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            if arg == "-include" || arg == "-isystem" {
                out.push(arg.clone());
                out.extend(args.next().cloned());
            } else if arg.starts_with("-DKBUILD_MODNAME=")
                || arg.starts_with("-D__KBUILD_MODNAME=")
                || CLANG_REJECTS.contains(&arg.as_str())
            {
                continue;
            } else if ["-I", "-D", "-U", "-m", "-f", "-std=", "-nostdinc"]
                .iter()
                .any(|p| arg.starts_with(p))
            {
                out.push(arg.clone());
            }
        }
        out.push(format!("-DKBUILD_MODNAME=\"{module_name}\""));
        out.push(format!("-D__KBUILD_MODNAME=kmod_{module_name}"));
        out
    }
}

/// `arg` as the probe object's compile has it, where it names its object
/// or module.
fn as_the_probes(arg: String) -> String {
    const NAMES: [(&str, &str); 3] = [
        ("-DKBUILD_BASENAME=", "\"probe\""),
        ("-DKBUILD_MODNAME=", "\"probe\""),
        ("-D__KBUILD_MODNAME=", "kmod_probe"),
    ];
    match NAMES.iter().find(|(define, _)| arg.starts_with(define)) {
        Some((define, probe)) => format!("{define}{probe}"),
        None => arg,
    }
}

fn absolute(path: &str, tree: &Utf8Path) -> String {
    match path.strip_prefix("./") {
        Some(rest) => tree.join(rest).into_string(),
        None if !path.starts_with('/') => tree.join(path).into_string(),
        None => path.to_owned(),
    }
}

/// The cache entry [`CFlags::probe`] keeps in its `work_dir`.
const CACHE_FILE: &str = "cflags";

/// Identifies the tree state the cached flags were probed from, and says
/// where its source and what its architecture is ([`CFlags::guess`]).
fn cache_stamp(tree: &KernelTree) -> String {
    let modified = std::fs::metadata(tree.path.join("include/config/auto.conf"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "# {} {} {modified}\n# source {} {}\n",
        tree.path, tree.release, tree.arch, tree.source
    )
}

fn write(path: &Utf8PathBuf, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guess_is_another_trees_flags_with_this_trees_paths() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Utf8PathBuf::try_from(dir.path().to_owned()).unwrap();
        let tree = |release: &str, flavour: &str, arch: &str| {
            let version = release.trim_end_matches(flavour);
            let path = Utf8PathBuf::from(format!("/usr/src/linux-headers-{release}"));
            KernelTree {
                layout: crate::tree::Layout::detect(&path),
                source: format!("/usr/src/linux-headers-{version}common").into(),
                path,
                release: release.to_owned(),
                arch: arch.to_owned(),
                sysroot: "/".into(),
            }
        };
        let old = tree("6.1.0-56-amd64", "amd64", "x86");
        let args = |tree: &KernelTree| {
            vec![
                "-nostdinc".to_owned(),
                format!("-I{}/arch/x86/include", tree.source),
                format!("-I{}/arch/x86/include/generated", tree.path),
                "-include".to_owned(),
                format!("{}/include/linux/kconfig.h", tree.source),
                "-D__KERNEL__".to_owned(),
            ]
        };
        std::fs::create_dir_all(cache.join(&old.release)).unwrap();
        write_cache_entry(
            &cache.join(&old.release).join(CACHE_FILE),
            &format!("{}{}\n", cache_stamp(&old), args(&old).join("\n")),
        )
        .unwrap();
        let new = tree("6.1.0-57-amd64", "amd64", "x86");
        let guess = CFlags::guess(&new, &cache.join(&new.release)).unwrap();
        assert_eq!(guess.args, args(&new));
        // Nothing to guess from for another architecture or series, nor
        // from itself.
        let arm = tree("6.1.0-57-arm64", "arm64", "arm64");
        assert_eq!(CFlags::guess(&arm, &cache.join(&arm.release)), None);
        let later = tree("6.12.117+deb12-amd64", "amd64", "x86");
        assert_eq!(CFlags::guess(&later, &cache.join(&later.release)), None);
        assert_eq!(CFlags::guess(&old, &cache.join(&old.release)), None);
    }

    const CMD_6_12: &str = "savedcmd_/tmp/p/probe.o := x86_64-linux-gnu-gcc-12 -Wp,-MMD,/tmp/p/.probe.o.d -nostdinc \
        -I/src/arch/x86/include -I./arch/x86/include/generated -include /src/include/linux/kconfig.h \
        -D__KERNEL__ -mcmodel=kernel -mindirect-branch=thunk-extern -fcf-protection=branch -Wall -O2 \
        -DKBUILD_MODNAME='\"probe\"' -D__KBUILD_MODNAME=kmod_probe -c -o /tmp/p/probe.o /tmp/p/probe.c   ; \
        ./tools/objtool/objtool --hacks=jump_label --module /tmp/p/probe.o\n\nsource_/tmp/p/probe.o := /tmp/p/probe.c\n";

    #[test]
    fn parses_savedcmd_and_resolves_relative_includes() {
        let flags = CFlags::parse_cmd_file(CMD_6_12, Utf8Path::new("/tree")).unwrap();
        assert!(flags
            .args
            .contains(&"-I/tree/arch/x86/include/generated".to_owned()));
        assert!(flags
            .args
            .contains(&"-DKBUILD_MODNAME=\"probe\"".to_owned()));
        assert!(!flags
            .args
            .iter()
            .any(|a| a.contains("objtool") || a == "-c" || a.ends_with(".o")));
        let legacy = CMD_6_12.replacen("savedcmd_", "cmd_", 1);
        assert_eq!(
            CFlags::parse_cmd_file(&legacy, Utf8Path::new("/tree")),
            Some(flags)
        );
    }

    #[test]
    fn clang_flags_drop_gcc_only_options_and_rename_module() {
        let flags = CFlags::parse_cmd_file(CMD_6_12, Utf8Path::new("/tree")).unwrap();
        let clang = flags.for_clang("hello", "x86_64-linux-gnu");
        assert!(clang.contains(&"-fcf-protection=branch".to_owned()));
        assert!(clang.contains(&"-mcmodel=kernel".to_owned()));
        assert!(!clang.contains(&"-mindirect-branch=thunk-extern".to_owned()));
        assert!(!clang.iter().any(|a| a.starts_with("-W") || a == "-O2"));
        assert!(clang.contains(&"-DKBUILD_MODNAME=\"hello\"".to_owned()));
        assert!(!clang.iter().any(|a| a.contains("probe")));
        let include = clang.iter().position(|a| a == "-include").unwrap();
        assert_eq!(clang[include + 1], "/src/include/linux/kconfig.h");
    }

    #[test]
    fn a_shims_compile_tells_the_probes_flags() {
        let dir = tempfile::tempdir().unwrap();
        let work = Utf8PathBuf::try_from(dir.path().to_owned()).unwrap();
        let path = Utf8PathBuf::from("/tree");
        let tree = KernelTree {
            layout: crate::tree::Layout::detect(&path),
            source: "/src".into(),
            path,
            release: "6.12.117+deb12-amd64".into(),
            arch: "x86".into(),
            sysroot: "/".into(),
        };
        let shim = CMD_6_12
            .replace("/tmp/p/probe", "/k/hello_shim0")
            .replace(
                "-Wall -O2",
                "-Wall -O2 -DKMOD_SHIM_USE_kmod_bug -DKBUILD_BASENAME='\"hello_shim0\"'",
            )
            .replace("'\"probe\"'", "'\"hello\"'")
            .replace("kmod_probe", "kmod_hello");
        let cmd_file = work.join(".hello_shim0.o.cmd");
        std::fs::write(&cmd_file, shim).unwrap();
        let learned = CFlags::learn(&tree, &work, &cmd_file, "KMOD_SHIM_USE_").unwrap();
        let probed = CFlags::parse_cmd_file(
            &CMD_6_12.replace("-Wall -O2", "-Wall -O2 -DKBUILD_BASENAME='\"probe\"'"),
            &tree.path,
        )
        .unwrap();
        assert_eq!(learned, probed);
        // Cached as a probe's are.
        assert_eq!(CFlags::cached(&tree, &work), Some(probed));
    }

    #[test]
    fn no_command_line_is_none() {
        assert_eq!(
            CFlags::parse_cmd_file("deps_x := y\n", Utf8Path::new("/t")),
            None
        );
    }
}
