//! printk with `core::fmt`: `pr_info!("{} bytes", n)` logs
//! `<module>: <n> bytes` at KERN_INFO.

use core::ffi::c_int;
use core::fmt::{self, Write};

use crate::bindings;

/// What one message may hold; longer ones are cut (printk's own limit is
/// about 1 KiB, and this buffer lives on the kernel stack).
const MESSAGE_CAPACITY: usize = 256;

const SUFFIX: &[u8] = b"%s: %.*s\n\0";
const FORMAT_LEN: usize = 2 + SUFFIX.len();

/// A printk format: the level's `KERN_SOH <digit>` from the bindings, then
/// the module name and the message.
const fn format(level: &[u8; 3]) -> [u8; FORMAT_LEN] {
    let mut out = [0; FORMAT_LEN];
    out[0] = level[0];
    out[1] = level[1];
    let mut i = 0;
    while i < SUFFIX.len() {
        out[2 + i] = SUFFIX[i];
        i += 1;
    }
    out
}

#[doc(hidden)]
pub mod level {
    use super::{format, FORMAT_LEN};
    use crate::bindings;
    pub const EMERG: [u8; FORMAT_LEN] = format(bindings::KERN_EMERG);
    pub const ALERT: [u8; FORMAT_LEN] = format(bindings::KERN_ALERT);
    pub const CRIT: [u8; FORMAT_LEN] = format(bindings::KERN_CRIT);
    pub const ERR: [u8; FORMAT_LEN] = format(bindings::KERN_ERR);
    pub const WARNING: [u8; FORMAT_LEN] = format(bindings::KERN_WARNING);
    pub const NOTICE: [u8; FORMAT_LEN] = format(bindings::KERN_NOTICE);
    pub const INFO: [u8; FORMAT_LEN] = format(bindings::KERN_INFO);
    pub const DEBUG: [u8; FORMAT_LEN] = format(bindings::KERN_DEBUG);
}

/// A fixed buffer `fmt::Write` fills, silently dropping what does not fit.
pub(crate) struct Buffer<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Buffer<N> {
    pub(crate) fn new() -> Self {
        Buffer {
            bytes: [0; N],
            len: 0,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl<const N: usize> Write for Buffer<N> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let n = text.len().min(N - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&text.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[doc(hidden)]
pub fn printk(format: &[u8; FORMAT_LEN], args: fmt::Arguments<'_>) {
    let mut message = Buffer::<MESSAGE_CAPACITY>::new();
    let _ = message.write_fmt(args);
    // printk ends the line itself; a trailing newline would add a blank one.
    let text = message.as_bytes();
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    // SAFETY: the format is NUL-terminated and takes a C string (the
    // module's NUL-terminated name, filled in by modpost), an int and a
    // pointer to that many bytes.
    unsafe {
        bindings::_printk(
            format.as_ptr().cast(),
            (&raw const (*crate::this_module()).name).cast::<core::ffi::c_char>(),
            text.len() as c_int,
            text.as_ptr(),
        );
    }
}

/// Logs a `core::fmt` message at KERN_EMERG, prefixed with the module's name.
#[macro_export]
macro_rules! pr_emerg {
    ($($arg:tt)*) => {
        $crate::print::printk(&$crate::print::level::EMERG, ::core::format_args!($($arg)*))
    };
}

/// Logs a `core::fmt` message at KERN_ALERT, prefixed with the module's name.
#[macro_export]
macro_rules! pr_alert {
    ($($arg:tt)*) => {
        $crate::print::printk(&$crate::print::level::ALERT, ::core::format_args!($($arg)*))
    };
}

/// Logs a `core::fmt` message at KERN_CRIT, prefixed with the module's name.
#[macro_export]
macro_rules! pr_crit {
    ($($arg:tt)*) => {
        $crate::print::printk(&$crate::print::level::CRIT, ::core::format_args!($($arg)*))
    };
}

/// Logs a `core::fmt` message at KERN_ERR, prefixed with the module's name.
#[macro_export]
macro_rules! pr_err {
    ($($arg:tt)*) => {
        $crate::print::printk(&$crate::print::level::ERR, ::core::format_args!($($arg)*))
    };
}

/// Logs a `core::fmt` message at KERN_WARNING, prefixed with the module's name.
#[macro_export]
macro_rules! pr_warn {
    ($($arg:tt)*) => {
        $crate::print::printk(&$crate::print::level::WARNING, ::core::format_args!($($arg)*))
    };
}

/// Logs a `core::fmt` message at KERN_NOTICE, prefixed with the module's name.
#[macro_export]
macro_rules! pr_notice {
    ($($arg:tt)*) => {
        $crate::print::printk(&$crate::print::level::NOTICE, ::core::format_args!($($arg)*))
    };
}

/// Logs a `core::fmt` message at KERN_INFO, prefixed with the module's name.
#[macro_export]
macro_rules! pr_info {
    ($($arg:tt)*) => {
        $crate::print::printk(&$crate::print::level::INFO, ::core::format_args!($($arg)*))
    };
}

/// Logs a `core::fmt` message at KERN_DEBUG, prefixed with the module's name.
#[macro_export]
macro_rules! pr_debug {
    ($($arg:tt)*) => {
        $crate::print::printk(&$crate::print::level::DEBUG, ::core::format_args!($($arg)*))
    };
}
