//! `ModuleInfo::parse` on any bytes, then the offline loader check of what it
//! parsed against one fixed tree (fuzz/fixture, from update-seeds.sh).

#![no_main]

use std::sync::LazyLock;

use camino::Utf8Path;
use kmod_build::{check, Config, ModuleInfo, Symvers};
use libfuzzer_sys::fuzz_target;

static TREE: LazyLock<(&str, Config, Symvers)> = LazyLock::new(|| {
    (
        include_str!("../fixture/release").trim(),
        Config::parse(include_str!("../fixture/auto.conf")).expect("fixture auto.conf"),
        Symvers::parse(include_str!("../fixture/Module.symvers")).expect("fixture Module.symvers"),
    )
});

fuzz_target!(|data: &[u8]| {
    let (release, config, symvers) = &*TREE;
    if let Ok(module) = ModuleInfo::parse(Utf8Path::new("fuzz.ko"), data) {
        let report = check::check(&module, release, config, symvers);
        let _ = report.to_string();
    }
});
