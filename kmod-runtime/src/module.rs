use crate::Result;

/// A loaded module's state: built by `init` when the module is loaded,
/// dropped when it is unloaded, so `Drop` is the exit function and every
/// resource the state owns (devices, timers, files) is released with it.
/// `Send`: `insmod`'s task builds it and `rmmod`'s drops it; `Sync`: every
/// callback of the module may look at it from any task.
pub trait Module: Sized + Send + Sync {
    fn init() -> Result<Self>;
}

/// Declares the module: its `.modinfo` (one section, as modpost expects),
/// its parameters (`struct kernel_param`s in `__param`, readable in
/// `/sys/module/<name>/parameters/`) and the `init_module`/`cleanup_module`
/// entry points, which construct and drop `type`.
///
/// ```ignore
/// kmod_runtime::module! {
///     type: Params,
///     name: "params",
///     license: "GPL",
///     author: "A. Developer",
///     description: "Module parameters",
///     params: {
///         count: int = 1, "How many times to greet";
///         loud: bool = false, "Greet in capitals";
///         whom: charp = c"world", "Whom to greet";
///     },
/// }
/// ```
/// Parameters are read with `params::count.get()`; their kinds are the
/// kernel's `param_ops_*` names (`int`, `bool`, `charp`). A parameter
/// ending in `, writable` (`level: int = 0, "Verbosity", writable;`) is
/// mode 0644 in sysfs, a [`Writable`](crate::param::Writable). An array
/// of up to `N` `int`s or `bool`s is `ports: [int; 4] = [0; 4], "Ports";`,
/// an [`Array`](crate::param::Array) (`writable`: a
/// [`WritableArray`](crate::param::WritableArray)), given as `ports=80,443`.
/// `name` must be the crate's name, which Kbuild gives the `.ko`.
#[macro_export]
macro_rules! module {
    (
        type: $type:ty,
        name: $name:literal,
        license: $license:literal,
        author: $author:literal,
        description: $description:literal,
        $(params: {
            $($param:ident: $kind:tt = $default:expr, $param_description:literal $(, $writable:ident)?;)+
        },)?
    ) => {
        const _: () = ::core::assert!(
            $crate::macro_support::str_eq($name, ::core::env!("CARGO_CRATE_NAME")),
            "module! name must be the crate's name"
        );

        // One static, so one `.modinfo` input section: `#[used]` would add
        // SHF_GNU_RETAIN and make ld emit a second output section.
        const __KMOD_MODINFO: &str = ::core::concat!(
            "license=", $license, "\0",
            "author=", $author, "\0",
            "description=", $description, "\0",
            $($(
                "parmtype=", ::core::stringify!($param), ":", $crate::__kmod_parmtype!($kind), "\0",
                "parm=", ::core::stringify!($param), ":", $param_description, "\0",
            )+)?
        );
        #[unsafe(no_mangle)]
        #[unsafe(link_section = ".modinfo")]
        pub static __kmod_modinfo: [u8; __KMOD_MODINFO.len()] =
            $crate::macro_support::bytes(__KMOD_MODINFO);

        $(
            /// The module's parameters, set by the kernel before `init`.
            pub mod params {
                $(
                    $crate::__kmod_param!($param, $kind, $default $(, $writable)?);
                )+
            }

            #[unsafe(no_mangle)]
            #[unsafe(link_section = "__param")]
            pub static __kmod_params: [$crate::param::KernelParam; [$(::core::stringify!($param)),+].len()] = [
                $($crate::__kmod_param!(
                    @entry ::core::concat!(::core::stringify!($param), "\0"),
                    &params::$param, $kind $(, $writable)?
                )),+
            ];
        )?

        $crate::__kmod_if_not_test! {
            static mut __KMOD_STATE: $crate::macro_support::MaybeUninit<$type> =
                $crate::macro_support::MaybeUninit::uninit();

            #[unsafe(no_mangle)]
            pub extern "C" fn init_module() -> $crate::macro_support::c_int {
                match <$type as $crate::Module>::init() {
                    Ok(state) => {
                        // SAFETY: the kernel runs init once, before anything
                        // else of the module and never concurrently with exit.
                        unsafe { (*(&raw mut __KMOD_STATE)).write(state) };
                        0
                    }
                    Err(error) => error.to_errno(),
                }
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn cleanup_module() {
                // SAFETY: the kernel runs exit only after init succeeded, once.
                unsafe { (*(&raw mut __KMOD_STATE)).assume_init_drop() };
                $crate::alloc::report_leaks();
            }
        }

        // A test build: init runs the crate's tests (`#[kmod_runtime::tests]`)
        // instead, those whose name contains `kmod_test_filter`.
        $crate::__kmod_if_test! {
            const _: fn() -> $crate::Result<$type> = <$type as $crate::Module>::init;

            static __KMOD_TEST_FILTER: $crate::param::Param<$crate::param::charp> =
                $crate::param::Param::<$crate::param::charp>::new(c"");

            #[unsafe(no_mangle)]
            #[unsafe(link_section = "__param")]
            pub static __kmod_test_params: [$crate::param::KernelParam; 1] =
                [$crate::param::KernelParam::new("kmod_test_filter\0", &__KMOD_TEST_FILTER)];

            #[unsafe(no_mangle)]
            pub extern "C" fn init_module() -> $crate::macro_support::c_int {
                $crate::test::run(__KMOD_TEST_FILTER.get())
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn cleanup_module() {
                $crate::alloc::report_leaks();
            }
        }

        // The kernel calls init/exit through pointers in `struct module`,
        // which objtool cannot see: with IBT it would seal (un-ENDBR) them.
        // C's module_init/module_exit keep them address-taken the same way.
        #[unsafe(no_mangle)]
        #[unsafe(link_section = ".init.data")]
        pub static __kmod_init_addressable: extern "C" fn() -> $crate::macro_support::c_int =
            init_module;

        #[unsafe(no_mangle)]
        #[unsafe(link_section = ".exit.data")]
        pub static __kmod_exit_addressable: extern "C" fn() = cleanup_module;
    };
}

/// One parameter of [`module!`]: read-only, or `writable`; an array, or not.
#[doc(hidden)]
#[macro_export]
macro_rules! __kmod_param {
    ($param:ident, [$kind:ident; $len:expr], $default:expr) => {
        #[allow(non_upper_case_globals)]
        pub static $param: $crate::param::Array<$crate::param::$kind, { $len }> =
            $crate::param::Array::new($default);
    };
    ($param:ident, [$kind:ident; $len:expr], $default:expr, writable) => {
        #[allow(non_upper_case_globals)]
        pub static $param: $crate::param::WritableArray<$crate::param::$kind, { $len }> =
            $crate::param::WritableArray::new($default);
    };
    ($param:ident, $kind:ident, $default:expr) => {
        #[allow(non_upper_case_globals)]
        pub static $param: $crate::param::Param<$crate::param::$kind> =
            $crate::param::Param::<$crate::param::$kind>::new($default);
    };
    ($param:ident, $kind:ident, $default:expr, writable) => {
        #[allow(non_upper_case_globals)]
        pub static $param: $crate::param::Writable<$crate::param::$kind> =
            $crate::param::Writable::<$crate::param::$kind>::new($default);
    };
    (@entry $name:expr, $value:expr, [$kind:ident; $len:expr]) => {{
        static ARRAY: $crate::param::KernelParamArray<0o444> =
            $crate::param::KernelParamArray::new($value);
        $crate::param::KernelParam::array($name, &ARRAY)
    }};
    (@entry $name:expr, $value:expr, [$kind:ident; $len:expr], writable) => {{
        static ARRAY: $crate::param::KernelParamArray<0o644> =
            $crate::param::KernelParamArray::writable($value);
        $crate::param::KernelParam::array($name, &ARRAY)
    }};
    (@entry $name:expr, $value:expr, $kind:ident) => {
        $crate::param::KernelParam::new($name, $value)
    };
    (@entry $name:expr, $value:expr, $kind:ident, writable) => {
        $crate::param::KernelParam::writable($name, $value)
    };
}

/// A parameter's `parmtype` in `.modinfo`, as C's `module_param_array`
/// writes it (`array of int`).
#[doc(hidden)]
#[macro_export]
macro_rules! __kmod_parmtype {
    ([$kind:ident; $len:expr]) => {
        ::core::concat!("array of ", ::core::stringify!($kind))
    };
    ($kind:ident) => {
        ::core::stringify!($kind)
    };
}
