//! `/dev/worker`: one feed of lines for the module, shared by every open
//! file: a timer (softirq) queues work, which runs in process context,
//! sleeps, appends a line under a mutex and wakes the readers; each file
//! reads the lines made since it was opened, and `read(2)` blocks until
//! there is one. The README says what is guaranteed.
#![no_std]

extern crate alloc;

use alloc::string::String;
use core::fmt::Write;
use core::pin::Pin;
use core::sync::atomic::{AtomicU64, Ordering};

use kmod_runtime::alloc::GFP_KERNEL;
use kmod_runtime::completion::Completion;
use kmod_runtime::delay::msleep;
use kmod_runtime::error::EAGAIN;
use kmod_runtime::miscdev::{File, FileFlags, Registration, UserSliceWriter};
use kmod_runtime::pinned_init::{pin_init, try_pin_init, PinInit};
use kmod_runtime::sync::{Arc, Mutex};
use kmod_runtime::timer::{Timer, TimerCallback};
use kmod_runtime::wait::WaitQueue;
use kmod_runtime::workqueue::{Work, WorkItem};
use kmod_runtime::{new_completion, new_mutex, new_wait_queue, new_work, pr_info, Error, Result};
use pinned_init::pin_data;

kmod_runtime::module! {
    type: Worker,
    name: "worker",
    license: "GPL",
    author: "kmod-build developers",
    description: "A timer queues work that makes lines for readers of /dev/worker",
    params: {
        period_ms: int = 100, "Milliseconds between lines (1 to 10000)";
        work_ms: int = 0, "Milliseconds each run of the work sleeps (0 to 1000)";
    },
}

/// Bytes of the latest lines the feed keeps for readers behind it.
const BACKLOG: usize = 4096;
/// Room for the longest line, `line 18446744073709551615\n`.
const LINE: usize = 32;

struct Worker {
    device: Registration<Reader>,
}

impl kmod_runtime::Module for Worker {
    fn init() -> Result<Self> {
        // The files' shared data: the feed, which each file owns a share of.
        let feed = Arc::pin_init(feed(), GFP_KERNEL)?;
        feed.schedule(0);
        // On failure (a signal to insmod) `feed` is dropped: timer, work.
        feed.work.first.wait_interruptible()?;
        pr_info!("first line made, one every {} ms", feed.period_ms);
        let device = Registration::register(c"worker", feed)?;
        Ok(Worker { device })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let made = self.device.shared().work.text.lock().made;
        pr_info!("unloading after {made} lines");
    }
}

/// A timer and the work it queues; dropped (by its last owner), the timer
/// stops, then the work is cancelled (a running one waited for).
#[pin_data]
struct Tick {
    period_ms: u32,
    #[pin]
    work: Work<Lines>,
}

impl TimerCallback for Tick {
    fn expired(timer: &Timer<Self>) {
        // Pending already: one run makes one line for both ticks.
        timer.work.queue();
        timer.schedule(timer.period_ms);
    }
}

/// The latest lines, who waits for them, and the first line's completion.
#[pin_data]
struct Lines {
    work_ms: u32,
    #[pin]
    text: Mutex<Text>,
    #[pin]
    added: WaitQueue,
    #[pin]
    first: Completion,
}

struct Text {
    /// Whole lines, ASCII: every index is a character boundary.
    recent: String,
    /// Where `recent` starts in all the feed made.
    start: u64,
    made: u64,
}

impl Text {
    /// Where the next line will start.
    fn end(&self) -> u64 {
        self.start + self.recent.len() as u64
    }
}

impl WorkItem for Lines {
    fn run(work: &Work<Self>) {
        // Process context: the sleep, the mutex and the allocation may.
        msleep(work.work_ms);
        let mut text = work.text.lock();
        let line = text.made;
        text.made += 1;
        // The oldest lines make room: a reader that far behind skips them.
        while text.recent.len() + LINE > BACKLOG {
            let first = text
                .recent
                .find('\n')
                .map_or(text.recent.len(), |end| end + 1);
            text.recent.drain(..first);
            text.start += first as u64;
        }
        if text.recent.try_reserve(LINE).is_ok() {
            // Cannot fail: `String`'s `write_str` only grows it, within room.
            let _ = writeln!(text.recent, "line {line}");
        }
        drop(text);
        work.added.notify_all();
        if line == 0 {
            work.first.complete_all();
        }
    }
}

fn feed() -> impl PinInit<Timer<Tick>> {
    let period_ms = params::period_ms.get().clamp(1, 10_000) as u32;
    let work_ms = params::work_ms.get().clamp(0, 1000) as u32;
    Timer::new(pin_init!(Tick {
        period_ms,
        work <- new_work!(pin_init!(Lines {
            work_ms,
            text <- new_mutex!(Text { recent: String::new(), start: 0, made: 0 }),
            added <- new_wait_queue!(),
            first <- new_completion!(),
        })),
    }))
}

/// An open file: an owner of the feed, and where it is in the lines.
#[pin_data]
struct Reader {
    feed: Pin<Arc<Timer<Tick>>>,
    /// Only changed under the lines' lock, which orders it (atomic because
    /// calls on the file may overlap).
    next: AtomicU64,
}

impl File for Reader {
    type Shared = Pin<Arc<Timer<Tick>>>;

    /// From the next line made on: earlier lines are not for this file.
    fn open(feed: &Self::Shared) -> impl PinInit<Self, Error> {
        let next = AtomicU64::new(feed.work.text.lock().end());
        try_pin_init!(Reader { feed: feed.clone(), next }? Error)
    }

    /// As many unread bytes as fit, once there are some.
    fn read(&self, flags: FileFlags, to: &mut UserSliceWriter) -> Result {
        let lines = &self.feed.work;
        let mut text = lines.text.lock();
        let read_all = |text: &Text| self.next.load(Ordering::Relaxed) == text.end();
        if read_all(&text) && flags.nonblocking() {
            return Err(EAGAIN);
        }
        // A signal ends the wait: the read is restarted or fails EINTR.
        lines.added.wait_interruptible_while(&mut text, read_all)?;
        let next = self.next.load(Ordering::Relaxed).max(text.start);
        let n = to.write(&text.recent.as_bytes()[(next - text.start) as usize..])?;
        self.next.store(next + n as u64, Ordering::Relaxed);
        Ok(())
    }
}
