//! Discovery on fixture roots that mirror where each distro's kernel-devel
//! package puts its files (layouts that cannot be installed on the Debian
//! CI machine), and on the real Debian trees installed here.
//!
//! The fixtures hold only the files discovery and the doctor look at, at the
//! paths the packages use; host tools are copies of `/bin/true`, which runs
//! here like a working `fixdep` would.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::{doctor, KernelTree, Layout};

/// A fixture root, removed when dropped.
struct Root(Utf8PathBuf);

impl Root {
    fn new(name: &str) -> Root {
        let dir =
            std::env::temp_dir().join(format!("kmod-discovery-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Root(Utf8PathBuf::try_from(dir).unwrap())
    }

    /// `path` (absolute, as the distro names it) inside the fixture root.
    fn at(&self, path: &str) -> Utf8PathBuf {
        self.0.join(path.trim_start_matches('/'))
    }

    fn file(&self, path: &str, contents: &str) {
        let path = self.at(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    fn program(&self, path: &str) {
        let path = self.at(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::copy("/bin/true", &path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A symlink at `path` with the literal `target` (absolute targets name
    /// the distro's paths, as in the real packages).
    fn link(&self, path: &str, target: &str) {
        let path = self.at(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        symlink(target, path).unwrap();
    }

    /// Compresses `path` with `tool` (`gzip`, `xz`) into `path.<ext>`.
    fn compress(&self, tool: &str, path: &str) {
        let status = Command::new(tool)
            .arg("-k")
            .arg(self.at(path))
            .status()
            .unwrap();
        assert!(status.success(), "{tool} {path}");
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const SYMVERS: &str = "0x122c3a7e\t_printk\tvmlinux\tEXPORT_SYMBOL\t\n";

/// Kbuild's sources a headers package carries: the top Makefile, the arch
/// Makefile, `scripts/` rules.
fn sources(root: &Root, dir: &str) {
    root.file(
        &format!("{dir}/Makefile"),
        "# Kbuild's top Makefile\nVERSION = 6\n",
    );
    root.file(&format!("{dir}/arch/x86/Makefile"), "# arch Makefile\n");
    for script in [
        "Kbuild.include",
        "Makefile.build",
        "Makefile.lib",
        "Makefile.modpost",
        "Makefile.modfinal",
    ] {
        root.file(&format!("{dir}/scripts/{script}"), "# Kbuild rules\n");
    }
    root.file(&format!("{dir}/include/linux/module.h"), "/* header */\n");
}

/// What `make modules_prepare` generates, for `release` built by `compiler`.
fn generated(root: &Root, dir: &str, release: &str, compiler: &str, clang: bool) {
    let config =
        format!(
        "CONFIG_X86=y\nCONFIG_X86_64=y\nCONFIG_64BIT=y\nCONFIG_MODULES=y\nCONFIG_MODVERSIONS=y\n\
         CONFIG_OBJTOOL=y\nCONFIG_CC_VERSION_TEXT=\"{compiler}\"\n{}",
        if clang { "CONFIG_CC_IS_CLANG=y\n" } else { "CONFIG_CC_IS_GCC=y\n" }
    );
    root.file(&format!("{dir}/.config"), &config);
    root.file(&format!("{dir}/include/config/auto.conf"), &config);
    root.file(
        &format!("{dir}/include/config/kernel.release"),
        &format!("{release}\n"),
    );
    root.file(
        &format!("{dir}/include/generated/autoconf.h"),
        "#define CONFIG_X86 1\n",
    );
    root.file(
        &format!("{dir}/include/generated/utsrelease.h"),
        &format!("#define UTS_RELEASE \"{release}\"\n"),
    );
}

/// Host programs and the module linker script a package builds.
fn host_tools(root: &Root, dir: &str) {
    root.program(&format!("{dir}/scripts/basic/fixdep"));
    root.program(&format!("{dir}/scripts/mod/modpost"));
    root.program(&format!("{dir}/tools/objtool/objtool"));
    root.file(&format!("{dir}/scripts/module.lds"), "SECTIONS {}\n");
}

/// Fedora 41 `kernel-devel`: the whole tree in `/usr/src/kernels/<rel>`
/// (kernel.spec's devel section copies Makefiles, `.config`,
/// `Module.symvers`, `System.map`, `scripts/`, `include/`, `arch/x86/include`,
/// objtool); `kernel-core` links `/lib/modules/<rel>/build` to it and, as on
/// RHEL 9, keeps `symvers.xz` in `/lib/modules/<rel>/`.
fn fedora(root: &Root) {
    let release = "6.11.4-301.fc41.x86_64";
    let dir = format!("/usr/src/kernels/{release}");
    sources(root, &dir);
    generated(
        root,
        &dir,
        release,
        "gcc (GCC) 14.2.1 20240912 (Red Hat 14.2.1-3)",
        false,
    );
    host_tools(root, &dir);
    root.file(&format!("{dir}/Module.symvers"), SYMVERS);
    root.file(&format!("{dir}/System.map"), "");
    root.link(&format!("/lib/modules/{release}/build"), &dir);
    root.file(&format!("/lib/modules/{release}/symvers"), SYMVERS);
    root.compress("xz", &format!("/lib/modules/{release}/symvers"));
}

/// Arch `linux-headers` (PKGBUILD `_package-headers`): a real directory at
/// `/usr/lib/modules/<rel>/build` with `.config`, Makefile, Module.symvers,
/// System.map, version, vmlinux, `kernel/Makefile`, `arch/x86/Makefile`,
/// all of `scripts/`, objtool, `include/`, `arch/x86/include`.
fn arch(root: &Root) {
    let release = "6.11.5-arch1-1";
    let dir = format!("/usr/lib/modules/{release}/build");
    sources(root, &dir);
    generated(root, &dir, release, "gcc (GCC) 14.2.1 20240910", false);
    host_tools(root, &dir);
    root.file(&format!("{dir}/Module.symvers"), SYMVERS);
    root.file(&format!("{dir}/version"), "6.11.5-arch1-1\n");
    root.file(&format!("{dir}/kernel/Makefile"), "");
}

/// openSUSE Leap 15.6: `kernel-default-devel` is the obj half in
/// `/usr/src/linux-<ver>-obj/x86_64/default` (generated files, host tools,
/// Module.symvers, a Makefile that includes the source half),
/// `kernel-devel` the source half `/usr/src/linux-<ver>`; `/boot` keeps
/// `symvers-<rel>.gz` (README.SUSE, the kernel-source spec).
fn opensuse(root: &Root) {
    let version = "6.4.0-150600.23.25";
    let release = format!("{version}-default");
    let source = format!("/usr/src/linux-{version}");
    let obj = format!("/usr/src/linux-{version}-obj/x86_64/default");
    sources(root, &source);
    generated(root, &obj, &release, "gcc (SUSE Linux) 7.5.0", false);
    host_tools(root, &obj);
    root.file(
        &format!("{obj}/Makefile"),
        &format!("# Automatically generated by {source}/Makefile: don't edit\ninclude {source}/Makefile\n"),
    );
    root.file(&format!("{obj}/Module.symvers"), SYMVERS);
    root.link(&format!("/lib/modules/{release}/build"), &obj);
    root.link(&format!("/lib/modules/{release}/source"), &source);
    root.file(&format!("/boot/symvers-{release}"), SYMVERS);
    root.compress("gzip", &format!("/boot/symvers-{release}"));
}

/// Gentoo `sys-kernel/gentoo-sources`, configured and built in place:
/// the full source in `/usr/src/linux-<ver>-gentoo` (Kconfig included),
/// `/usr/src/linux` selected by `eselect kernel`, and
/// `modules_install`'s `/lib/modules/<rel>/build` link.
fn gentoo(root: &Root) {
    let release = "6.6.58-gentoo";
    let dir = format!("/usr/src/linux-{release}");
    sources(root, &dir);
    root.file(&format!("{dir}/Kconfig"), "mainmenu \"Linux\"\n");
    generated(
        root,
        &dir,
        release,
        "x86_64-pc-linux-gnu-gcc (Gentoo 14.2.1_p20241116 p3) 14.2.1",
        false,
    );
    host_tools(root, &dir);
    root.file(&format!("{dir}/Module.symvers"), SYMVERS);
    root.link("/usr/src/linux", &format!("linux-{release}"));
    root.link(&format!("/lib/modules/{release}/build"), &dir);
}

/// NixOS: the kernel's `dev` output (nixpkgs `manual-config.nix`) holds the
/// build directory `lib/modules/<rel>/build`, whose generated Makefile
/// includes the source kept next to it in `lib/modules/<rel>/source`.
fn nixos(root: &Root) {
    let release = "6.6.58";
    let output = "/nix/store/0a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p-linux-6.6.58-dev";
    let build = format!("{output}/lib/modules/{release}/build");
    let source = format!("{output}/lib/modules/{release}/source");
    sources(root, &source);
    generated(root, &build, release, "gcc (GCC) 13.3.0", false);
    host_tools(root, &build);
    root.file(
        &format!("{build}/Makefile"),
        &format!("include {source}/Makefile\n"),
    );
    root.file(&format!("{build}/Module.symvers"), SYMVERS);
}

/// Ubuntu 24.04: `linux-headers-<ver>-generic` holds what `make O=...
/// prepare scripts` generated, host tools and Module.symvers; everything
/// else, the Makefile included, is a symlink into `linux-headers-<ver>`
/// (debian/rules.d/2-binary-arch.mk, `scripts/link-headers`).
fn ubuntu(root: &Root) {
    let version = "6.8.0-48";
    let release = format!("{version}-generic");
    let common = format!("/usr/src/linux-headers-{version}");
    let flavour = format!("/usr/src/linux-headers-{release}");
    sources(root, &common);
    generated(
        root,
        &flavour,
        &release,
        "x86_64-linux-gnu-gcc-13 (Ubuntu 13.2.0-23ubuntu4) 13.2.0",
        false,
    );
    host_tools(root, &flavour);
    root.link(
        &format!("{flavour}/Makefile"),
        &format!("../linux-headers-{version}/Makefile"),
    );
    root.link(
        &format!("{flavour}/arch/x86/Makefile"),
        &format!("../../../linux-headers-{version}/arch/x86/Makefile"),
    );
    root.file(&format!("{flavour}/Module.symvers"), SYMVERS);
    root.link(&format!("/lib/modules/{release}/build"), &flavour);
}

/// A clang-built kernel built by hand with `make O=build`: the build
/// directory's generated Makefile includes the source's, and `source`
/// links to it. No full build yet, so no Module.symvers.
fn self_built_clang(root: &Root) -> Utf8PathBuf {
    let release = "6.12.0-rc1";
    let source = "/home/dev/linux";
    let build = "/home/dev/linux/build";
    sources(root, source);
    root.file(&format!("{source}/Kconfig"), "mainmenu \"Linux\"\n");
    generated(root, build, release, "clang version 19.1.2", true);
    host_tools(root, build);
    let source_in_root = root.at(source);
    root.file(
        &format!("{build}/Makefile"),
        &format!("include {source_in_root}/Makefile\n"),
    );
    root.link(&format!("{build}/source"), source_in_root.as_str());
    root.at(build)
}

fn every_layout(name: &str) -> Root {
    let root = Root::new(name);
    for install in [fedora, arch, opensuse, gentoo, nixos, ubuntu] {
        install(&root);
    }
    root
}

#[test]
fn finds_each_tree_once_with_its_layout_and_source_half() {
    let root = every_layout("find");
    let found: Vec<(String, Layout, Utf8PathBuf, Utf8PathBuf)> =
        KernelTree::installed_under(&root.0)
            .into_iter()
            .map(|tree| {
                let relative = |path: &Utf8Path| {
                    Utf8Path::new("/").join(
                        path.strip_prefix(root.0.canonicalize_utf8().unwrap())
                            .unwrap(),
                    )
                };
                (
                    tree.release.clone(),
                    tree.layout,
                    relative(&tree.path),
                    relative(&tree.source),
                )
            })
            .collect();
    let nix = "/nix/store/0a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p-linux-6.6.58-dev/lib/modules/6.6.58";
    let expected = [
        (
            "6.4.0-150600.23.25-default",
            Layout::OpenSuse,
            "/usr/src/linux-6.4.0-150600.23.25-obj/x86_64/default",
            "/usr/src/linux-6.4.0-150600.23.25",
        ),
        (
            "6.6.58",
            Layout::Nix,
            &format!("{nix}/build"),
            &format!("{nix}/source"),
        ),
        (
            "6.6.58-gentoo",
            Layout::Gentoo,
            "/usr/src/linux-6.6.58-gentoo",
            "/usr/src/linux-6.6.58-gentoo",
        ),
        (
            "6.8.0-48-generic",
            Layout::Debian,
            "/usr/src/linux-headers-6.8.0-48-generic",
            "/usr/src/linux-headers-6.8.0-48",
        ),
        (
            "6.11.4-301.fc41.x86_64",
            Layout::Fedora,
            "/usr/src/kernels/6.11.4-301.fc41.x86_64",
            "/usr/src/kernels/6.11.4-301.fc41.x86_64",
        ),
        (
            "6.11.5-arch1-1",
            Layout::Arch,
            "/usr/lib/modules/6.11.5-arch1-1/build",
            "/usr/lib/modules/6.11.5-arch1-1/build",
        ),
    ]
    .map(|(release, layout, path, source)| {
        (
            release.to_owned(),
            layout,
            Utf8PathBuf::from(path),
            Utf8PathBuf::from(source),
        )
    });
    assert_eq!(found, expected);
}

#[test]
fn every_fixture_tree_is_usable_and_has_its_compiler() {
    let root = every_layout("usable");
    let compilers: Vec<(String, String)> = KernelTree::installed_under(&root.0)
        .iter()
        .map(|tree| {
            assert_eq!(tree.arch, "x86", "{}", tree.release);
            assert_eq!(doctor::tree_problems(tree), vec![], "{}", tree.release);
            assert_eq!(tree.symvers().unwrap().len(), 1, "{}", tree.release);
            (tree.release.clone(), tree.compiler().command)
        })
        .collect();
    let expected = [
        ("6.4.0-150600.23.25-default", "gcc"),
        ("6.6.58", "gcc"),
        ("6.6.58-gentoo", "x86_64-pc-linux-gnu-gcc"),
        ("6.8.0-48-generic", "x86_64-linux-gnu-gcc-13"),
        ("6.11.4-301.fc41.x86_64", "gcc"),
        ("6.11.5-arch1-1", "gcc"),
    ]
    .map(|(release, command)| (release.to_owned(), command.to_owned()));
    assert_eq!(compilers, expected);
}

/// Each distro's fix for a tree without `Module.symvers`, and the copy
/// outside the tree that `symvers()` falls back to.
#[test]
fn missing_symvers_names_each_distros_fix() {
    let root = every_layout("symvers");
    let expected = [
        (
            "6.4.0-150600.23.25-default",
            "zcat ",
            "/boot/symvers-6.4.0-150600.23.25-default.gz",
        ),
        ("6.6.58", "nix-store --repair-path ", "-linux-6.6.58-dev"),
        (
            "6.6.58-gentoo",
            "make -C ",
            "(a full build writes Module.symvers)",
        ),
        (
            "6.8.0-48-generic",
            "apt-get install --reinstall ",
            "linux-headers-6.8.0-48-generic",
        ),
        (
            "6.11.4-301.fc41.x86_64",
            "xzcat ",
            "/lib/modules/6.11.4-301.fc41.x86_64/symvers.xz",
        ),
        ("6.11.5-arch1-1", "pacman -S ", "linux-headers"),
    ];
    let trees = KernelTree::installed_under(&root.0);
    assert_eq!(trees.len(), expected.len());
    for (tree, (release, command, names)) in trees.iter().zip(expected) {
        assert_eq!(tree.release, release);
        std::fs::remove_file(tree.path.join("Module.symvers")).unwrap();
        let problems = doctor::tree_problems(tree);
        let [problem] = problems.as_slice() else {
            panic!("{release}: {problems:#?}");
        };
        assert_eq!(
            problem.path,
            Some(tree.path.join("Module.symvers")),
            "{release}"
        );
        assert!(
            problem.fix.starts_with(command),
            "{release}: {}",
            problem.fix
        );
        assert!(problem.fix.contains(names), "{release}: {}", problem.fix);
        let from_copy = tree.symvers();
        let has_copy = ["zcat ", "xzcat "].contains(&command);
        assert_eq!(from_copy.is_ok(), has_copy, "{release}: {from_copy:?}");
    }
}

/// On Arch `/lib` is a symlink to `usr/lib`: both module roots reach the
/// same tree.
#[test]
fn arch_tree_reached_through_both_module_roots_is_one_tree() {
    let root = Root::new("arch");
    arch(&root);
    root.link("/lib", "usr/lib");
    let trees = KernelTree::installed_under(&root.0);
    assert_eq!(trees.len(), 1, "{trees:#?}");
    assert_eq!(trees[0].layout, Layout::Arch);
}

#[test]
fn opensuse_source_half_file_is_kernel_devel() {
    let root = Root::new("suse");
    opensuse(&root);
    std::fs::remove_file(root.at("/usr/src/linux-6.4.0-150600.23.25/arch/x86/Makefile")).unwrap();
    let tree = KernelTree::installed_under(&root.0).remove(0);
    let problems = doctor::tree_problems(&tree);
    let fixes: Vec<&str> = problems.iter().map(|p| p.fix.as_str()).collect();
    assert_eq!(fixes, ["zypper install -f kernel-devel"], "{problems:#?}");
}

#[test]
fn self_built_clang_tree_wants_llvm_and_a_full_build() {
    let root = Root::new("selfbuilt");
    let build = self_built_clang(&root);
    let tree = KernelTree::open(&build).unwrap();
    assert_eq!(tree.layout, Layout::SelfBuilt);
    assert_eq!(tree.source, root.at("/home/dev/linux"));
    let compiler = tree.compiler();
    assert_eq!(
        (compiler.command.as_str(), compiler.make_args()),
        ("clang", vec!["LLVM=1".to_owned()])
    );
    let problems = doctor::tree_problems(&tree);
    let [problem] = problems.as_slice() else {
        panic!("{problems:#?}");
    };
    assert_eq!(
        problem.fix,
        format!(
            "make -C {} O={} (a full build writes Module.symvers)",
            tree.source, tree.path
        )
    );
    // Not under any root discovery scans.
    assert!(KernelTree::installed_under(&root.0).is_empty());
}

#[test]
fn empty_root_has_no_trees() {
    let root = Root::new("empty");
    assert!(KernelTree::installed_under(&root.0).is_empty());
}

/// The real Debian trees: reachable as `/lib/modules/<rel>/build` and as
/// `/usr/src/linux-headers-<rel>`, found once each, with the `-common`
/// source half and the compiler `.kernelvariables` names.
#[test]
fn installed_debian_trees_are_found_once() {
    let started = std::time::Instant::now();
    let Some(trees) = kmod_build::test_support::installed_trees() else {
        return;
    };
    let elapsed = started.elapsed();
    let linked: Vec<Utf8PathBuf> = Utf8Path::new("/lib/modules")
        .read_dir_utf8()
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.path().join("build").canonicalize_utf8().ok())
        .collect();
    assert_eq!(trees.len(), linked.len(), "{trees:#?}");
    for tree in &trees {
        assert!(linked.contains(&tree.path), "{}", tree.path);
        assert_eq!(tree.layout, Layout::Debian);
        assert_eq!(tree.arch, "x86");
        let common = tree.source.file_name().unwrap();
        assert!(
            common.starts_with("linux-headers-") && common.ends_with("-common"),
            "{}",
            tree.source
        );
        let config = tree.config().unwrap();
        let version_text = config.get("CONFIG_CC_VERSION_TEXT").unwrap();
        let compiler = tree.compiler();
        assert!(
            version_text.starts_with(&compiler.command),
            "{version_text} vs {}",
            compiler.command
        );
        assert_eq!(tree.symvers_path(), Some(tree.path.join("Module.symvers")));
    }
    eprintln!("discovery of {} trees took {elapsed:?}", trees.len());
}

/// The compiler a tree names must be on PATH; the fix installs its package.
#[test]
fn missing_compiler_is_named_with_its_package() {
    let root = Root::new("compiler");
    ubuntu(&root);
    let auto_conf = "/usr/src/linux-headers-6.8.0-48-generic/include/config/auto.conf";
    let config = std::fs::read_to_string(root.at(auto_conf)).unwrap();
    let config = config.replace(
        "x86_64-linux-gnu-gcc-13 (Ubuntu 13.2.0-23ubuntu4) 13.2.0",
        "x86_64-linux-gnu-gcc-99 (fixture) 99.0.0",
    );
    std::fs::write(root.at(auto_conf), config).unwrap();
    let tree = KernelTree::installed_under(&root.0).remove(0);
    let problems = doctor::machine_problems(&tree);
    let compiler = problems
        .iter()
        .find(|p| p.subject == "x86_64-linux-gnu-gcc-99")
        .unwrap_or_else(|| panic!("{problems:#?}"));
    assert_eq!(compiler.fix, "apt-get install gcc-99");
    assert!(
        compiler.why.contains("(fixture) 99.0.0"),
        "{}",
        compiler.why
    );
}
