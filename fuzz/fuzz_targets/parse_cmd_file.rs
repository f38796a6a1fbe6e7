//! `CFlags::parse_cmd_file` (a Kbuild `.cmd` file) on any text, and the
//! libclang flags derived from what it parsed.

#![no_main]

use camino::Utf8Path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tree = Utf8Path::new("/usr/src/linux-headers-6.1.0-56-amd64");
    if let Some(flags) = kmod_build::CFlags::parse_cmd_file(&String::from_utf8_lossy(data), tree) {
        let _ = flags.for_clang("fuzz");
    }
});
