//! Waiting for time to pass.

use crate::bindings;

/// Sleeps at least `milliseconds` (to the next jiffy at least).
///
/// Sleeps: only where the task may (not under a spinlock, not in a timer
/// callback), as [`Mutex`](crate::sync::Mutex) asks; a work item's
/// [`run`](crate::workqueue::WorkItem::run) may.
pub fn msleep(milliseconds: u32) {
    // SAFETY: no pointers; the kernel's sleep in the current task.
    unsafe { bindings::msleep(milliseconds) }
}
