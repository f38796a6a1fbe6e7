//! The build driver's children (`cargo`, `make`): one job budget for all of
//! them, and none outliving the build.
//!
//! Once a front end calls [`supervise`], every child started with [`spawn`]
//! leads a process group of its own (so its compilers go down with it),
//! gets the driver's jobserver, and is known to two guards:
//! - SIGINT, SIGTERM or SIGHUP to the driver terminates every group, and
//!   the build returns [`Error::Interrupted`] through the normal error path
//!   (temporary files are dropped, nothing unchecked is installed);
//! - a watchdog shell holding the read end of a pipe only the driver writes
//!   terminates every group still listed when that pipe closes: when the
//!   driver dies, SIGKILL included, its work does not go on without it.
//!
//! Without [`supervise`] (in a build script, or a library user's own
//! program) [`spawn`] is a plain spawn.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{
    Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Output, Stdio,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use rustix::process::{kill_process_group, Pid, Signal};

use crate::error::{Error, Result};

struct Supervisor {
    jobserver: jobserver::Client,
    /// Groups still running, as the watchdog has been told.
    groups: Mutex<(BTreeSet<i32>, ChildStdin)>,
}

static SUPERVISOR: OnceLock<Supervisor> = OnceLock::new();
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// How long a terminated group gets to clean up (make deletes the target it
/// was writing) before it is killed.
const GRACE: Duration = Duration::from_secs(2);

/// Terminates every group it was told of (`+PGID`, `-PGID` lines) when its
/// stdin closes. In a group of its own, so that a signal to the driver's
/// group does not take it down with the driver.
const WATCHDOG: &str = r#"trap '' INT TERM HUP
groups=" "
while read -r line; do
  case $line in
    +*) groups="$groups${line#+} " ;;
    -*) groups=$(printf '%s' "$groups" | sed "s/ ${line#-} / /") ;;
  esac
done
for g in $groups; do kill -TERM "-$g" 2>/dev/null; done
sleep 2
for g in $groups; do kill -KILL "-$g" 2>/dev/null; done
"#;

/// Starts supervising the children of this process (see the module docs):
/// takes the jobserver of a `make` or `cargo` that started us, or makes one
/// with a token per core, starts the watchdog and installs the signal
/// handlers. Call it once, early in `main`; later calls do nothing.
pub fn supervise() -> Result<()> {
    if SUPERVISOR.get().is_some() {
        return Ok(());
    }
    // SAFETY: called early in main (as documented), before this process
    // opens file descriptors that the inherited jobserver numbers could
    // alias; the crate checks the descriptors are pipes.
    let jobserver = match unsafe { jobserver::Client::from_env_ext(true) }.client {
        Ok(client) => client,
        Err(_) => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            // Our own process holds the implicit token: the pipe gets the rest.
            jobserver::Client::new(cores.saturating_sub(1).max(1))
                .map_err(|e| Error::io("a jobserver pipe", e))?
        }
    };
    let mut watchdog = Command::new("sh");
    watchdog
        .args(["-c", WATCHDOG])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut watchdog, 0);
    let mut watchdog = watchdog.spawn().map_err(|e| Error::Spawn {
        program: "sh (the build's watchdog)".into(),
        why: e.to_string(),
    })?;
    let Some(pipe) = watchdog.stdin.take() else {
        return Err(Error::Internal {
            what: "the watchdog has no stdin".into(),
        });
    };
    // Never waited for: it outlives the driver by design (init reaps it).
    drop(watchdog);
    let supervisor = Supervisor {
        jobserver,
        groups: Mutex::new((BTreeSet::new(), pipe)),
    };
    if SUPERVISOR.set(supervisor).is_err() {
        return Ok(());
    }
    install_signal_handlers()
}

fn install_signal_handlers() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| Error::io("signal handlers", e))?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            INTERRUPTED.store(true, Ordering::SeqCst);
            terminate_all();
            // The build unwinds through its error path once its children
            // are gone; this is for a build that does not get there.
            std::thread::sleep(GRACE * 3);
            std::process::exit(130);
        }
    });
    Ok(())
}

fn terminate_all() {
    let Some(supervisor) = SUPERVISOR.get() else {
        return;
    };
    let groups: Vec<i32> = match supervisor.groups.lock() {
        Ok(guard) => guard.0.iter().copied().collect(),
        Err(poisoned) => poisoned.into_inner().0.iter().copied().collect(),
    };
    for &group in &groups {
        signal_group(group, Signal::TERM);
    }
    std::thread::sleep(GRACE);
    for &group in &groups {
        signal_group(group, Signal::KILL);
    }
}

fn signal_group(group: i32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(group) {
        // A group that already ended is fine.
        let _ = kill_process_group(pid, signal);
    }
}

/// Whether the driver was asked to stop (SIGINT, SIGTERM, SIGHUP).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The error a step returns once the build was interrupted, else `error`.
pub fn unless_interrupted(error: Error) -> Error {
    if interrupted() {
        Error::Interrupted
    } else {
        error
    }
}

/// A child started by [`spawn`]. Dropping it before it was waited for
/// terminates its group and reaps it.
#[derive(Debug)]
pub struct Supervised {
    child: Option<Child>,
    group: Option<i32>,
}

/// Starts `command` as a supervised child (see the module docs). `program`
/// names it in errors.
pub fn spawn(command: &mut Command, program: &str) -> Result<Supervised> {
    if interrupted() {
        return Err(Error::Interrupted);
    }
    let supervisor = SUPERVISOR.get();
    if let Some(supervisor) = supervisor {
        std::os::unix::process::CommandExt::process_group(command, 0);
        supervisor.jobserver.configure_make(command);
    }
    let spawn_error = |e: std::io::Error| Error::Spawn {
        program: program.to_owned(),
        why: e.to_string(),
    };
    let Some(supervisor) = supervisor else {
        return Ok(Supervised {
            child: Some(command.spawn().map_err(spawn_error)?),
            group: None,
        });
    };
    // Registered under the lock the signal handler reads, so that a signal
    // arriving now either sees the group or comes before the spawn.
    let mut groups = supervisor
        .groups
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let child = command.spawn().map_err(spawn_error)?;
    let Ok(group) = i32::try_from(child.id()) else {
        return Err(Error::Internal {
            what: format!("process id {} out of range", child.id()),
        });
    };
    groups.0.insert(group);
    // A watchdog that is gone cannot help; the build still can go on.
    let _ = writeln!(groups.1, "+{group}");
    drop(groups);
    if interrupted() {
        signal_group(group, Signal::TERM);
    }
    Ok(Supervised {
        child: Some(child),
        group: Some(group),
    })
}

impl Supervised {
    /// The child's stdout, if it was piped and not taken yet.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.as_mut()?.stdout.take()
    }

    /// The child's stdin, if it was piped and not taken yet.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.as_mut()?.stdin.take()
    }

    /// The child's stderr, if it was piped and not taken yet.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.as_mut()?.stderr.take()
    }

    /// The child's exit status if it has exited, without waiting. The group
    /// is ended when `self` is dropped.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        let child = self.child.as_mut().ok_or_else(|| Error::Internal {
            what: "a supervised child was polled after it was waited for".into(),
        })?;
        child.try_wait().map_err(|e| Error::io("a child's exit", e))
    }

    /// Waits for the child, then ends whatever its group left running.
    pub fn wait(mut self) -> Result<ExitStatus> {
        let mut child = self.take()?;
        let status = child.wait().map_err(|e| Error::io("a child's exit", e))?;
        self.finish()?;
        Ok(status)
    }

    /// [`Child::wait_with_output`] for a supervised child.
    pub fn wait_with_output(mut self) -> Result<Output> {
        let child = self.take()?;
        let output = child
            .wait_with_output()
            .map_err(|e| Error::io("a child's output", e))?;
        self.finish()?;
        Ok(output)
    }

    /// Only `wait` and `wait_with_output` take the child, and they consume
    /// `self`: it is always there.
    fn take(&mut self) -> Result<Child> {
        self.child.take().ok_or_else(|| Error::Internal {
            what: "a supervised child was waited for twice".into(),
        })
    }

    fn finish(&mut self) -> Result<()> {
        self.release();
        if interrupted() {
            return Err(Error::Interrupted);
        }
        Ok(())
    }

    /// Kills what is left of the group (a `sleep` of a shell loop) and tells
    /// the watchdog the group is gone.
    fn release(&mut self) {
        let Some(group) = self.group.take() else {
            return;
        };
        signal_group(group, Signal::KILL);
        if let Some(supervisor) = SUPERVISOR.get() {
            let mut groups = supervisor
                .groups
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            groups.0.remove(&group);
            let _ = writeln!(groups.1, "-{group}");
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            match self.group {
                Some(group) => signal_group(group, Signal::TERM),
                None => {
                    let _ = child.kill();
                }
            }
            let _ = child.wait();
        }
        self.release();
    }
}

/// A slot of the job budget, held while a build runs beside others.
pub struct JobSlot {
    _token: Option<jobserver::Acquired>,
}

/// Takes a slot of the job budget for one more parallel build (the first
/// build runs on the driver's own slot: ask for `index > 0` only). Blocks
/// until one is free; without [`supervise`], returns at once.
pub fn job_slot(index: usize) -> Result<JobSlot> {
    match SUPERVISOR.get() {
        Some(supervisor) if index > 0 => {
            let acquired = supervisor
                .jobserver
                .acquire()
                .map_err(|e| Error::io("the jobserver", e))?;
            if interrupted() {
                return Err(Error::Interrupted);
            }
            Ok(JobSlot {
                _token: Some(acquired),
            })
        }
        _ => Ok(JobSlot { _token: None }),
    }
}

/// A slot of the job budget if one is free now (always, without
/// [`supervise`]: then there is no budget).
pub fn spare_slot() -> Option<JobSlot> {
    match SUPERVISOR.get() {
        Some(supervisor) => match supervisor.jobserver.try_acquire() {
            Ok(Some(acquired)) => Some(JobSlot {
                _token: Some(acquired),
            }),
            _ => None,
        },
        None => Some(JobSlot { _token: None }),
    }
}

/// Whether children get their job budget from [`supervise`]'s jobserver
/// (then `make` must not be given its own `-j`).
pub fn has_jobserver() -> bool {
    SUPERVISOR.get().is_some()
}
