//! The global allocator: `alloc`'s `Box`, `Vec` and `String` on kmalloc.
//!
//! Infallible `alloc` APIs (`Vec::push`, `Box::new`) panic when memory runs
//! out; use `try_reserve` and [`try_box`] to get [`ENOMEM`] instead.
//! Allocations use `GFP_KERNEL`, so they may sleep: not in atomic context
//! (timer callbacks, spinlocked sections). The allocator counts live
//! allocations, and [`module!`](crate::module!) reports a leak when the
//! count is not back to zero after the module state was dropped.

use alloc_crate::boxed::Box;
use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::bindings;
use crate::error::{Result, ENOMEM};

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
        #[cfg(kernel_ge = "6.10")]
        let new = bindings::krealloc_noprof(pointer, size, bindings::GFP_KERNEL);
        #[cfg(not(kernel_ge = "6.10"))]
        let new = bindings::krealloc(pointer, size, bindings::GFP_KERNEL);
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
    let layout = Layout::new::<T>();
    if layout.size() == 0 {
        return Ok(Box::new(value));
    }
    // SAFETY: the layout has a non-zero size.
    let pointer = unsafe { alloc_crate::alloc::alloc(layout) }.cast::<T>();
    if pointer.is_null() {
        return Err(ENOMEM);
    }
    // SAFETY: the global allocator returned memory for a `T`, which Box
    // frees with the same layout.
    unsafe {
        pointer.write(value);
        Ok(Box::from_raw(pointer))
    }
}
