//! Module parameters: what C's `module_param` makes, for [`module!`](crate::module!).
//!
//! Parameters are read-only in sysfs (mode 0444): the kernel writes them
//! only while loading the module, before `init`, so reading them needs no
//! lock.

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_void, CStr};

use crate::bindings;

/// A kind of parameter: a kernel `param_ops_*` and the C value it parses.
pub trait Kind {
    /// The C type the kernel's ops read and write.
    type Storage;
    const OPS: *const bindings::kernel_param_ops;
}

/// `int`: a C `int`.
#[allow(non_camel_case_types)]
pub struct int;
/// `bool`: y/n/1/0.
#[allow(non_camel_case_types)]
pub struct bool;
/// `charp`: a string the kernel copies.
#[allow(non_camel_case_types)]
pub struct charp;

impl Kind for int {
    type Storage = c_int;
    const OPS: *const bindings::kernel_param_ops = &raw const bindings::param_ops_int;
}

impl Kind for bool {
    type Storage = core::primitive::bool;
    const OPS: *const bindings::kernel_param_ops = &raw const bindings::param_ops_bool;
}

impl Kind for charp {
    type Storage = *mut c_char;
    const OPS: *const bindings::kernel_param_ops = &raw const bindings::param_ops_charp;
}

/// A parameter's value, where the kernel's ops store what `insmod` gave.
#[repr(transparent)]
pub struct Param<K: Kind>(UnsafeCell<K::Storage>);

// SAFETY: the kernel writes the value before init only (the sysfs file is
// read-only); afterwards it is only read.
unsafe impl<K: Kind> Sync for Param<K> {}

impl Param<int> {
    pub const fn new(default: c_int) -> Self {
        Param(UnsafeCell::new(default))
    }

    pub fn get(&self) -> c_int {
        // SAFETY: see `Sync`: no write once the module runs.
        unsafe { *self.0.get() }
    }
}

impl Param<bool> {
    pub const fn new(default: core::primitive::bool) -> Self {
        Param(UnsafeCell::new(default))
    }

    pub fn get(&self) -> core::primitive::bool {
        // SAFETY: see `Sync`.
        unsafe { *self.0.get() }
    }
}

impl Param<charp> {
    pub const fn new(default: &'static CStr) -> Self {
        // The kernel never frees or writes through a default it did not
        // allocate (`param_free_charp` checks), so the cast is sound.
        Param(UnsafeCell::new(default.as_ptr().cast_mut()))
    }

    pub fn get(&self) -> &CStr {
        // SAFETY: see `Sync`; the pointer is the default or the
        // NUL-terminated copy `param_set_charp` made, never null.
        unsafe { CStr::from_ptr(*self.0.get()) }
    }
}

/// One entry of the `__param` section.
#[repr(transparent)]
pub struct KernelParam(bindings::kernel_param);

// SAFETY: the kernel reads the entry; nothing in Rust touches it.
unsafe impl Sync for KernelParam {}

impl KernelParam {
    /// `name` is NUL-terminated (the macro appends it).
    pub const fn new<K: Kind>(name: &'static str, value: &'static Param<K>) -> Self {
        KernelParam(bindings::kernel_param {
            name: name.as_ptr().cast(),
            mod_: crate::this_module(),
            ops: K::OPS,
            perm: 0o444,
            // C's module_param: no parsing level, no flags.
            level: -1,
            flags: 0,
            __bindgen_anon_1: bindings::kernel_param__bindgen_ty_1 {
                arg: value.0.get().cast::<c_void>(),
            },
        })
    }
}
