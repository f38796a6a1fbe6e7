//! Module parameters: what C's `module_param` makes, for [`module!`](crate::module!).
//!
//! A [`Param`] is read-only in sysfs (mode 0444): the kernel writes it only
//! while loading the module, before `init`, so reading it needs no lock. A
//! [`Writable`] one (mode 0644, `writable` in `module!`) is set through
//! `/sys/module/<name>/parameters/` at any time, by the kernel's own parser
//! (a bad value is EINVAL) under `kernel_param_lock`, which its readers
//! take too: they may sleep, so they are for process context.
//!
//! An [`Array`] (`ports: [int; 4] = [0; 4]` in `module!`) or
//! [`WritableArray`] holds up to `N` values the kernel's `param_array_ops`
//! parses from a comma-separated list (`ports=80,443`), and how many were
//! given; more than `N`, or one the element's parser refuses, is EINVAL.

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_uint, c_void, CStr};

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

/// A kind arrays may hold: `int` and `bool` (a `charp` array would need
/// its strings freed one by one).
pub trait ArrayKind: Kind<Storage: Copy> {
    /// The longest text its `get` writes for one value (`-2147483648\n`):
    /// `param_array_get` gives each value's `get` the rest of the page as if
    /// it were a whole page, so the whole array's text must fit in one.
    const MAX_TEXT: usize;
}

impl ArrayKind for int {
    const MAX_TEXT: usize = 12;
}

impl ArrayKind for bool {
    const MAX_TEXT: usize = 2;
}

/// The smallest page of the kernels the runtime builds for.
const MIN_PAGE_SIZE: usize = 4096;

/// An array parameter's values and how many `insmod` gave (all `N`, the
/// defaults, if it gave none).
#[repr(C)]
pub struct Array<K: ArrayKind, const N: usize> {
    values: UnsafeCell<[K::Storage; N]>,
    num: UnsafeCell<c_uint>,
}

// SAFETY: as `Param`: written before init only, read afterwards.
unsafe impl<K: ArrayKind, const N: usize> Sync for Array<K, N> {}

/// `N` values, all of whose text fits in a page (see
/// [`ArrayKind::MAX_TEXT`]).
const fn check_len<K: ArrayKind>(n: usize) {
    assert!(
        n >= 1 && n * K::MAX_TEXT < MIN_PAGE_SIZE,
        "an array parameter holds 1 to a page's worth of values"
    );
}

impl<K: ArrayKind, const N: usize> Array<K, N> {
    pub const fn new(default: [K::Storage; N]) -> Self {
        const { check_len::<K>(N) };
        Array {
            values: UnsafeCell::new(default),
            num: UnsafeCell::new(N as c_uint),
        }
    }

    /// The values given (or the defaults).
    pub fn get(&self) -> &[K::Storage] {
        // SAFETY: see `Sync`.
        unsafe { given(&self.values, &self.num) }
    }
}

/// The first `num` of `values`, which nothing writes while the result
/// lives (the caller's promise); `param_array` never counts past `N`.
unsafe fn given<'a, T, const N: usize>(
    values: &'a UnsafeCell<[T; N]>,
    num: &UnsafeCell<c_uint>,
) -> &'a [T] {
    // SAFETY: no write meanwhile (see above).
    let (values, num) = unsafe { (&*values.get(), *num.get()) };
    &values[..num as usize]
}

/// An array parameter sysfs may set while the module runs. A write the
/// kernel refuses (EINVAL) may have set the values before the bad one.
#[repr(C)]
pub struct WritableArray<K: ArrayKind, const N: usize> {
    values: UnsafeCell<[K::Storage; N]>,
    num: UnsafeCell<c_uint>,
}

// SAFETY: as `Writable`: every access holds kernel_param_lock.
unsafe impl<K: ArrayKind, const N: usize> Sync for WritableArray<K, N> {}

impl<K: ArrayKind, const N: usize> WritableArray<K, N> {
    pub const fn new(default: [K::Storage; N]) -> Self {
        const { check_len::<K>(N) };
        WritableArray {
            values: UnsafeCell::new(default),
            num: UnsafeCell::new(N as c_uint),
        }
    }

    /// Calls `f` with the values sysfs last set, lent while the lock is
    /// held so that no write changes them meanwhile.
    pub fn with<R>(&self, f: impl FnOnce(&[K::Storage]) -> R) -> R {
        let _lock = ParamLock::new();
        // SAFETY: see `Sync`.
        f(unsafe { given(&self.values, &self.num) })
    }
}

/// The `struct kparam_array` of an array parameter, with the mode of its
/// sysfs file (0444 for an [`Array`], 0644 for a [`WritableArray`]).
#[repr(transparent)]
pub struct KernelParamArray<const PERM: u16>(bindings::kparam_array);

// SAFETY: the kernel reads the entry; nothing in Rust touches it.
unsafe impl<const PERM: u16> Sync for KernelParamArray<PERM> {}

impl KernelParamArray<0o444> {
    pub const fn new<K: ArrayKind, const N: usize>(value: &'static Array<K, N>) -> Self {
        Self::entry::<K, N>(value.values.get().cast(), value.num.get())
    }
}

impl KernelParamArray<0o644> {
    pub const fn writable<K: ArrayKind, const N: usize>(
        value: &'static WritableArray<K, N>,
    ) -> Self {
        Self::entry::<K, N>(value.values.get().cast(), value.num.get())
    }
}

impl<const PERM: u16> KernelParamArray<PERM> {
    const fn entry<K: ArrayKind, const N: usize>(elem: *mut c_void, num: *mut c_uint) -> Self {
        KernelParamArray(bindings::kparam_array {
            max: N as c_uint,
            elemsize: core::mem::size_of::<K::Storage>() as c_uint,
            num,
            ops: K::OPS,
            elem,
        })
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

    /// An array parameter, writable if its `kparam_array` is.
    pub const fn array<const PERM: u16>(
        name: &'static str,
        array: &'static KernelParamArray<PERM>,
    ) -> Self {
        Self::with_ops(
            name,
            &raw const bindings::param_array_ops,
            PERM,
            bindings::kernel_param__bindgen_ty_1 { arr: &array.0 },
        )
    }

    const fn entry<K: Kind>(name: &'static str, arg: *mut c_void, perm: u16) -> Self {
        Self::with_ops(
            name,
            K::OPS,
            perm,
            bindings::kernel_param__bindgen_ty_1 { arg },
        )
    }

    const fn with_ops(
        name: &'static str,
        ops: *const bindings::kernel_param_ops,
        perm: u16,
        value: bindings::kernel_param__bindgen_ty_1,
    ) -> Self {
        KernelParam(bindings::kernel_param {
            name: name.as_ptr().cast(),
            mod_: crate::this_module(),
            ops,
            perm,
            // C's module_param: no parsing level, no flags.
            level: -1,
            flags: 0,
            __bindgen_anon_1: value,
        })
    }
}
