//! Locks: one [`Lock`] over a C lock [`Backend`]: [`SpinLock`] (any
//! context, interrupts off while held) and [`Mutex`] (process context, may
//! sleep while held); and [`Arc`], data shared by counted owners.
//!
//! A lock is `!Unpin` and only built in place ([`new_spinlock!`],
//! [`new_mutex!`] give an initialiser for [`try_pin_init`] or a
//! `#[pin_data]` field), so the C object never moves once initialised.
//! Each construction site gets its own lock class key, as C's
//! `spin_lock_init`/`mutex_init` do. Guards are `!Send`: a lock is released
//! by the task (and CPU) that took it.
//!
//! [`try_pin_init`]: crate::alloc::try_pin_init

use core::cell::UnsafeCell;
use core::convert::Infallible;
use core::ffi::{c_char, c_ulong, CStr};
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ops::{Deref, DerefMut};

use pinned_init::{pin_data, pin_init, PinInit, Wrapper};

use crate::bindings;
use crate::types::Opaque;

mod arc;
pub use arc::Arc;

/// A lockdep class: a static per construction site, made by
/// [`new_spinlock!`], [`new_mutex!`] and [`new_wait_queue!`].
#[repr(C)]
pub struct LockClassKey {
    key: UnsafeCell<MaybeUninit<bindings::lock_class_key>>,
    /// Without lockdep `struct lock_class_key` is empty: this byte gives
    /// every key its own address, which is what lockdep tells classes by.
    _distinct: u8,
}

// SAFETY: lockdep serialises its own use of a key; Rust never touches it.
unsafe impl Sync for LockClassKey {}

impl LockClassKey {
    /// A key as C's `static struct lock_class_key` is: zeroed, in static
    /// memory (lockdep only accepts static keys unregistered).
    #[doc(hidden)]
    pub const fn new() -> Self {
        LockClassKey {
            key: UnsafeCell::new(MaybeUninit::zeroed()),
            _distinct: 0,
        }
    }

    pub(crate) fn get(&self) -> *mut bindings::lock_class_key {
        self.key.get().cast()
    }
}

/// A C lock.
///
/// # Safety
/// Between `lock` returning and the matching `unlock`, no other `lock` of
/// the same state returns.
pub unsafe trait Backend {
    /// The C lock.
    type State;
    /// What `lock` hands to `unlock` (saved interrupt flags, ...).
    type GuardState;

    /// # Safety
    /// `state` is valid, pinned and not yet initialised; `name` is a C
    /// string and `key` a static key, both living forever.
    unsafe fn init(
        state: *mut Self::State,
        name: *const c_char,
        key: *mut bindings::lock_class_key,
    );

    /// # Safety
    /// `state` was initialised by `init`.
    unsafe fn lock(state: *mut Self::State) -> Self::GuardState;

    /// # Safety
    /// Locked by this task with `guard` from `lock`.
    unsafe fn unlock(state: *mut Self::State, guard: &Self::GuardState);
}

/// Data `T` behind a C lock `B`.
#[pin_data]
pub struct Lock<T, B: Backend> {
    #[pin]
    state: Opaque<B::State>,
    #[pin]
    data: UnsafeCell<T>,
}

// SAFETY: the lock gives one task at a time access to `data`, which may go
// to any task (`T: Send`); an unlocked C lock holds no task's state.
unsafe impl<T: Send, B: Backend> Send for Lock<T, B> {}
// SAFETY: as above: shared, the lock still lets one task at a time at `T`.
unsafe impl<T: Send, B: Backend> Sync for Lock<T, B> {}

impl<T, B: Backend> Lock<T, B> {
    /// An initialiser of a lock around what `data` initialises, of lock
    /// class `key` named `name`: use [`new_spinlock!`] or [`new_mutex!`],
    /// which make a key for the call site.
    pub fn new(
        data: impl PinInit<T>,
        name: &'static CStr,
        key: &'static LockClassKey,
    ) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `init` gets the state's final, pinned address once.
            state <- unsafe {
                Opaque::ffi_init::<Infallible>(|state| B::init(state, name.as_ptr(), key.get()))
            },
            data <- UnsafeCell::pin_init(data),
        })
    }

    /// Takes the lock (spinning or sleeping, as the backend does).
    pub fn lock(&self) -> Guard<'_, T, B> {
        // SAFETY: `Lock` is only built by `new`, which initialised it in
        // place, and it is pinned since.
        let state = unsafe { B::lock(self.state.get()) };
        Guard {
            lock: self,
            state,
            _not_send: PhantomData,
        }
    }
}

/// Access to a [`Lock`]'s data; unlocks when dropped. Not `Send`: the task
/// that locked must unlock (and, for a spinlock, on the same CPU).
pub struct Guard<'a, T, B: Backend> {
    lock: &'a Lock<T, B>,
    state: B::GuardState,
    _not_send: PhantomData<*mut ()>,
}

// SAFETY: a shared guard gives only `&T` (never unlocks).
unsafe impl<T: Sync, B: Backend> Sync for Guard<'_, T, B> {}

impl<T, B: Backend> Deref for Guard<'_, T, B> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T, B: Backend> Guard<'_, T, B> {
    /// Runs `f` with the lock released, then takes it again (the data may
    /// have changed meanwhile): a [`WaitQueue`](crate::wait::WaitQueue)
    /// sleeps in `f`.
    pub(crate) fn unlocked<U>(&mut self, f: impl FnOnce() -> U) -> U {
        // SAFETY: locked by this task with this state; taken again below
        // before the guard is used.
        unsafe { B::unlock(self.lock.state.get(), &self.state) };
        let result = f();
        // SAFETY: as in `Lock::lock`.
        self.state = unsafe { B::lock(self.lock.state.get()) };
        result
    }
}

// Only for `Unpin` data: `&mut` to a pinned object (a lock or wait queue
// inside the lock) would let `mem::swap` move it.
impl<T: Unpin, B: Backend> DerefMut for Guard<'_, T, B> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, and `&mut self` is unique.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T, B: Backend> Drop for Guard<'_, T, B> {
    fn drop(&mut self) {
        // SAFETY: locked by `lock` with this state, in this task.
        unsafe { B::unlock(self.lock.state.get(), &self.state) };
    }
}

/// `spinlock_t`, taken with `spin_lock_irqsave`: timer callbacks, interrupt
/// handlers and process context can share the data.
pub struct SpinLockBackend;

// SAFETY: a spinlock excludes every other holder.
unsafe impl Backend for SpinLockBackend {
    type State = bindings::spinlock_t;
    type GuardState = c_ulong;

    unsafe fn init(
        state: *mut Self::State,
        name: *const c_char,
        key: *mut bindings::lock_class_key,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { bindings::kmod_spin_lock_init(state, name, key) }
    }

    unsafe fn lock(state: *mut Self::State) -> c_ulong {
        // SAFETY: forwarded from the caller.
        unsafe { bindings::kmod_spin_lock_irqsave(state) }
    }

    unsafe fn unlock(state: *mut Self::State, flags: &c_ulong) {
        // SAFETY: locked on this CPU (the guard cannot move to another)
        // with these flags.
        unsafe { bindings::kmod_spin_unlock_irqrestore(state, *flags) }
    }
}

/// `struct mutex`: only where the task may sleep (not under a spinlock, not
/// in a timer callback).
pub struct MutexBackend;

// SAFETY: a mutex excludes every other holder.
unsafe impl Backend for MutexBackend {
    type State = bindings::mutex;
    type GuardState = ();

    unsafe fn init(
        state: *mut Self::State,
        name: *const c_char,
        key: *mut bindings::lock_class_key,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { bindings::kmod_mutex_init(state, name, key) }
    }

    unsafe fn lock(state: *mut Self::State) {
        // SAFETY: forwarded from the caller.
        unsafe { bindings::kmod_mutex_lock(state) }
    }

    unsafe fn unlock(state: *mut Self::State, _: &()) {
        // SAFETY: locked by this task.
        unsafe { bindings::mutex_unlock(state) }
    }
}

pub type SpinLock<T> = Lock<T, SpinLockBackend>;
pub type SpinLockGuard<'a, T> = Guard<'a, T, SpinLockBackend>;
pub type Mutex<T> = Lock<T, MutexBackend>;
pub type MutexGuard<'a, T> = Guard<'a, T, MutexBackend>;

/// `file:line` of a lock's construction site, as its lockdep name.
#[doc(hidden)]
pub const fn site_name(text: &'static str) -> &'static CStr {
    match CStr::from_bytes_with_nul(text.as_bytes()) {
        Ok(name) => name,
        Err(_) => panic!("a lock name is one NUL-terminated line"),
    }
}

/// An initialiser of a [`SpinLock`] around `data` (a value or a
/// `PinInit`), with a lock class of its own for this call site.
#[macro_export]
macro_rules! new_spinlock {
    ($data:expr $(,)?) => {{
        static KEY: $crate::sync::LockClassKey = $crate::sync::LockClassKey::new();
        $crate::sync::SpinLock::new(
            $data,
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

/// An initialiser of a [`Mutex`] around `data` (a value or a `PinInit`),
/// with a lock class of its own for this call site.
#[macro_export]
macro_rules! new_mutex {
    ($data:expr $(,)?) => {{
        static KEY: $crate::sync::LockClassKey = $crate::sync::LockClassKey::new();
        $crate::sync::Mutex::new(
            $data,
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
