//! A misc device, `/dev/chardev`: each open file keeps the text written to
//! it in a `Vec` and reads it back from where its last read stopped, in
//! pieces as small as the reader asks for. Writes that are not UTF-8 text
//! fail with EINVAL, writes past 4 KiB with ENOSPC.
#![no_std]

extern crate alloc;

use alloc::vec::Vec;

use kmod_runtime::error::EINVAL;
use kmod_runtime::miscdev::{File, FileFlags, Registration, UserSliceReader, UserSliceWriter};
use kmod_runtime::pinned_init::{try_pin_init, PinInit};
use kmod_runtime::sync::Mutex;
use kmod_runtime::{new_mutex, pr_info, Error, Result};
use pinned_init::pin_data;

kmod_runtime::module! {
    type: Chardev,
    name: "chardev",
    license: "GPL",
    author: "kmod-build developers",
    description: "A misc device that gives back what each open file wrote",
}

/// How much text one open file holds.
const CAPACITY: usize = 4096;

struct Chardev {
    _device: Registration<Text>,
}

impl kmod_runtime::Module for Chardev {
    fn init() -> Result<Self> {
        let device = Registration::register(c"chardev", ())?;
        pr_info!("registered /dev/chardev");
        Ok(Chardev { _device: device })
    }
}

impl Drop for Chardev {
    fn drop(&mut self) {
        pr_info!("removing /dev/chardev");
    }
}

/// One open file's state: calls on the file may overlap, so behind a lock.
#[pin_data]
struct Text {
    #[pin]
    text: Mutex<Inner>,
}

struct Inner {
    bytes: Vec<u8>,
    /// Where the next read starts.
    read: usize,
}

impl File for Text {
    /// Nothing: each file has its own.
    type Shared = ();

    fn open(_: &()) -> impl PinInit<Self, Error> {
        try_pin_init!(Text {
            text <- new_mutex!(Inner {
                bytes: Vec::new(),
                read: 0,
            }),
        }? Error)
    }

    fn read(&self, _: FileFlags, to: &mut UserSliceWriter) -> Result {
        let mut guard = self.text.lock();
        let text = &mut *guard;
        // As much as the reader's buffer takes.
        text.read += to.write(&text.bytes[text.read..])?;
        Ok(())
    }

    fn write(&self, _: FileFlags, from: &mut UserSliceReader) -> Result {
        let mut text = self.text.lock();
        let start = text.bytes.len();
        // ENOSPC past CAPACITY: the writer cannot size the allocation.
        from.read_all(&mut text.bytes, CAPACITY)?;
        keep_if_text(&mut text.bytes, start)
    }
}

/// EINVAL, and `bytes` as they were before `start`, unless what was
/// written from `start` on is UTF-8.
fn keep_if_text(bytes: &mut Vec<u8>, start: usize) -> Result {
    if core::str::from_utf8(&bytes[start..]).is_err() {
        bytes.truncate(start);
        return Err(EINVAL);
    }
    Ok(())
}

#[kmod_runtime::tests]
mod tests {
    use super::*;

    #[test]
    fn text_is_kept() -> Result {
        let mut bytes = Vec::from(*b"caf\xc3\xa9");
        keep_if_text(&mut bytes, 0)?;
        assert_eq!(bytes, "café".as_bytes());
        Ok(())
    }

    #[test]
    fn a_write_that_is_not_text_is_undone() {
        let mut bytes = Vec::from(*b"ok \xc3");
        assert_eq!(keep_if_text(&mut bytes, 3), Err(EINVAL));
        assert_eq!(bytes, b"ok ");
    }
}
