//! `Config::parse` (include/config/auto.conf) on any text, and the vermagic
//! and rustc flags derived from what it parsed.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = kmod_build::Config::parse(&String::from_utf8_lossy(data)) {
        let _ = kmod_build::check::vermagic(include_str!("../fixture/release").trim(), &config);
        let _ = kmod_build::RustFlags::for_config(&config).encoded();
    }
});
