//! `cargo kmod run`: a module built as [`build`] builds it, then loaded by
//! its own kernel under QEMU, used (commands, or a shell on the console)
//! and unloaded, with the kernel log on the terminal all along.
//!
//! The guest script raises the console's log level once the guest is up, so
//! every kernel message from the load on reaches the console as it is
//! printed; boot messages and the harness's markers are not shown.

use std::io::{self, IsTerminal, Read, Write};
use std::process::ChildStdin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex, Once, PoisonError};
use std::thread;
use std::time::Instant;

use camino::{Utf8Path, Utf8PathBuf};

use super::build::{build, BuildOptions};
use super::project::{ModuleCrate, Project};
use super::qemu::{self, Console, Guest, GuestLog, MARKER_PREFIX};
use super::report::{Artifact, Reporter};
use crate::error::{Error, Result};
use crate::tree::KernelTree;

/// What `run` is asked for.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Which kernels, features, signing: as for `cargo kmod build`. Each
    /// kernel built for is booted in turn.
    pub build: BuildOptions,
    /// Module parameters, `NAME=VALUE`, given to `insmod`.
    pub params: Vec<String>,
    /// Commands run one after the other with the guest's `sh -c`; none:
    /// an interactive shell on the console.
    pub exec: Vec<String>,
    /// Host files and where the guest has them (see [`Guest::file_at`]).
    pub files: Vec<(Utf8PathBuf, String)>,
    /// Passed to QEMU as they are.
    pub qemu_args: Vec<String>,
}

/// Sections the script runs (see [`qemu`]); `kmod-quiet-` ones are not shown.
const INSMOD: &str = "kmod-insmod";
const RMMOD: &str = "kmod-rmmod";
const UNLOAD_LOG: &str = "kmod-quiet-unload-log";
const QUIET: &str = "kmod-quiet-";
const SHELL_MARKER: &str = "==== kmod-shell";

/// Builds `module`, then for each kernel built for: boots it, loads the
/// module with `params`, runs each command (or a shell), unloads it and
/// checks what the unload printed. The first failure is the error: a
/// command's exit status is [`Error::GuestCommand`], a refused load
/// [`Error::BadModule`], a warning, oops or leak in the kernel log, or a
/// guest that did not come up, [`Error::Guest`].
pub fn run(
    project: &Project,
    module: &ModuleCrate,
    options: &RunOptions,
    reporter: &dyn Reporter,
) -> Result<()> {
    preflight(options)?;
    let artifacts = build(project, module, &options.build, reporter)?;
    let mut failures = Vec::new();
    for artifact in &artifacts {
        let tree = tree_of(&artifact.release, &options.build.kernels)?;
        if let Err(error) = run_in(&tree, artifact, options, reporter) {
            if matches!(error, Error::Interrupted) {
                return Err(error);
            }
            failures.push(error);
        }
    }
    let mut failures = failures.into_iter();
    let first = failures.next();
    for other in failures {
        reporter.warning(&other.to_string());
    }
    first.map_or(Ok(()), Err)
}

/// What can be refused before building: a bad parameter, a host file that
/// is not there, no busybox for the guest.
fn preflight(options: &RunOptions) -> Result<()> {
    for param in &options.params {
        let name = param.split_once('=').map_or("", |(name, _)| name);
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(Error::BadValue {
                what: format!("--param {param:?}"),
                why: "expected NAME=VALUE, NAME a module parameter's name".into(),
            });
        }
    }
    for (host, _) in &options.files {
        if !host.is_file() {
            return Err(Error::BadInput {
                path: host.clone(),
                why: "--file: no such file (only files can be copied into the guest)".into(),
            });
        }
    }
    qemu::find_busybox().map(drop)
}

/// The tree a module was built for: a `--kernel` path or `KDIR` whose
/// release it is, else the installed or fetched tree of that release.
pub(crate) fn tree_of(release: &str, specs: &[String]) -> Result<KernelTree> {
    let named = specs
        .iter()
        .filter(|spec| spec.contains('/'))
        .cloned()
        .chain(std::env::var("KDIR").ok());
    for path in named {
        if let Ok(tree) = KernelTree::open(&path) {
            if tree.release == release {
                return Ok(tree);
            }
        }
    }
    KernelTree::select(release)
}

/// One kernel: boot, load, commands or shell, unload, verdict.
fn run_in(
    tree: &KernelTree,
    artifact: &Artifact,
    options: &RunOptions,
    reporter: &dyn Reporter,
) -> Result<()> {
    let ko = &artifact.path;
    let file_name = ko.file_name().ok_or_else(|| Error::Internal {
        what: format!("{ko}: a built module without a file name"),
    })?;
    // Kbuild names a module after its file, `-` made `_`.
    let name = file_name.trim_end_matches(".ko").replace('-', "_");
    let mut guest = Guest::new(&tree.image());
    guest
        .no_default_timeout()
        .file_at(ko, &format!("/modules/{file_name}"));
    for (host, at) in &options.files {
        guest.file_at(host, at);
    }
    for arg in &options.qemu_args {
        guest.qemu_arg(arg);
    }
    let script = script(&format!("/modules/{file_name}"), &name, options)?;
    let interactive = options.exec.is_empty();
    reporter.status(
        "Booting",
        &format!("{} in QEMU with {file_name}", tree.release),
    );
    let (ready, shell_started) = mpsc::channel();
    let mut view = View {
        reporter,
        loading: std::iter::once(file_name)
            .chain(options.params.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        module: &name,
        commands: &options.exec,
        started: Instant::now(),
        release: &tree.release,
        out: if reporter.cargo_message_format() == "json" {
            Box::new(io::stderr())
        } else {
            Box::new(io::stdout())
        },
        pending: Vec::new(),
        phase: Phase::Booting,
        at_line_start: true,
        ready: Some(ready),
    };
    let mut output = |bytes: &[u8]| view.feed(bytes);
    let log = {
        let _raw = interactive.then(RawTerminal::enter);
        guest.run_attached(
            &script,
            Console {
                output: &mut output,
                input: interactive.then(|| forward_stdin(shell_started)),
            },
        )?
    };
    verdict(&log, ko, &name, &tree.release, options, reporter)
}

/// The guest's script: load, commands or shell, unload, the unload's log.
fn script(ko: &str, name: &str, options: &RunOptions) -> Result<String> {
    let quote = |word: &str| {
        shlex::try_quote(word)
            .map(|quoted| quoted.into_owned())
            .map_err(|_| Error::BadValue {
                what: format!("{word:?}"),
                why: "a NUL byte cannot go into the guest's shell".into(),
            })
    };
    let mut insmod = vec![quote(ko)?];
    for param in &options.params {
        insmod.push(quote(param)?);
    }
    let mut script = format!(
        "cd /\n\
         # Every kernel message from here on, on the console as it is printed.\n\
         dmesg -n 8\n\
         section {INSMOD} insmod {} || exit 1\n",
        insmod.join(" ")
    );
    for (i, command) in options.exec.iter().enumerate() {
        script.push_str(&format!("section exec-{i} sh -c {}\n", quote(command)?));
    }
    if options.exec.is_empty() {
        // A session with job control on the console, then back here.
        script.push_str(&format!("echo '{SHELL_MARKER}'\nsetsid cttyhack sh -l\n"));
    }
    script.push_str(&unload_script(name));
    Ok(script)
}

/// The end of a guest's script: unload `name`, then what the kernel
/// printed doing it (see [`unloaded`]).
pub(crate) fn unload_script(name: &str) -> String {
    format!(
        "dmesg -c >/dev/null\n\
         section {RMMOD} rmmod {name}\n\
         section {UNLOAD_LOG} dmesg -r\n"
    )
}

/// Whether [`unload_script`]'s unload was clean: rmmod succeeded and the
/// kernel printed no warning, oops or leak doing it. How many lines it
/// printed if so.
pub(crate) fn unloaded(log: &GuestLog, name: &str, release: &str) -> Result<usize> {
    let rmmod = log.expect_section(RMMOD)?;
    if rmmod.rc != 0 {
        return Err(log.error(format!(
            "rmmod {name} exited {}: {}",
            rmmod.rc,
            rmmod.output.trim()
        )));
    }
    let unload = log.expect_section(UNLOAD_LOG)?.output;
    if let Some(line) = qemu::first_problem(unload.lines()) {
        return Err(log.error(format!(
            "unloading {name}, the {release} kernel printed `{}`",
            line.trim()
        )));
    }
    Ok(unload
        .lines()
        .filter(|line| !line.trim().is_empty())
        .count())
}

/// What the guest's console shows: what the script printed, judged.
fn verdict(
    log: &GuestLog,
    ko: &Utf8Path,
    name: &str,
    release: &str,
    options: &RunOptions,
    reporter: &dyn Reporter,
) -> Result<()> {
    let insmod = log.expect_section(INSMOD)?;
    if insmod.rc != 0 {
        let errno = match insmod.insmod() {
            Ok(Some(errno)) => format!(" ({errno:?})"),
            _ => String::new(),
        };
        return Err(Error::BadModule {
            module: ko.to_owned(),
            reason: format!(
                "the {release} kernel refused it: insmod exited {}{errno}\n{}",
                insmod.rc,
                insmod.output.trim_end()
            ),
        });
    }
    let mut failed = None;
    for (i, command) in options.exec.iter().enumerate() {
        let section = log.expect_section(&format!("exec-{i}"))?;
        if section.rc != 0 && failed.is_none() {
            failed = Some(Error::GuestCommand {
                command: command.clone(),
                release: release.to_owned(),
                status: section.rc,
            });
        }
    }
    // Kernel lines (`[ time] ...`) after the guest came up.
    let after_init = log
        .console
        .split_once("==== kmod-init ")
        .map_or("", |(_, rest)| rest);
    let kernel_lines = after_init
        .lines()
        .filter(|line| line.trim_start().starts_with('['));
    if let Some(line) = qemu::first_problem(kernel_lines) {
        return Err(log.error(format!(
            "the {release} kernel printed `{}` while {name} was loaded",
            line.trim()
        )));
    }
    let lines = unloaded(log, name, release)?;
    reporter.status(
        "Unloaded",
        &format!(
            "{name} ({release}): the kernel printed {lines} line(s), no warning, oops or leak"
        ),
    );
    failed.map_or(Ok(()), Err)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before `/init` runs: boot messages, not shown.
    Booting,
    Shown,
    /// A `kmod-quiet-` section, or the power-off.
    Hidden,
}

/// The console as the user sees it: the script's output and the kernel's
/// messages pass through as they come (a prompt without a newline too);
/// the harness's markers become status lines.
struct View<'a> {
    reporter: &'a dyn Reporter,
    /// The `.ko` and its parameters, then the module's name, as the
    /// load and the unload are announced.
    loading: String,
    module: &'a str,
    commands: &'a [String],
    release: &'a str,
    started: Instant,
    /// Where the console goes: stdout, or stderr when JSON messages own
    /// stdout.
    out: Box<dyn Write + Send + 'a>,
    /// Bytes that may be the start of a marker, held back.
    pending: Vec<u8>,
    phase: Phase,
    at_line_start: bool,
    /// Told when the shell starts, so input goes to it and not to the boot.
    ready: Option<mpsc::Sender<()>>,
}

impl View<'_> {
    fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        let marker = MARKER_PREFIX.as_bytes();
        loop {
            let Some(at) = find(&self.pending, marker) else {
                // Keep what could be a marker's beginning.
                let keep = (1..marker.len().min(self.pending.len() + 1))
                    .rev()
                    .find(|&n| self.pending.ends_with(&marker[..n]))
                    .unwrap_or(0);
                let shown = self.pending.len() - keep;
                let text: Vec<u8> = self.pending.drain(..shown).collect();
                self.show(&text);
                break;
            };
            let Some(end) = self.pending[at..].iter().position(|&b| b == b'\n') else {
                let text: Vec<u8> = self.pending.drain(..at).collect();
                self.show(&text);
                break;
            };
            let text: Vec<u8> = self.pending.drain(..at).collect();
            self.show(&text);
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.marker(String::from_utf8_lossy(&line).trim_end());
        }
        self.flush();
    }

    fn show(&mut self, text: &[u8]) {
        if self.phase != Phase::Shown || text.is_empty() {
            return;
        }
        self.at_line_start = text.ends_with(b"\n");
        let _ = self.out.write_all(text);
    }

    fn flush(&mut self) {
        let _ = self.out.flush();
    }

    /// Status lines go to stderr: output without a final newline gets one
    /// first, so the two do not share a line.
    fn status(&mut self, verb: &str, message: &str) {
        if !self.at_line_start {
            self.show(b"\r\n");
        }
        self.flush();
        self.reporter.status(verb, message);
    }

    fn marker(&mut self, line: &str) {
        if line.starts_with("==== kmod-init ") {
            self.phase = Phase::Shown;
            let elapsed = self.started.elapsed().as_secs_f64();
            self.status("Booted", &format!("{} in {elapsed:.1}s", self.release));
        } else if line == SHELL_MARKER {
            self.status(
                "Shell",
                "on the guest's console: `exit` or Ctrl-D unloads the module and powers off; \
                 Ctrl-C stops QEMU",
            );
            if let Some(ready) = self.ready.take() {
                let _ = ready.send(());
            }
        } else if line.starts_with("==== kmod-done") {
            self.phase = Phase::Hidden;
        } else if let Some(rest) = line.strip_prefix("==== kmod-section ") {
            let (name, what) = rest.split_once(' ').unwrap_or((rest, ""));
            if name.starts_with(QUIET) {
                self.phase = if what == "begin" {
                    Phase::Hidden
                } else {
                    Phase::Shown
                };
                return;
            }
            let command = name
                .strip_prefix("exec-")
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| self.commands.get(i));
            match (command, what.strip_prefix("end rc=")) {
                (Some(command), None) => self.status("Running", &format!("`{command}`")),
                (Some(command), Some(rc)) => {
                    self.status("Exited", &format!("status {rc}: `{command}`"))
                }
                (None, None) if name == INSMOD => {
                    let loading = self.loading.clone();
                    self.status("Loading", &loading);
                }
                (None, None) if name == RMMOD => self.status("Unloading", self.module),
                _ => {}
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Hands the guest's console input to [`SHELL_INPUT`] once its shell runs.
fn forward_stdin(shell_started: mpsc::Receiver<()>) -> Box<dyn FnOnce(ChildStdin) + Send> {
    Box::new(move |mut guest: ChildStdin| {
        if shell_started.recv().is_err() {
            return;
        }
        let mut current = SHELL_INPUT
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if SHELL_INPUT.ended.load(Ordering::SeqCst) {
            let _ = guest.write_all(END_OF_INPUT);
        }
        *current = Some(guest);
        drop(current);
        static READER: Once = Once::new();
        READER.call_once(|| {
            thread::spawn(|| SHELL_INPUT.read_stdin());
        });
    })
}

/// Our stdin, read by one thread for the whole process (a blocking read
/// cannot be called off when a guest powers off), and written to the shell
/// running now; what comes while none runs is dropped.
struct ShellInput {
    current: Mutex<Option<ChildStdin>>,
    /// Stdin ended: each shell gets [`END_OF_INPUT`].
    ended: AtomicBool,
}

/// What a shell gets when our stdin ends (a pipe, `/dev/null`): Ctrl-D ends
/// it as at a prompt, and `exit` for when the Ctrl-D came while the
/// console's line discipline was still canonical (before the shell's line
/// editing took over, a Ctrl-D there is lost).
const END_OF_INPUT: &[u8] = b"\x04exit\n";

static SHELL_INPUT: ShellInput = ShellInput {
    current: Mutex::new(None),
    ended: AtomicBool::new(false),
};

impl ShellInput {
    fn read_stdin(&self) {
        let mut host = io::stdin();
        let mut buf = [0u8; 4096];
        loop {
            // At the end, END_OF_INPUT, and no more reading.
            let (chunk, end): (&[u8], bool) = match host.read(&mut buf) {
                Ok(0) => (END_OF_INPUT, true),
                Ok(n) => (&buf[..n], false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => (END_OF_INPUT, true),
            };
            if end {
                self.ended.store(true, Ordering::SeqCst);
            }
            let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(guest) = current.as_mut() {
                if guest.write_all(chunk).and_then(|()| guest.flush()).is_err() {
                    // That guest is gone.
                    *current = None;
                }
            }
            if end {
                return;
            }
        }
    }
}

/// The terminal in stdin as a serial line wants it while a shell runs in the
/// guest: every key goes through at once and the guest echoes it (no line
/// editing or echo here). Signals stay on: Ctrl-C stops the run. Restored
/// when dropped.
struct RawTerminal(Option<rustix::termios::Termios>);

impl RawTerminal {
    fn enter() -> RawTerminal {
        use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
        let stdin = io::stdin();
        if !stdin.is_terminal() {
            return RawTerminal(None);
        }
        let Ok(saved) = tcgetattr(&stdin) else {
            return RawTerminal(None);
        };
        let mut raw = saved.clone();
        raw.local_modes &=
            !(LocalModes::ICANON | LocalModes::ECHO | LocalModes::ECHONL | LocalModes::IEXTEN);
        match tcsetattr(&stdin, OptionalActions::Now, &raw) {
            Ok(()) => RawTerminal(Some(saved)),
            Err(_) => RawTerminal(None),
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = rustix::termios::tcsetattr(
                io::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::Human;

    fn view<'a>(commands: &'a [String], out: &'a mut Vec<u8>) -> View<'a> {
        View {
            reporter: &Human,
            loading: "m.ko".into(),
            module: "m",
            commands,
            release: "6.1.0-1-amd64",
            started: Instant::now(),
            out: Box::new(out),
            pending: Vec::new(),
            phase: Phase::Booting,
            at_line_start: true,
            ready: None,
        }
    }

    /// Markers split across chunks anywhere are still markers, and text that
    /// only looks like their beginning is shown; boot messages and quiet
    /// sections are not.
    #[test]
    fn view_shows_the_console_without_markers() {
        let commands = vec!["echo hi".to_owned()];
        let console = "boot noise\r\n==== kmod-init kernel x\r\n\
                       ==== kmod-section exec-0 begin\r\nhi\r\n==== not a marker\r\n\
                       part==== kmod-section exec-0 end rc=0\r\n\
                       ==== kmod-section kmod-quiet-x begin\r\nhidden\r\n\
                       ==== kmod-section kmod-quiet-x end rc=0\r\nshown ==== kmo";
        for chunk in [1, 3, 7, console.len()] {
            let mut out = Vec::new();
            let mut view = view(&commands, &mut out);
            for piece in console.as_bytes().chunks(chunk) {
                view.feed(piece);
            }
            assert_eq!(view.phase, Phase::Shown, "chunks of {chunk}");
            assert_eq!(view.pending, b"==== kmo", "chunks of {chunk}");
            drop(view);
            assert_eq!(
                String::from_utf8_lossy(&out),
                "hi\r\n==== not a marker\r\npart\r\nshown ",
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn script_quotes_params_and_commands() {
        let options = RunOptions {
            params: vec!["whom=it's me".into()],
            exec: vec!["echo $((1+2)); exit 3".into()],
            ..RunOptions::default()
        };
        let script = script("/modules/my-mod.ko", "my_mod", &options).expect("script");
        assert!(
            script.contains("insmod /modules/my-mod.ko \"whom=it's me\" || exit 1"),
            "{script}"
        );
        assert!(script.contains("sh -c 'echo $((1+2)); exit 3'"), "{script}");
        assert!(script.contains("rmmod my_mod\n"), "{script}");
        assert!(!script.contains(SHELL_MARKER), "{script}");
        let shell = script_for_shell();
        assert!(shell.contains(SHELL_MARKER), "{shell}");
    }

    fn script_for_shell() -> String {
        script("/modules/m.ko", "m", &RunOptions::default()).expect("script")
    }

    #[test]
    fn bad_params_and_missing_files_are_refused_before_building() {
        for param in ["novalue", "=1", "a b=1"] {
            let options = RunOptions {
                params: vec![param.into()],
                ..RunOptions::default()
            };
            let err = preflight(&options).expect_err(param);
            assert!(err.to_string().contains(param), "{err}");
            assert_eq!(err.exit_code(), 2);
        }
        let options = RunOptions {
            files: vec![("/nonexistent/t.sh".into(), "/t.sh".into())],
            ..RunOptions::default()
        };
        let err = preflight(&options).expect_err("missing file");
        assert!(err.to_string().starts_with("/nonexistent/t.sh: "), "{err}");
    }
}
