//! The errnos `init_module(2)` fails with, as the kernel's loader returns them.

use std::fmt;

use serde::Serialize;

/// An errno the loader returns (x86_64 numbering, `include/uapi/asm-generic/errno*.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Errno {
    ENOENT,
    ENOEXEC,
    EINVAL,
    ENODATA,
    ENOPKG,
    EBADMSG,
    ENOKEY,
    EKEYREJECTED,
}

impl Errno {
    /// The number (what busybox `insmod` exits with).
    pub fn number(self) -> i32 {
        match self {
            Errno::ENOENT => 2,
            Errno::ENOEXEC => 8,
            Errno::EINVAL => 22,
            Errno::ENODATA => 61,
            Errno::ENOPKG => 65,
            Errno::EBADMSG => 74,
            Errno::ENOKEY => 126,
            Errno::EKEYREJECTED => 129,
        }
    }

    /// What `strerror()` says (what `insmod` prints).
    pub fn message(self) -> &'static str {
        match self {
            Errno::ENOENT => "No such file or directory",
            Errno::ENOEXEC => "Exec format error",
            Errno::EINVAL => "Invalid argument",
            Errno::ENODATA => "No data available",
            Errno::ENOPKG => "Package not installed",
            Errno::EBADMSG => "Bad message",
            Errno::ENOKEY => "Required key not available",
            Errno::EKEYREJECTED => "Key was rejected by service",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
