//! Build Linux kernel modules written in Rust against the kernel-devel tree a
//! distribution installed.
//!
//! The stages mirror Kbuild's own split and pass plain data between them:
//!
//! 1. discovery: [`KernelTree`] finds a tree wherever a distro put it (its
//!    [`Layout`], [`Config`], [`Compiler`] and [`Symvers`]), and
//!    [`doctor::diagnose`] names what a broken one lacks before `make` runs;
//! 2. flags: [`CFlags`] (the kernel's own C flags, probed through Kbuild) and
//!    [`RustFlags`] (the rustc codegen that matches the tree's config);
//! 3. build: [`Build`] runs in a module crate's `build.rs` (bindings, cfgs),
//!    [`kbuild::link`] turns the Rust staticlib into a `.ko` with the tree's
//!    own `make M=`;
//! 4. check: [`ModuleInfo`] reads a `.ko` (its appended [`Signature`]
//!    parsed), [`keyring::Keyring`] reads the keys the kernel image trusts,
//!    and [`check()`] compares the module with both, as the kernel's loader
//!    would.
//!
//! Features: none gives what a module's build script needs (discovery,
//! flags, [`Build`]), so a module's first build compiles bindgen and little
//! else; `check` adds stage 4 and the doctor; `driver` the whole build of a
//! workspace ([`driver`], [`kbuild`], [`process`], [`fetch`]); `cli` the
//! commands `cargo kmod` and a project's xtask share.

mod bindings_cache;
mod build_script;
mod cache_home;
mod cflags;
#[cfg(feature = "check")]
pub mod check;
#[cfg(feature = "cli")]
pub mod cli;
mod config;
mod distro;
#[cfg(feature = "check")]
pub mod doctor;
#[cfg(feature = "driver")]
pub mod driver;
#[cfg(feature = "check")]
pub mod elf;
#[cfg(feature = "check")]
mod errno;
mod error;
#[cfg(feature = "driver")]
pub mod fetch;
mod files;
#[cfg(feature = "driver")]
pub mod kbuild;
#[cfg(feature = "check")]
pub mod keyring;
mod make;
#[cfg(feature = "check")]
pub mod mitigations;
#[cfg(feature = "check")]
mod modinfo;
#[cfg(feature = "driver")]
pub mod process;
mod rustflags;
mod shim;
#[cfg(feature = "check")]
pub mod signature;
mod stable_hash;
mod symvers;
#[doc(hidden)]
pub mod test_support;
mod tree;

pub use build_script::{check_libclang, check_libclang_remembered, Build, Generated, BINDINGS_ENV};
pub use cache_home::{cache_home, CACHE_HOME_ENV};
pub use cflags::CFlags;
pub use config::Config;
#[cfg(feature = "check")]
pub use errno::Errno;
pub use error::{Error, Result};
/// The format of every cache entry kmod-build keeps (for tools and fuzzing).
pub use files::{encode_cache_entry, parse_cache_entry};
#[cfg(feature = "check")]
pub use modinfo::{ModuleInfo, VersionEntry};
pub use rustflags::RustFlags;
pub use shim::SHIM_FILE;
#[cfg(feature = "check")]
pub use signature::Signature;
pub use symvers::{Export, ExportKind, Symvers};
pub use tree::{
    host_arch, no_tree_error, Compiler, Cross, KernelTree, Layout, Origin, SYSROOT_ENV,
};

#[cfg(feature = "check")]
/// Reads the `.ko` (or `.ko.xz`) at `ko` and checks it as `tree`'s kernel
/// would load it. For many modules against one tree, load a
/// [`check::Kernel`] once and call [`check::check`].
pub fn check(ko: &camino::Utf8Path, tree: &KernelTree) -> Result<check::Report> {
    Ok(check::check(
        &ModuleInfo::read(ko)?,
        &check::Kernel::load(tree)?,
    ))
}

/// Environment variable through which the driver tells a module's build
/// script which tree to build against (a path to the tree).
pub const KERNEL_ENV: &str = "KMOD_BUILD_KERNEL";

/// Environment variable naming a directory shared by all module crates for
/// per-tree caches (probed C flags).
pub const CACHE_ENV: &str = "KMOD_BUILD_CACHE";
