//! The errnos `init_module(2)` fails with, as the kernel's loader returns
//! them, and those the boot tests expect from a module's own calls.

use std::fmt;

use serde::Serialize;

/// An errno the loader returns, or that a module's file operation returns
/// in the boot tests (x86_64 numbering, `include/uapi/asm-generic/errno*.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Errno {
    ENOENT,
    ENOEXEC,
    EINVAL,
    /// Not the loader's: the example `chardev` refuses a write with it.
    ENOSPC,
    ENODATA,
    ENOPKG,
    EBADMSG,
    ENOKEY,
    EKEYREJECTED,
}

impl Errno {
    pub const ALL: [Errno; 9] = [
        Errno::ENOENT,
        Errno::ENOEXEC,
        Errno::EINVAL,
        Errno::ENOSPC,
        Errno::ENODATA,
        Errno::ENOPKG,
        Errno::EBADMSG,
        Errno::ENOKEY,
        Errno::EKEYREJECTED,
    ];

    /// The errno numbered `number` (busybox `insmod`'s exit status), if it
    /// is one of these.
    pub fn from_number(number: i32) -> Option<Errno> {
        Errno::ALL
            .into_iter()
            .find(|errno| errno.number() == number)
    }

    /// The number (what busybox `insmod` exits with).
    pub fn number(self) -> i32 {
        match self {
            Errno::ENOENT => 2,
            Errno::ENOEXEC => 8,
            Errno::EINVAL => 22,
            Errno::ENOSPC => 28,
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
            Errno::ENOSPC => "No space left on device",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_messages_are_distinct_and_round_trip() {
        for errno in Errno::ALL {
            assert_eq!(Errno::from_number(errno.number()), Some(errno));
            let same_message = Errno::ALL.iter().filter(|e| e.message() == errno.message());
            assert_eq!(same_message.count(), 1, "{errno}");
        }
        assert_eq!(Errno::from_number(0), None);
        assert_eq!(Errno::from_number(1), None);
    }
}
