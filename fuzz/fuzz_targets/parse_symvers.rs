//! `Symvers::parse` (Module.symvers) on any text.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kmod_build::Symvers::parse(&String::from_utf8_lossy(data));
});
