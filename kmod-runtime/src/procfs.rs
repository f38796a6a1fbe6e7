//! Read-only `/proc` files whose content a [`Show`] writes.

use alloc_crate::boxed::Box;
use core::ffi::{c_int, c_void, CStr};
use core::fmt::{self, Write};
use core::pin::Pin;

use crate::bindings;
use crate::error::{Result, ENOMEM};

/// Writes a `/proc` file's content each time it is read.
pub trait Show: Sync {
    fn show(&self, file: &mut SeqFile) -> fmt::Result;
}

/// A timer's data shows itself: the timer keeps running while it is read.
impl<T: Show> Show for crate::timer::Timer<T> {
    fn show(&self, file: &mut SeqFile) -> fmt::Result {
        (**self).show(file)
    }
}

/// The `seq_file` being filled: write to it with `write!`.
pub struct SeqFile(*mut bindings::seq_file);

impl Write for SeqFile {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // SAFETY: the seq_file the kernel passed to `show`.
        match unsafe { bindings::seq_write(self.0, text.as_ptr().cast(), text.len()) } {
            0 => Ok(()),
            // The buffer overflowed: seq_file retries with a bigger one.
            _ => Err(fmt::Error),
        }
    }
}

/// `/proc/<name>` and the data it shows. Dropping it removes the entry
/// first (`remove_proc_entry` waits for readers), then the data.
pub struct ProcFile<T: Show> {
    name: &'static CStr,
    data: Pin<Box<T>>,
}

impl<T: Show> ProcFile<T> {
    /// Creates `/proc/<name>` (mode 0444) showing `data`.
    pub fn create(name: &'static CStr, data: Pin<Box<T>>) -> Result<Self> {
        // SAFETY: `show::<T>` gets back `data`, which the entry does not
        // outlive (see `drop`).
        let entry = unsafe {
            bindings::proc_create_single_data(
                name.as_ptr(),
                0o444,
                core::ptr::null_mut(),
                Some(show::<T>),
                (&raw const *data).cast_mut().cast(),
            )
        };
        if entry.is_null() {
            return Err(ENOMEM);
        }
        Ok(ProcFile { name, data })
    }

    pub fn data(&self) -> Pin<&T> {
        self.data.as_ref()
    }
}

impl<T: Show> Drop for ProcFile<T> {
    fn drop(&mut self) {
        // SAFETY: created in `create`, under the root of /proc.
        unsafe { bindings::remove_proc_entry(self.name.as_ptr(), core::ptr::null_mut()) };
    }
}

unsafe extern "C" fn show<T: Show>(file: *mut bindings::seq_file, _: *mut c_void) -> c_int {
    // SAFETY: single_open put the entry's data, a `T`, in `private`.
    let data = unsafe { &*(*file).private.cast::<T>() };
    // An error here is an overflow seq_file detects and retries itself.
    let _ = data.show(&mut SeqFile(file));
    0
}
