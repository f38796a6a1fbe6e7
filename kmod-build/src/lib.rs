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
//! 3. build: [`Module`] runs in a module crate's `build.rs` (bindings, cfgs),
//!    [`kbuild::link`] turns the Rust staticlib into a `.ko` with the tree's
//!    own `make M=`;
//! 4. check: [`ModuleInfo`] reads a `.ko` and [`check()`] compares
//!    it with the tree, as the kernel's loader would.

mod bindings_cache;
mod cache_home;
mod cflags;
pub mod check;
mod config;
pub mod doctor;
mod error;
pub mod fetch;
pub mod kbuild;
pub mod mitigations;
mod modinfo;
mod module;
mod rustflags;
pub mod signature;
mod symvers;
mod tree;

pub use cache_home::{cache_home, CACHE_HOME_ENV};
pub use cflags::CFlags;
pub use config::Config;
pub use error::{Error, Result};
pub use modinfo::{ModuleInfo, VersionEntry};
pub use module::{check_libclang, check_libclang_remembered, Module, SHIM_FILE};
pub use rustflags::RustFlags;
pub use signature::Signature;
pub use symvers::{Export, ExportKind, Symvers};
pub use tree::{
    host_arch, no_tree_error, Compiler, Cross, KernelTree, Layout, Origin, SYSROOT_ENV,
};

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
