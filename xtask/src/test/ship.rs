//! Boot tests for shipping modules: `hello` signed with a key `gen-key`
//! made, and `hello` built and installed by Debian's DKMS from the package
//! `cargo xtask dkms` writes, each loaded by the real kernel in QEMU.

use anyhow::{bail, ensure, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::keyring::Trust;
use kmod_build::signature::{self, Verified};
use kmod_build::{check, Errno, KernelTree, ModuleInfo};
use xshell::{cmd, Shell};

use super::{ensure_clean, Results};
use crate::project_root;
use crate::workspace::ModuleCrate;
use kmod_build::driver::dkms::{self, DkmsOptions};
use kmod_build::driver::qemu::Guest;
use kmod_build::driver::sign::{self, SigningKey};
use kmod_build::driver::Human;

const KEY_NAME: &str = "kmod-build test signing key";

/// `sizeof(struct module_signature)`, between the PKCS#7 and the marker.
const SIGNATURE_INFO_LEN: usize = 12;

/// Signed hello on each of `trees`; the DKMS package built for each of
/// `trees` and `dkms_only` (kernels of other flavours and machines).
pub fn run(
    sh: &Shell,
    trees: &[KernelTree],
    dkms_only: &[KernelTree],
    hello: &ModuleCrate,
    results: &mut Results,
) {
    let keys = tempfile::tempdir().context("creating a key directory");
    let pair = keys
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .and_then(|dir| {
            let out_dir = Utf8PathBuf::try_from(dir.path().to_owned())?;
            Ok(sign::generate_key(&out_dir, KEY_NAME, 1)?)
        });
    for tree in trees {
        let result = match &pair {
            Ok(pair) => signed_hello(sh, hello, tree, pair),
            Err(error) => Err(anyhow::anyhow!("gen-key: {error:#}")),
        };
        results.record(format!("boot::signed_hello::{}", tree.release), result);
    }

    let installed = DkmsPackage::add(sh, hello);
    // Installed kernels get `dkms install`; fetched ones (not this
    // system's, maybe not its architecture) `dkms build` with their tree.
    for tree in trees.iter().chain(dkms_only) {
        let result = match &installed {
            Ok(package) if tree.origin() == kmod_build::Origin::Installed => {
                package.install_and_boot(sh, tree)
            }
            Ok(package) => package.build_and_boot(sh, tree),
            Err(error) => Err(anyhow::anyhow!("packaging for DKMS: {error:#}")),
        };
        results.record(format!("boot::dkms_hello::{}", tree.release), result);
    }
    if let Ok(package) = installed {
        results.record("dkms::remove".into(), package.remove(sh));
    }
}

/// `hello` signed for `tree` verifies against the certificate (here and
/// with `openssl cms`), `modinfo` names the signer, a tampered copy is
/// reported invalid, the kernel (not enforcing signatures) loads it, and
/// refuses a copy with a mangled PKCS#7 as check predicts.
fn signed_hello(
    sh: &Shell,
    hello: &ModuleCrate,
    tree: &KernelTree,
    pair: &SigningKey,
) -> Result<()> {
    let ko = hello.ko_path(tree);
    ensure!(ko.is_file(), "hello.ko was not built for {}", tree.release);
    let signed = ko.with_file_name("hello-signed.ko");
    sign::sign(&ko, pair, tree, &signed, &Human)?;
    let cert_path = &pair.cert;

    let cert = signature::load_certificate(cert_path)?;
    let info = ModuleInfo::read(&signed)?;
    let mut summary = signature::Summary::of(info.signature.as_ref());
    summary.verify(info.signature.as_ref(), &cert);
    let hash = tree
        .config()?
        .get("CONFIG_MODULE_SIG_HASH")
        .unwrap_or("sha256")
        .to_owned();
    ensure!(
        summary.verified == Verified::Yes
            && summary.signer.as_deref() == Some(KEY_NAME)
            && summary.hash.as_deref() == Some(hash.as_str()),
        "signature of {signed}: {summary}"
    );
    openssl_verify(sh, &signed, cert_path).context("openssl cms -verify of the signed module")?;
    for (field, expected) in [("signer", KEY_NAME), ("sig_hashalgo", hash.as_str())] {
        let found = cmd!(sh, "modinfo -F {field} {signed}").read()?;
        ensure!(
            found == expected,
            "modinfo -F {field}: {found:?}, expected {expected:?}"
        );
    }

    let tampered = ko.with_file_name("hello-tampered.ko");
    let mut bytes = std::fs::read(&signed)?;
    // A byte of the ELF header's padding: the module still parses.
    bytes[10] ^= 0xff;
    std::fs::write(&tampered, &bytes).with_context(|| format!("writing {tampered}"))?;
    let tampered_info = ModuleInfo::read(&tampered)?;
    // With the certificate trusted (an enrolled MOK), as the kernel would.
    let mut kernel = check::Kernel::load(tree)?;
    kernel.keyring.add(cert.clone(), cert_path);
    let report = check::check(&tampered_info, &kernel);
    ensure!(
        matches!(&report.trust, Some(Trust::Rejected { why }) if why.contains("does not match"))
            && report.verdict == check::Verdict::Refused(Errno::EKEYREJECTED),
        "the tampered copy was not reported invalid:\n{report}"
    );
    ensure!(
        openssl_verify(sh, &tampered, cert_path).is_err(),
        "openssl cms -verify accepted the tampered copy"
    );

    // A PKCS#7 the kernel cannot parse: refused even unenforced, as check says.
    let mangled = ko.with_file_name("hello-badsig.ko");
    let mut bytes = std::fs::read(&signed)?;
    let signed_len = info
        .signature
        .as_ref()
        .and_then(|s| s.as_ref().ok())
        .map(|s| s.signed_len)
        .context("the signed module has no readable signature")?;
    bytes[signed_len] ^= 0xff;
    std::fs::write(&mangled, &bytes).with_context(|| format!("writing {mangled}"))?;
    let report = check::check(&ModuleInfo::read(&mangled)?, &check::Kernel::load(tree)?);
    ensure!(
        report.verdict == check::Verdict::Refused(Errno::EBADMSG),
        "check of a mangled signature:\n{report}"
    );

    boot(
        tree,
        &signed,
        "hello-signed.ko",
        Some((&mangled, Errno::EBADMSG)),
    )
}

/// The independent cross-check: OpenSSL verifies the detached PKCS#7
/// against the module's bytes.
fn openssl_verify(sh: &Shell, module: &Utf8Path, cert: &Utf8Path) -> Result<()> {
    let bytes = std::fs::read(module)?;
    let info = ModuleInfo::parse(module, &bytes)?;
    let Some(Ok(found)) = &info.signature else {
        bail!("{module} has no readable signature");
    };
    let pkcs7_end = bytes.len() - signature::MARKER.len() - SIGNATURE_INFO_LEN;
    let dir = tempfile::tempdir()?;
    let body = dir.path().join("module");
    let pkcs7 = dir.path().join("signature.p7");
    std::fs::write(&body, &bytes[..found.signed_len])?;
    std::fs::write(&pkcs7, &bytes[found.signed_len..pkcs7_end])?;
    cmd!(sh, "openssl cms -verify -binary -inform DER -in {pkcs7} -content {body} -certfile {cert} -nointern -noverify -out /dev/null")
        .quiet()
        .ignore_stderr()
        .run()?;
    Ok(())
}

/// Boots `tree`'s kernel; if `refused` is given, insmod of that file must
/// fail with that errno (busybox insmod exits with it). Then loads `module`
/// (`as_name` in the guest) and unloads it; `hello`'s init and exit lines
/// must be in a clean log. (An unenforcing kernel loads a module signed by
/// a key it does not trust, tainting it: "module verification failed".)
fn boot(
    tree: &KernelTree,
    module: &Utf8Path,
    as_name: &str,
    refused: Option<(&Utf8Path, Errno)>,
) -> Result<()> {
    let vmlinuz = tree.image();
    let dir = tempfile::tempdir()?;
    let copy = Utf8PathBuf::try_from(dir.path().join(as_name))?;
    std::fs::copy(module, &copy).with_context(|| format!("copying {module}"))?;
    let mut guest = Guest::new(&vmlinuz);
    let mut script = String::new();
    if let Some((bad, _)) = refused {
        guest.file(bad);
        let name = bad.file_name().context("refused module has a file name")?;
        script.push_str(&format!("section refused insmod /modules/{name}\n"));
    }
    script.push_str(&format!(
        "section load insmod /modules/{as_name}\n\
         section unload rmmod hello\n\
         section log dmesg -r\n"
    ));
    let log = guest.file(&copy).run(&script)?;
    if let Some((bad, errno)) = refused {
        let returned = log.expect_section("refused")?.insmod();
        ensure!(
            returned == Ok(Some(errno)),
            "insmod {bad} gave {returned:?}, not {errno}:\n{}",
            log.tail(30)
        );
    }
    log.expect_success("load")?;
    log.expect_success("unload")?;
    let kernel_log = log.expect_section("log")?.output;
    for message in [
        format!("hello: loaded, built for {}", tree.release),
        "hello: unloaded".into(),
    ] {
        ensure!(
            kernel_log.contains(&message),
            "no `{message}` in the kernel log:\n{kernel_log}"
        );
    }
    ensure_clean(kernel_log.lines())
}

/// The package, added to DKMS (`/usr/src/<name>-<version>`).
struct DkmsPackage {
    name: String,
    version: String,
    out_dir: tempfile::TempDir,
}

impl DkmsPackage {
    fn add(sh: &Shell, hello: &ModuleCrate) -> Result<DkmsPackage> {
        let out_dir = tempfile::tempdir()?;
        // The package's MAKE runs the `cargo kmod` on PATH: this checkout's.
        let root = project_root();
        cmd!(
            sh,
            "cargo build --quiet --manifest-path {root}/Cargo.toml -p cargo-kmod"
        )
        .run()?;
        let options = DkmsOptions {
            out_dir: Utf8PathBuf::try_from(out_dir.path().to_owned())?,
        };
        let package = dkms::package(&hello.project, &hello.module, &options, &Human)?;
        holds_no_path_of_this_machine(sh, &package)?;
        names_what_is_missing(sh, &package)?;
        let added = DkmsPackage {
            name: hello.module.name.clone(),
            version: hello.module.version.clone(),
            out_dir,
        };
        crate::workspace::forget_dkms_package(sh, &added.id())?;
        cmd!(sh, "dkms add {package}")
            .quiet()
            .ignore_stdout()
            .run()?;
        Ok(added)
    }

    fn id(&self) -> String {
        format!("{}/{}", self.name, self.version)
    }

    /// `dkms install` builds with the package's dkms.conf for `tree`; the
    /// installed module must be checked clean and load in `tree`'s kernel.
    fn install_and_boot(&self, sh: &Shell, tree: &KernelTree) -> Result<()> {
        let (id, release) = (self.id(), &tree.release);
        self.dkms(tree, cmd!(sh, "dkms install {id} -k {release}"))?;
        let dir = Utf8PathBuf::from(format!("/lib/modules/{release}/updates/dkms"));
        self.check_and_boot(sh, tree, &dir)
    }

    /// `dkms build` for a fetched tree (`--kernelsourcedir`, and its
    /// machine: DKMS names arm64 `aarch64`); the module DKMS keeps must be
    /// checked clean and load in `tree`'s kernel.
    fn build_and_boot(&self, sh: &Shell, tree: &KernelTree) -> Result<()> {
        let (id, release, source) = (self.id(), &tree.release, &tree.path);
        let machine = match tree.arch.as_str() {
            "arm64" => "aarch64",
            "x86" => "x86_64",
            other => bail!("{release}: no DKMS machine name for arch {other}"),
        };
        self.dkms(
            tree,
            cmd!(
                sh,
                "dkms build {id} -k {release} -a {machine} --kernelsourcedir {source}"
            ),
        )?;
        let dir = Utf8PathBuf::from(format!(
            "/var/lib/dkms/{}/{}/{release}/{machine}/module",
            self.name, self.version
        ));
        self.check_and_boot(sh, tree, &dir)
    }

    /// Runs a `dkms` build command with this checkout's `cargo kmod` first
    /// on PATH; a failure shows make.log's tail.
    fn dkms(&self, tree: &KernelTree, command: xshell::Cmd<'_>) -> Result<()> {
        let (id, release) = (self.id(), &tree.release);
        let started = std::time::Instant::now();
        let path = format!(
            "{}:{}",
            project_root().join("target/debug"),
            std::env::var("PATH").unwrap_or_default()
        );
        let shown = command.to_string();
        let output = command.env("PATH", path).ignore_status().output()?;
        if !output.status.success() {
            let make_log = format!(
                "/var/lib/dkms/{}/{}/build/make.log",
                self.name, self.version
            );
            let log = std::fs::read_to_string(&make_log).unwrap_or_default();
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            bail!(
                "{shown} failed:\n{}\n{make_log}:\n{}",
                String::from_utf8_lossy(&output.stdout),
                tail.join("\n")
            );
        }
        eprintln!(
            "    {shown}: {id} built for {release} in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// The module DKMS left in `dir` for `tree`: checked, then loaded.
    fn check_and_boot(&self, sh: &Shell, tree: &KernelTree, dir: &Utf8Path) -> Result<()> {
        let release = &tree.release;
        let module = ["ko", "ko.xz", "ko.zst", "ko.gz"]
            .iter()
            .map(|ext| dir.join(format!("{}.{ext}", self.name)))
            .find(|path| path.is_file())
            .with_context(|| format!("dkms installed no {}.ko* in {dir}", self.name))?;
        let info = ModuleInfo::read(&module)?;
        let report = check::check(&info, &check::Kernel::load(tree)?);
        ensure!(
            !matches!(report.verdict, check::Verdict::Refused(_)),
            "{module}:\n{report}"
        );
        let plain = match module.extension() {
            Some("ko") => module.clone(),
            Some("xz") => {
                let plain = Utf8PathBuf::try_from(
                    self.out_dir
                        .path()
                        .join(format!("{}-{release}.ko", self.name)),
                )?;
                let data = cmd!(sh, "xz -dc {module}").output()?.stdout;
                std::fs::write(&plain, data)?;
                plain
            }
            _ => bail!("{module}: only .ko and .ko.xz are loaded by this test"),
        };
        boot(tree, &plain, "hello-dkms.ko", None)
    }

    /// `dkms remove` for every kernel, and the copy in /usr/src.
    fn remove(&self, sh: &Shell) -> Result<()> {
        let id = self.id();
        // dkms reads the compiler from `.comment`, which Rust modules lack:
        // it warns on stderr, so only a failure shows what it said.
        let removed = cmd!(sh, "dkms remove {id} --all")
            .ignore_status()
            .output()?;
        ensure!(
            removed.status.success(),
            "dkms remove {id} --all failed:\n{}",
            String::from_utf8_lossy(&removed.stderr)
        );
        crate::workspace::remove_dkms_source(&id)
    }
}

/// The package builds on any machine: no file in it names this checkout,
/// this machine's rustup or cargo homes, or its kmod-build cache.
fn holds_no_path_of_this_machine(sh: &Shell, package: &Utf8Path) -> Result<()> {
    let rustup_home = cmd!(sh, "rustup show home").quiet().read()?;
    let cargo_home = std::env::var("CARGO_HOME")
        .unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap_or_default()));
    let here = [
        project_root().to_string(),
        rustup_home,
        cargo_home,
        kmod_build::cache_home().to_string(),
    ];
    for entry in crate::workspace::files_under(package)? {
        let bytes = std::fs::read(&entry).with_context(|| format!("reading {entry}"))?;
        for path in &here {
            ensure!(
                !bytes
                    .windows(path.len())
                    .any(|window| window == path.as_bytes()),
                "{entry} names {path}, a path of the packaging machine"
            );
        }
    }
    Ok(())
}

/// The package's MAKE on a PATH without cargo kmod (and no HOME) fails,
/// naming the tool and how to install it.
fn names_what_is_missing(sh: &Shell, package: &Utf8Path) -> Result<()> {
    let script = package.join(dkms::MAKE_SCRIPT);
    let output = cmd!(
        sh,
        "env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin {script} /nonexistent 0.0.0"
    )
    .quiet()
    .ignore_status()
    .output()?;
    let said = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.code() == Some(1)
            && said.contains("cargo-kmod not found")
            && said.contains("cargo install cargo-kmod"),
        "{script} with a bare PATH: {:?}, said:\n{said}",
        output.status
    );
    Ok(())
}
