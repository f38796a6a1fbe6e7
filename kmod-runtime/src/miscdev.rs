//! Misc devices: `/dev/<name>` with data all its open files share
//! ([`File::Shared`], built with the [`Registration`]) and a [`File`] state
//! per open file, which may block in `read` on a
//! [`WaitQueue`](crate::wait::WaitQueue), answer `poll` and honour
//! `O_NONBLOCK`.

use alloc_crate::boxed::Box;
use alloc_crate::vec::Vec;
use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void, CStr};
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::pin::Pin;
use core::ptr::NonNull;

use pinned_init::{pin_init_from_closure, PinInit};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::alloc::{self, GFP_KERNEL};
use crate::error::{Error, Result, EFAULT, EINVAL, ENOSPC, ENOTTY};
use crate::wait::{PollEvents, PollTable};
use crate::{bindings, this_module};

/// What each `open` of the device gets. The runtime builds it in place
/// (pinned: it may hold locks and wait queues), shares it between the
/// calls on the file, which may overlap (hence `Sync`: the state locks
/// what it changes), and drops it on the last `close` (`release`).
pub trait File: Sized + Send + Sync + 'static {
    /// The data the device's files share, built in place by
    /// [`Registration::register`] and dropped after the device is gone.
    /// `open` calls on several tasks see it at once (hence `Sync`), and
    /// whoever drops the registration drops it (hence `Send`).
    type Shared: Send + Sync;

    /// The new file's state. `shared` is only borrowed for the call (`Self`
    /// is `'static`): a [`Registration`] may be dropped while files are
    /// open, so what a file keeps of the shared data it must own, such as
    /// a clone of an [`Arc`](crate::sync::Arc) in it. It runs under the
    /// kernel's `misc_mtx`, which every misc device's open takes: it
    /// should be short, and registering or dropping a [`Registration`]
    /// there deadlocks.
    fn open(shared: &Self::Shared) -> impl PinInit<Self, Error>;

    /// Fills `to` (up to `to.len()` bytes); what was written is returned to
    /// `read(2)`, so nothing written means end of file. `flags` tell
    /// whether the caller waits ([`FileFlags::nonblocking`]). EINVAL unless
    /// implemented.
    fn read(&self, flags: FileFlags, to: &mut UserSliceWriter) -> Result {
        let _ = (flags, to);
        Err(EINVAL)
    }

    /// Takes bytes from `from`; what was taken is returned to `write(2)`.
    /// EINVAL unless implemented.
    fn write(&self, flags: FileFlags, from: &mut UserSliceReader) -> Result {
        let _ = (flags, from);
        Err(EINVAL)
    }

    /// `ioctl(2)` with a command number from [`ioctl`](crate::ioctl), and
    /// 32-bit callers' through `compat_ioctl` (the argument a pointer as
    /// well); the result goes to the caller. ENOTTY unless implemented.
    fn ioctl(&self, command: u32, argument: &mut IoctlArgument) -> Result<i32> {
        let _ = (command, argument);
        Err(ENOTTY)
    }

    /// `poll(2)`, `select(2)`, `epoll`: what is ready now, after
    /// registering in `table` the queues whose notification may change
    /// that (queues of the state, which outlive the file's pollers).
    /// Unless implemented, always readable and writable, as for a file
    /// without `poll`.
    fn poll<'a>(&'a self, table: &mut PollTable<'a>) -> PollEvents {
        let _ = table;
        PollEvents::IN | PollEvents::RDNORM | PollEvents::OUT | PollEvents::WRNORM
    }
}

/// The open file's flags (`f_flags`) when the call was made.
#[derive(Clone, Copy, Debug)]
pub struct FileFlags(c_uint);

impl FileFlags {
    /// `O_NONBLOCK`: the caller wants EAGAIN rather than a wait.
    pub fn nonblocking(self) -> bool {
        self.0 & bindings::O_NONBLOCK != 0
    }

    /// # Safety
    /// `file` is an open file.
    unsafe fn of(file: *mut bindings::file) -> FileFlags {
        // SAFETY: see above; `fcntl(F_SETFL)` may change the flags at any
        // time, so they are read once, as C's READ_ONCE.
        FileFlags(unsafe { (&raw const (*file).f_flags).read_volatile() })
    }
}

/// An `ioctl(2)` argument: the user buffer of the size the command number
/// carries.
pub struct IoctlArgument {
    pointer: usize,
    size: usize,
}

impl IoctlArgument {
    /// The buffer to read the command's input from.
    pub fn reader(&self) -> UserSliceReader {
        UserSliceReader {
            pointer: self.pointer as *const c_void,
            remaining: self.size,
            read: 0,
        }
    }

    /// The buffer to write the command's output to.
    pub fn writer(&self) -> UserSliceWriter {
        UserSliceWriter {
            pointer: self.pointer as *mut c_void,
            remaining: self.size,
            written: 0,
        }
    }
}

/// A `read(2)` buffer in user memory.
pub struct UserSliceWriter {
    pointer: *mut c_void,
    remaining: usize,
    written: usize,
}

impl UserSliceWriter {
    /// Room left in the user's buffer.
    pub fn len(&self) -> usize {
        self.remaining
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// Copies as much of `data` as the buffer takes and returns how much
    /// that was (less than `data.len()` when the buffer is full or its
    /// end is not writable); [`EFAULT`] if none of it could be written.
    pub fn write(&mut self, data: &[u8]) -> Result<usize> {
        let n = data.len().min(self.remaining);
        // SAFETY: copy_to_user checks the user range itself; `data` has
        // at least `n` bytes.
        let missed =
            unsafe { bindings::kmod_copy_to_user(self.pointer, data.as_ptr().cast(), n as _) };
        let copied = n - missed as usize;
        if copied == 0 && n != 0 {
            return Err(EFAULT);
        }
        self.advance(copied);
        Ok(copied)
    }

    /// Copies all of `value`'s bytes (`T` has no padding: zerocopy's
    /// `IntoBytes`); [`EFAULT`] if they do not fit or are not writable.
    pub fn write_value<T: IntoBytes + Immutable>(&mut self, value: &T) -> Result {
        let bytes = value.as_bytes();
        if bytes.len() > self.remaining {
            return Err(EFAULT);
        }
        // SAFETY: as in `write`.
        let missed = unsafe {
            bindings::kmod_copy_to_user(self.pointer, bytes.as_ptr().cast(), bytes.len() as _)
        };
        if missed != 0 {
            return Err(EFAULT);
        }
        self.advance(bytes.len());
        Ok(())
    }

    fn advance(&mut self, n: usize) {
        // SAFETY: still within (or one past) the user's buffer.
        self.pointer = unsafe { self.pointer.byte_add(n) };
        self.remaining -= n;
        self.written += n;
    }
}

/// A `write(2)` buffer in user memory.
pub struct UserSliceReader {
    pointer: *const c_void,
    remaining: usize,
    read: usize,
}

impl UserSliceReader {
    /// Bytes not yet taken.
    pub fn len(&self) -> usize {
        self.remaining
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// Appends everything left to `into`, which may hold at most
    /// `capacity` bytes: [`ENOSPC`] (nothing taken) if the rest does not
    /// fit, so user space cannot size the allocation;
    /// [`ENOMEM`](crate::error::ENOMEM) if `into` cannot grow, [`EFAULT`]
    /// if the user's memory is not readable.
    pub fn read_all(&mut self, into: &mut Vec<u8>, capacity: usize) -> Result {
        if self.remaining > capacity.saturating_sub(into.len()) {
            return Err(ENOSPC);
        }
        into.try_reserve(self.remaining)?;
        let start = into.len();
        // SAFETY: the reservation makes room for `remaining` bytes after
        // `start`; copy_from_user zeroes what it could not copy.
        let missed = unsafe {
            let target = into.as_mut_ptr().add(start);
            bindings::kmod_copy_from_user(target.cast(), self.pointer, self.remaining as _)
        };
        if missed != 0 {
            return Err(EFAULT);
        }
        // SAFETY: the bytes up to `start + remaining` are initialized.
        unsafe { into.set_len(start + self.remaining) };
        self.advance(self.remaining);
        Ok(())
    }

    /// Takes a `T` (valid for any bytes: zerocopy's `FromBytes`);
    /// [`EFAULT`] if fewer bytes are left or they are not readable.
    pub fn read_value<T: FromBytes>(&mut self) -> Result<T> {
        let size = size_of::<T>();
        if size > self.remaining {
            return Err(EFAULT);
        }
        let mut value = MaybeUninit::<T>::uninit();
        // SAFETY: `value` has room for `size` bytes; copy_from_user checks
        // the user range and zeroes what it could not copy.
        let missed = unsafe {
            bindings::kmod_copy_from_user(value.as_mut_ptr().cast(), self.pointer, size as _)
        };
        if missed != 0 {
            return Err(EFAULT);
        }
        self.advance(size);
        // SAFETY: all `size` bytes were written, and any bytes are a `T`.
        Ok(unsafe { value.assume_init() })
    }

    fn advance(&mut self, n: usize) {
        // SAFETY: still within (or one past) the user's buffer.
        self.pointer = unsafe { self.pointer.byte_add(n) };
        self.remaining -= n;
        self.read += n;
    }
}

/// A registered misc device; deregistered (its `/dev` node removed) when
/// dropped, then its shared data is dropped. Open files keep the module
/// loaded (`owner`), so none outlives the module; they may outlive the
/// registration, which safe code may drop at any time.
pub struct Registration<T: File> {
    /// From a `Box`, kept raw: the kernel's `open` reads the shared data
    /// on other tasks while the registration moves (a `Box` would claim
    /// the memory as its own each time).
    device: NonNull<Device<T>>,
    _owns: PhantomData<Device<T>>,
}

/// The `struct miscdevice` and, in the same allocation, the data `open`
/// finds from it (`container_of`).
struct Device<T: File> {
    misc: UnsafeCell<bindings::miscdevice>,
    shared: T::Shared,
}

// SAFETY: the kernel owns the registered device and misc_deregister may be
// called on any task; dropping the registration drops the `T::Shared`
// (`Send`).
unsafe impl<T: File> Send for Registration<T> {}
// SAFETY: a shared registration only gives `&T::Shared` (`Sync`).
unsafe impl<T: File> Sync for Registration<T> {}

impl<T: File> Registration<T> {
    /// Registers `/dev/<name>` with a dynamic minor, its shared data built
    /// in place by `shared` (`()` when files share nothing); ENOMEM, the
    /// initialiser's error or misc_register's.
    pub fn register<E>(name: &'static CStr, shared: impl PinInit<T::Shared, E>) -> Result<Self>
    where
        Error: From<E>,
    {
        let misc = UnsafeCell::new(bindings::miscdevice {
            minor: bindings::MISC_DYNAMIC_MINOR as c_int,
            name: name.as_ptr(),
            fops: Vtable::<T>::build(),
            ..Default::default()
        });
        // SAFETY: each field is written once at its final, pinned place;
        // when `shared` fails the miscdevice, plain data, needs no drop.
        let device = unsafe {
            pin_init_from_closure(move |slot: *mut Device<T>| {
                (&raw mut (*slot).misc).write(misc);
                shared
                    .__pinned_init(&raw mut (*slot).shared)
                    .map_err(Error::from)
            })
        };
        let device = alloc::try_pin_init(device, GFP_KERNEL)?;
        // SAFETY: the device stays where it is (pinned, then raw) until
        // `drop` frees it after misc_deregister.
        let device = unsafe { NonNull::from(Box::leak(Pin::into_inner_unchecked(device))) };
        // SAFETY: a miscdevice filled in as misc_register expects, at its
        // final address.
        let registered = unsafe { bindings::misc_register((*device.as_ptr()).misc.get()) };
        if let Err(error) = Error::from_return(registered) {
            // SAFETY: not registered: nothing else refers to the device.
            drop(unsafe { Box::from_raw(device.as_ptr()) });
            return Err(error);
        }
        Ok(Registration {
            device,
            _owns: PhantomData,
        })
    }

    /// The data the device's files share.
    pub fn shared(&self) -> &T::Shared {
        // SAFETY: the device lives until `drop`; only `&` to it exist.
        unsafe { &(*self.device.as_ptr()).shared }
    }
}

impl<T: File> Drop for Registration<T> {
    fn drop(&mut self) {
        let device = self.device.as_ptr();
        // SAFETY: registered in `register`. misc_deregister takes misc_mtx,
        // which misc_open holds while it calls our `open`: once it returns,
        // no `open` is using the shared data or can start.
        unsafe { bindings::misc_deregister((*device).misc.get()) };
        // SAFETY: from the Box of `register`; nothing refers to it any more
        // (open files only own what `open` gave them).
        drop(unsafe { Box::from_raw(device) });
    }
}

struct Vtable<T>(PhantomData<T>);

impl<T: File> Vtable<T> {
    // The functions' addresses are in this table, so objtool sees them
    // taken and keeps their ENDBR under IBT.
    const FOPS: bindings::file_operations = bindings::file_operations {
        owner: this_module(),
        open: Some(open::<T>),
        read: Some(read::<T>),
        write: Some(write::<T>),
        release: Some(release::<T>),
        unlocked_ioctl: Some(ioctl::<T>),
        poll: Some(poll::<T>),
        // Every command's argument is a pointer: converted, then `ioctl`.
        #[cfg(kernel_config = "CONFIG_COMPAT")]
        compat_ioctl: Some(bindings::compat_ptr_ioctl),
        // SAFETY: all-zero is C's `{}`: null pointers and no callback.
        ..unsafe { core::mem::zeroed() }
    };

    fn build() -> &'static bindings::file_operations {
        &Self::FOPS
    }
}

/// The state `open` put in the file.
///
/// # Safety
/// `file` is an open file of a device registered with `Vtable::<T>`, and
/// `'a` ends before its `release`.
unsafe fn state<'a, T>(file: *mut bindings::file) -> &'a T {
    // SAFETY: see above; `open` stored a pinned `T` there, which only
    // `release` drops.
    unsafe { &*(*file).private_data.cast::<T>() }
}

unsafe extern "C" fn open<T: File>(
    _inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> c_int {
    // SAFETY: misc_open (drivers/char/misc.c, 6.1 and 6.12) put the
    // miscdevice it found in `private_data` before calling this, and these
    // fops are only in the miscdevice of a `Device<T>` (`register`), so
    // the device is found from its `misc` field. misc_open holds misc_mtx
    // for the whole call and misc_deregister takes it, so the
    // registration's `drop`, which frees the device only after
    // misc_deregister, waits for this call to return: the shared data is
    // valid for the call, and `T: 'static` keeps the state from
    // borrowing it any longer.
    let shared = unsafe {
        let misc = (*file).private_data.cast::<bindings::miscdevice>();
        let device = misc
            .byte_sub(core::mem::offset_of!(Device<T>, misc))
            .cast::<Device<T>>();
        &(*device).shared
    };
    match alloc::try_pin_init(T::open(shared), GFP_KERNEL) {
        Ok(state) => {
            // SAFETY: the file is being opened; misc_open's miscdevice in
            // `private_data` is ours to replace. The Box stays pinned:
            // `release` only drops it.
            unsafe {
                (*file).private_data = Box::into_raw(Pin::into_inner_unchecked(state)).cast()
            };
            0
        }
        Err(error) => error.to_errno(),
    }
}

unsafe extern "C" fn read<T: File>(
    file: *mut bindings::file,
    buffer: *mut c_char,
    length: usize,
    _offset: *mut bindings::loff_t,
) -> isize {
    let mut to = UserSliceWriter {
        pointer: buffer.cast(),
        remaining: length,
        written: 0,
    };
    // SAFETY: the VFS calls read on a file `open` succeeded for, and
    // holds it open until read returns.
    let (state, flags) = unsafe { (state::<T>(file), FileFlags::of(file)) };
    match state.read(flags, &mut to) {
        Ok(()) => to.written as isize,
        Err(error) => error.to_errno() as isize,
    }
}

unsafe extern "C" fn write<T: File>(
    file: *mut bindings::file,
    buffer: *const c_char,
    length: usize,
    _offset: *mut bindings::loff_t,
) -> isize {
    let mut from = UserSliceReader {
        pointer: buffer.cast(),
        remaining: length,
        read: 0,
    };
    // SAFETY: as in `read`.
    let (state, flags) = unsafe { (state::<T>(file), FileFlags::of(file)) };
    match state.write(flags, &mut from) {
        Ok(()) => from.read as isize,
        Err(error) => error.to_errno() as isize,
    }
}

unsafe extern "C" fn ioctl<T: File>(
    file: *mut bindings::file,
    command: c_uint,
    argument: c_ulong,
) -> c_long {
    let mut argument = IoctlArgument {
        pointer: argument as usize,
        size: crate::ioctl::size(command),
    };
    // SAFETY: as in `read`.
    match unsafe { state::<T>(file) }.ioctl(command, &mut argument) {
        Ok(result) => result.into(),
        Err(error) => error.to_errno().into(),
    }
}

unsafe extern "C" fn poll<T: File>(
    file: *mut bindings::file,
    table: *mut bindings::poll_table,
) -> bindings::__poll_t {
    // SAFETY: as in `read`; the table is this call's. The state's lifetime
    // is the table's `'a`: the state lives until `release`, which comes
    // after epoll has dropped its entries for the file (`__fput`) and
    // after every select/poll that queued on it (they hold the file).
    let (state, mut table) = unsafe { (state::<T>(file), PollTable::new(file, table)) };
    state.poll(&mut table).bits()
}

unsafe extern "C" fn release<T: File>(
    _inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> c_int {
    // SAFETY: the last reference to the file is gone; take back the Box
    // `open` leaked.
    drop(unsafe { Box::from_raw((*file).private_data.cast::<T>()) });
    0
}
