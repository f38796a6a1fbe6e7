//! `cargo kmod install --root DIR`: the repository's hello installed into a
//! staging root for each installed kernel, then found there by the
//! system's own modinfo and modprobe.

use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::driver::{install, BuildOptions, Human, InstallOptions, Project};
use kmod_build::test_support::installed_trees;
use kmod_build::Error;

fn checkout() -> Utf8PathBuf {
    Utf8Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn staging() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::try_from(dir.path().to_owned()).unwrap();
    (dir, path)
}

fn options(release: &str, root: &Utf8Path, load: bool) -> InstallOptions {
    InstallOptions {
        build: BuildOptions {
            kernels: vec![release.to_owned()],
            install_prerequisites: false,
            ..BuildOptions::default()
        },
        root: Some(root.to_owned()),
        load,
        command: "cargo kmod install -p hello".to_owned(),
    }
}

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(program).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn hello_installs_into_a_staging_root_that_modinfo_and_modprobe_read() {
    let Some(trees) = installed_trees() else {
        return;
    };
    let project = Project::load(Some(&checkout().join("Cargo.toml"))).unwrap();
    let hello = project.module(Some("hello")).unwrap();
    for tree in trees {
        let release = tree.release.as_str();
        let (_keep, root) = staging();
        let installed = install(&project, hello, &options(release, &root, false), &Human)
            .unwrap_or_else(|e| panic!("{release}: {e}"));
        let updates = root.join("lib/modules").join(release).join("updates");
        let ko = updates.join("hello.ko");
        assert_eq!(installed.len(), 1, "{release}: {installed:?}");
        assert_eq!(installed[0].path, ko, "{release}");
        assert!(!installed[0].loaded, "{release}");
        assert_eq!(
            std::fs::read(&ko).unwrap(),
            std::fs::read(project.ko_path(hello, &tree)).unwrap(),
            "{release}: the installed module is not the built one"
        );
        let left: Vec<String> = updates
            .read_dir_utf8()
            .unwrap()
            .map(|e| e.unwrap().file_name().to_owned())
            .collect();
        assert_eq!(left, ["hello.ko"], "{release}: {updates}");

        let (ok, modinfo) = run("modinfo", &["-b", root.as_str(), "-k", release, "hello"]);
        assert!(ok, "{release}: modinfo -b {root}: {modinfo}");
        let filename = modinfo.lines().find_map(|l| l.strip_prefix("filename:"));
        assert_eq!(filename.map(str::trim), Some(ko.as_str()), "{modinfo}");
        let vermagic = modinfo.lines().find_map(|l| l.strip_prefix("vermagic:"));
        assert!(
            vermagic.is_some_and(|v| v.trim().starts_with(&format!("{release} "))),
            "{release}: {modinfo}"
        );

        let (ok, dry_run) = run(
            "modprobe",
            &[
                "--dry-run",
                "-v",
                "-S",
                release,
                "-d",
                root.as_str(),
                "hello",
            ],
        );
        assert!(ok, "{release}: modprobe --dry-run -d {root}: {dry_run}");
        assert!(dry_run.contains(&format!("insmod {ko}")), "{dry_run}");
        // The release's own lists were staged: depmod had all it reads.
        for file in [
            "modules.order",
            "modules.builtin",
            "modules.builtin.modinfo",
        ] {
            let host = Utf8Path::new("/lib/modules").join(release).join(file);
            if host.is_file() {
                assert!(
                    root.join("lib/modules").join(release).join(file).is_file(),
                    "{release}: {file} not staged"
                );
            }
        }
    }
}

#[test]
fn load_for_a_kernel_that_is_not_running_is_refused_before_building() {
    let Some(trees) = installed_trees() else {
        return;
    };
    let running = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let Some(tree) = trees.iter().find(|t| t.release != running.trim()) else {
        eprintln!("skipped: every installed tree is the running kernel's");
        return;
    };
    let project = Project::load(Some(&checkout().join("Cargo.toml"))).unwrap();
    let hello = project.module(Some("hello")).unwrap();
    let (_keep, root) = staging();
    let error = install(
        &project,
        hello,
        &options(&tree.release, &root, true),
        &Human,
    )
    .unwrap_err();
    assert!(matches!(error, Error::NotRunning { .. }), "{error:?}");
    assert_eq!(error.exit_code(), 2);
    let message = error.to_string();
    assert!(message.contains(&tree.release), "{message}");
    assert!(message.contains(running.trim()), "{message}");
    assert_eq!(root.read_dir().unwrap().count(), 0, "{root}: written to");
}
