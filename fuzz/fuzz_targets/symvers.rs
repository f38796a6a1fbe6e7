//! `Module.symvers` lines: a parse error names the line, never panics.
#![no_main]

use kmod_build::Symvers;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(symvers) = Symvers::parse(text) {
        assert!(symvers.len() <= text.lines().count());
    }
});
