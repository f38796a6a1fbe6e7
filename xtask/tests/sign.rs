//! `cargo xtask gen-key` and `sign` on an in-tree module copy: a good pair
//! signs and verifies; a missing key, a file that is no certificate and a
//! key that does not match the certificate each fail with one line naming
//! the file, exit code 2, and leave the module as it was with no
//! `.partial` file. `build-module --sign` signs what it builds.

use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::KernelTree;

fn xtask(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Exit code and stdout.
fn xtask_stdout(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.code().unwrap_or(-1), stdout)
}

/// An unsigned copy of an in-tree module (`sign` replaces the distro's
/// signature anyway) and a fresh key pair, in `dir`.
fn setup(dir: &Utf8Path) -> Option<(KernelTree, Utf8PathBuf, Utf8PathBuf, Utf8PathBuf)> {
    let tree = kmod_build::test_support::installed_trees()?.remove(0);
    let installed = tree.in_tree_module().expect("an in-tree module");
    let module = dir.join("module.ko");
    let bytes = if installed.extension() == Some("xz") {
        Command::new("xz")
            .arg("-dc")
            .arg(&installed)
            .output()
            .unwrap()
            .stdout
    } else {
        std::fs::read(&installed).unwrap()
    };
    std::fs::write(&module, bytes).unwrap();
    let keys = dir.join("keys");
    let (code, stderr) = xtask(&["gen-key", "--out-dir", keys.as_str(), "--days", "1"]);
    assert_eq!(code, 0, "{stderr}");
    let (key, cert) = (keys.join("signing_key.pem"), keys.join("signing_key.x509"));
    Some((tree, module, key, cert))
}

#[test]
fn sign_with_good_and_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(dir.path()).unwrap();
    let Some((tree, module, key, cert)) = setup(dir) else {
        return;
    };

    let (code, stderr) = xtask(&["gen-key", "--out-dir", key.parent().unwrap().as_str()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("{key}: already exists")),
        "{stderr}"
    );

    let other_key = dir.join("other.pem");
    let status = Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-out", other_key.as_str()])
        .output()
        .unwrap()
        .status;
    assert!(status.success());
    let before = std::fs::read(&module).unwrap();
    let missing = dir.join("missing.pem");
    let sign = |key: &Utf8PathBuf, cert: &Utf8PathBuf| {
        xtask(&[
            "sign",
            module.as_str(),
            "--key",
            key.as_str(),
            "--cert",
            cert.as_str(),
        ])
    };
    for (key, cert, says) in [
        (
            &missing,
            &cert,
            format!("{missing}: cannot read the signing key"),
        ),
        (&key, &module, format!("{module}: not an X.509 certificate")),
        (&other_key, &cert, format!("{other_key}: ")),
    ] {
        let (code, stderr) = sign(key, cert);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(&says), "no `{says}` in {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert_eq!(std::fs::read(&module).unwrap(), before, "{module} changed");
        assert!(!Utf8PathBuf::from(format!("{module}.partial")).exists());
    }

    let (code, stderr) = sign(&key, &cert);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("verifies against the certificate"),
        "{stderr}"
    );
    let release = tree.release.as_str();
    let check = ["check-module", module.as_str(), "--kernel", release];
    // The certificate as an enrolled MOK: verified, even under enforcement,
    // and the JSON names the keys used.
    let (code, stdout) = xtask_stdout(
        &[
            &check[..],
            &["--cert", cert.as_str(), "--sig-enforce", "--json"],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{stdout}");
    let reports: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let report = &reports[0];
    assert_eq!(report["trust"]["result"], "verified", "{report}");
    assert_eq!(report["sig_enforced"], true, "{report}");
    let keys = report["keyring"]["keys"].as_array().unwrap();
    assert!(
        keys.iter()
            .any(|key| key["source"]["added"] == cert.as_str()),
        "{report}"
    );
    assert!(
        keys.iter().any(|key| key["source"]["built-in"]
            .as_str()
            .is_some_and(|image| image.ends_with(release))),
        "{report}"
    );
    // Without it the kernel has no such key: E unenforced, refused enforced.
    let (code, stdout) = xtask_stdout(&check);
    assert_eq!(code, 0, "{stdout}");
    // An in-tree module: no O.
    assert!(stdout.contains("tainting the kernel (E)"), "{stdout}");
    let (code, stdout) = xtask_stdout(&[&check[..], &["--sig-enforce"]].concat());
    assert_eq!(code, 4, "{stdout}");
    assert!(stdout.contains("(EKEYREJECTED)"), "{stdout}");
}

/// Builds into the workspace's `target/kmod/<release>` (warm after the
/// other tests), as `--all-kernels` does.
#[test]
fn build_module_signs_what_it_builds() {
    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(dir.path()).unwrap();
    let Some((tree, _, key, cert)) = setup(dir) else {
        return;
    };
    let (key, cert) = (key.as_str(), cert.as_str());
    let missing = dir.join("missing.pem");
    let args = ["build-module", "hello", "--kernel", &tree.release, "--sign"];
    let (code, stderr) = xtask(&[&args[..], &["--key", missing.as_str(), "--cert", cert]].concat());
    assert_eq!(code, 2, "{stderr}");
    assert!(
        !stderr.contains("Compiling"),
        "built before checking the key: {stderr}"
    );

    let (code, stderr) = xtask(&[&args[..], &["--key", key, "--cert", cert]].concat());
    assert_eq!(code, 0, "{stderr}");
    // A fresh key is not one the kernel trusts.
    assert!(
        stderr.contains(&format!("mokutil --import {cert}")),
        "{stderr}"
    );
    let signed = stderr
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("Signed "))
        .unwrap_or_else(|| panic!("no Signed line in {stderr}"));
    let ko = Utf8Path::new(signed.split(':').next().unwrap());
    assert!(
        ko.as_str()
            .ends_with(&format!("kmod/{}/hello.ko", tree.release)),
        "{signed}"
    );
    let info = kmod_build::ModuleInfo::read(ko).unwrap();
    let mut summary = kmod_build::signature::Summary::of(info.signature.as_ref());
    summary.verify(
        info.signature.as_ref(),
        &kmod_build::signature::load_certificate(Utf8Path::new(cert)).unwrap(),
    );
    assert_eq!(
        summary.verified,
        kmod_build::signature::Verified::Yes,
        "{summary}"
    );
}
