//! `/dev/worker`: each open file's timer (softirq) queues work, which runs
//! in process context, sleeps, allocates a line under a mutex and wakes
//! the file's readers; `read(2)` blocks until a line is there. The README
//! says what is guaranteed.
#![no_std]

extern crate alloc;

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt::Write;
use core::pin::Pin;

use kmod_runtime::alloc::{pin_init, GFP_KERNEL};
use kmod_runtime::completion::Completion;
use kmod_runtime::delay::msleep;
use kmod_runtime::error::EAGAIN;
use kmod_runtime::miscdev::{File, FileFlags, Registration, UserSliceWriter};
use kmod_runtime::pinned_init::{pin_init, try_pin_init, PinInit};
use kmod_runtime::sync::Mutex;
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

/// Bytes of unread lines a feed keeps: one nobody reads stops growing.
const BACKLOG: usize = 4096;
/// Room for the longest line, `line 18446744073709551615\n`.
const LINE: usize = 32;

struct Worker {
    _device: Registration<Reader>,
    feed: Pin<Box<Timer<Tick>>>,
}

impl kmod_runtime::Module for Worker {
    fn init() -> Result<Self> {
        let feed = pin_init(feed(), GFP_KERNEL)?;
        feed.schedule(0);
        // On failure (a signal to insmod) `feed` is dropped: timer, work.
        feed.work.first.wait_interruptible()?;
        pr_info!("first line made, one every {} ms", feed.period_ms);
        let device = Registration::register(c"worker")?;
        Ok(Worker {
            _device: device,
            feed,
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let made = self.feed.work.text.lock().made;
        pr_info!("unloading after {made} lines");
    }
}

/// A timer and the work it queues; dropped, the timer stops first, then
/// the work is cancelled (a running one waited for), then the lines go.
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

/// The lines not read yet, who waits for them, and the first line's
/// completion (for good).
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
    /// ASCII: every index is a character boundary.
    unread: String,
    made: u64,
}

impl WorkItem for Lines {
    fn run(work: &Work<Self>) {
        // Process context: the sleep, the mutex and the allocation may.
        msleep(work.work_ms);
        let mut text = work.text.lock();
        let line = text.made;
        text.made += 1;
        if text.unread.len() + LINE <= BACKLOG && text.unread.try_reserve(LINE).is_ok() {
            // Cannot fail: `String`'s `write_str` only grows it, within room.
            let _ = writeln!(text.unread, "line {line}");
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
            text <- new_mutex!(Text { unread: String::new(), made: 0 }),
            added <- new_wait_queue!(),
            first <- new_completion!(),
        })),
    }))
}

/// An open file: its own feed, started at open, stopped at the last close.
#[pin_data]
struct Reader {
    #[pin]
    feed: Timer<Tick>,
}

impl File for Reader {
    fn open() -> impl PinInit<Self, Error> {
        try_pin_init!(Reader { feed <- feed() }? Error).pin_chain(|reader| {
            reader.feed.schedule(reader.feed.period_ms);
            Ok(())
        })
    }

    /// As many unread bytes as fit, once there are some.
    fn read(&self, flags: FileFlags, to: &mut UserSliceWriter) -> Result {
        let lines = &self.feed.work;
        let mut text = lines.text.lock();
        if text.unread.is_empty() && flags.nonblocking() {
            return Err(EAGAIN);
        }
        // A signal ends the wait: the read is restarted or fails EINTR.
        let empty = |text: &Text| text.unread.is_empty();
        lines.added.wait_interruptible_while(&mut text, empty)?;
        let n = to.write(text.unread.as_bytes())?;
        text.unread.drain(..n);
        Ok(())
    }
}
