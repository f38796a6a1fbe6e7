//! A project as `cargo kmod new` writes it, read back the way every driver
//! command reads a workspace (`cargo metadata`).

use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::driver::new::{new_project, NewOptions, TOOLCHAIN};
use kmod_build::driver::{Human, Project};
use kmod_build::Error;

fn checkout() -> Utf8PathBuf {
    Utf8Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn scratch() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::try_from(dir.path().to_owned()).unwrap();
    (dir, path)
}

#[test]
fn a_new_project_has_one_module_on_the_local_checkout() {
    let (_keep, parent) = scratch();
    let dir = parent.join("my-driver");
    let options = NewOptions {
        dir: dir.clone(),
        local: Some(checkout()),
        kernel: None,
    };
    assert_eq!(new_project(&options, &Human).unwrap(), dir);

    let project = Project::load(Some(&dir.join("Cargo.toml"))).unwrap();
    assert_eq!(project.root, dir);
    assert_eq!(project.target_dir, dir.join("target"));
    let names: Vec<&str> = project.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["my-driver"]);
    assert_eq!(
        project.module(None).unwrap().manifest_dir,
        dir.join("my-driver")
    );

    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap();
    let runtime = format!("{{ path = \"{}/kmod-runtime\" }}", checkout());
    assert!(
        read("my-driver/Cargo.toml").contains(&runtime),
        "{}",
        read("my-driver/Cargo.toml")
    );
    let source = read("my-driver/src/lib.rs");
    assert!(source.contains("name: \"my_driver\""), "{source}");
    assert!(source.contains("struct MyDriver;"), "{source}");
    assert!(read("xtask/src/main.rs").contains("kmod_build::cli::xtask_main()"));
    assert!(read("xtask/Cargo.toml").contains("features = [\"cli\"]"));
    let toolchain = read("rust-toolchain.toml");
    assert!(
        toolchain.contains(&format!("channel = \"{TOOLCHAIN}\"")),
        "{toolchain}"
    );
    for target in kmod_build::driver::new::TARGETS {
        assert!(toolchain.contains(target), "{toolchain}");
    }
    assert!(read(".cargo/config.toml").contains("xtask = \"run --quiet --package xtask --\""));
    // Nothing but the project: no partial directory beside it.
    let beside: Vec<_> = parent.read_dir_utf8().unwrap().flatten().collect();
    assert_eq!(beside.len(), 1, "{beside:?}");
}

#[test]
fn without_a_checkout_the_dependencies_are_registry_versions() {
    let (_keep, parent) = scratch();
    let dir = parent.join("plain");
    new_project(
        &NewOptions {
            dir: dir.clone(),
            local: None,
            kernel: None,
        },
        &Human,
    )
    .unwrap();
    let version = env!("CARGO_PKG_VERSION");
    let module = std::fs::read_to_string(dir.join("plain/Cargo.toml")).unwrap();
    assert!(
        module.contains(&format!("kmod-runtime = \"{version}\"")),
        "{module}"
    );
    let xtask = std::fs::read_to_string(dir.join("xtask/Cargo.toml")).unwrap();
    assert!(
        xtask.contains(&format!(
            "kmod-build = {{ version = \"{version}\", features = [\"cli\"] }}"
        )),
        "{xtask}"
    );
    assert!(!module.contains("path =") && !xtask.contains("path ="));
}

#[test]
fn bad_targets_are_refused_and_nothing_is_written() {
    let (_keep, parent) = scratch();
    let taken = parent.join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("keep.txt"), "mine").unwrap();
    let refused = |dir: Utf8PathBuf, local: Option<Utf8PathBuf>, says: &str| {
        let error = new_project(
            &NewOptions {
                dir,
                local,
                kernel: None,
            },
            &Human,
        )
        .unwrap_err();
        assert!(matches!(error, Error::BadInput { .. }), "{error}");
        assert!(error.to_string().contains(says), "{error}");
        assert_eq!(error.exit_code(), 2);
    };
    refused(taken.clone(), None, "not an empty directory");
    refused(parent.join("Bad Name"), None, "cannot name a module");
    refused(
        parent.join("ok"),
        Some(parent.clone()),
        "is not a kmod-build checkout",
    );
    let left: Vec<String> = parent
        .read_dir_utf8()
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_owned())
        .collect();
    assert_eq!(left, ["taken"]);
    assert_eq!(
        std::fs::read_to_string(taken.join("keep.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn the_editor_settings_check_the_kernel_new_was_given() {
    let (_keep, parent) = scratch();
    let settings = |dir: &Utf8Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(".vscode/settings.json")).unwrap())
            .unwrap()
    };
    let commands = |settings: &serde_json::Value| {
        [
            "rust-analyzer.check.overrideCommand",
            "rust-analyzer.cargo.buildScripts.overrideCommand",
        ]
        .map(|key| settings[key].clone())
    };
    let default = parent.join("default");
    let options = |dir: &Utf8Path, kernel: Option<&str>| NewOptions {
        dir: dir.to_owned(),
        local: None,
        kernel: kernel.map(str::to_owned),
    };
    new_project(&options(&default, None), &Human).unwrap();
    let written = settings(&default);
    for command in commands(&written) {
        assert_eq!(
            command,
            serde_json::json!(["cargo", "kmod", "cargo-check", "--message-format", "json"])
        );
    }
    assert!(default.join("rust-analyzer.toml").is_file());

    let error = new_project(
        &options(&parent.join("unknown"), Some("0.0.0-none")),
        &Human,
    )
    .unwrap_err();
    assert!(matches!(error, Error::NoSuchKernel { .. }), "{error}");
    assert!(!parent.join("unknown").exists());

    let Some(trees) = kmod_build::test_support::installed_trees() else {
        return;
    };
    for tree in trees {
        let dir = parent.join(format!("for-{}", tree.release.replace(['.', '+'], "-")));
        new_project(&options(&dir, Some(&tree.release)), &Human).unwrap();
        let written = settings(&dir);
        for command in commands(&written) {
            let args: Vec<&str> = command
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            assert_eq!(
                args[2..],
                [
                    "cargo-check",
                    "--message-format",
                    "json",
                    "--kernel",
                    &tree.release
                ]
            );
        }
        assert_eq!(written["rust-analyzer.cargo.target"], tree.rust_target());
    }
}

#[test]
fn the_module_must_be_named_when_there_are_several() {
    let (_keep, dir) = scratch();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[workspace]\nresolver = \"2\"\nmembers = [\"one\", \"two\", \"lib\"]\n",
    )
    .unwrap();
    for (name, kind) in [("one", "staticlib"), ("two", "staticlib"), ("lib", "rlib")] {
        std::fs::create_dir_all(dir.join(name).join("src")).unwrap();
        std::fs::write(
            dir.join(name).join("Cargo.toml"),
            format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[lib]\ncrate-type = [\"{kind}\"]\n"),
        )
        .unwrap();
        std::fs::write(dir.join(name).join("src/lib.rs"), "").unwrap();
    }
    let project = Project::load(Some(&dir.join("Cargo.toml"))).unwrap();
    let names: Vec<&str> = project.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["one", "two"]);
    let which = project.module(None).unwrap_err().to_string();
    assert!(
        which.contains("pass -p <name>") && which.contains("one, two"),
        "{which}"
    );
    let unknown = project.module(Some("lib")).unwrap_err();
    assert!(
        unknown.to_string().contains("`lib` is not a module crate"),
        "{unknown}"
    );
    assert_eq!(unknown.exit_code(), 1);
    assert_eq!(project.module(Some("two")).unwrap().name, "two");
}

#[test]
fn no_workspace_is_a_usage_error() {
    let (_keep, dir) = scratch();
    let error = Project::load(Some(&dir.join("Cargo.toml"))).unwrap_err();
    assert!(matches!(error, Error::Project { .. }), "{error}");
    assert_eq!(error.exit_code(), 2);
}
