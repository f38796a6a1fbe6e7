//! Signatures of the distro's own in-tree modules, read as kmod's
//! `modinfo` reads them, and the loader's refusal of a mangled one.

use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::check::{self, Verdict};
use kmod_build::keyring::{KeySource, Keyring, Trust};
use kmod_build::signature::{self, Summary, Verified};
use kmod_build::{Errno, KernelTree, ModuleInfo};

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
        let summary = Summary::of(info.signature.as_ref());
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

/// The key that signed the distro's modules is the one built into its
/// image: the in-tree module verifies, with no `E` taint.
#[test]
fn in_tree_modules_verify_against_the_kernel_images_own_keys() {
    for tree in KernelTree::installed() {
        let dir = tempfile::tempdir().unwrap();
        let module = in_tree_module(&tree, Utf8Path::from_path(dir.path()).unwrap());
        let kernel = check::Kernel::load(&tree).unwrap();
        assert!(
            kernel.keyring.built_in_unknown.is_none(),
            "{}: {}",
            tree.release,
            kernel.keyring
        );
        assert!(kernel
            .keyring
            .keys
            .iter()
            .all(|key| matches!(&key.source, KeySource::BuiltIn(image) if image.as_str().ends_with(&tree.release))));
        let report = check::check(&ModuleInfo::read(&module).unwrap(), &kernel);
        assert!(
            matches!(&report.trust, Some(Trust::Verified { key }) if key.contains(&modinfo("signer", &module))),
            "{report}"
        );
        assert_eq!(report.verdict, Verdict::Loads, "{report}");
    }
}

/// Without an image, a signed module's verdict is not guessed; an unsigned
/// one's does not depend on keys.
#[test]
fn without_the_kernels_keys_the_verdict_says_it_cannot_tell() {
    let tree = KernelTree::installed().remove(0);
    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(dir.path()).unwrap();
    let module = in_tree_module(&tree, dir);
    let config = tree.config().unwrap();
    let mut kernel = check::Kernel::load(&tree).unwrap();
    kernel.keyring = Keyring::of_kernel(dir, &tree.release, &config);
    let looked_for = format!("{dir}/boot/vmlinuz-{}", tree.release);
    let info = ModuleInfo::read(&module).unwrap();
    let report = check::check(&info, &kernel);
    assert!(
        matches!(&report.verdict, Verdict::Undetermined(why) if why.contains(&looked_for)),
        "{report}"
    );
    let Some(Ok(signature)) = &info.signature else {
        panic!("{module} is not signed");
    };
    let bytes = std::fs::read(&module).unwrap();
    let unsigned = ModuleInfo::parse(&module, &bytes[..signature.signed_len]).unwrap();
    let report = check::check(&unsigned, &kernel);
    assert_eq!(
        report.verdict,
        Verdict::LoadsWithTaint("E".into()),
        "{report}"
    );
    kernel.sig_enforce = true;
    let report = check::check(&unsigned, &kernel);
    assert_eq!(
        report.verdict,
        Verdict::Refused(Errno::EKEYREJECTED),
        "{report}"
    );
    assert!(
        report.findings[0].kernel_says == "Loading of unsigned module is rejected",
        "{report}"
    );
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
    let cert_path = cert;
    let cert = signature::load_certificate(&cert_path).unwrap();
    let info = ModuleInfo::read(&module).unwrap();
    let mut summary = Summary::of(info.signature.as_ref());
    summary.verify(info.signature.as_ref(), &cert);
    assert!(
        matches!(&summary.verified, Verified::No(why) if why.contains("not by this certificate")),
        "{summary}"
    );
    // A kernel that trusts only that certificate: ENOKEY, so it loads
    // tainting E, or refuses it under enforcement.
    let mut kernel = check::Kernel::load(&tree).unwrap();
    kernel.keyring = Keyring::empty();
    kernel.keyring.add(cert.clone(), &cert_path);
    let report = check::check(&info, &kernel);
    assert_eq!(report.trust, Some(Trust::UnknownKey), "{report}");
    assert_eq!(
        report.verdict,
        Verdict::LoadsWithTaint("E".into()),
        "{report}"
    );
    kernel.sig_enforce = true;
    let report = check::check(&info, &kernel);
    assert_eq!(
        report.verdict,
        Verdict::Refused(Errno::EKEYREJECTED),
        "{report}"
    );
    assert_eq!(
        report.findings[0].kernel_says,
        "Loading of module with unavailable key is rejected"
    );
    // The kernel's own keys and the certificate: the built-in key verifies.
    let mut kernel = check::Kernel::load(&tree).unwrap();
    kernel.keyring.add(cert, &cert_path);
    let report = check::check(&info, &kernel);
    assert_eq!(report.verdict, Verdict::Loads, "{report}");
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
    assert_eq!(report.verdict, Verdict::Refused(Errno::EBADMSG), "{report}");
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

    let cert_path = cert;
    let cert = signature::load_certificate(&cert_path).unwrap();
    let signed = std::fs::read(&module).unwrap();
    let verified = |bytes: &[u8]| {
        let info = ModuleInfo::parse(&module, bytes).unwrap();
        let mut summary = Summary::of(info.signature.as_ref());
        summary.verify(info.signature.as_ref(), &cert);
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

    // As `--cert` (a MOK): verified without E; tampered, refused even
    // unenforced; the kernel's own keys alone do not know the key.
    let kernel = check::Kernel::load(&tree).unwrap();
    let mut with_mok = kernel.clone();
    with_mok.keyring.add(cert, &cert_path);
    let verdict = |bytes: &[u8], kernel: &check::Kernel| {
        check::check(&ModuleInfo::parse(&module, bytes).unwrap(), kernel).verdict
    };
    assert_eq!(verdict(&signed, &with_mok), Verdict::Loads);
    assert_eq!(
        verdict(&tampered, &with_mok),
        Verdict::Refused(Errno::EKEYREJECTED)
    );
    assert_eq!(
        verdict(&signed, &kernel),
        Verdict::LoadsWithTaint("E".into())
    );
}
