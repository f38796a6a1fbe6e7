//! {name}: a Linux kernel module written in Rust, built with kmod-build
//! against the kernel-devel tree of each kernel it is for.
#![no_std]

use kmod_runtime::{pr_info, Result};

kmod_runtime::module! {
    type: {camel},
    name: "{module}",
    license: "GPL",
    author: "{name} authors",
    description: "A Linux kernel module written in Rust",
}

struct {camel};

impl kmod_runtime::Module for {camel} {
    fn init() -> Result<Self> {
        pr_info!("loaded, built for {}", kmod_runtime::KERNEL_RELEASE);
        Ok({camel})
    }
}

impl Drop for {camel} {
    // The exit function: the state is dropped when the module unloads.
    fn drop(&mut self) {
        pr_info!("unloaded");
    }
}
