//! Errors as the kernel knows them: errno values.

use core::ffi::c_int;

use crate::bindings;

/// A kernel error: a positive errno, returned to C negated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error(c_int);

pub type Result<T = (), E = Error> = core::result::Result<T, E>;

impl Error {
    /// The negative errno C callers expect.
    pub fn to_errno(self) -> c_int {
        -self.0
    }

    /// A kernel function's return value: negative is an errno.
    pub fn from_return(value: c_int) -> Result<c_int> {
        if value < 0 {
            Err(Error(-value))
        } else {
            Ok(value)
        }
    }
}

impl From<alloc_crate::collections::TryReserveError> for Error {
    fn from(_: alloc_crate::collections::TryReserveError) -> Error {
        ENOMEM
    }
}

/// For `try_pin_init!` initialisers whose fields cannot fail.
impl From<core::convert::Infallible> for Error {
    fn from(never: core::convert::Infallible) -> Error {
        match never {}
    }
}

impl From<core::str::Utf8Error> for Error {
    fn from(_: core::str::Utf8Error) -> Error {
        EINVAL
    }
}

/// Text that did not fit where it was written (a sysfs page).
impl From<core::fmt::Error> for Error {
    fn from(_: core::fmt::Error) -> Error {
        EOVERFLOW
    }
}

macro_rules! errnos {
    ($($name:ident),+) => {
        $(pub const $name: Error = Error(bindings::$name as c_int);)+
    };
}

errnos!(
    EPERM, ENOENT, EINTR, EIO, ENXIO, EAGAIN, ENOMEM, EFAULT, EBUSY, EEXIST, ENODEV, EINVAL,
    ENOSPC, ERANGE, EOVERFLOW, ENOTTY, ETIMEDOUT
);

/// A sleep interrupted by a signal: the kernel restarts the system call
/// (`SA_RESTART`) or gives user space EINTR, so user space never sees it.
pub const ERESTARTSYS: Error = Error(bindings::ERESTARTSYS as c_int);
