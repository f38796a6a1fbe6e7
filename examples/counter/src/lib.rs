//! `/dev/counter`: each open file has a 64-bit counter that `ioctl(2)`
//! commands read, set, add to and reset. 32-bit programs get the same
//! commands through `compat_ioctl`. `read(2)` gives the value after each
//! change, waiting for one (EAGAIN under `O_NONBLOCK`); `poll(2)` says
//! when one is there. `client.c` is the user-space side.
#![no_std]

use kmod_runtime::error::{EAGAIN, EINVAL, ENOTTY, EOVERFLOW};
use kmod_runtime::ioctl::{io, ior, iow, iowr};
use kmod_runtime::miscdev::{File, FileFlags, IoctlArgument, Registration, UserSliceWriter};
use kmod_runtime::pinned_init::{try_pin_init, PinInit};
use kmod_runtime::sync::Mutex;
use kmod_runtime::wait::{PollEvents, PollTable, WaitQueue};
use kmod_runtime::{new_mutex, new_wait_queue, pr_info, Error, Result};
use pinned_init::pin_data;
use zerocopy::{FromBytes, Immutable, IntoBytes};

kmod_runtime::module! {
    type: Counter,
    name: "counter",
    license: "GPL",
    author: "kmod-build developers",
    description: "A misc device driven by ioctl commands",
}

/// The commands' type byte, as `client.c` has it.
const KIND: u8 = b'k';
/// `_IOR('k', 1, __u64)`: the counter's value.
const GET: u32 = ior::<u64>(KIND, 1);
/// `_IOW('k', 2, __u64)`: sets the value.
const SET: u32 = iow::<u64>(KIND, 2);
/// `_IOWR('k', 3, struct counter_add)`: adds `amount`, returns the sum.
const ADD: u32 = iowr::<Add>(KIND, 3);
/// `_IO('k', 4)`: back to zero.
const RESET: u32 = io(KIND, 4);

/// `struct counter_add`: the same layout for 64- and 32-bit callers.
#[derive(FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct Add {
    amount: u64,
    value: u64,
}

struct Counter {
    _device: Registration<Value>,
}

impl kmod_runtime::Module for Counter {
    fn init() -> Result<Self> {
        let device = Registration::register(c"counter", ())?;
        pr_info!("registered /dev/counter");
        Ok(Counter { _device: device })
    }
}

/// One open file's counter, and the readers waiting for it to change.
#[pin_data]
struct Value {
    #[pin]
    counter: Mutex<Counted>,
    #[pin]
    changed: WaitQueue,
}

struct Counted {
    value: u64,
    /// Changed since the last read.
    unread: bool,
}

impl File for Value {
    /// Nothing: each file has its own.
    type Shared = ();

    fn open(_: &()) -> impl PinInit<Self, Error> {
        try_pin_init!(Value {
            counter <- new_mutex!(Counted {
                value: 0,
                unread: false,
            }),
            changed <- new_wait_queue!(),
        }? Error)
    }

    /// The value (8 bytes) once it has changed since the last read.
    fn read(&self, flags: FileFlags, to: &mut UserSliceWriter) -> Result {
        if to.len() < size_of::<u64>() {
            return Err(EINVAL);
        }
        let mut counter = self.counter.lock();
        if !counter.unread && flags.nonblocking() {
            return Err(EAGAIN);
        }
        // A signal ends the wait: the read is restarted or fails EINTR.
        self.changed
            .wait_interruptible_while(&mut counter, |counter| !counter.unread)?;
        to.write_value(&counter.value)?;
        counter.unread = false;
        Ok(())
    }

    fn poll<'a>(&'a self, table: &mut PollTable<'a>) -> PollEvents {
        table.register(&self.changed);
        if self.counter.lock().unread {
            PollEvents::IN | PollEvents::RDNORM
        } else {
            PollEvents::NONE
        }
    }

    fn ioctl(&self, command: u32, argument: &mut IoctlArgument) -> Result<i32> {
        let mut counter = self.counter.lock();
        match command {
            GET => return argument.writer().write_value(&counter.value).map(|()| 0),
            SET => counter.value = argument.reader().read_value()?,
            ADD => {
                let mut add: Add = argument.reader().read_value()?;
                // The counter stays as it was when the sum does not fit
                // or cannot be written back.
                add.value = counter.value.checked_add(add.amount).ok_or(EOVERFLOW)?;
                argument.writer().write_value(&add)?;
                counter.value = add.value;
            }
            RESET => counter.value = 0,
            // Other numbers, and these with another size or direction.
            _ => return Err(ENOTTY),
        }
        // Changed under the lock, then readers and pollers woken.
        counter.unread = true;
        self.changed.notify_all();
        Ok(0)
    }
}
