//! Kernel timers that own the data their callback sees.

use core::ops::Deref;
use core::pin::Pin;

use pinned_init::{pin_data, pinned_drop, try_pin_init, PinInit};

use crate::bindings;
use crate::types::Opaque;

/// What a [`Timer`] calls when it expires, in softirq context: no sleeping
/// (a [`SpinLock`](crate::sync::SpinLock), not a `Mutex`; allocations there
/// are atomic by themselves).
pub trait TimerCallback: Send + Sync + Sized {
    fn expired(timer: &Timer<Self>);
}

/// A `struct timer_list` and the data `T` its callback gets.
///
/// Only built in place ([`Timer::new`]) and `!Unpin`, so it never moves
/// while the timer wheel may point to it. Its drop stops the timer for good
/// (`timer_shutdown_sync`: a running callback is waited for and cannot
/// re-arm it) before `T` is dropped: the callback never sees a dropped `T`.
#[pin_data(PinnedDrop)]
#[repr(C)]
pub struct Timer<T> {
    // First field: the callback casts the `timer_list` back to its `Timer`.
    #[pin]
    list: Opaque<bindings::timer_list>,
    #[pin]
    data: T,
}

// SAFETY: the kernel serialises the timer's own operations; `T` is what
// moves with it.
unsafe impl<T: Send> Send for Timer<T> {}
// SAFETY: the callback runs on any CPU with `&T`, which `T: Sync` allows.
unsafe impl<T: Sync> Sync for Timer<T> {}

impl<T: TimerCallback> Timer<T> {
    /// An initialiser of a timer (not armed) around what `data`
    /// initialises.
    pub fn new<E>(data: impl PinInit<T, E>) -> impl PinInit<Self, E> {
        try_pin_init!(Self {
            // SAFETY: timer_setup initialises the `timer_list` in place, at
            // its final address.
            list <- unsafe {
                Opaque::ffi_init(|list| bindings::kmod_timer_setup(list, Some(expired::<T>)))
            },
            data <- data,
        }? E)
    }
}

impl<T> Timer<T> {
    /// (Re-)arms the timer to expire in `milliseconds`.
    pub fn schedule(&self, milliseconds: u32) {
        // SAFETY: `jiffies` is a word the timer interrupt updates, so it is
        // read volatile, as C declares it; `new` initialised the timer, and
        // mod_timer may be called from any context, the callback too.
        unsafe {
            let now = (&raw const bindings::jiffies).read_volatile();
            let expires = now + bindings::kmod_msecs_to_jiffies(milliseconds);
            bindings::mod_timer(self.list.get(), expires);
        }
    }
}

impl<T> Deref for Timer<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.data
    }
}

#[pinned_drop]
impl<T> PinnedDrop for Timer<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: initialised by `new`; fields are dropped only after this.
        unsafe { bindings::timer_shutdown_sync(self.list.get()) };
    }
}

unsafe extern "C" fn expired<T: TimerCallback>(list: *mut bindings::timer_list) {
    // SAFETY: `list` is the first field of a `#[repr(C)] Timer<T>` set up
    // by `new`, alive until its drop has shut the timer down.
    T::expired(unsafe { &*list.cast::<Timer<T>>() });
}
