//! Signatures of the distro's own in-tree modules, read as kmod's
//! `modinfo` reads them, and the loader's refusal of a mangled one.

use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::check::{self, Verdict};
use kmod_build::signature::{self, Summary, Verified};
use kmod_build::{KernelTree, ModuleInfo};

/// An in-tree module of `tree`, uncompressed, under `dir`.
fn in_tree_module(tree: &KernelTree, dir: &Utf8Path) -> Utf8PathBuf {
    let installed = tree.in_tree_module().expect("an in-tree module");
    let copy = dir.join("module.ko");
    let bytes = if installed.extension() == Some("xz") {
        let output = Command::new("xz")
            .arg("-dc")
            .arg(&installed)
            .output()
            .unwrap();
        assert!(output.status.success(), "xz -dc {installed}");
        output.stdout
    } else {
        std::fs::read(&installed).unwrap()
    };
    std::fs::write(&copy, bytes).unwrap();
    copy
}

fn modinfo(field: &str, module: &Utf8Path) -> String {
    let output = Command::new("modinfo")
        .args(["-F", field, module.as_str()])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn in_tree_signatures_read_as_modinfo_reads_them() {
    for tree in kmod_build::test_support::installed_trees().unwrap_or_default() {
        let dir = tempfile::tempdir().unwrap();
        let module = in_tree_module(&tree, Utf8Path::from_path(dir.path()).unwrap());
        let info = ModuleInfo::read(&module).unwrap();
        let summary = Summary::of(&info);
        let hash = tree
            .config()
            .unwrap()
            .get("CONFIG_MODULE_SIG_HASH")
            .map(str::to_owned);
        assert!(summary.present, "{}", tree.release);
        assert_eq!(summary.hash, hash, "{}", tree.release);
        // Debian's trees differ: RSA on one, ECDSA on the other.
        assert!(summary.algorithm.is_some(), "{}", tree.release);
        assert_eq!(summary.signer.unwrap(), modinfo("signer", &module));
        assert_eq!(summary.key_id.unwrap(), modinfo("sig_key", &module));
    }
}

#[test]
fn a_certificate_that_did_not_sign_is_named_and_refused() {
    let Some(tree) = kmod_build::test_support::installed_trees().and_then(|t| t.into_iter().next())
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(dir.path()).unwrap();
    let module = in_tree_module(&tree, dir);
    let cert = dir.join("other.pem");
    let status = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=other/",
        ])
        .args([
            "-keyout",
            dir.join("other.key").as_str(),
            "-out",
            cert.as_str(),
        ])
        .output()
        .unwrap()
        .status;
    assert!(status.success(), "openssl req");
    let cert = signature::load_certificate(&cert).unwrap();
    let info = ModuleInfo::read(&module).unwrap();
    let mut report = check::check(&info, &check::Kernel::load(&tree).unwrap());
    report.verify_signature(&info, &cert);
    assert!(
        matches!(&report.signature.verified, Verified::No(why) if why.contains("not by this certificate")),
        "{report}"
    );
    assert_eq!(report.verdict, Verdict::Refused("EKEYREJECTED"));
}

#[test]
fn an_unparseable_signature_is_refused_with_ebadmsg() {
    let Some(tree) = kmod_build::test_support::installed_trees().and_then(|t| t.into_iter().next())
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let module = in_tree_module(&tree, Utf8Path::from_path(dir.path()).unwrap());
    let mut bytes = std::fs::read(&module).unwrap();
    let info = ModuleInfo::parse(&module, &bytes).unwrap();
    let Some(Ok(found)) = &info.signature else {
        panic!("{module} is not signed");
    };
    // The PKCS#7's outer SEQUENCE tag.
    bytes[found.signed_len] ^= 0xff;
    let mangled = ModuleInfo::parse(&module, &bytes).unwrap();
    let report = check::check(&mangled, &check::Kernel::load(&tree).unwrap());
    assert_eq!(report.verdict, Verdict::Refused("EBADMSG"), "{report}");
    assert_eq!(report.findings[0].check, check::Check::Signature);
}

/// The tree's own `sign-file` with an ECDSA key (as Debian's 6.12 signs
/// its modules): the signature verifies against its certificate, and no
/// longer once a byte of the module changed.
#[test]
fn ecdsa_signatures_verify() {
    let Some(tree) = kmod_build::test_support::installed_trees().and_then(|t| t.into_iter().next())
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(dir.path()).unwrap();
    let module = in_tree_module(&tree, dir);
    let bytes = std::fs::read(&module).unwrap();
    let info = ModuleInfo::parse(&module, &bytes).unwrap();
    let Some(Ok(distro)) = &info.signature else {
        panic!("{module} is not signed");
    };
    std::fs::write(&module, &bytes[..distro.signed_len]).unwrap();
    let (key, cert) = (dir.join("ec.key"), dir.join("ec.pem"));
    let output = Command::new("openssl")
        .args(["req", "-new", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args([
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=ec test/",
        ])
        .args(["-keyout", key.as_str(), "-out", cert.as_str()])
        .output()
        .unwrap();
    assert!(output.status.success(), "openssl req: {output:?}");
    let sign_file = tree.path.join("scripts/sign-file");
    let output = Command::new(&sign_file)
        .args(["sha256", key.as_str(), cert.as_str(), module.as_str()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{sign_file}: {output:?}");

    let cert = signature::load_certificate(&cert).unwrap();
    let signed = std::fs::read(&module).unwrap();
    let verified = |bytes: &[u8]| {
        let info = ModuleInfo::parse(&module, bytes).unwrap();
        let mut summary = Summary::of(&info);
        summary.verify(&info, &cert);
        summary
    };
    let summary = verified(&signed);
    assert_eq!(summary.verified, Verified::Yes, "{summary}");
    assert_eq!(summary.algorithm.as_deref(), Some("ecdsa-with-SHA256"));
    let mut tampered = signed.clone();
    tampered[10] ^= 0xff;
    let summary = verified(&tampered);
    assert!(
        matches!(&summary.verified, Verified::No(why) if why.contains("does not match")),
        "{summary}"
    );
}
