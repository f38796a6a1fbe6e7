//! DKMS: hello's package from `cargo kmod dkms` beside `examples/c-hello`
//! packaged the same way (its sources and a dkms.conf whose MAKE is plain
//! Kbuild), each built by `dkms build` for every tree in turn. The Rust
//! builds start from an empty cache (`KMOD_BUILD_CACHE_HOME`): the first
//! tree pays for the sysroot and the build scripts' dependencies, the ones
//! after it are what a kernel update costs. DKMS runs a release build of
//! this checkout's cargo kmod, as `cargo install` would make it.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::driver::dkms::{self, DkmsOptions};
use kmod_build::driver::Human;
use kmod_build::KernelTree;
use xshell::{cmd, Shell};

use super::time;
use crate::project_root;
use crate::workspace::ModuleCrate;

/// Where the DKMS section of BENCHMARKS.md starts.
pub const HEADING: &str = "\n## DKMS";

/// The C package's name in DKMS's tree.
const C_PACKAGE: &str = "kmod-bench-c-hello";
const VERSION: &str = "0.1.0";

/// Sizes in bytes and `dkms build` times per tree, C and Rust.
pub struct DkmsTimes {
    c_size: u64,
    rust_size: u64,
    builds: Vec<(String, Duration, Duration)>,
}

pub fn measure(sh: &Shell, hello: &ModuleCrate, trees: &[KernelTree]) -> Result<DkmsTimes> {
    ensure!(
        rustix::process::geteuid().is_root(),
        "the DKMS benchmark runs `dkms add/build` and needs root"
    );
    let temp = tempfile::tempdir()?;
    let work = Utf8PathBuf::try_from(temp.path().to_owned())?;
    let c_package = c_package(&work)?;
    let rust_package = dkms::package(
        &hello.project,
        &hello.module,
        &DkmsOptions {
            out_dir: work.join("rust"),
        },
        &Human,
    )?;
    let rust_id = format!("{}/{}", hello.module.name, hello.module.version);
    let c_id = format!("{C_PACKAGE}/{VERSION}");
    let cache = work.join("cache");
    // The package's MAKE runs the `cargo kmod` on PATH: this checkout's,
    // optimized as `cargo install` builds it (bindgen runs in it).
    let root = project_root();
    cmd!(
        sh,
        "cargo build --quiet --release --manifest-path {root}/Cargo.toml -p cargo-kmod"
    )
    .run()?;
    let path = format!(
        "{}:{}",
        root.join("target/release"),
        std::env::var("PATH").unwrap_or_default()
    );
    let packages = [
        (c_id.as_str(), &c_package),
        (rust_id.as_str(), &rust_package),
    ];
    let builds = add_and_build(sh, &packages, trees, &path, &cache);
    for (id, _) in packages {
        crate::workspace::forget_dkms_package(sh, id)?;
    }
    let builds = builds?;
    Ok(DkmsTimes {
        c_size: size(&c_package)?,
        rust_size: size(&rust_package)?,
        builds,
    })
}

/// `dkms add` of each package (C first), then `dkms build` of each for
/// every tree: (release, C time, Rust time).
fn add_and_build(
    sh: &Shell,
    packages: &[(&str, &Utf8PathBuf); 2],
    trees: &[KernelTree],
    path: &str,
    cache: &Utf8Path,
) -> Result<Vec<(String, Duration, Duration)>> {
    for (id, package) in packages {
        crate::workspace::forget_dkms_package(sh, id)?;
        cmd!(sh, "dkms add {package}")
            .quiet()
            .ignore_stdout()
            .run()?;
    }
    let mut builds = Vec::new();
    for tree in trees {
        let (release, source) = (&tree.release, &tree.path);
        let build = |id: &str| {
            time(|| {
                cmd!(
                    sh,
                    "dkms build {id} -k {release} --kernelsourcedir {source}"
                )
                .env("PATH", path)
                .env(kmod_build::CACHE_HOME_ENV, cache)
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run()
                .with_context(|| {
                    format!("dkms build {id} for {release} (see /var/lib/dkms/{id}/build/make.log)")
                })?;
                Ok(())
            })
        };
        let c = build(packages[0].0)?;
        let rust = build(packages[1].0)?;
        builds.push((release.clone(), c, rust));
    }
    Ok(builds)
}

impl DkmsTimes {
    pub fn render(&self, out: &mut String) {
        let mb = |bytes: u64| {
            if bytes < 1_000_000 {
                format!("{:.1} kB", bytes as f64 / 1e3)
            } else {
                format!("{:.1} MB", bytes as f64 / 1e6)
            }
        };
        let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
        let _ = writeln!(
            out,
            "{HEADING}\n\n`dkms build` of hello's `cargo kmod dkms` package and of \
             `examples/c-hello` packaged the same way, for each kernel in turn; the \
             Rust builds start with an empty kmod-build cache, so the first kernel \
             includes the core/alloc sysroot and the build scripts' dependencies, \
             and later kernels show what a kernel update costs (a new sysroot only \
             when its codegen flags differ).\n\n\
             Package directory: C {}, Rust {} (goal: under 10 MB).\n\n\
             | kernel | C | Rust | Rust / C | goal |\n|---|---|---|---|---|",
            mb(self.c_size),
            mb(self.rust_size),
        );
        for (index, (release, c, rust)) in self.builds.iter().enumerate() {
            let goal = if index == 0 {
                "(first build: reported)"
            } else {
                "≤ 3× for a kernel update"
            };
            let _ = writeln!(
                out,
                "| {release} ({}) | {} | {} | {:.1}× | {goal} |",
                if index == 0 { "first" } else { "next" },
                secs(*c),
                secs(*rust),
                rust.as_secs_f64() / c.as_secs_f64(),
            );
        }
    }
}

/// `examples/c-hello` as a DKMS package in `work`.
fn c_package(work: &Utf8Path) -> Result<Utf8PathBuf> {
    let dir = work.join(format!("c/{C_PACKAGE}-{VERSION}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
    for file in ["hello.c", "Kbuild"] {
        let source = project_root().join("examples/c-hello").join(file);
        std::fs::copy(&source, dir.join(file)).with_context(|| format!("copying {source}"))?;
    }
    let conf = format!(
        "PACKAGE_NAME=\"{C_PACKAGE}\"\nPACKAGE_VERSION=\"{VERSION}\"\n\
         BUILT_MODULE_NAME[0]=\"c_hello\"\nDEST_MODULE_LOCATION[0]=\"/updates/dkms\"\n\
         MAKE[0]=\"make -C ${{kernel_source_dir}} M=${{dkms_tree}}/{C_PACKAGE}/{VERSION}/build modules\"\n\
         CLEAN=\"make -C ${{kernel_source_dir}} M=${{dkms_tree}}/{C_PACKAGE}/{VERSION}/build clean\"\n"
    );
    std::fs::write(dir.join("dkms.conf"), conf).context("writing the C dkms.conf")?;
    Ok(dir)
}

/// Bytes of the files under `dir`.
fn size(dir: &Utf8Path) -> Result<u64> {
    let mut total = 0;
    for file in crate::workspace::files_under(dir)? {
        total += std::fs::metadata(&file)
            .with_context(|| format!("reading {file}"))?
            .len();
    }
    Ok(total)
}
