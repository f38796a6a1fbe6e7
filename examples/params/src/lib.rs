//! Module parameters: `insmod params.ko greetings=3 shout=1 whom=kernel`
//! sets them, `/sys/module/params/parameters/` shows them, and `init`
//! builds its greeting from them in a `String` on the kernel's allocator.
//! `level` is writable there while the module runs; unloading logs it.
#![no_std]

extern crate alloc;

use alloc::string::String;
use core::fmt::Write;

use kmod_runtime::error::{EINVAL, ENOMEM};
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
    },
}

const MAX_GREETINGS: i32 = 10;

struct Params;

impl kmod_runtime::Module for Params {
    fn init() -> Result<Self> {
        let greetings = params::greetings.get();
        let shout = params::shout.get();
        let whom = params::whom.get().to_str()?;
        pr_info!("greetings={greetings} shout={shout} whom={whom}");
        if !(0..=MAX_GREETINGS).contains(&greetings) {
            pr_err!("greetings={greetings} is not in 0..={MAX_GREETINGS}");
            return Err(EINVAL);
        }

        let greeting = greeting(whom, shout)?;
        for number in 1..=greetings {
            pr_info!("{number}/{greetings}: {greeting}");
        }
        Ok(Params)
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
}

impl Drop for Params {
    fn drop(&mut self) {
        // Whatever sysfs last set.
        pr_info!("unloaded at level {}", params::level.get());
    }
}
