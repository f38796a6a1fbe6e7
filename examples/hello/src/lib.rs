//! The smallest Rust kernel module: it says hello when loaded and goodbye
//! when unloaded. The version code comes from the bindings generated from
//! the target kernel's own headers.
#![no_std]

use kmod_runtime::{bindings, pr_info, Result};

kmod_runtime::module! {
    type: Hello,
    name: "hello",
    license: "GPL",
    author: "kmod-build developers",
    description: "Hello from Rust, built against the distribution's kernel-devel tree",
}

struct Hello;

impl kmod_runtime::Module for Hello {
    fn init() -> Result<Self> {
        pr_info!(
            "loaded, built for {} (LINUX_VERSION_CODE {:#x})",
            kmod_runtime::KERNEL_RELEASE,
            bindings::LINUX_VERSION_CODE
        );
        Ok(Hello)
    }
}

impl Drop for Hello {
    fn drop(&mut self) {
        pr_info!("unloaded, goodbye");
    }
}
