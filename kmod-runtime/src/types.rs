//! [`Opaque`]: a C object that C code owns the contents of.

use core::cell::UnsafeCell;
use core::marker::PhantomPinned;
use core::mem::MaybeUninit;

use pinned_init::{pin_init_from_closure, PinInit};

/// A C structure Rust only hands to C: its bytes may be uninitialised,
/// changed by C behind Rust's back (`UnsafeCell`) and point to themselves,
/// so it is `!Unpin` and only ever initialised in place, by C
/// ([`Opaque::ffi_init`]). It is neither `Send` nor `Sync` when `T` holds
/// pointers; the type holding it says why sharing it is sound.
#[repr(transparent)]
pub struct Opaque<T> {
    value: UnsafeCell<MaybeUninit<T>>,
    _pin: PhantomPinned,
}

impl<T> Opaque<T> {
    /// Initialised in place by `init`, called with the object's final
    /// address.
    ///
    /// # Safety
    /// `init` must leave the object initialised as C expects it (it cannot
    /// fail, so it must not leave it half-done).
    pub unsafe fn ffi_init<E>(init: impl FnOnce(*mut T)) -> impl PinInit<Self, E> {
        // SAFETY: `slot` is valid and pinned; every byte pattern is a valid
        // `MaybeUninit`, so the `Opaque` is initialised whatever C wrote.
        unsafe {
            pin_init_from_closure(move |slot: *mut Self| {
                init(Self::raw_get(slot));
                Ok(())
            })
        }
    }

    /// Uninitialised: for a C object C initialises before any use.
    pub const fn uninit() -> Self {
        Opaque {
            value: UnsafeCell::new(MaybeUninit::uninit()),
            _pin: PhantomPinned,
        }
    }

    /// The C object, for C functions.
    pub const fn get(&self) -> *mut T {
        UnsafeCell::raw_get(&self.value).cast()
    }

    /// [`Opaque::get`] from a raw pointer to the `Opaque`.
    pub const fn raw_get(this: *const Self) -> *mut T {
        // SAFETY: `Opaque` is `repr(transparent)` over the cell.
        UnsafeCell::raw_get(this.cast::<UnsafeCell<MaybeUninit<T>>>()).cast()
    }
}
