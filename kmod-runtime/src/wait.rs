//! Wait queues: a task sleeps until a condition, changed by another task
//! under a lock, holds ([`WaitQueue::wait_interruptible_while`]), and
//! `poll(2)` learns which queue to wait on ([`PollTable`]).
//!
//! A [`WaitQueue`] is `!Unpin` and only built in place ([`new_wait_queue!`]
//! gives an initialiser with a lock class key of its own for the call
//! site, as C's `init_waitqueue_head` has), so the C queue, which points
//! to itself, never moves once initialised.

use core::convert::Infallible;
use core::ffi::CStr;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ops::BitOr;

use pinned_init::{pin_data, pin_init, PinInit};

use crate::bindings;
use crate::error::{Result, ERESTARTSYS};
use crate::sync::{Backend, Guard, LockClassKey};
use crate::types::Opaque;

/// `struct wait_queue_head`: tasks sleeping until [`WaitQueue::notify_all`].
#[pin_data]
pub struct WaitQueue {
    #[pin]
    head: Opaque<bindings::wait_queue_head>,
}

// SAFETY: the C queue has a spinlock of its own, which every function that
// changes it takes; it holds no task's state between calls.
unsafe impl Send for WaitQueue {}
// SAFETY: as above.
unsafe impl Sync for WaitQueue {}

impl WaitQueue {
    /// An initialiser of a wait queue whose spinlock is of class `key`,
    /// named `name`: use [`new_wait_queue!`], which makes a key for the
    /// call site.
    pub fn new(name: &'static CStr, key: &'static LockClassKey) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: the head gets its final, pinned address once; the
            // name and the static key live forever.
            head <- unsafe {
                Opaque::ffi_init::<Infallible>(|head| {
                    bindings::__init_waitqueue_head(head, name.as_ptr(), key.get())
                })
            },
        })
    }

    /// Sleeps while `condition` holds for the data `guard` locks, the lock
    /// released while asleep; the condition is checked with the lock held.
    /// Whoever makes it false must do so under the same lock, then call
    /// [`WaitQueue::notify_all`]. A signal ends the wait with
    /// [`ERESTARTSYS`], which a `read`/`write`/`ioctl` returns as it is.
    ///
    /// Sleeps: only where the task may (not under another spinlock, not in
    /// a timer callback), as [`Mutex`](crate::sync::Mutex) asks.
    pub fn wait_interruptible_while<T, B: Backend>(
        &self,
        guard: &mut Guard<'_, T, B>,
        condition: impl FnMut(&T) -> bool,
    ) -> Result {
        // `MAX_SCHEDULE_TIMEOUT`: `schedule_timeout` is `schedule` then.
        self.wait_jiffies(guard, core::ffi::c_long::MAX, condition)
            .map(|_| ())
    }

    /// As [`WaitQueue::wait_interruptible_while`], but for at most
    /// `timeout_ms` milliseconds in all: `Ok(true)` once the condition is
    /// false, `Ok(false)` if it still holds when the time is up.
    pub fn wait_interruptible_timeout_while<T, B: Backend>(
        &self,
        guard: &mut Guard<'_, T, B>,
        timeout_ms: u32,
        condition: impl FnMut(&T) -> bool,
    ) -> Result<bool> {
        // SAFETY: arithmetic on its argument only.
        let jiffies = unsafe { bindings::kmod_msecs_to_jiffies(timeout_ms) } as core::ffi::c_long;
        self.wait_jiffies(guard, jiffies, condition)
    }

    /// The wait of both: for at most `left` jiffies.
    fn wait_jiffies<T, B: Backend>(
        &self,
        guard: &mut Guard<'_, T, B>,
        mut left: core::ffi::c_long,
        mut condition: impl FnMut(&T) -> bool,
    ) -> Result<bool> {
        while condition(guard) {
            if left <= 0 {
                return Ok(false);
            }
            // SAFETY: no pointers in; reads the current task's flags.
            if unsafe { bindings::kmod_signal_pending() } {
                return Err(ERESTARTSYS);
            }
            let mut entry = MaybeUninit::<bindings::wait_queue_entry>::uninit();
            let entry = entry.as_mut_ptr();
            // SAFETY: the entry is this frame's and stays where it is until
            // `finish_wait` has taken it off the queue, below; the queue
            // was initialised in place by `new` and is pinned since. Only
            // the runtime's code runs while the entry is queued, so nothing
            // can leave this frame with it there. Queued before the lock is
            // released: a change made under the lock and its notification
            // cannot come between the check and the sleep. `schedule_timeout`
            // sleeps as `schedule` does, for at most `left` jiffies, and
            // says how many are left.
            unsafe {
                bindings::init_wait_entry(entry, 0);
                bindings::kmod_prepare_to_wait_interruptible(self.head.get(), entry);
                left = guard.unlocked(|| bindings::schedule_timeout(left));
                bindings::finish_wait(self.head.get(), entry);
            }
        }
        Ok(true)
    }

    /// Wakes every task sleeping in [`WaitQueue::wait_interruptible_while`]
    /// and every `poll(2)` waiting on this queue; any context.
    pub fn notify_all(&self) {
        // SAFETY: initialised in place by `new`, pinned since.
        unsafe { bindings::kmod_wake_up_interruptible_all(self.head.get()) }
    }
}

/// An initialiser of a [`WaitQueue`], with a lock class of its own for this
/// call site.
#[macro_export]
macro_rules! new_wait_queue {
    () => {{
        static KEY: $crate::sync::LockClassKey = $crate::sync::LockClassKey::new();
        $crate::wait::WaitQueue::new(
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

/// What a `poll` reports: an `EPOLL*` mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollEvents(bindings::__poll_t);

impl PollEvents {
    /// Nothing ready.
    pub const NONE: PollEvents = PollEvents(0);
    /// `EPOLLIN`: a read would not block.
    pub const IN: PollEvents = PollEvents(bindings::EPOLLIN);
    /// `EPOLLRDNORM`: normal data to read (set with `IN`).
    pub const RDNORM: PollEvents = PollEvents(bindings::EPOLLRDNORM);
    /// `EPOLLPRI`: urgent data.
    pub const PRI: PollEvents = PollEvents(bindings::EPOLLPRI);
    /// `EPOLLOUT`: a write would not block.
    pub const OUT: PollEvents = PollEvents(bindings::EPOLLOUT);
    /// `EPOLLWRNORM`: normal data can be written (set with `OUT`).
    pub const WRNORM: PollEvents = PollEvents(bindings::EPOLLWRNORM);
    /// `EPOLLERR`: an error is pending.
    pub const ERR: PollEvents = PollEvents(bindings::EPOLLERR);
    /// `EPOLLHUP`: the other side is gone.
    pub const HUP: PollEvents = PollEvents(bindings::EPOLLHUP);

    /// The mask as C's `poll` returns it.
    pub const fn bits(self) -> bindings::__poll_t {
        self.0
    }
}

impl BitOr for PollEvents {
    type Output = PollEvents;
    fn bitor(self, other: PollEvents) -> PollEvents {
        PollEvents(self.0 | other.0)
    }
}

/// The `poll_table` of one `poll` call: [`PollTable::register`] tells
/// `poll(2)`, `select(2)` and `epoll` which queues to wait on.
///
/// `'a` is the open file's state's lifetime: only a queue that lives as
/// long as the file (a field of its state, something the state owns or a
/// static) can be registered, because `epoll` keeps its entry on the
/// queue until the file is released, and `select` until it returns (it
/// holds a reference to the file meanwhile). Invariant in `'a` and not
/// `Send`: it cannot be shortened or leave the call.
pub struct PollTable<'a> {
    file: *mut bindings::file,
    table: *mut bindings::poll_table,
    _queues: PhantomData<*mut &'a WaitQueue>,
}

impl<'a> PollTable<'a> {
    /// # Safety
    /// `file` is the open file being polled and `table` its call's table
    /// (or null), both valid until that call returns, which the
    /// `PollTable` does not outlive; `'a` is at most the lifetime of the
    /// file's state.
    pub(crate) unsafe fn new(
        file: *mut bindings::file,
        table: *mut bindings::poll_table,
    ) -> PollTable<'a> {
        PollTable {
            file,
            table,
            _queues: PhantomData,
        }
    }

    /// Waits on `queue` too: its [`WaitQueue::notify_all`] makes the
    /// poller ask again.
    pub fn register(&mut self, queue: &'a WaitQueue) {
        // SAFETY: `file` and `table` are this call's (`new`); the queue is
        // initialised and pinned, and lives as long as the file's state
        // (`'a`), so as long as any entry `poll_wait` puts on it (see the
        // type's documentation).
        unsafe { bindings::kmod_poll_wait(self.file, queue.head.get(), self.table) }
    }
}
