//! In-kernel tests: what `#[kmod_runtime::tests]` and a test build's
//! [`module!`](crate::module!) expand to, only in a test build (`cargo
//! kmod test` compiles with `--cfg kmod_test`).
//!
//! The module's init runs the crate's suite instead of the module's own
//! `init`: each selected test in a kernel thread of its own, one after the
//! other, and returns 0 so the module loads. Each test prints
//! machine-readable lines, which `cargo kmod test` reads:
//!
//! ```text
//! kmod-test: running 2 of 2
//! kmod-test: tests::adds start
//! kmod-test: tests::adds ok
//! kmod-test: tests::fails start
//! kmod-test: tests::fails FAILED: assertion `left == right` failed\n  left: 1\n right: 2 at src/lib.rs:30:9
//! kmod-test: result: 1 passed; 1 failed; 0 filtered out
//! ```
//!
//! (newlines and backslashes in a message escaped as `\n` and `\\`). A
//! panic in a test's own thread fails that test and ends the thread
//! there: its stack is not unwound, so what it held (allocations, locks,
//! registrations) leaks or stays held. A panic in atomic context, or in
//! another task, is the runtime's usual `BUG()`.

use core::ffi::{c_int, c_void, CStr};
use core::fmt::{self, Write};
use core::panic::PanicInfo;
use core::pin::pin;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use crate::types::Opaque;
use crate::{bindings, Result};

/// One `#[test]` function.
pub struct Test {
    /// `<module>::<function>`.
    pub name: &'static str,
    pub run: fn() -> Result,
}

/// The tests of a crate: its `#[kmod_runtime::tests]` module's.
pub struct Suite {
    pub tests: &'static [Test],
}

/// What a test returns: nothing, or a `Result` whose error fails it.
pub trait TestResult {
    fn into_result(self) -> Result;
}

impl TestResult for () {
    fn into_result(self) -> Result {
        Ok(())
    }
}

impl TestResult for Result {
    fn into_result(self) -> Result {
        self
    }
}

unsafe extern "Rust" {
    /// Defined by `#[kmod_runtime::tests]` in the module crate; `cargo
    /// kmod test` checks the crate has it before linking.
    static __kmod_test_suite: Suite;
}

/// A test being run: shared by the runner (on its stack, waiting) and the
/// test's thread.
struct Run {
    test: &'static Test,
    /// Completed by the thread as it exits, however the test ended.
    done: Opaque<bindings::completion>,
    passed: AtomicBool,
}

// SAFETY: `done` is only handed to the kernel's completion functions, which
// lock it; the other fields are immutable or atomic.
unsafe impl Sync for Run {}

/// The test whose thread is running, and that thread's task: the panic
/// handler fails only that test. Tests run one at a time.
static RUNNING: AtomicPtr<Run> = AtomicPtr::new(ptr::null_mut());
static RUNNING_TASK: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

/// Runs the tests whose name contains `filter` (all for an empty one),
/// then prints the summary; the module's init in a test build.
pub fn run(filter: &CStr) -> c_int {
    let filter = filter.to_str().unwrap_or("");
    // SAFETY: the static is the crate's suite, immutable.
    let suite = unsafe { &__kmod_test_suite };
    let selected = || suite.tests.iter().filter(|t| t.name.contains(filter));
    crate::pr_info!(
        "kmod-test: running {} of {}",
        selected().count(),
        suite.tests.len()
    );
    let (mut passed, mut failed) = (0, 0);
    for test in selected() {
        if run_one(test) {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    crate::pr_info!(
        "kmod-test: result: {passed} passed; {failed} failed; {} filtered out",
        suite.tests.len() - passed - failed
    );
    0
}

/// `test` in a thread of its own, waited for; whether it passed.
fn run_one(test: &'static Test) -> bool {
    // Pinned: the completion's wait queue points to itself.
    let run = pin!(Run {
        test,
        done: Opaque::uninit(),
        passed: AtomicBool::new(false),
    });
    static DONE_KEY: crate::sync::LockClassKey = crate::sync::LockClassKey::new();
    // SAFETY: `done` is valid for writes and not yet in use; the name and
    // the key are static.
    unsafe {
        bindings::kmod_init_completion(run.done.get(), c"kmod-test".as_ptr(), DONE_KEY.get())
    };
    let data = ptr::from_ref::<Run>(&run).cast_mut().cast::<c_void>();
    // SAFETY: `thread` takes `data` as a `Run` that outlives the thread's
    // use of it: we wait for `done` below, which the thread completes as
    // it exits, and the name is NUL-terminated.
    let task = unsafe { bindings::kmod_kthread_run(Some(thread), data, c"kmod-test".as_ptr()) };
    // An ERR_PTR: the last page of the address space.
    if task as usize >= (-4095isize) as usize {
        crate::pr_err!(
            "kmod-test: {} FAILED: could not start its thread (error {})",
            test.name,
            task as isize
        );
        return false;
    }
    // SAFETY: the completion was initialised above; the thread completes
    // it exactly once, as it exits.
    unsafe { bindings::wait_for_completion(run.done.get()) };
    // The completion orders the thread's stores before this load.
    run.passed.load(Ordering::Relaxed)
}

/// A test's thread: runs it, reports, and completes the runner's wait.
unsafe extern "C" fn thread(data: *mut c_void) -> c_int {
    // SAFETY: `run_one` passes its `Run`, alive until `done` completes.
    let run = unsafe { &*data.cast::<Run>() };
    // SAFETY: `kmod_current` only reads the current task's pointer.
    RUNNING_TASK.store(unsafe { bindings::kmod_current() }, Ordering::Relaxed);
    RUNNING.store(data.cast(), Ordering::Release);
    let name = run.test.name;
    crate::pr_info!("kmod-test: {name} start");
    match (run.test.run)() {
        Ok(()) => {
            crate::pr_info!("kmod-test: {name} ok");
            run.passed.store(true, Ordering::Relaxed);
        }
        Err(error) => crate::pr_err!(
            "kmod-test: {name} FAILED: returned Err with errno {}",
            -error.to_errno()
        ),
    }
    finish(run)
}

/// Ends the current test's thread, completing its runner's wait.
fn finish(run: &Run) -> ! {
    RUNNING.store(ptr::null_mut(), Ordering::Relaxed);
    RUNNING_TASK.store(ptr::null_mut(), Ordering::Relaxed);
    // SAFETY: `done` is the runner's initialised completion; the kernel
    // completes it and ends the thread without returning into the module
    // (so the module may go once the runner wakes).
    unsafe { bindings::kthread_complete_and_exit(run.done.get(), 0) }
}

/// The panic handler's first step in a test build: a panic in the running
/// test's own thread, where it may sleep, fails that test and ends the
/// thread. Returns otherwise.
pub(crate) fn panicked(info: &PanicInfo) {
    // SAFETY: as in `thread`.
    let current = unsafe { bindings::kmod_current() };
    let run = RUNNING.load(Ordering::Acquire);
    // SAFETY: `kmod_may_sleep` only reads the current context's state.
    if run.is_null()
        || RUNNING_TASK.load(Ordering::Relaxed) != current
        || !unsafe { bindings::kmod_may_sleep() }
    {
        return;
    }
    // SAFETY: RUNNING is this thread's own `Run`, alive until it finishes.
    let run = unsafe { &*run };
    let name = run.test.name;
    let message = Escaped(info.message());
    match info.location() {
        Some(at) => crate::pr_err!("kmod-test: {name} FAILED: {message} at {at}"),
        None => crate::pr_err!("kmod-test: {name} FAILED: {message}"),
    }
    finish(run)
}

/// A message on one line: `\n` and `\` escaped.
struct Escaped<T>(T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Escaper<'a, 'b>(&'a mut fmt::Formatter<'b>);
        impl Write for Escaper<'_, '_> {
            fn write_str(&mut self, text: &str) -> fmt::Result {
                for piece in text.split_inclusive(['\n', '\\']) {
                    match piece.strip_suffix('\n') {
                        Some(line) => write!(self.0, "{line}\\n")?,
                        None => match piece.strip_suffix('\\') {
                            Some(before) => write!(self.0, "{before}\\\\")?,
                            None => self.0.write_str(piece)?,
                        },
                    }
                }
                Ok(())
            }
        }
        write!(Escaper(f), "{}", self.0)
    }
}
