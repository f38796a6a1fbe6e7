//! Completions: a task sleeps until another says an event happened
//! ([`Completion::complete`]), with no condition or lock of its own to
//! keep: the completion counts the events.
//!
//! A [`Completion`] is `!Unpin` and only built in place
//! ([`new_completion!`] gives an initialiser with a lock class key of its
//! own for the call site, as C's `init_completion` has), so its C wait
//! queue, which points to itself, never moves once initialised.

use core::convert::Infallible;
use core::ffi::CStr;

use pinned_init::{pin_data, pin_init, PinInit};

use crate::bindings;
use crate::error::{Error, Result};
use crate::sync::LockClassKey;
use crate::types::Opaque;

/// `struct completion`: waiters sleep until it is completed.
#[pin_data]
pub struct Completion {
    #[pin]
    inner: Opaque<bindings::completion>,
}

// SAFETY: the C completion has a spinlock of its own, which every function
// that changes it takes; it holds no task's state between calls.
unsafe impl Send for Completion {}
// SAFETY: as above.
unsafe impl Sync for Completion {}

impl Completion {
    /// An initialiser of a completion (not completed) whose wait queue's
    /// spinlock is of class `key`, named `name`: use [`new_completion!`],
    /// which makes a key for the call site.
    pub fn new(name: &'static CStr, key: &'static LockClassKey) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: the completion gets its final, pinned address once;
            // the name and the static key live forever.
            inner <- unsafe {
                Opaque::ffi_init::<Infallible>(|inner| {
                    bindings::kmod_init_completion(inner, name.as_ptr(), key.get())
                })
            },
        })
    }

    /// One event: wakes one waiter, or lets the next wait return at once.
    /// Any context.
    pub fn complete(&self) {
        // SAFETY: initialised in place by `new`, pinned since.
        unsafe { bindings::complete(self.inner.get()) }
    }

    /// Completed for good: wakes every waiter, and every later wait
    /// returns at once. Any context.
    pub fn complete_all(&self) {
        // SAFETY: as in `complete`.
        unsafe { bindings::complete_all(self.inner.get()) }
    }

    /// Sleeps until an event (taking it), or until a signal, which gives
    /// [`ERESTARTSYS`](crate::error::ERESTARTSYS): a system call returns it
    /// as it is (restarted, or EINTR in user space).
    ///
    /// Sleeps: only where the task may (not under a spinlock, not in a
    /// timer callback), as [`Mutex`](crate::sync::Mutex) asks.
    pub fn wait_interruptible(&self) -> Result {
        // SAFETY: as in `complete`.
        let done = unsafe { bindings::wait_for_completion_interruptible(self.inner.get()) };
        Error::from_return(done).map(|_| ())
    }
}

/// An initialiser of a [`Completion`], with a lock class of its own for
/// this call site.
#[macro_export]
macro_rules! new_completion {
    () => {{
        static KEY: $crate::sync::LockClassKey = $crate::sync::LockClassKey::new();
        $crate::completion::Completion::new(
            const {
                $crate::sync::site_name(::core::concat!(
                    ::core::file!(),
                    ":",
                    ::core::line!(),
                    "\0"
                ))
            },
            &KEY,
        )
    }};
}
