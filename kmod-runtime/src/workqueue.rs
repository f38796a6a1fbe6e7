//! Work items: data `T` and a `struct work_struct` that the kernel's
//! worker threads run ([`WorkItem::run`]) in process context, where the
//! code may sleep: take a [`Mutex`](crate::sync::Mutex), allocate with
//! `GFP_KERNEL`, wait. [`Work::queue`] may be called from any context, a
//! timer callback or an interrupt handler too, which is how atomic code
//! hands work to a context that may sleep.
//!
//! Work goes to `system_wq`, the kernel's shared queue: the module has no
//! queue of its own to flush or destroy, because every [`Work`] cancels
//! itself, waiting for a running `run`, when dropped.

use core::ops::Deref;
use core::pin::Pin;

use pinned_init::{pin_data, pinned_drop, try_pin_init, PinInit};

use crate::bindings;
use crate::sync::LockClassKey;
use crate::types::Opaque;

/// What a [`Work`] does when a worker runs it, in process context on any
/// CPU (hence `Sync`: `T` is shared with whoever queued it).
pub trait WorkItem: Send + Sync + Sized {
    fn run(work: &Work<Self>);
}

/// A `struct work_struct` and the data `T` its [`WorkItem::run`] gets.
///
/// Only built in place ([`new_work!`]) and `!Unpin`, so it never moves
/// while queued. Its drop cancels it for good (`cancel_work_sync`: pending
/// work is taken off the queue, a running `run` is waited for) before `T`
/// is dropped: `run` never sees a dropped `T`. Whatever queues it holds a
/// `&Work`, so none can queue it again during the drop.
#[pin_data(PinnedDrop)]
#[repr(C)]
pub struct Work<T> {
    // First field: `run` casts the `work_struct` back to its `Work`.
    #[pin]
    work: Opaque<bindings::work_struct>,
    #[pin]
    data: T,
}

// SAFETY: the kernel serialises the work's own operations (its pending
// bit); `T` is what moves with it.
unsafe impl<T: Send> Send for Work<T> {}
// SAFETY: `queue` works from any task with `&Work`, and `run` gets `&T` on
// a worker thread, which `T: Sync` allows.
unsafe impl<T: Sync> Sync for Work<T> {}

impl<T: WorkItem> Work<T> {
    /// An initialiser of a work item (not queued) around what `data`
    /// initialises, of lockdep class `key`: use [`new_work!`], which makes
    /// a key for the call site.
    pub fn new<E>(data: impl PinInit<T, E>, key: &'static LockClassKey) -> impl PinInit<Self, E> {
        try_pin_init!(Self {
            // SAFETY: INIT_WORK initialises the `work_struct` in place, at
            // its final address; the key is static.
            work <- unsafe {
                Opaque::ffi_init(|work| bindings::kmod_init_work(work, Some(run::<T>), key.get()))
            },
            data <- data,
        }? E)
    }
}

impl<T> Work<T> {
    /// Queues the work on `system_wq` unless it is pending already (then
    /// it runs once for both); `false` if it was. Any context.
    pub fn queue(&self) -> bool {
        // SAFETY: initialised in place by `new`, pinned since, and
        // cancelled before it is freed; queue_work may be called from any
        // context.
        unsafe { bindings::kmod_queue_work(self.work.get()) }
    }
}

impl<T> Deref for Work<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.data
    }
}

#[pinned_drop]
impl<T> PinnedDrop for Work<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: initialised by `new`; fields are dropped only after this.
        // Nothing else holds a reference now, so nothing queues it again
        // (and a `run` queuing it again is handled by cancel_work_sync).
        unsafe { bindings::cancel_work_sync(self.work.get()) };
    }
}

unsafe extern "C" fn run<T: WorkItem>(work: *mut bindings::work_struct) {
    // SAFETY: `work` is the first field of a `#[repr(C)] Work<T>` set up by
    // `new`, alive until its drop has cancelled it (waiting for this call).
    T::run(unsafe { &*work.cast::<Work<T>>() });
}

/// An initialiser of a [`Work`] around `data` (a value or a `PinInit`),
/// with a lockdep class of its own for this call site.
#[macro_export]
macro_rules! new_work {
    ($data:expr $(,)?) => {{
        static KEY: $crate::sync::LockClassKey = $crate::sync::LockClassKey::new();
        $crate::workqueue::Work::new($data, &KEY)
    }};
}
