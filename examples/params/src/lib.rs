//! Module parameters: `insmod params.ko greetings=3 shout=1 whom=kernel`
//! sets them, `/sys/module/params/parameters/` shows them, and `init`
//! builds its greeting from them in a `String` on the kernel's allocator.
//! `level` and the `flags` array are writable there while the module
//! runs; unloading logs them. `/sys/kernel/params/` shows the greeting and
//! a `threshold` that may be written (0 to 100).
#![no_std]

extern crate alloc;

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt::Write;
use core::sync::atomic::{AtomicI32, Ordering};

use kmod_runtime::alloc::try_box;
use kmod_runtime::error::{EINVAL, ENOMEM};
use kmod_runtime::sysfs::{Attribute, Group, Page};
use kmod_runtime::{pr_err, pr_info, Result};

kmod_runtime::module! {
    type: Params,
    name: "params",
    license: "GPL",
    author: "kmod-build developers",
    description: "Module parameters of each kind, used by init",
    params: {
        greetings: int = 1, "How many times to greet (0 to 10)";
        shout: bool = false, "Greet in capitals";
        whom: charp = c"world", "Whom to greet";
        level: int = 0, "A level sysfs may change while loaded", writable;
        ports: [int; 4] = [0; 4], "Up to four port numbers";
        flags: [bool; 3] = [false; 3], "Up to three switches sysfs may change", writable;
    },
}

const MAX_GREETINGS: i32 = 10;

struct Params {
    shown: Group<Shown>,
}

/// What `/sys/kernel/params/` shows; sysfs may read and write it at once.
struct Shown {
    greeting: String,
    threshold: AtomicI32,
}

const ATTRIBUTES: &[Attribute<Shown>] = &[
    Attribute::read_only(c"greeting", |shown, page| {
        Ok(writeln!(page, "{}", shown.greeting)?)
    }),
    Attribute::read_write(c"threshold", show_threshold, store_threshold),
];

fn show_threshold(shown: &Shown, page: &mut Page) -> Result {
    Ok(writeln!(
        page,
        "{}",
        shown.threshold.load(Ordering::Relaxed)
    )?)
}

/// A number in 0..=100, newline or not; anything else is EINVAL.
fn store_threshold(shown: &Shown, input: &[u8]) -> Result {
    let text = core::str::from_utf8(input)?;
    let value: i32 = text.trim_end().parse().map_err(|_| EINVAL)?;
    if !(0..=100).contains(&value) {
        return Err(EINVAL);
    }
    shown.threshold.store(value, Ordering::Relaxed);
    Ok(())
}

impl kmod_runtime::Module for Params {
    fn init() -> Result<Self> {
        let greetings = params::greetings.get();
        let shout = params::shout.get();
        let whom = params::whom.get().to_str()?;
        pr_info!("greetings={greetings} shout={shout} whom={whom}");
        pr_info!("ports {:?}", params::ports.get());
        if !(0..=MAX_GREETINGS).contains(&greetings) {
            pr_err!("greetings={greetings} is not in 0..={MAX_GREETINGS}");
            return Err(EINVAL);
        }

        let greeting = greeting(whom, shout)?;
        for number in 1..=greetings {
            pr_info!("{number}/{greetings}: {greeting}");
        }
        let shown = Box::into_pin(try_box(Shown {
            greeting,
            threshold: AtomicI32::new(50),
        })?);
        Ok(Params {
            shown: Group::create(c"params", shown, ATTRIBUTES)?,
        })
    }
}

/// `hello, <whom>`, in capitals if `shout`.
fn greeting(whom: &str, shout: bool) -> Result<String> {
    let mut greeting = String::new();
    greeting.try_reserve("hello, ".len() + whom.len())?;
    write!(greeting, "hello, {whom}").map_err(|_| ENOMEM)?;
    if shout {
        greeting.make_ascii_uppercase();
    }
    Ok(greeting)
}

/// `cargo kmod test -p params`: run inside the kernel, on its allocator.
#[kmod_runtime::tests]
mod tests {
    use super::*;

    #[test]
    fn greets() -> Result {
        assert_eq!(greeting("kernel", false)?, "hello, kernel");
        Ok(())
    }

    #[test]
    fn shouts() -> Result {
        assert_eq!(greeting("kernel", true)?, "HELLO, KERNEL");
        Ok(())
    }

    #[test]
    fn stores_only_a_threshold_in_range() -> Result {
        let shown = Shown {
            greeting: String::new(),
            threshold: AtomicI32::new(50),
        };
        store_threshold(&shown, b"42\n")?;
        assert_eq!(store_threshold(&shown, b"bad\n"), Err(EINVAL));
        assert_eq!(store_threshold(&shown, b"101"), Err(EINVAL));
        assert_eq!(store_threshold(&shown, b"\xff"), Err(EINVAL));
        assert_eq!(shown.threshold.load(Ordering::Relaxed), 42);
        Ok(())
    }
}

impl Drop for Params {
    fn drop(&mut self) {
        // Whatever sysfs last set (one lock at a time: it is a mutex).
        let level = params::level.get();
        let threshold = self.shown.data().threshold.load(Ordering::Relaxed);
        params::flags.with(|flags| {
            pr_info!("unloaded at level {level}, flags {flags:?}, threshold {threshold}")
        });
    }
}
