//! A kernel timer that fires every 100 ms and counts its ticks in a
//! spinlock-protected counter, which `/proc/ticker` shows. Unloading
//! removes the file (waiting for readers), then stops the timer (waiting
//! for a running callback) before the counter is freed.
#![no_std]

use core::fmt::{self, Write};

use kmod_runtime::alloc::{pin_init, GFP_KERNEL};
use kmod_runtime::pinned_init::pin_init;
use kmod_runtime::procfs::{ProcFile, SeqFile, Show};
use kmod_runtime::sync::SpinLock;
use kmod_runtime::timer::{Timer, TimerCallback};
use kmod_runtime::{new_spinlock, pr_info, Result};
use pinned_init::pin_data;

kmod_runtime::module! {
    type: Ticker,
    name: "ticker",
    license: "GPL",
    author: "kmod-build developers",
    description: "A timer-driven counter shown in /proc/ticker",
    params: {
        period_ms: int = 100, "Milliseconds between ticks (1 to 10000)";
    },
}

struct Ticker {
    file: ProcFile<Timer<Counter>>,
}

/// Shared by the timer callback (softirq) and `/proc` readers (process
/// context): the spinlock disables interrupts while held. The timer owns
/// it and stops before it is dropped.
#[pin_data]
struct Counter {
    period_ms: u32,
    #[pin]
    ticks: SpinLock<u64>,
}

impl TimerCallback for Counter {
    fn expired(timer: &Timer<Self>) {
        *timer.ticks.lock() += 1;
        timer.schedule(timer.period_ms);
    }
}

impl Show for Counter {
    fn show(&self, file: &mut SeqFile) -> fmt::Result {
        let ticks = *self.ticks.lock();
        writeln!(file, "ticks: {ticks}\nperiod_ms: {}", self.period_ms)
    }
}

impl kmod_runtime::Module for Ticker {
    fn init() -> Result<Self> {
        let period_ms = params::period_ms.get().clamp(1, 10_000) as u32;
        let counter = pin_init(
            Timer::new(pin_init!(Counter {
                period_ms,
                ticks <- new_spinlock!(0),
            })),
            GFP_KERNEL,
        )?;
        counter.schedule(period_ms);
        // On failure `counter` is dropped, which stops the timer.
        let file = ProcFile::create(c"ticker", counter)?;
        pr_info!("ticking every {period_ms} ms in /proc/ticker");
        Ok(Ticker { file })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        let ticks = *self.file.data().ticks.lock();
        pr_info!("stopping after {ticks} ticks");
    }
}
