//! Module parameters: what C's `module_param` makes, for [`module!`](crate::module!).
//!
//! A [`Param`] is read-only in sysfs (mode 0444): the kernel writes it only
//! while loading the module, before `init`, so reading it needs no lock. A
//! [`Writable`] one (mode 0644, `writable` in `module!`) is set through
//! `/sys/module/<name>/parameters/` at any time, by the kernel's own parser
//! (a bad value is EINVAL) under `kernel_param_lock`, which its readers
//! take too: they may sleep, so they are for process context.

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

/// A parameter sysfs may set while the module runs.
#[repr(transparent)]
pub struct Writable<K: Kind>(UnsafeCell<K::Storage>);

// SAFETY: every access, the kernel's and ours, holds kernel_param_lock.
unsafe impl<K: Kind> Sync for Writable<K> {}

/// `kernel_param_lock` of this module, held while it lives.
struct ParamLock;

impl ParamLock {
    fn new() -> ParamLock {
        // SAFETY: the module's own `struct module`; a mutex, released in drop.
        unsafe { bindings::kernel_param_lock(crate::this_module()) };
        ParamLock
    }
}

impl Drop for ParamLock {
    fn drop(&mut self) {
        // SAFETY: locked by `new` in this task.
        unsafe { bindings::kernel_param_unlock(crate::this_module()) };
    }
}

impl Writable<int> {
    pub const fn new(default: c_int) -> Self {
        Writable(UnsafeCell::new(default))
    }

    pub fn get(&self) -> c_int {
        let _lock = ParamLock::new();
        // SAFETY: see `Sync`.
        unsafe { *self.0.get() }
    }
}

impl Writable<bool> {
    pub const fn new(default: core::primitive::bool) -> Self {
        Writable(UnsafeCell::new(default))
    }

    pub fn get(&self) -> core::primitive::bool {
        let _lock = ParamLock::new();
        // SAFETY: see `Sync`.
        unsafe { *self.0.get() }
    }
}

impl Writable<charp> {
    pub const fn new(default: &'static CStr) -> Self {
        // As for `Param<charp>`: the kernel never frees the default.
        Writable(UnsafeCell::new(default.as_ptr().cast_mut()))
    }

    /// Calls `f` with the string; a write from sysfs frees it, so it is
    /// only lent while the lock is held.
    pub fn with<R>(&self, f: impl FnOnce(&CStr) -> R) -> R {
        let _lock = ParamLock::new();
        // SAFETY: see `Sync` and `Param<charp>::get`.
        f(unsafe { CStr::from_ptr(*self.0.get()) })
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
        Self::entry::<K>(name, value.0.get().cast(), 0o444)
    }

    /// A [`Writable`] parameter: owner-writable in sysfs.
    pub const fn writable<K: Kind>(name: &'static str, value: &'static Writable<K>) -> Self {
        Self::entry::<K>(name, value.0.get().cast(), 0o644)
    }

    const fn entry<K: Kind>(name: &'static str, arg: *mut c_void, perm: u16) -> Self {
        KernelParam(bindings::kernel_param {
            name: name.as_ptr().cast(),
            mod_: crate::this_module(),
            ops: K::OPS,
            perm,
            // C's module_param: no parsing level, no flags.
            level: -1,
            flags: 0,
            __bindgen_anon_1: bindings::kernel_param__bindgen_ty_1 { arg },
        })
    }
}
