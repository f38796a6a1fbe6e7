use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use camino::{Utf8Path, Utf8PathBuf};

use crate::bindings_cache::{BindingsCache, IncludedFiles};
use crate::cflags::CFlags;
use crate::error::{Error, Result};
use crate::files::{file_stamp, read_cache_entry, write_cache_entry, CacheEntry};
use crate::rustflags::RustFlags;
use crate::shim::{SHIM_FILE, SHIM_USE_PREFIX};
use crate::stable_hash::StableHash;
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
/// kmod_build::Build::new("hello")
///     .header("linux/module.h")
///     .header("linux/printk.h")
///     .allow_function("_printk")
///     .build();
/// ```
/// The crate then includes `env!("KMOD_BUILD_BINDINGS")` (the generated
/// file, see [`BINDINGS_ENV`]), and can use `#[cfg(kernel_ge = "6.12")]`
/// for code that differs by version.
///
/// The same list can live in a TOML file beside the manifest instead
/// ([`Build::from_spec`]); a crate that names that file in its manifest
/// (`links` and `[package.metadata.kmod-build] bindings = "<file>"`) has
/// its build script overridden by `cargo kmod`, which generates the
/// bindings itself: the script and its dependencies (bindgen, this crate)
/// are then never compiled for a module build.
///
/// What bindgen cannot bind comes from the tree's headers too: a
/// [`constant`](Build::constant) is evaluated by clang with the kernel's
/// flags, and a [`helper`](Build::helper) is a C function written to
/// `$OUT_DIR/`[`SHIM_FILE`], which `cargo kmod build` compiles with
/// Kbuild as another object of the module.
#[derive(Debug, Clone)]
pub struct Build {
    name: String,
    headers: Vec<String>,
    functions: Vec<String>,
    types: Vec<String>,
    vars: Vec<String>,
    constants: Vec<(String, String)>,
    helpers: Vec<(String, String)>,
    tree: Option<KernelTree>,
}

/// Prefix of the C declarations that carry constants to bindgen; the
/// bindings name them without it.
const CONSTANT_PREFIX: &str = "kmod_build_constant_";

/// Set by [`Build::try_build`]: this process is a build script, whose
/// warnings cargo takes from stdout.
static IN_BUILD_SCRIPT: AtomicBool = AtomicBool::new(false);

/// A warning about a cache entry or the like: a `cargo:warning` line in a
/// build script, else on stderr (the driver's stdout may be JSON).
pub(crate) fn warn(message: &str) {
    if IN_BUILD_SCRIPT.load(Ordering::Relaxed) {
        println!("cargo:warning=kmod-build: {message}");
    } else {
        eprintln!("warning: kmod-build: {message}");
    }
}

/// The environment variable, set for the crate's compile, that holds the
/// path of its generated bindings: `include!(env!("KMOD_BUILD_BINDINGS"))`.
pub const BINDINGS_ENV: &str = "KMOD_BUILD_BINDINGS";

/// What [`Build::generate`] made for one tree: its files, and what the
/// crate's compile must be given (what a build script prints as `cargo:`
/// lines, or a build-script override sets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub bindings: Utf8PathBuf,
    /// The C helpers, for Kbuild to compile with the module.
    pub shim: Option<Utf8PathBuf>,
    /// `rustc-cfg` values, e.g. `kernel_ge="6.1"`.
    pub cfgs: Vec<String>,
    /// `rustc-check-cfg` values declaring them.
    pub check_cfgs: Vec<String>,
    /// `rustc-env` pairs: [`BINDINGS_ENV`].
    pub env: Vec<(String, String)>,
    /// The headers the bindings were generated from (rerun triggers).
    pub headers: Vec<String>,
}

/// A crate's bindings as data: what [`Build::from_spec`] reads.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    name: String,
    #[serde(default)]
    headers: Vec<String>,
    #[serde(default)]
    functions: Vec<String>,
    #[serde(default)]
    types: Vec<String>,
    #[serde(default)]
    vars: Vec<String>,
    #[serde(default)]
    constants: Vec<SpecConstant>,
    #[serde(default)]
    helpers: Vec<SpecHelper>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecConstant {
    name: String,
    #[serde(rename = "type")]
    c_type: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecHelper {
    prototype: String,
    body: String,
}

impl Build {
    /// `name` is the module's name as the kernel will know it.
    pub fn new(name: &str) -> Build {
        Build {
            name: name.to_owned(),
            headers: Vec::new(),
            functions: Vec::new(),
            types: Vec::new(),
            vars: Vec::new(),
            constants: Vec::new(),
            helpers: Vec::new(),
            tree: None,
        }
    }

    /// The build a TOML file describes: `name`, and lists `headers`,
    /// `functions`, `types`, `vars` (as the methods of the same names
    /// take them), `constants` (tables of `name` and `type`) and `helpers`
    /// (tables of `prototype` and `body`). A relative path is taken from
    /// the crate's directory when run as a build script.
    pub fn from_spec(path: impl AsRef<Utf8Path>) -> Result<Build> {
        let path = path.as_ref();
        let text = crate::error::read_to_string(path)?;
        let spec: Spec = toml::from_str(&text).map_err(|e| Error::Parse {
            path: path.to_owned(),
            line: e
                .span()
                .map_or(0, |span| text[..span.start].matches('\n').count() + 1),
            why: e.message().to_owned(),
        })?;
        Ok(Build {
            name: spec.name,
            headers: spec.headers,
            functions: spec.functions,
            types: spec.types,
            vars: spec.vars,
            constants: spec
                .constants
                .into_iter()
                .map(|c| (c.name, c.c_type))
                .collect(),
            helpers: spec
                .helpers
                .into_iter()
                .map(|h| (h.prototype, h.body))
                .collect(),
            tree: None,
        })
    }

    /// A kernel header to generate bindings from, e.g. `linux/printk.h`.
    pub fn header(mut self, header: &str) -> Build {
        self.headers.push(header.to_owned());
        self
    }

    /// Functions (regexes) to bind; with no allow-list everything is bound.
    pub fn allow_function(mut self, pattern: &str) -> Build {
        self.functions.push(pattern.to_owned());
        self
    }

    pub fn allow_type(mut self, pattern: &str) -> Build {
        self.types.push(pattern.to_owned());
        self
    }

    /// Variables and macro constants (regexes) to bind.
    pub fn allow_var(mut self, pattern: &str) -> Build {
        self.vars.push(pattern.to_owned());
        self
    }

    /// A macro constant bindgen cannot bind (a cast such as `GFP_KERNEL`),
    /// as a Rust constant of C type `c_type` with the value clang computes
    /// from the tree's headers.
    pub fn constant(mut self, name: &str, c_type: &str) -> Build {
        self.constants.push((name.to_owned(), c_type.to_owned()));
        self
    }

    /// A C function for the shim, for what only C can call: `static inline`
    /// functions and function-like macros. `prototype` is its declaration
    /// (bound like any allowed function), `body` its statements, e.g.
    /// `.helper("void kmod_spin_lock_init(spinlock_t *lock)", "spin_lock_init(lock);")`.
    pub fn helper(mut self, prototype: &str, body: &str) -> Build {
        self.helpers.push((prototype.to_owned(), body.to_owned()));
        self
    }

    /// Builds against `tree` instead of the one the environment names.
    pub fn kernel(mut self, tree: KernelTree) -> Build {
        self.tree = Some(tree);
        self
    }

    /// Runs [`Build::try_build`]; on error, reports it to cargo and exits
    /// the build script with status 1.
    pub fn build(self) {
        if let Err(error) = self.try_build() {
            for line in error.to_string().lines() {
                println!("cargo::error={line}");
            }
            std::process::exit(1);
        }
    }

    /// Generates `$OUT_DIR/bindings.rs` (and `$OUT_DIR/`[`SHIM_FILE`] when
    /// there are helpers) and prints the `cargo:` lines.
    pub fn try_build(self) -> Result<()> {
        IN_BUILD_SCRIPT.store(true, Ordering::Relaxed);
        for var in [crate::KERNEL_ENV, "KDIR", crate::CACHE_ENV] {
            println!("cargo:rerun-if-env-changed={var}");
        }
        let tree = match self.tree.clone() {
            Some(tree) => tree,
            None => KernelTree::from_env()?,
        };
        check_codegen(&tree, &RustFlags::for_config(&tree.config()?))?;
        let out_dir = env_path("OUT_DIR")?;
        let cache_dir = match std::env::var_os(crate::CACHE_ENV) {
            Some(dir) => Utf8PathBuf::from_path_buf(dir.into())
                .map_err(|path| Error::NonUtf8Path { path })?
                .join(&tree.release),
            None => out_dir.join("kmod-build"),
        };
        let generated = self.generate(&tree, &out_dir, &cache_dir)?;
        for header in &generated.headers {
            println!("cargo:rerun-if-changed={header}");
        }
        for check_cfg in &generated.check_cfgs {
            println!("cargo:rustc-check-cfg={check_cfg}");
        }
        for cfg in &generated.cfgs {
            println!("cargo:rustc-cfg={cfg}");
        }
        for (key, value) in &generated.env {
            println!("cargo:rustc-env={key}={value}");
        }
        Ok(())
    }

    /// Writes the bindings for `tree` (and the C shim, when there are
    /// helpers) to `out_dir`, each only when its contents change, so that
    /// what includes them is not rebuilt; bindgen's output is kept in
    /// `cache_dir`, which builds of the same tree may share.
    pub fn generate(
        &self,
        tree: &KernelTree,
        out_dir: &Utf8Path,
        cache_dir: &Utf8Path,
    ) -> Result<Generated> {
        std::fs::create_dir_all(cache_dir).map_err(|e| Error::io(cache_dir, e))?;
        let cflags = CFlags::probe(tree, cache_dir)?;
        self.generate_from(tree, &cflags, out_dir, cache_dir)
    }

    /// [`Build::generate`] with the tree's C flags given (probed, or a
    /// guess the caller checks against the probe).
    pub(crate) fn generate_from(
        &self,
        tree: &KernelTree,
        cflags: &CFlags,
        out_dir: &Utf8Path,
        cache_dir: &Utf8Path,
    ) -> Result<Generated> {
        let config = tree.config()?;
        for dir in [out_dir, cache_dir] {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let (bindings, headers) = self.bindings(cflags, tree, cache_dir)?;
        let bindings_path = out_dir.join("bindings.rs");
        write_if_changed(&bindings_path, &bindings)?;
        let shim_path = out_dir.join(SHIM_FILE);
        let shim = if self.helpers.is_empty() {
            match std::fs::remove_file(&shim_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(&shim_path, e))
                }
                _ => None,
            }
        } else {
            write_if_changed(&shim_path, &self.shim()?)?;
            Some(shim_path)
        };
        let (mut check_cfgs, mut cfgs) = version_cfgs(tree.version());
        check_cfgs.push("cfg(kernel_config, values(any()))".to_owned());
        cfgs.extend(config_cfgs(&config));
        Ok(Generated {
            // One variable only: cargo hashes an override's variables in
            // an order of its own that changes from run to run, and a
            // changed hash rebuilds the crate.
            env: vec![(BINDINGS_ENV.to_owned(), bindings_path.to_string())],
            bindings: bindings_path,
            shim,
            cfgs,
            check_cfgs,
            headers,
        })
    }

    fn includes(&self) -> String {
        self.headers
            .iter()
            .map(|h| format!("#include <{h}>\n"))
            .collect()
    }

    /// The header bindgen reads: the includes, the constants as `const`
    /// variables clang evaluates, the helpers' prototypes.
    fn wrapper(&self) -> String {
        let mut out = self.includes();
        for (name, c_type) in &self.constants {
            let _ = writeln!(out, "const {c_type} {CONSTANT_PREFIX}{name} = {name};");
        }
        for (prototype, _) in &self.helpers {
            let _ = writeln!(out, "{prototype};");
        }
        out
    }

    /// The C shim: the helpers' definitions, compiled by Kbuild, each
    /// only when the module uses it (see [`SHIM_USE_PREFIX`]).
    fn shim(&self) -> Result<String> {
        let mut out = format!(
            "// Generated by kmod-build for {}: C helpers the Rust code calls.\n{}",
            self.name,
            self.includes()
        );
        for (prototype, body) in &self.helpers {
            let name = helper_name(prototype)?;
            let _ = write!(
                out,
                "\n#ifdef {SHIM_USE_PREFIX}{name}\n{prototype};\n{prototype}\n{{\n\t{body}\n}}\n#endif\n"
            );
        }
        Ok(out)
    }

    /// The cache entry of the bindings bindgen makes with `clang_args`.
    fn bindings_cache(
        &self,
        clang_args: &[String],
        tree: &KernelTree,
        cache_dir: &Utf8Path,
    ) -> BindingsCache {
        // A kernel package update rewrites these in place.
        let tree_stamp: Vec<String> = [
            "include/generated/autoconf.h",
            "include/generated/utsrelease.h",
        ]
        .iter()
        .map(|file| file_stamp(&tree.path.join(file)))
        .collect();
        let mut key = StableHash::new();
        key.part(self.wrapper())
            .parts(&self.functions)
            .parts(&self.types)
            .parts(&self.vars)
            .parts(clang_args)
            .part(tree.path.as_str())
            .part(&tree.release)
            .parts(&tree_stamp);
        BindingsCache::new(cache_dir, &key)
    }

    /// Removes the bindings cached for `tree` with `cflags` (flags that
    /// proved wrong: no build looks them up).
    #[cfg(feature = "driver")]
    pub(crate) fn forget_bindings(&self, cflags: &CFlags, tree: &KernelTree, cache_dir: &Utf8Path) {
        self.bindings_cache(&self.clang_args(cflags, tree), tree, cache_dir)
            .remove();
    }

    /// Whether [`Build::generate`] writes a C shim (the crate has helpers).
    pub(crate) fn has_shim(&self) -> bool {
        !self.helpers.is_empty()
    }

    /// What bindgen reads `tree`'s headers with, given its C flags.
    pub(crate) fn clang_args(&self, cflags: &CFlags, tree: &KernelTree) -> Vec<String> {
        cflags.for_clang(&self.name, tree.clang_target())
    }

    /// The bindings from the shared cache, or from bindgen (then cached),
    /// with the headers they were generated from.
    fn bindings(
        &self,
        cflags: &CFlags,
        tree: &KernelTree,
        cache_dir: &Utf8Path,
    ) -> Result<(String, Vec<String>)> {
        // bindgen panics when it cannot load libclang (whose version is part
        // of the cache key): load it first to say so.
        check_libclang()?;
        let clang_args = self.clang_args(cflags, tree);
        let cache = self.bindings_cache(&clang_args, tree, cache_dir);
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
        Ok((bindings, headers))
    }

    fn generate_bindings(
        &self,
        clang_args: Vec<String>,
        included: IncludedFiles,
    ) -> Result<String> {
        let wrapper = self.wrapper();
        let mut builder = bindgen::Builder::default()
            .header_contents("kmod-build-wrapper.h", &wrapper)
            .clang_args(clang_args)
            // The kernel's headers warn under clang; bindgen prints every
            // warning to stderr, where only errors should go.
            .clang_arg("-w")
            .use_core()
            .ctypes_prefix("core::ffi")
            .layout_tests(false)
            .generate_comments(false)
            .derive_default(true)
            // As the kernel's own bindings: Debug for every struct doubles
            // what rustc compiles of them, and nothing formats them.
            .derive_debug(false)
            // In-process: rustfmt would be a second process per tree.
            .formatter(bindgen::Formatter::Prettyplease)
            .parse_callbacks(Box::new(included))
            .parse_callbacks(Box::new(StripConstantPrefix));
        for (name, _) in &self.constants {
            builder = builder.allowlist_var(format!("{CONSTANT_PREFIX}{name}"));
        }
        for (prototype, _) in &self.helpers {
            builder = builder.allowlist_function(helper_name(prototype)?);
        }
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

/// Names the constants' declarations as the C macros they stand for.
#[derive(Debug)]
struct StripConstantPrefix;

impl bindgen::callbacks::ParseCallbacks for StripConstantPrefix {
    fn item_name(&self, item: bindgen::callbacks::ItemInfo) -> Option<String> {
        item.name.strip_prefix(CONSTANT_PREFIX).map(String::from)
    }
}

/// The function name in a C prototype: the identifier before the `(`.
fn helper_name(prototype: &str) -> Result<&str> {
    prototype
        .split('(')
        .next()
        .and_then(|head| {
            head.rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
        })
        .filter(|name| !name.is_empty() && prototype.contains('('))
        .ok_or_else(|| Error::Bindgen(format!("helper `{prototype}` is not a C prototype")))
}

/// Set once libclang has been found: clang-sys scans the library
/// directories and maps a ~30 MB library on every load (~0.1 s). A failure
/// is not remembered, so that a check after installing it sees it.
static LIBCLANG_FOUND: AtomicBool = AtomicBool::new(false);

/// Loads libclang (for bindgen) or says which package provides it.
pub fn check_libclang() -> Result<()> {
    if !LIBCLANG_FOUND.load(Ordering::Relaxed) && !load_libclang() {
        return Err(libclang_missing());
    }
    LIBCLANG_FOUND.store(true, Ordering::Relaxed);
    Ok(())
}

/// [`check_libclang`], remembered across processes in `cache_dir` (if it
/// exists): where libclang was found, trusted while that file exists and
/// `LIBCLANG_PATH` is unchanged. For drivers that check prerequisites on
/// every build.
pub fn check_libclang_remembered(cache_dir: &Utf8Path) -> Result<()> {
    let memo = cache_dir.join("libclang");
    let key = format!("LIBCLANG_PATH={:?}\n", std::env::var_os("LIBCLANG_PATH"));
    // A damaged record is not trusted: libclang is looked for again.
    let remembered = match read_cache_entry(&memo) {
        CacheEntry::Valid(text) => text
            .strip_prefix(&key)
            .is_some_and(|path| std::path::Path::new(path).is_file()),
        CacheEntry::Missing | CacheEntry::Damaged(_) => false,
    };
    if remembered {
        LIBCLANG_FOUND.store(true, Ordering::Relaxed);
        return Ok(());
    }
    check_libclang()?;
    // Only into a cache directory a build already made (a check never
    // creates one), and only a shortcut: failing to write it is harmless.
    if let Some(library) = clang_sys::get_library().filter(|_| cache_dir.is_dir()) {
        let _ = write_cache_entry(&memo, &format!("{key}{}", library.path().display()));
    }
    Ok(())
}

fn load_libclang() -> bool {
    clang_sys::is_loaded() || clang_sys::load().is_ok()
}

fn libclang_missing() -> Error {
    Error::Prerequisite {
        what: "libclang (for bindgen)".into(),
        help: "apt-get install libclang-dev (Fedora: dnf install clang-devel; Arch: pacman -S clang), or set LIBCLANG_PATH".into(),
    }
}

/// A module crate compiled without the tree's codegen would build but not
/// load (or silently lack the kernel's mitigations): refuse it up front.
fn check_codegen(tree: &KernelTree, wanted: &RustFlags) -> Result<()> {
    let target = std::env::var("TARGET").unwrap_or_default();
    let encoded = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let missing = wanted.missing_from(&encoded);
    if target == wanted.target && missing.is_empty() {
        return Ok(());
    }
    Err(Error::Prerequisite {
        what: format!(
            "codegen matching kernel {} (target `{target}`, want `{}`; missing flags: {})",
            tree.release,
            wanted.target,
            if missing.is_empty() { "none".to_owned() } else { missing.join(" ") }
        ),
        help: "build module crates with `cargo kmod build` (or `cargo xtask build-module <crate>`), which passes the tree's flags to core as well".into(),
    })
}

/// Writes `path` (atomically) unless it holds `contents` already: its
/// modification time is what cargo's and rustc's dep-info compare.
pub(crate) fn write_if_changed(path: &Utf8Path, contents: &str) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == contents.as_bytes()) {
        return Ok(());
    }
    crate::files::write_atomically(path, contents)
}

fn env_path(var: &str) -> Result<Utf8PathBuf> {
    let value = std::env::var_os(var).ok_or_else(|| Error::Prerequisite {
        what: format!("environment variable {var}"),
        help: "Build::build runs inside a cargo build script".into(),
    })?;
    Utf8PathBuf::from_path_buf(value.into()).map_err(|path| Error::NonUtf8Path { path })
}

/// `kernel_config = "CONFIG_FOO"` for every option the tree's config sets
/// to `y`, `kernel_config = "CONFIG_FOO_MODULE"` for `m` (the names
/// `autoconf.h` defines), so code can follow `#ifdef CONFIG_FOO`.
fn config_cfgs(config: &crate::Config) -> impl Iterator<Item = String> + '_ {
    config.iter().filter_map(|(name, value)| match value {
        "y" => Some(format!("kernel_config=\"{name}\"")),
        "m" => Some(format!("kernel_config=\"{name}_MODULE\"")),
        _ => None,
    })
}

/// The check-cfg declaring `kernel_ge="X.Y"` for every known version, and
/// the cfgs of those up to the tree's, so that `#[cfg(kernel_ge = "...")]`
/// is checked.
fn version_cfgs((major, minor, _): (u32, u32, u32)) -> (Vec<String>, Vec<String>) {
    let mut declared = Vec::new();
    let mut cfgs = Vec::new();
    for known_major in KNOWN_MAJORS {
        for known_minor in KNOWN_MINORS {
            declared.push(format!("\"{known_major}.{known_minor}\""));
            if (known_major, known_minor) <= (major, minor) {
                cfgs.push(format!("kernel_ge=\"{known_major}.{known_minor}\""));
            }
        }
    }
    let check_cfg = format!("cfg(kernel_ge, values({}))", declared.join(", "));
    (vec![check_cfg], cfgs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_names_come_from_prototypes() {
        assert_eq!(
            helper_name("unsigned long kmod_copy_to_user(void __user *to, const void *from)")
                .unwrap(),
            "kmod_copy_to_user"
        );
        assert_eq!(
            helper_name("void *kmod_alloc(size_t n)").unwrap(),
            "kmod_alloc"
        );
        assert!(helper_name("int x").is_err());
    }

    #[test]
    fn shim_defines_every_helper_after_the_includes() {
        let module = Build::new("m")
            .header("linux/spinlock.h")
            .constant("GFP_KERNEL", "gfp_t")
            .helper("void kmod_lock(spinlock_t *l)", "spin_lock(l);");
        let shim = module.shim().unwrap();
        assert!(shim.contains("#include <linux/spinlock.h>\n"));
        assert!(shim.contains(
            "#ifdef KMOD_SHIM_USE_kmod_lock\nvoid kmod_lock(spinlock_t *l);\n\
             void kmod_lock(spinlock_t *l)\n{\n\tspin_lock(l);\n}\n#endif\n"
        ));
        assert!(!shim.contains("GFP_KERNEL"));
        let wrapper = module.wrapper();
        assert!(wrapper.contains("const gfp_t kmod_build_constant_GFP_KERNEL = GFP_KERNEL;\n"));
        assert!(wrapper.contains("void kmod_lock(spinlock_t *l);\n"));
    }

    #[test]
    fn config_cfgs_follow_autoconf_names() {
        let config =
            crate::Config::parse("CONFIG_SMP=y\nCONFIG_EXT4_FS=m\nCONFIG_HZ=250\n").unwrap();
        let cfgs: Vec<String> = config_cfgs(&config).collect();
        assert!(cfgs.contains(&"kernel_config=\"CONFIG_SMP\"".to_owned()));
        assert!(cfgs.contains(&"kernel_config=\"CONFIG_EXT4_FS_MODULE\"".to_owned()));
        assert!(!cfgs.iter().any(|cfg| cfg.contains("CONFIG_HZ")));
    }

    #[test]
    fn version_cfgs_enable_up_to_the_tree() {
        let (declared, cfgs) = version_cfgs((6, 1, 0));
        assert!(cfgs.contains(&"kernel_ge=\"6.1\"".to_owned()));
        assert!(cfgs.contains(&"kernel_ge=\"5.15\"".to_owned()));
        assert!(!cfgs.contains(&"kernel_ge=\"6.2\"".to_owned()));
        assert!(declared[0].starts_with("cfg(kernel_ge, values(\"4.0\""));
        assert!(declared[0].contains("\"6.2\""));
        let (_, cfgs) = version_cfgs((6, 12, 117));
        assert!(cfgs.contains(&"kernel_ge=\"6.12\"".to_owned()));
    }

    #[test]
    fn a_spec_file_is_the_builder_it_describes() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::try_from(dir.path().join("bindings.toml")).unwrap();
        std::fs::write(
            &path,
            r#"
name = "m"
headers = ["linux/spinlock.h"]
functions = ["_printk"]
constants = [{ name = "GFP_KERNEL", type = "gfp_t" }]
[[helpers]]
prototype = "void kmod_lock(spinlock_t *l)"
body = "spin_lock(l);"
"#,
        )
        .unwrap();
        let from_spec = Build::from_spec(&path).unwrap();
        let built = Build::new("m")
            .header("linux/spinlock.h")
            .allow_function("_printk")
            .constant("GFP_KERNEL", "gfp_t")
            .helper("void kmod_lock(spinlock_t *l)", "spin_lock(l);");
        assert_eq!(from_spec.wrapper(), built.wrapper());
        assert_eq!(from_spec.shim().unwrap(), built.shim().unwrap());
        assert_eq!(from_spec.functions, built.functions);
    }

    #[test]
    fn a_bad_spec_names_its_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::try_from(dir.path().join("bindings.toml")).unwrap();
        std::fs::write(&path, "name = \"m\"\n\nheader = [\"linux/module.h\"]\n").unwrap();
        let error = Build::from_spec(&path).unwrap_err().to_string();
        assert!(error.starts_with(&format!("{path}:3: ")), "{error}");
        assert!(error.contains("unknown field `header`"), "{error}");
    }
}
