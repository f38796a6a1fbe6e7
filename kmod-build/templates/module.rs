//! {name}: a Linux kernel module written in Rust, built with kmod-build
//! against the kernel-devel tree of each kernel it is for.
#![no_std]

extern crate alloc;

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

/// In-kernel tests: `cargo kmod test` builds a test build of the module and
/// runs them inside each kernel (under QEMU), each in a kernel thread of its
/// own; outside a test build this module is not compiled.
#[kmod_runtime::tests]
mod tests {
    use kmod_runtime::Result;

    #[test]
    fn allocates() -> Result {
        let mut numbers = alloc::vec::Vec::new();
        numbers.try_reserve(3)?;
        numbers.extend([1, 2, 3]);
        assert_eq!(numbers.iter().sum::<i32>(), 6);
        Ok(())
    }
}
