//! A cache entry as a build reads it back (bindings, C flags, fingerprints,
//! the libclang record, a sysroot's manifest): whatever the bytes, the
//! entry is trusted only if it is exactly what was written.
#![no_main]

use kmod_build::{encode_cache_entry, parse_cache_entry, CFlags};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(contents) = parse_cache_entry(bytes) {
        assert_eq!(encode_cache_entry(contents).as_bytes(), bytes);
        if let Some((stamp, _)) = contents.split_once('\n') {
            let _ = CFlags::from_cache(&format!("{stamp}\n"), contents);
        }
    }
});
