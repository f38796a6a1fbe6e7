//! The smallest Rust kernel module: it says hello when loaded and goodbye
//! when unloaded, calling the kernel only through the bindings `build.rs`
//! generated from the target kernel's own headers.
#![no_std]

use core::ffi::{c_char, c_int};

#[allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code
)]
mod bindings {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

/// A `.modinfo` entry, as C's `MODULE_INFO(tag, value)` makes it.
macro_rules! modinfo {
    ($symbol:ident, $entry:literal) => {
        #[unsafe(no_mangle)]
        #[unsafe(link_section = ".modinfo")]
        pub static $symbol: [u8; $entry.len() + 1] = {
            let mut bytes = [0; $entry.len() + 1];
            let mut i = 0;
            while i < $entry.len() {
                bytes[i] = $entry.as_bytes()[i];
                i += 1;
            }
            bytes
        };
    };
}

modinfo!(__hello_license, "license=GPL");
modinfo!(__hello_author, "author=kmod-build developers");
modinfo!(
    __hello_description,
    "description=Hello from Rust, built against the distribution's kernel-devel tree"
);

/// `level` (a `KERN_*` constant, NUL-terminated) followed by `message`
/// (NUL-terminated): printk reads the level from the format string itself.
const fn with_level<const N: usize>(level: &[u8], message: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    let mut i = 0;
    while i < level.len() - 1 {
        out[i] = level[i];
        i += 1;
    }
    let mut j = 0;
    while j < message.len() {
        out[i + j] = message[j];
        j += 1;
    }
    out
}

macro_rules! format_string {
    ($level:expr, $message:expr) => {{
        const MESSAGE: &[u8] = $message.as_bytes();
        const FORMAT: [u8; $level.len() - 1 + MESSAGE.len()] = with_level($level, MESSAGE);
        FORMAT.as_ptr().cast::<c_char>()
    }};
}

#[unsafe(no_mangle)]
pub extern "C" fn init_module() -> c_int {
    let format = format_string!(
        bindings::KERN_INFO,
        concat!(
            "hello: loaded, built for ",
            env!("KMOD_KERNEL_RELEASE"),
            " (LINUX_VERSION_CODE %#x)\n\0"
        )
    );
    // SAFETY: a NUL-terminated format whose one conversion takes an unsigned int.
    unsafe { bindings::_printk(format, bindings::LINUX_VERSION_CODE) };
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn cleanup_module() {
    let format = format_string!(bindings::KERN_INFO, "hello: unloaded, goodbye\n\0");
    // SAFETY: a NUL-terminated format without conversions.
    unsafe { bindings::_printk(format) };
}

// The kernel calls init/exit through pointers in `struct module`, which
// objtool cannot see: with IBT it would seal (un-ENDBR) functions nobody
// appears to take the address of. C's module_init/module_exit keep them
// address-taken the same way, from .init.data and .exit.data.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".init.data")]
pub static __hello_init_addressable: extern "C" fn() -> c_int = init_module;

#[unsafe(no_mangle)]
#[unsafe(link_section = ".exit.data")]
pub static __hello_exit_addressable: extern "C" fn() = cleanup_module;

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: a NUL-terminated message without conversions.
    unsafe { bindings::panic(c"hello: Rust panic".as_ptr()) }
}
