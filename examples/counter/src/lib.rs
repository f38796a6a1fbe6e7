//! `/dev/counter`: each open file has a 64-bit counter that `ioctl(2)`
//! commands read, set, add to and reset. 32-bit programs get the same
//! commands through `compat_ioctl`. `client.c` is the user-space side.
#![no_std]

use kmod_runtime::error::{ENOTTY, EOVERFLOW};
use kmod_runtime::ioctl::{io, ior, iow, iowr};
use kmod_runtime::miscdev::{File, IoctlArgument, Registration};
use kmod_runtime::{pr_info, Result};
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
        let device = Registration::register(c"counter")?;
        pr_info!("registered /dev/counter");
        Ok(Counter { _device: device })
    }
}

/// One open file's counter.
struct Value(u64);

impl File for Value {
    fn open() -> Result<Self> {
        Ok(Value(0))
    }

    fn ioctl(&mut self, command: u32, argument: &mut IoctlArgument) -> Result<i32> {
        match command {
            GET => argument.writer().write_value(&self.0)?,
            SET => self.0 = argument.reader().read_value()?,
            ADD => {
                let mut add: Add = argument.reader().read_value()?;
                // The counter stays as it was when the sum does not fit.
                self.0 = self.0.checked_add(add.amount).ok_or(EOVERFLOW)?;
                add.value = self.0;
                argument.writer().write_value(&add)?;
            }
            RESET => self.0 = 0,
            // Other numbers, and these with another size or direction.
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }
}
