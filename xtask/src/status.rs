//! Cargo-style status lines on stderr, as the driver prints them.

use kmod_build::driver::{Human, Reporter};

/// `   Compiling hello (6.1.0-57-amd64)`: the verb right-aligned, like cargo.
pub fn step(verb: &str, message: &str) {
    Human.status(verb, message);
}
