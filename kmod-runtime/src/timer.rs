//! Kernel timers that call a method of the structure holding them.

use core::cell::UnsafeCell;
use core::pin::Pin;

use crate::bindings;

/// What a [`Timer`] calls when it expires, in softirq context: no sleeping
/// (use [`SpinLock`](crate::sync::SpinLock), not `Mutex`, no allocation).
///
/// # Safety
/// `timer` returns a field of `self`, so that the timer is dropped (and
/// stopped) before the rest of `self` goes away.
pub unsafe trait TimerCallback: Sync + Sized {
    fn timer(&self) -> &Timer;
    fn expired(&self);
}

/// `struct timer_list`, stopped for good (`timer_shutdown_sync`) when
/// dropped: a running callback is waited for and cannot re-arm it.
#[repr(C)]
pub struct Timer {
    // First field: the callback casts the `timer_list` back to its `Timer`.
    list: UnsafeCell<bindings::timer_list>,
    owner: UnsafeCell<*const ()>,
}

// SAFETY: the kernel serializes the timer's own operations; `owner` is
// written once, before the timer is armed.
unsafe impl Sync for Timer {}
unsafe impl Send for Timer {}

impl Timer {
    /// A timer that does nothing until [`Timer::setup`].
    pub fn new() -> Self {
        Timer {
            list: UnsafeCell::new(bindings::timer_list::default()),
            owner: UnsafeCell::new(core::ptr::null()),
        }
    }

    /// Makes the timer call `owner.expired()`; `owner` is pinned, so it
    /// stays where the callback will look for it.
    ///
    /// # Panics
    /// If the timer was already set up (it might be armed).
    pub fn setup<T: TimerCallback>(owner: Pin<&T>) {
        let timer = owner.timer();
        // SAFETY: nothing but `setup` writes the callback.
        assert!(
            unsafe { (*timer.list.get()).function.is_none() },
            "timer set up twice"
        );
        // SAFETY: never set up, so never armed: nothing reads `owner`
        // concurrently; timer_setup initializes the `timer_list` in place.
        unsafe {
            *timer.owner.get() = (&raw const *owner).cast();
            bindings::kmod_timer_setup(timer.list.get(), Some(expired::<T>));
        }
    }

    /// (Re-)arms the timer to expire in `milliseconds`.
    pub fn schedule(&self, milliseconds: u32) {
        // SAFETY: `jiffies` is a word the timer interrupt updates, so it is
        // read volatile, as C declares it; `setup` initialized the timer,
        // and mod_timer may be called from any context, the callback too.
        unsafe {
            let now = (&raw const bindings::jiffies).read_volatile();
            let expires = now + bindings::kmod_msecs_to_jiffies(milliseconds);
            bindings::mod_timer(self.list.get(), expires);
        }
    }
}

impl Default for Timer {
    fn default() -> Self {
        Timer::new()
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // SAFETY: a set-up timer is shut down; one never set up (no
        // callback) was never armed and needs nothing.
        unsafe {
            if (*self.list.get()).function.is_some() {
                bindings::timer_shutdown_sync(self.list.get());
            }
        }
    }
}

unsafe extern "C" fn expired<T: TimerCallback>(list: *mut bindings::timer_list) {
    // SAFETY: `list` is the first field of a `#[repr(C)] Timer` whose
    // `owner` `setup` set to a pinned `T` that outlives the timer.
    unsafe {
        let timer = list.cast::<Timer>();
        (*(*timer).owner.get())
            .cast::<T>()
            .as_ref_unchecked()
            .expired();
    }
}
