//! Attribute files in `/sys/kernel/<name>/` ([`Group`]) or in a bound PCI
//! device's directory ([`DeviceGroup`]). A [`Group`] owns the
//! directory, its files and the data their callbacks see.
//!
//! Reading a file calls its `show`, which writes the text into a
//! [`Page`]; writing one calls its `store` with the bytes written, and an
//! `Err` there is the errno `write(2)` gives. Callbacks run in process
//! context, concurrently with each other and with the module's own code, so
//! the data is `Sync`; dropping the [`Group`] removes the files, which
//! waits for the callbacks running (kernfs drains them) and lets no new one
//! start, before the data is dropped.

use alloc_crate::boxed::Box;
use alloc_crate::vec::Vec;
use core::ffi::{c_char, CStr};
use core::fmt;
use core::pin::Pin;
use core::ptr::NonNull;

use crate::bindings;
use crate::error::{Error, Result, ENOMEM};
use crate::pci::{self, DeviceRef};
use crate::sync::Arc;

/// One file of a [`Group`]: its name, what reading it shows and, if it is
/// writable (mode 0644, else 0444), what writing it does with `T`.
pub struct Attribute<T> {
    name: &'static CStr,
    show: fn(&T, &mut Page) -> Result,
    store: Option<fn(&T, &[u8]) -> Result>,
}

impl<T> Attribute<T> {
    /// A file of mode 0444.
    pub const fn read_only(name: &'static CStr, show: fn(&T, &mut Page) -> Result) -> Self {
        Attribute {
            name,
            show,
            store: None,
        }
    }

    /// A file of mode 0644: `store` gets what one `write(2)` wrote (at
    /// most a page, a trailing newline included).
    pub const fn read_write(
        name: &'static CStr,
        show: fn(&T, &mut Page) -> Result,
        store: fn(&T, &[u8]) -> Result,
    ) -> Self {
        Attribute {
            name,
            show,
            store: Some(store),
        }
    }
}

/// The page a `show` fills: write to it with `write!`. Text that does not
/// fit (the page less one byte, as sysfs wants) is refused whole with
/// `fmt::Error`, which `?` turns into EOVERFLOW for `read(2)`.
pub struct Page {
    buffer: *mut u8,
    len: usize,
}

impl Page {
    const CAPACITY: usize = bindings::PAGE_SIZE as usize - 1;
}

impl fmt::Write for Page {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if text.len() > Self::CAPACITY - self.len {
            return Err(fmt::Error);
        }
        // SAFETY: sysfs gives `show` a page; `len + text.len()` is within
        // it, checked above, and `text` is not in it (`Page` is not lent out
        // but to `show`, which cannot borrow the page).
        unsafe {
            core::ptr::copy_nonoverlapping(text.as_ptr(), self.buffer.add(self.len), text.len())
        };
        self.len += text.len();
        Ok(())
    }
}

/// The C attribute of a kind of group: a `struct attribute` and the
/// kind's `show` (and `store`) callbacks, which find the [`Slot`] it is
/// the first field of.
trait Kind<T: 'static>: Sized {
    /// The attribute `name`, mode 0644 with `store` if `writable`, else 0444.
    fn new(name: &'static CStr, writable: bool) -> Self;
    fn attr(&mut self) -> *mut bindings::attribute;
}

/// One attribute as sysfs sees it (the C attribute, first, is what its
/// callbacks get a pointer to) and what they need to call its functions.
#[repr(C)]
struct Slot<A, T: 'static> {
    attribute: A,
    data: *const T,
    functions: &'static Attribute<T>,
}

/// What the kernel points into, allocated once and never moved: the
/// group, the `attribute` of each slot then NULL (`group.attrs`; the
/// kernel reads these, Rust only frees them), and the data.
struct Table<A, T: 'static, P> {
    group: bindings::attribute_group,
    _pointers: Box<[*mut bindings::attribute]>,
    _slots: Box<[Slot<A, T>]>,
    data: Pin<P>,
}

impl<A: Kind<T>, T: 'static, P: core::ops::Deref<Target = T>> Table<A, T, P> {
    /// The table of `attributes` showing `data`, leaked: the group owning
    /// it frees it with `Box::from_raw` once sysfs has let go of it.
    fn leak(data: Pin<P>, attributes: &'static [Attribute<T>]) -> Result<NonNull<Self>> {
        let mut slots = Vec::new();
        slots.try_reserve_exact(attributes.len())?;
        let data_pointer: *const T = &*data;
        for functions in attributes {
            slots.push(Slot {
                attribute: A::new(functions.name, functions.store.is_some()),
                data: data_pointer,
                functions,
            });
        }
        let mut slots = slots.into_boxed_slice();
        let mut pointers = Vec::new();
        pointers.try_reserve_exact(slots.len() + 1)?;
        for slot in slots.iter_mut() {
            let attribute = slot.attribute.attr();
            // SAFETY: a `struct attribute` of ours, not yet in sysfs; under
            // lockdep this gives it the shim's static key, as C's dynamic
            // attributes get from `sysfs_attr_init`.
            unsafe { bindings::kmod_sysfs_attr_init(attribute) };
            pointers.push(attribute);
        }
        pointers.push(core::ptr::null_mut());
        let mut pointers = pointers.into_boxed_slice();
        // SAFETY: all-zero is a valid `attribute_group`: no name (the files
        // go in the kobject's directory), no callbacks, no attributes yet.
        let mut group: bindings::attribute_group = unsafe { core::mem::zeroed() };
        group.attrs = pointers.as_mut_ptr();
        let table = crate::alloc::try_box(Table {
            group,
            _pointers: pointers,
            _slots: slots,
            data,
        })?;
        Ok(NonNull::from(Box::leak(table)))
    }
}

/// What every kind's `show` does with the slot `attribute` is the first
/// field of.
///
/// # Safety
/// `attribute` is the attribute of a slot of a live table (sysfs calls
/// only those: the groups remove theirs before freeing the table), and
/// `buffer` the page sysfs gives `show`.
unsafe fn call_show<A, T: 'static>(attribute: *mut A, buffer: *mut c_char) -> isize {
    // SAFETY: see above; the slot's `data` is the table's, live with it.
    let (slot, data) = unsafe {
        let slot = &*attribute.cast::<Slot<A, T>>();
        (slot, &*slot.data)
    };
    let mut page = Page {
        buffer: buffer.cast(),
        len: 0,
    };
    match (slot.functions.show)(data, &mut page) {
        Ok(()) => page.len as isize,
        Err(error) => error.to_errno() as isize,
    }
}

/// What every kind's `store` does.
///
/// # Safety
/// As for [`call_show`]; `buffer` holds the `count` bytes written.
unsafe fn call_store<A, T: 'static>(
    attribute: *mut A,
    buffer: *const c_char,
    count: usize,
) -> isize {
    // SAFETY: see above.
    let (slot, data, input) = unsafe {
        let slot = &*attribute.cast::<Slot<A, T>>();
        (
            slot,
            &*slot.data,
            core::slice::from_raw_parts(buffer.cast::<u8>(), count),
        )
    };
    let Some(store) = slot.functions.store else {
        // Not reached: only writable slots have this callback.
        return crate::error::EIO.to_errno() as isize;
    };
    match store(data, input) {
        Ok(()) => count as isize,
        Err(error) => error.to_errno() as isize,
    }
}

impl<T: Sync + 'static> Kind<T> for bindings::kobj_attribute {
    fn new(name: &'static CStr, writable: bool) -> Self {
        // SAFETY: all-zero is a valid `kobj_attribute` (NULL pointers and
        // callbacks, mode 0, no lockdep key yet).
        let mut attribute: Self = unsafe { core::mem::zeroed() };
        attribute.attr.name = name.as_ptr();
        attribute.attr.mode = if writable { 0o644 } else { 0o444 };
        attribute.show = Some(show::<T>);
        attribute.store = writable.then_some(store::<T>);
        attribute
    }

    fn attr(&mut self) -> *mut bindings::attribute {
        &raw mut self.attr
    }
}

type Inner<T> = Table<bindings::kobj_attribute, T, Box<T>>;

/// `/sys/kernel/<name>/` with a file per [`Attribute`], showing `data`.
/// Dropping it removes the files, then the directory, then `data`.
pub struct Group<T: Sync + 'static> {
    kobject: NonNull<bindings::kobject>,
    inner: NonNull<Inner<T>>,
}

// SAFETY: the group is a kobject and allocations any task may free; its
// data goes with it, so it must be `Send` itself.
unsafe impl<T: Sync + Send> Send for Group<T> {}
// SAFETY: `&Group` gives `&T` only, and `T` is `Sync`.
unsafe impl<T: Sync> Sync for Group<T> {}

impl<T: Sync + 'static> Group<T> {
    /// Creates `/sys/kernel/<name>/` with `attributes` showing `data`.
    /// ENOMEM if the kernel could not make the directory, for want of
    /// memory or because `<name>` is taken (it does not say which; it logs
    /// a duplicate).
    pub fn create(
        name: &CStr,
        data: Pin<Box<T>>,
        attributes: &'static [Attribute<T>],
    ) -> Result<Self> {
        let inner = Inner::leak(data, attributes)?;
        // SAFETY: `name` is copied; `kernel_kobj` is `/sys/kernel`, which
        // the kernel never removes.
        let kobject =
            unsafe { bindings::kobject_create_and_add(name.as_ptr(), bindings::kernel_kobj) };
        let Some(kobject) = NonNull::new(kobject) else {
            // SAFETY: sysfs never saw the table.
            drop(unsafe { Box::from_raw(inner.as_ptr()) });
            return Err(ENOMEM);
        };
        // SAFETY: `inner` stays where it is until `drop` removes the group
        // (or until below if adding it failed, when sysfs has removed the
        // files it added); each attribute's callbacks find their slot and
        // the data in it.
        let created =
            unsafe { bindings::sysfs_create_group(kobject.as_ptr(), &(*inner.as_ptr()).group) };
        if let Err(error) = Error::from_return(created) {
            // SAFETY: the kobject made above, in sysfs no more after this;
            // `inner` is ours again (see above).
            unsafe {
                bindings::kobject_put(kobject.as_ptr());
                drop(Box::from_raw(inner.as_ptr()));
            }
            return Err(error);
        }
        Ok(Group { kobject, inner })
    }

    pub fn data(&self) -> Pin<&T> {
        // SAFETY: `inner` lives as long as `self`, and is not written.
        unsafe { (*self.inner.as_ptr()).data.as_ref() }
    }
}

impl<T: Sync + 'static> Drop for Group<T> {
    fn drop(&mut self) {
        // SAFETY: the kobject `create` made, with the group it added.
        // Removing the files waits for the callbacks running, and none
        // starts after; then nothing of the kernel's points into `inner`,
        // which `create` leaked for this.
        unsafe {
            bindings::sysfs_remove_group(self.kobject.as_ptr(), &(*self.inner.as_ptr()).group);
            bindings::kobject_put(self.kobject.as_ptr());
            drop(Box::from_raw(self.inner.as_ptr()));
        }
    }
}

/// `show` of every attribute of a [`Group`].
unsafe extern "C" fn show<T: Sync + 'static>(
    _: *mut bindings::kobject,
    attribute: *mut bindings::kobj_attribute,
    buffer: *mut c_char,
) -> isize {
    // SAFETY: sysfs calls this only for the attributes of a live group (see
    // `Group::drop`), with a page.
    unsafe { call_show::<_, T>(attribute, buffer) }
}

/// `store` of every writable attribute of a [`Group`].
unsafe extern "C" fn store<T: Sync + 'static>(
    _: *mut bindings::kobject,
    attribute: *mut bindings::kobj_attribute,
    buffer: *const c_char,
    count: usize,
) -> isize {
    // SAFETY: as in `show`; sysfs passes the `count` bytes written.
    unsafe { call_store::<_, T>(attribute, buffer, count) }
}

impl<T: Send + Sync + 'static> Kind<T> for bindings::device_attribute {
    fn new(name: &'static CStr, writable: bool) -> Self {
        // SAFETY: all-zero is a valid `device_attribute` (as for
        // `kobj_attribute`).
        let mut attribute: Self = unsafe { core::mem::zeroed() };
        attribute.attr.name = name.as_ptr();
        attribute.attr.mode = if writable { 0o644 } else { 0o444 };
        attribute.show = Some(device_show::<T>);
        attribute.store = writable.then_some(device_store::<T>);
        attribute
    }

    fn attr(&mut self) -> *mut bindings::attribute {
        &raw mut self.attr
    }
}

type DeviceInner<T> = Table<bindings::device_attribute, T, Arc<T>>;

/// Files in a bound PCI device's own directory
/// (`/sys/bus/pci/devices/<bdf>/`), one per [`Attribute`], showing `data`.
/// Dropping it removes them (waiting for the callbacks running, as
/// [`Group`] does), then lets go of `data`. A callback that waits must
/// wait for a bounded time, or the removal waits as long.
pub struct DeviceGroup<T: Send + Sync + 'static> {
    device: DeviceRef,
    inner: NonNull<DeviceInner<T>>,
}

// SAFETY: as for `Group`; the data is shared through an `Arc`, which is
// `Send` for `T: Send + Sync`.
unsafe impl<T: Send + Sync> Send for DeviceGroup<T> {}
// SAFETY: `&DeviceGroup` gives nothing.
unsafe impl<T: Send + Sync> Sync for DeviceGroup<T> {}

impl<T: Send + Sync + 'static> DeviceGroup<T> {
    /// Adds `attributes` to `device`'s directory.
    pub fn create(
        device: &pci::Device,
        data: Pin<Arc<T>>,
        attributes: &'static [Attribute<T>],
    ) -> Result<Self> {
        let inner = DeviceInner::leak(data, attributes)?;
        let device = device.get_ref();
        // SAFETY: the device is live (referenced); `inner` stays where it is
        // until `drop` removes the group, or below if adding it failed.
        let created = unsafe {
            bindings::sysfs_create_group(
                &raw mut (*device.as_device()).kobj,
                &(*inner.as_ptr()).group,
            )
        };
        if let Err(error) = Error::from_return(created) {
            // SAFETY: sysfs keeps nothing of a group it failed to add.
            drop(unsafe { Box::from_raw(inner.as_ptr()) });
            return Err(error);
        }
        Ok(DeviceGroup { device, inner })
    }
}

impl<T: Send + Sync + 'static> Drop for DeviceGroup<T> {
    fn drop(&mut self) {
        // SAFETY: added by `create`; removing it waits for running
        // callbacks and lets none start, so `inner` is ours again.
        unsafe {
            bindings::sysfs_remove_group(
                &raw mut (*self.device.as_device()).kobj,
                &(*self.inner.as_ptr()).group,
            );
            drop(Box::from_raw(self.inner.as_ptr()));
        }
    }
}

/// `show` of every attribute of a [`DeviceGroup`].
unsafe extern "C" fn device_show<T: Send + Sync + 'static>(
    _: *mut bindings::device,
    attribute: *mut bindings::device_attribute,
    buffer: *mut c_char,
) -> isize {
    // SAFETY: the driver core calls this only for the attributes of a live
    // group (see `DeviceGroup::drop`), with a page.
    unsafe { call_show::<_, T>(attribute, buffer) }
}

/// `store` of every writable attribute of a [`DeviceGroup`].
unsafe extern "C" fn device_store<T: Send + Sync + 'static>(
    _: *mut bindings::device,
    attribute: *mut bindings::device_attribute,
    buffer: *const c_char,
    count: usize,
) -> isize {
    // SAFETY: as in `device_show`; the core passes the `count` bytes written.
    unsafe { call_store::<_, T>(attribute, buffer, count) }
}
