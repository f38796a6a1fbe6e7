//! The contract between a build script and the link: the C helpers a
//! build script writes and how the link selects the ones the Rust code
//! calls. Plain data, so neither side depends on the other.

/// The C shim a build script leaves in its `OUT_DIR` when it has helpers.
pub const SHIM_FILE: &str = "kmod-shim.c";

/// Each helper in the shim is compiled only if this prefix plus its name is
/// defined: [`crate::kbuild::link`] defines it for the helpers the Rust
/// code calls, so a module imports nothing for helpers it does not use.
pub(crate) const SHIM_USE_PREFIX: &str = "KMOD_SHIM_USE_";
