//! [`Arc`]: a `T` on the heap, shared by counted owners and dropped with
//! the last. `alloc`'s `Arc` cannot be made without panicking when memory
//! runs out, nor built in place (locks, wait queues) on a stable compiler;
//! this one is only built in place, pinned, and fails with [`ENOMEM`].
//!
//! [`ENOMEM`]: crate::error::ENOMEM

use core::marker::PhantomData;
use core::ops::Deref;
use core::pin::Pin;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicUsize, Ordering};

use pinned_init::PinInit;

use crate::alloc::{allocate, Flags};
use crate::error::{Error, Result};

/// More owners than this is a leak gone wrong (`mem::forget` in a loop):
/// `clone` panics before the count can wrap to a free while owned.
const MAX_OWNERS: usize = isize::MAX as usize;

/// An owner of a shared, pinned `T`: `Clone` adds one, `Drop` takes one
/// away, and the last drops the `T` in place and frees it. Only `&T` is
/// ever handed out, so a `T` that must not move never does.
pub struct Arc<T> {
    inner: NonNull<Inner<T>>,
    _owns: PhantomData<Inner<T>>,
}

struct Inner<T> {
    owners: AtomicUsize,
    data: T,
}

// SAFETY: owners on several tasks share `&T` (hence `Sync`), and the last
// of them, on any task, drops the `T` (hence `Send`); the count is atomic.
unsafe impl<T: Send + Sync> Send for Arc<T> {}
// SAFETY: a shared `Arc` gives `&T` and clones (new owners) only, as above.
unsafe impl<T: Send + Sync> Sync for Arc<T> {}

impl<T> Arc<T> {
    /// A new `T`, initialised in place by `init` and pinned, with one
    /// owner: [`ENOMEM`](crate::error::ENOMEM), or `init`'s error.
    pub fn pin_init<E>(init: impl PinInit<T, E>, flags: Flags) -> Result<Pin<Self>>
    where
        Error: From<E>,
    {
        let inner = allocate::<Inner<T>>(flags)?;
        // SAFETY: `inner` is valid for an `Inner<T>` and not shared yet; the
        // data is initialised at its final address, which it keeps (no
        // `Arc` moves or gives `&mut T`), or the memory is freed untouched.
        unsafe {
            (&raw mut (*inner).owners).write(AtomicUsize::new(1));
            if let Err(error) = init.__pinned_init(&raw mut (*inner).data) {
                free(inner);
                return Err(error.into());
            }
            Ok(Pin::new_unchecked(Arc {
                inner: NonNull::new_unchecked(inner),
                _owns: PhantomData,
            }))
        }
    }

    fn inner(&self) -> &Inner<T> {
        // SAFETY: an owner exists (this one), so the memory is live.
        unsafe { self.inner.as_ref() }
    }
}

/// # Safety
/// `inner` came from `allocate::<Inner<T>>` and holds no `T` to drop.
unsafe fn free<T>(inner: *mut Inner<T>) {
    // SAFETY: see above; `Inner` has a counter, so its size is not zero.
    unsafe { alloc_crate::alloc::dealloc(inner.cast(), core::alloc::Layout::new::<Inner<T>>()) }
}

impl<T> Clone for Arc<T> {
    fn clone(&self) -> Self {
        // Relaxed: this owner's reference keeps the count above zero, so
        // there is nothing to order with the last owner's drop.
        let owners = self.inner().owners.fetch_add(1, Ordering::Relaxed);
        assert!(owners < MAX_OWNERS, "Arc: too many owners");
        Arc {
            inner: self.inner,
            _owns: PhantomData,
        }
    }
}

impl<T> Deref for Arc<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.inner().data
    }
}

impl<T> Drop for Arc<T> {
    fn drop(&mut self) {
        // Release: this owner's uses of the `T` happen before the drop
        // below, on whichever task is last.
        if self.inner().owners.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Acquire: pairs with every other owner's Release above.
        fence(Ordering::Acquire);
        let inner = self.inner.as_ptr();
        // SAFETY: this was the last owner, so nothing else refers to the
        // data: it is dropped where it was initialised (it never moved),
        // then the memory from `pin_init` is freed.
        unsafe {
            core::ptr::drop_in_place(&raw mut (*inner).data);
            free(inner);
        }
    }
}
