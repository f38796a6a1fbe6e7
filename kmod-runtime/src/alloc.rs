//! The global allocator: `alloc`'s `Box`, `Vec` and `String` on kmalloc.
//!
//! Infallible `alloc` APIs (`Vec::push`, `Box::new`) panic when memory runs
//! out; use `try_reserve` and [`try_box`] to get [`ENOMEM`] instead.
//!
//! The allocator cannot be told its context, so it asks the kernel: where
//! sleeping is impossible (interrupts off, as under every
//! [`SpinLock`](crate::sync::SpinLock) guard; softirq, as in timer
//! callbacks; hard interrupts; preemption counted off) it allocates with
//! `GFP_ATOMIC`, elsewhere with `GFP_KERNEL`. Every atomic context safe
//! code can enter is one of those, so no allocation sleeps where it must
//! not. [`Flags`] asks for more: [`try_box_in`], [`try_pin_init`] and
//! [`try_reserve_in`] with [`GFP_ATOMIC`] never sleep, in any context.
//!
//! The allocator counts live allocations, and [`module!`](crate::module!)
//! reports a leak when the count is not back to zero after the module
//! state was dropped.

use alloc_crate::boxed::Box;
use alloc_crate::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use core::pin::Pin;
use core::sync::atomic::{AtomicUsize, Ordering};

use pinned_init::PinInit;

use crate::bindings;
use crate::error::{Error, Result, ENOMEM};

/// How an allocation may get its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags(Context);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Context {
    /// May sleep where the context allows it.
    MaySleep,
    /// Never sleeps (and may use the emergency reserves).
    Atomic,
}

/// May sleep to reclaim memory (where the context allows it: elsewhere the
/// allocator uses `GFP_ATOMIC` anyway).
pub const GFP_KERNEL: Flags = Flags(Context::MaySleep);
/// Never sleeps: for allocations where waiting is not an option.
pub const GFP_ATOMIC: Flags = Flags(Context::Atomic);

/// Runs `allocate` so that the global allocator honours `flags`: with
/// interrupts off, which it reads as atomic context, for [`GFP_ATOMIC`].
fn with_flags<R>(flags: Flags, allocate: impl FnOnce() -> R) -> R {
    match flags.0 {
        Context::MaySleep => allocate(),
        Context::Atomic => {
            // SAFETY: interrupts are restored right after; only the
            // allocation (which then cannot sleep) runs in between.
            let saved = unsafe { bindings::kmod_local_irq_save() };
            let result = allocate();
            // SAFETY: the state saved above, on this CPU (interrupts off
            // kept the task here).
            unsafe { bindings::kmod_local_irq_restore(saved) };
            result
        }
    }
}

struct Kmalloc;

/// Allocations made and not yet freed.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Logs an error if the module leaves allocations behind; `module!` calls
/// it after dropping the module state, when nothing should be left.
#[doc(hidden)]
pub fn report_leaks() {
    let live = LIVE.load(Ordering::Relaxed);
    if live != 0 {
        crate::pr_err!("memory leak: {live} allocation(s) still live after exit");
    }
}

#[global_allocator]
static ALLOCATOR: Kmalloc = Kmalloc;

/// The size to ask kmalloc for: it aligns every object to
/// `ARCH_KMALLOC_MINALIGN`, and power-of-two sizes to their size.
fn kmalloc_size(layout: Layout) -> usize {
    if layout.align() <= bindings::ARCH_KMALLOC_MINALIGN {
        layout.size()
    } else {
        layout.size().max(layout.align()).next_power_of_two()
    }
}

/// `krealloc`, as each kernel names it: since 6.10 the C macro adds
/// allocation tagging around `krealloc_noprof`.
unsafe fn krealloc(pointer: *const c_void, size: usize) -> *mut u8 {
    // SAFETY: forwarded from the caller: `pointer` is null or kmalloc'ed.
    unsafe {
        // Asked each time: a callback may run in any context.
        let flags = if bindings::kmod_may_sleep() {
            bindings::GFP_KERNEL
        } else {
            bindings::GFP_ATOMIC
        };
        #[cfg(kernel_ge = "6.10")]
        let new = bindings::krealloc_noprof(pointer, size, flags);
        #[cfg(not(kernel_ge = "6.10"))]
        let new = bindings::krealloc(pointer, size, flags);
        new.cast()
    }
}

// SAFETY: krealloc returns null or memory of at least the size asked for,
// aligned as `kmalloc_size` ensures; kfree frees what it returned.
unsafe impl GlobalAlloc for Kmalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: a null pointer asks for a new allocation.
        let pointer = unsafe { krealloc(core::ptr::null(), kmalloc_size(layout)) };
        if !pointer.is_null() {
            LIVE.fetch_add(1, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, _layout: Layout) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: `pointer` came from `alloc` or `realloc`.
        unsafe { bindings::kfree(pointer.cast()) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `pointer` came from this allocator; GlobalAlloc's contract
        // makes `new_size` with the old alignment a valid layout.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            krealloc(pointer.cast(), kmalloc_size(new_layout))
        }
    }
}

/// `Box::new` that returns [`ENOMEM`] instead of panicking.
pub fn try_box<T>(value: T) -> Result<Box<T>> {
    try_box_in(value, GFP_KERNEL)
}

/// [`try_box`] with explicit [`Flags`].
pub fn try_box_in<T>(value: T, flags: Flags) -> Result<Box<T>> {
    let pointer = allocate::<T>(flags)?;
    // SAFETY: memory for a `T` from the global allocator, which Box frees
    // with the same layout.
    unsafe {
        pointer.write(value);
        Ok(Box::from_raw(pointer))
    }
}

/// A pinned `T` on the heap, initialised in place by `init` (locks, timers
/// and other objects that point to themselves): [`ENOMEM`] or `init`'s
/// error.
pub fn try_pin_init<T, E: From<Error>>(
    init: impl PinInit<T, E>,
    flags: Flags,
) -> Result<Pin<Box<T>>, E> {
    let pointer = allocate::<T>(flags)?;
    // SAFETY: `pointer` is valid for a `T` and becomes a pinned Box below
    // (or is freed untouched): the value never moves.
    match unsafe { init.__pinned_init(pointer) } {
        // SAFETY: initialised, from the global allocator with `T`'s layout.
        Ok(()) => Ok(unsafe { Pin::new_unchecked(Box::from_raw(pointer)) }),
        Err(error) => {
            if size_of::<T>() != 0 {
                // SAFETY: allocated above with this layout; `init` failed,
                // so there is no `T` to drop.
                unsafe { alloc_crate::alloc::dealloc(pointer.cast(), Layout::new::<T>()) };
            }
            Err(error)
        }
    }
}

/// [`try_pin_init`] for initialisers that cannot fail.
pub fn pin_init<T>(init: impl PinInit<T>, flags: Flags) -> Result<Pin<Box<T>>> {
    // SAFETY: forwards to `init`, only changing an error that cannot be.
    let init = unsafe {
        pinned_init::pin_init_from_closure(move |slot| match init.__pinned_init(slot) {
            Ok(()) => Ok(()),
            Err(never) => match never {},
        })
    };
    try_pin_init::<T, Error>(init, flags)
}

/// `Vec::try_reserve` with explicit [`Flags`].
pub fn try_reserve_in<T>(vec: &mut Vec<T>, additional: usize, flags: Flags) -> Result {
    with_flags(flags, || vec.try_reserve(additional))?;
    Ok(())
}

/// Uninitialised memory for a `T` from the global allocator.
pub(crate) fn allocate<T>(flags: Flags) -> Result<*mut T> {
    let layout = Layout::new::<T>();
    if layout.size() == 0 {
        return Ok(core::ptr::NonNull::dangling().as_ptr());
    }
    // SAFETY: the layout has a non-zero size.
    let pointer = with_flags(flags, || unsafe { alloc_crate::alloc::alloc(layout) });
    if pointer.is_null() {
        return Err(ENOMEM);
    }
    Ok(pointer.cast())
}
