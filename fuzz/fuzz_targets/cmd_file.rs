//! A Kbuild `.cmd` file, as the flags probe reads it, and the libclang
//! flags derived from what it parsed.
#![no_main]

use camino::Utf8Path;
use kmod_build::CFlags;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let tree = Utf8Path::new("/usr/src/linux-headers-6.12.0-fuzz");
    if let Some(flags) = CFlags::parse_cmd_file(text, tree) {
        let _ = flags.for_clang("fuzz", "x86_64-linux-gnu");
    }
});
