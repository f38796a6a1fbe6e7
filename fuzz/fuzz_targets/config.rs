//! `include/config/auto.conf` and `.config` text.
#![no_main]

use kmod_build::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(config) = Config::parse(text) {
        for (name, _) in config.iter() {
            assert!(config.get(name).is_some());
        }
    }
});
