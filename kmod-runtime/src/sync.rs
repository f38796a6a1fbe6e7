//! Locks: [`SpinLock`] (any context, interrupts off while held) and
//! [`Mutex`] (process context, may sleep while held).

use alloc_crate::boxed::Box;
use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::pin::Pin;

use crate::alloc::try_box;
use crate::{bindings, Result};

/// `spinlock_t` around `T`, taken with `spin_lock_irqsave`, so timer
/// callbacks and process context can share `T`.
pub struct SpinLock<T> {
    lock: UnsafeCell<bindings::spinlock_t>,
    data: UnsafeCell<T>,
}

// SAFETY: the lock serializes every access to `data`.
unsafe impl<T: Send> Sync for SpinLock<T> {}
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A `spinlock_t` holds no pointer to itself in any configuration, so
    /// an unlocked one may move: no pinning needed.
    pub fn new(data: T) -> Self {
        let lock = SpinLock {
            lock: UnsafeCell::new(bindings::spinlock_t::default()),
            data: UnsafeCell::new(data),
        };
        // SAFETY: the lock is valid memory and not yet shared.
        unsafe { bindings::kmod_spin_lock_init(lock.lock.get()) };
        lock
    }

    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        // SAFETY: the lock was initialized by `new`.
        let flags = unsafe { bindings::kmod_spin_lock_irqsave(self.lock.get()) };
        SpinLockGuard {
            lock: self,
            flags,
            _not_send: PhantomData,
        }
    }
}

/// Access to a [`SpinLock`]'s data; unlocks (and restores the interrupt
/// state on this CPU) when dropped. Not `Send`: it must not change CPUs.
pub struct SpinLockGuard<'a, T> {
    lock: &'a SpinLock<T>,
    flags: core::ffi::c_ulong,
    _not_send: PhantomData<*mut ()>,
}

impl<T> Deref for SpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for SpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, and `&mut self` is unique.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for SpinLockGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: locked by `lock` with these flags, on this CPU.
        unsafe { bindings::kmod_spin_unlock_irqrestore(self.lock.lock.get(), self.flags) };
    }
}

/// `struct mutex` around `T`, for data used where code may sleep (e.g.
/// across `copy_to_user`). Pinned: an initialized mutex points to itself.
pub struct Mutex<T> {
    mutex: UnsafeCell<bindings::mutex>,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex serializes every access to `data`.
unsafe impl<T: Send> Sync for Mutex<T> {}
unsafe impl<T: Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    /// A mutex on the heap (where it can stay put), or [`ENOMEM`](crate::error::ENOMEM).
    pub fn new_boxed(data: T) -> Result<Pin<Box<Self>>> {
        let boxed = try_box(Mutex {
            mutex: UnsafeCell::new(bindings::mutex::default()),
            data: UnsafeCell::new(data),
        })?;
        // SAFETY: the mutex is at its final address and not yet shared.
        unsafe { bindings::kmod_mutex_init(boxed.mutex.get()) };
        Ok(Box::into_pin(boxed))
    }

    /// Sleeps until the mutex is free.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        // SAFETY: initialized in `new_boxed`, pinned since.
        unsafe { bindings::kmod_mutex_lock(self.mutex.get()) };
        MutexGuard { lock: self }
    }
}

/// Access to a [`Mutex`]'s data; unlocks when dropped.
pub struct MutexGuard<'a, T> {
    lock: &'a Mutex<T>,
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the mutex.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the mutex, and `&mut self` is unique.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: locked by this guard's `lock`.
        unsafe { bindings::mutex_unlock(self.lock.mutex.get()) };
    }
}
