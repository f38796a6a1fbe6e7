//! A misc device, `/dev/chardev`: each open file keeps the text written to
//! it in a `Vec` and reads it back from where its last read stopped, in
//! pieces as small as the reader asks for. Writes that are not UTF-8 text
//! fail with EINVAL, writes past 4 KiB with ENOSPC.
#![no_std]

extern crate alloc;

use alloc::vec::Vec;

use kmod_runtime::error::EINVAL;
use kmod_runtime::miscdev::{File, Registration, UserSliceReader, UserSliceWriter};
use kmod_runtime::{pr_info, Result};

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
        let device = Registration::register(c"chardev")?;
        pr_info!("registered /dev/chardev");
        Ok(Chardev { _device: device })
    }
}

impl Drop for Chardev {
    fn drop(&mut self) {
        pr_info!("removing /dev/chardev");
    }
}

/// One open file's state.
struct Text {
    bytes: Vec<u8>,
    /// Where the next read starts.
    read: usize,
}

impl File for Text {
    fn open() -> Result<Self> {
        Ok(Text {
            bytes: Vec::new(),
            read: 0,
        })
    }

    fn read(&mut self, to: &mut UserSliceWriter) -> Result {
        // As much as the reader's buffer takes.
        self.read += to.write(&self.bytes[self.read..])?;
        Ok(())
    }

    fn write(&mut self, from: &mut UserSliceReader) -> Result {
        let start = self.bytes.len();
        // ENOSPC past CAPACITY: the writer cannot size the allocation.
        from.read_all(&mut self.bytes, CAPACITY)?;
        if core::str::from_utf8(&self.bytes[start..]).is_err() {
            self.bytes.truncate(start);
            return Err(EINVAL);
        }
        Ok(())
    }
}
