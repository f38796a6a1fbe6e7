//! Any bytes as a `.ko`: the loaders' ELF checks, ELF sections, `.modinfo`,
//! `__versions`, relocations and the disassembly for mitigations, then
//! every check.
#![no_main]

use std::sync::OnceLock;

use camino::Utf8Path;
use kmod_build::check::{check, Kernel};
use kmod_build::keyring::Keyring;
use kmod_build::{Config, ModuleInfo, Symvers};
use libfuzzer_sys::fuzz_target;

/// A kernel with every loader rule switched on, so each check runs.
fn kernel() -> &'static Kernel {
    static KERNEL: OnceLock<Kernel> = OnceLock::new();
    KERNEL.get_or_init(|| Kernel {
        release: "6.12.0-fuzz".into(),
        version: (6, 12, 0),
        config: Config::parse(
            "CONFIG_SMP=y\nCONFIG_MODULE_UNLOAD=y\nCONFIG_MODVERSIONS=y\n\
             CONFIG_MODULE_SIG=y\nCONFIG_MITIGATION_RETPOLINE=y\n\
             CONFIG_MITIGATION_RETHUNK=y\nCONFIG_X86_KERNEL_IBT=y\n",
        )
        .expect("valid config"),
        symvers: Symvers::parse(
            "0x12345678\t_printk\tvmlinux\tEXPORT_SYMBOL\t\n\
             0x0badc0de\tsynchronize_rcu\tvmlinux\tEXPORT_SYMBOL_GPL\t\n\
             0x98bd89cd\tdma_buf_put\tvmlinux\tEXPORT_SYMBOL_GPL\tDMA_BUF\n\
             0xdeadbeef\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\n",
        )
        .expect("valid Module.symvers"),
        this_module_size: Some(1280),
        refuses_unversioned: true,
        keyring: Keyring::empty(),
        sig_enforce: false,
    })
}

fuzz_target!(|bytes: &[u8]| {
    if let Ok(module) = ModuleInfo::parse(Utf8Path::new("fuzz.ko"), bytes) {
        let _ = check(&module, kernel()).to_string();
    }
});
