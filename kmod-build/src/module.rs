use std::fmt::Write as _;

use camino::{Utf8Path, Utf8PathBuf};

use crate::bindings_cache::{BindingsCache, IncludedFiles};
use crate::cflags::CFlags;
use crate::error::{Error, Result};
use crate::rustflags::RustFlags;
use crate::tree::KernelTree;

/// Kernel versions `kernel_ge` cfgs are declared for.
const KNOWN_MAJORS: std::ops::RangeInclusive<u32> = 4..=7;
const KNOWN_MINORS: std::ops::RangeInclusive<u32> = 0..=20;

/// A module crate's build script helper: finds the kernel tree, checks the
/// crate is compiled with codegen that matches it, generates bindings from
/// the tree's headers with the kernel's own C flags, and emits the `cargo:`
/// lines (cfgs, rerun triggers).
///
/// ```no_run
/// // build.rs
/// kmod_build::Module::new("hello")
///     .header("linux/module.h")
///     .header("linux/printk.h")
///     .allow_function("_printk")
///     .build();
/// ```
/// The crate then includes `concat!(env!("OUT_DIR"), "/bindings.rs")`, and
/// can use `#[cfg(kernel_ge = "6.12")]` for code that differs by version.
#[derive(Debug, Clone)]
pub struct Module {
    name: String,
    headers: Vec<String>,
    functions: Vec<String>,
    types: Vec<String>,
    vars: Vec<String>,
    tree: Option<KernelTree>,
}

impl Module {
    /// `name` is the module's name as the kernel will know it.
    pub fn new(name: &str) -> Module {
        Module {
            name: name.to_owned(),
            headers: Vec::new(),
            functions: Vec::new(),
            types: Vec::new(),
            vars: Vec::new(),
            tree: None,
        }
    }

    /// A kernel header to generate bindings from, e.g. `linux/printk.h`.
    pub fn header(mut self, header: &str) -> Module {
        self.headers.push(header.to_owned());
        self
    }

    /// Functions (regexes) to bind; with no allow-list everything is bound.
    pub fn allow_function(mut self, pattern: &str) -> Module {
        self.functions.push(pattern.to_owned());
        self
    }

    pub fn allow_type(mut self, pattern: &str) -> Module {
        self.types.push(pattern.to_owned());
        self
    }

    /// Variables and macro constants (regexes) to bind.
    pub fn allow_var(mut self, pattern: &str) -> Module {
        self.vars.push(pattern.to_owned());
        self
    }

    /// Builds against `tree` instead of the one the environment names.
    pub fn kernel(mut self, tree: KernelTree) -> Module {
        self.tree = Some(tree);
        self
    }

    /// Runs [`Module::try_build`]; on error, reports it to cargo and exits
    /// the build script with status 1.
    pub fn build(self) {
        if let Err(error) = self.try_build() {
            for line in error.to_string().lines() {
                println!("cargo::error={line}");
            }
            std::process::exit(1);
        }
    }

    /// Generates `$OUT_DIR/bindings.rs` and prints the `cargo:` lines.
    pub fn try_build(self) -> Result<()> {
        for var in [crate::KERNEL_ENV, "KDIR", crate::CACHE_ENV] {
            println!("cargo:rerun-if-env-changed={var}");
        }
        let tree = match self.tree.clone() {
            Some(tree) => tree,
            None => KernelTree::from_env()?,
        };
        let config = tree.config()?;
        check_codegen(&tree, &RustFlags::for_config(&config))?;

        let out_dir = env_path("OUT_DIR")?;
        let cache_dir = match std::env::var_os(crate::CACHE_ENV) {
            Some(dir) => Utf8PathBuf::from_path_buf(dir.into())
                .map_err(|path| Error::NonUtf8Path { path })?
                .join(&tree.release),
            None => out_dir.join("kmod-build"),
        };
        std::fs::create_dir_all(&cache_dir).map_err(|e| Error::io(&cache_dir, e))?;
        let cflags = CFlags::probe(&tree, &cache_dir)?;
        let bindings = self.bindings(&cflags, &tree, &cache_dir)?;
        let path = out_dir.join("bindings.rs");
        std::fs::write(&path, bindings).map_err(|e| Error::io(&path, e))?;

        print!("{}", version_cfgs(tree.version()));
        println!("cargo:rustc-env=KMOD_KERNEL_RELEASE={}", tree.release);
        Ok(())
    }

    /// The bindings from the shared cache, or from bindgen (then cached);
    /// prints a rerun trigger for every header either way.
    fn bindings(&self, cflags: &CFlags, tree: &KernelTree, cache_dir: &Utf8Path) -> Result<String> {
        // bindgen panics when it cannot load libclang (whose version is part
        // of the cache key): load it first to say so.
        check_libclang()?;
        let clang_args = cflags.for_clang(&self.name);
        // A kernel package update rewrites these in place.
        let tree_stamp: Vec<Option<(u64, std::time::SystemTime)>> = [
            "include/generated/autoconf.h",
            "include/generated/utsrelease.h",
        ]
        .iter()
        .map(|file| {
            let metadata = std::fs::metadata(tree.path.join(file)).ok()?;
            Some((metadata.len(), metadata.modified().ok()?))
        })
        .collect();
        let key = (
            &self.headers,
            &self.functions,
            &self.types,
            &self.vars,
            &clang_args,
            (&tree.path, &tree.release, tree_stamp),
        );
        let cache = BindingsCache::new(cache_dir, &key);
        let (bindings, headers) = match cache.load() {
            Some(hit) => hit,
            None => {
                let included = IncludedFiles::default();
                let bindings = self.generate_bindings(clang_args, included.clone())?;
                let headers = included.take();
                cache.store(&bindings, &headers)?;
                (bindings, headers)
            }
        };
        for header in &headers {
            println!("cargo:rerun-if-changed={header}");
        }
        Ok(bindings)
    }

    fn generate_bindings(
        &self,
        clang_args: Vec<String>,
        included: IncludedFiles,
    ) -> Result<String> {
        let wrapper: String = self
            .headers
            .iter()
            .map(|h| format!("#include <{h}>\n"))
            .collect();
        let mut builder = bindgen::Builder::default()
            .header_contents("kmod-build-wrapper.h", &wrapper)
            .clang_args(clang_args)
            .use_core()
            .ctypes_prefix("core::ffi")
            .layout_tests(false)
            .generate_comments(false)
            .derive_default(true)
            .parse_callbacks(Box::new(included));
        for pattern in &self.functions {
            builder = builder.allowlist_function(pattern);
        }
        for pattern in &self.types {
            builder = builder.allowlist_type(pattern);
        }
        for pattern in &self.vars {
            builder = builder.allowlist_var(pattern);
        }
        let bindings = builder.generate().map_err(|e| {
            Error::Bindgen(format!(
                "bindgen failed on {} for module {}: {e}",
                self.headers.join(", "),
                self.name
            ))
        })?;
        Ok(bindings.to_string())
    }
}

/// Loads libclang (for bindgen) or says which package provides it.
pub fn check_libclang() -> Result<()> {
    if clang_sys::is_loaded() {
        return Ok(());
    }
    clang_sys::load().map_err(|_| Error::Prerequisite {
        what: "libclang (for bindgen)".into(),
        help: "apt-get install libclang-dev (Fedora: dnf install clang-devel; Arch: pacman -S clang), or set LIBCLANG_PATH".into(),
    })
}

/// A module crate compiled without the tree's codegen would build but not
/// load (or silently lack the kernel's mitigations): refuse it up front.
fn check_codegen(tree: &KernelTree, wanted: &RustFlags) -> Result<()> {
    let target = std::env::var("TARGET").unwrap_or_default();
    let encoded = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let missing = wanted.missing_from(&encoded);
    if target == crate::RUST_TARGET && missing.is_empty() {
        return Ok(());
    }
    Err(Error::Prerequisite {
        what: format!(
            "codegen matching kernel {} (target `{target}`, want `{}`; missing flags: {})",
            tree.release,
            crate::RUST_TARGET,
            if missing.is_empty() { "none".to_owned() } else { missing.join(" ") }
        ),
        help: "build module crates with `cargo xtask build-module <crate>`, which passes the tree's flags to core as well".into(),
    })
}

fn env_path(var: &str) -> Result<Utf8PathBuf> {
    let value = std::env::var_os(var).ok_or_else(|| Error::Prerequisite {
        what: format!("environment variable {var}"),
        help: "Module::build runs inside a cargo build script".into(),
    })?;
    Utf8PathBuf::from_path_buf(value.into()).map_err(|path| Error::NonUtf8Path { path })
}

/// `kernel_ge="X.Y"` for every known version up to the tree's, declared
/// for every known version so that `#[cfg(kernel_ge = "...")]` is checked.
fn version_cfgs((major, minor, _): (u32, u32, u32)) -> String {
    let mut declared = Vec::new();
    let mut out = String::new();
    for known_major in KNOWN_MAJORS {
        for known_minor in KNOWN_MINORS {
            declared.push(format!("\"{known_major}.{known_minor}\""));
            if (known_major, known_minor) <= (major, minor) {
                let _ = writeln!(
                    out,
                    "cargo:rustc-cfg=kernel_ge=\"{known_major}.{known_minor}\""
                );
            }
        }
    }
    format!(
        "cargo:rustc-check-cfg=cfg(kernel_ge, values({}))\n{out}",
        declared.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_cfgs_enable_up_to_the_tree() {
        let cfgs = version_cfgs((6, 1, 0));
        assert!(cfgs.contains("cargo:rustc-cfg=kernel_ge=\"6.1\"\n"));
        assert!(cfgs.contains("cargo:rustc-cfg=kernel_ge=\"5.15\"\n"));
        assert!(!cfgs.contains("cargo:rustc-cfg=kernel_ge=\"6.2\""));
        assert!(cfgs.starts_with("cargo:rustc-check-cfg=cfg(kernel_ge, values(\"4.0\""));
        assert!(version_cfgs((6, 12, 117)).contains("kernel_ge=\"6.12\"\n"));
    }
}
