//! `cargo kmod test`: a test build of a module crate (`--cfg kmod_test`,
//! in its own output directory, so the real `.ko` stays), loaded by each
//! kernel it was built for under QEMU, where its init runs the crate's
//! `#[kmod_runtime::tests]` (see `kmod_runtime::test` for the lines they
//! print), reported the way libtest reports.
//!
//! The guest boots with `oops=panic`: an oops in a test (which would
//! leave its runner waiting) ends the run at once, naming the test. After
//! the tests the module is unloaded, and what the kernel printed doing it
//! judged as `cargo kmod run` judges it: a warning or a leak (a test that
//! failed ends its thread without dropping what it held) fails the run.

use std::io::{self, Write};
use std::sync::Mutex;
use std::time::Instant;

use super::build::{build, BuildOptions};
use super::project::{ModuleCrate, Project};
use super::qemu::{self, Console, Guest};
use super::report::{Artifact, Reporter};
use super::run::{tree_of, unload_script, unloaded};
use crate::error::{Error, Result};

/// What `test` is asked for.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// Which kernels, features: as for `cargo kmod build`; each kernel
    /// built for is booted in turn.
    pub build: BuildOptions,
    /// Only tests whose name (`<module>::<function>`) contains it.
    pub filter: Option<String>,
}

/// The symbol `#[kmod_runtime::tests]` defines.
const SUITE_SYMBOL: &str = "__kmod_test_suite";
/// What each line of the tests starts with (after printk's module name).
const LINE_MARK: &str = "kmod-test: ";
const INSMOD: &str = "kmod-test-insmod";

/// Builds the test build of `module`, runs its tests in each kernel and
/// prints the results. Failed tests are [`Error::TestsFailed`]; a kernel
/// that oopsed or hung is an [`Error::Guest`] naming the test it was in.
pub fn test(
    project: &Project,
    module: &ModuleCrate,
    options: &TestOptions,
    reporter: &dyn Reporter,
) -> Result<()> {
    qemu::find_busybox()?;
    if let Some(filter) = &options.filter {
        if filter
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'\0')
        {
            return Err(Error::BadValue {
                what: format!("the test filter {filter:?}"),
                why: "a module parameter cannot hold spaces or NUL".into(),
            });
        }
    }
    let artifacts = build(&project.for_tests(), module, &options.build, reporter)?;
    let mut failed = Vec::new();
    let mut errors = Vec::new();
    for artifact in &artifacts {
        match test_in(artifact, options, reporter) {
            Ok(outcome) => {
                let release = &artifact.release;
                if outcome.failed > 0 {
                    failed.push(format!("{} failed on {release}", outcome.failed));
                }
                if let Some(problem) = outcome.unload_problem {
                    failed.push(format!("after them, on {release}: {problem}"));
                }
            }
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(error) => errors.push(error),
        }
    }
    let mut errors = errors.into_iter();
    if let Some(first) = errors.next() {
        for other in errors {
            reporter.warning(&other.to_string());
        }
        return Err(first);
    }
    if failed.is_empty() {
        return Ok(());
    }
    Err(Error::TestsFailed {
        module: module.name.clone(),
        what: format!("tests failed: {}", failed.join(", ")),
    })
}

/// A test build without `#[kmod_runtime::tests]` would not link: said
/// before Kbuild tries.
pub(crate) fn check_suite(staticlib: &camino::Utf8Path, module: &ModuleCrate) -> Result<()> {
    if crate::kbuild::defines(staticlib, SUITE_SYMBOL)? {
        Ok(())
    } else {
        Err(Error::NoTests {
            module: module.name.clone(),
        })
    }
}

/// What one kernel made of the tests.
struct KernelOutcome {
    /// How many tests failed.
    failed: usize,
    /// What unloading the module after them printed, if not clean.
    unload_problem: Option<String>,
}

/// One kernel: boot, load (which runs the tests), report, unload.
fn test_in(
    artifact: &Artifact,
    options: &TestOptions,
    reporter: &dyn Reporter,
) -> Result<KernelOutcome> {
    let tree = tree_of(&artifact.release, &options.build.kernels)?;
    let ko = &artifact.path;
    let file_name = ko.file_name().ok_or_else(|| Error::Internal {
        what: format!("{ko}: a built module without a file name"),
    })?;
    // Kbuild names a module after its file, `-` made `_`; printk prefixes it.
    let name = file_name.trim_end_matches(".ko").replace('-', "_");
    let filter = options
        .filter
        .as_deref()
        .map(|f| format!(" kmod_test_filter={f}"))
        .unwrap_or_default();
    let script = format!(
        "cd /\n\
         # The tests' lines on the console as they are printed.\n\
         dmesg -n 8\n\
         section {INSMOD} insmod /modules/{file_name}{filter} || exit 1\n\
         {unload}",
        unload = unload_script(&name),
    );
    let mut guest = Guest::new(&tree.image());
    guest
        .file_at(ko, &format!("/modules/{file_name}"))
        .kernel_arg("oops=panic");
    reporter.status("Testing", &format!("{name} in QEMU ({})", tree.release));
    let started = Instant::now();
    // Kept whole even when the guest dies: the tests' lines name the one
    // that was running.
    let console = Mutex::new(Vec::new());
    let mut output = |bytes: &[u8]| {
        console
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes)
    };
    let run = guest.run_attached(
        &script,
        Console {
            output: &mut output,
            input: None,
        },
    );
    let console = console
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let console = String::from_utf8_lossy(&console).replace('\r', "");
    let results = Results::parse(&console, &format!("{name}: {LINE_MARK}"));
    let mut out: Box<dyn Write> = if reporter.cargo_message_format() == "json" {
        Box::new(io::stderr())
    } else {
        Box::new(io::stdout())
    };
    let failed = results
        .print(&mut *out, &tree.release, started)
        .map_err(|e| Error::io("stdout", e))?;
    let log = match run {
        Ok(log) => log,
        Err(Error::Guest { image, why, tail }) => {
            let why = match &results.running {
                Some(test) => format!(
                    "the {} kernel died or hung (oops, panic, timeout) in test {} (its log is above): {why}",
                    tree.release, test.name
                ),
                None => why,
            };
            return Err(Error::Guest { image, why, tail });
        }
        Err(other) => return Err(other),
    };
    let insmod = log.expect_section(INSMOD)?;
    if insmod.rc != 0 {
        return Err(Error::BadModule {
            module: ko.to_owned(),
            reason: format!(
                "the {} kernel refused the test build: insmod exited {}\n{}",
                tree.release,
                insmod.rc,
                insmod.output.trim_end()
            ),
        });
    }
    if results.summary.is_none() {
        return Err(log.error(format!(
            "the tests of {name} printed no result line on {}",
            tree.release
        )));
    }
    let unload_problem = match unloaded(&log, &name, &tree.release) {
        Ok(lines) => {
            reporter.status(
                "Unloaded",
                &format!(
                    "{name} ({}): the kernel printed {lines} line(s), no warning, oops or leak",
                    tree.release
                ),
            );
            None
        }
        Err(Error::Guest { why, .. }) => {
            writeln!(out, "unload after the tests ... FAILED: {why}")
                .map_err(|e| Error::io("stdout", e))?;
            Some(why)
        }
        Err(other) => return Err(other),
    };
    Ok(KernelOutcome {
        failed,
        unload_problem,
    })
}

/// One test's outcome.
#[derive(Debug, Default)]
struct Outcome {
    name: String,
    /// `None`: passed; else its message (unescaped).
    failure: Option<String>,
    /// The kernel's other lines while it ran.
    log: Vec<String>,
}

/// What the tests printed on one kernel.
#[derive(Debug, Default)]
struct Results {
    /// `running N of M`.
    planned: Option<usize>,
    done: Vec<Outcome>,
    /// Started and not finished: the guest died in it.
    running: Option<Outcome>,
    /// The result line as printed.
    summary: Option<String>,
}

impl Results {
    /// The lines after `mark` (`<module>: kmod-test: `) in `console`.
    fn parse(console: &str, mark: &str) -> Results {
        let mut results = Results::default();
        for line in console.lines() {
            let Some((_, rest)) = line.split_once(mark) else {
                if let Some(test) = &mut results.running {
                    if line.trim_start().starts_with('[') {
                        test.log.push(line.to_owned());
                    }
                }
                continue;
            };
            if let Some(counts) = rest.strip_prefix("running ") {
                results.planned = counts.split(' ').next().and_then(|n| n.parse().ok());
            } else if let Some(summary) = rest.strip_prefix("result: ") {
                results.summary = Some(summary.to_owned());
            } else if let Some((name, what)) = rest.split_once(' ') {
                if what == "start" {
                    results.running = Some(Outcome {
                        name: name.to_owned(),
                        ..Outcome::default()
                    });
                    continue;
                }
                let mut test = results
                    .running
                    .take()
                    .filter(|t| t.name == name)
                    .unwrap_or_else(|| Outcome {
                        name: name.to_owned(),
                        ..Outcome::default()
                    });
                if let Some(message) = what.strip_prefix("FAILED: ") {
                    test.failure = Some(unescape(message));
                } else if what != "ok" {
                    test.failure = Some(what.to_owned());
                }
                results.done.push(test);
            }
        }
        results
    }

    /// libtest's report; how many failed (a test the guest died in too).
    fn print(&self, out: &mut dyn Write, release: &str, started: Instant) -> io::Result<usize> {
        let planned = self.planned.unwrap_or(self.done.len());
        writeln!(out, "\nrunning {planned} tests ({release})")?;
        for test in &self.done {
            let verdict = if test.failure.is_some() {
                "FAILED"
            } else {
                "ok"
            };
            writeln!(out, "test {} ... {verdict}", test.name)?;
        }
        if let Some(test) = &self.running {
            writeln!(
                out,
                "test {} ... CRASHED (the kernel died in it)",
                test.name
            )?;
        }
        let failures: Vec<&Outcome> = self
            .done
            .iter()
            .filter(|t| t.failure.is_some())
            .chain(&self.running)
            .collect();
        if !failures.is_empty() {
            writeln!(out, "\nfailures:\n")?;
            for test in &failures {
                writeln!(out, "---- {} ({release}) ----", test.name)?;
                if let Some(message) = &test.failure {
                    writeln!(out, "{message}")?;
                }
                if !test.log.is_empty() {
                    writeln!(out, "kernel log:")?;
                    for line in &test.log {
                        writeln!(out, "  {line}")?;
                    }
                }
                writeln!(out)?;
            }
            writeln!(out, "failures:")?;
            for test in &failures {
                writeln!(out, "    {}", test.name)?;
            }
        }
        let passed = self.done.len() + usize::from(self.running.is_some()) - failures.len();
        // `N filtered out`, as the kernel counted.
        let filtered = self
            .summary
            .as_deref()
            .and_then(|s| s.rsplit_once("; "))
            .map_or(String::new(), |(_, filtered)| format!("{filtered}; "));
        writeln!(
            out,
            "\ntest result: {}. {passed} passed; {} failed; {filtered}finished in {:.2}s",
            if failures.is_empty() { "ok" } else { "FAILED" },
            failures.len(),
            started.elapsed().as_secs_f64()
        )?;
        Ok(failures.len())
    }
}

/// A message as the runtime escaped it: `\n` and `\\`.
fn unescape(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some('n')) => {
                out.push('\n');
                chars.next();
            }
            ('\\', Some('\\')) => {
                out.push('\\');
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_run() {
        let console = "\
[    1.0] boot line\n\
[    2.0] m: kmod-test: running 2 of 3\n\
[    2.1] m: kmod-test: tests::a start\n\
[    2.2] m: hello from a\n\
[    2.3] m: kmod-test: tests::a ok\n\
[    2.4] m: kmod-test: tests::b start\n\
[    2.5] m: kmod-test: tests::b FAILED: assertion failed\\n  left: 1 \\\\ at src/lib.rs:3:5\n\
[    2.6] m: kmod-test: result: 1 passed; 1 failed; 1 filtered out\n";
        let results = Results::parse(console, "m: kmod-test: ");
        assert_eq!(results.planned, Some(2));
        assert_eq!(results.done.len(), 2);
        assert_eq!(results.done[0].failure, None);
        assert_eq!(results.done[0].log, ["[    2.2] m: hello from a"]);
        assert_eq!(
            results.done[1].failure.as_deref(),
            Some("assertion failed\n  left: 1 \\ at src/lib.rs:3:5")
        );
        assert!(results.running.is_none());
        let mut out = Vec::new();
        let failed = results.print(&mut out, "6.1", Instant::now()).unwrap();
        assert_eq!(failed, 1);
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("test tests::b ... FAILED"), "{out}");
        assert!(
            out.contains("test result: FAILED. 1 passed; 1 failed; 1 filtered out;"),
            "{out}"
        );
    }

    #[test]
    fn names_the_test_the_kernel_died_in() {
        let console = "\
[    2.0] m: kmod-test: running 1 of 1\n\
[    2.1] m: kmod-test: tests::oops start\n\
[    2.2] BUG: kernel NULL pointer dereference\n";
        let results = Results::parse(console, "m: kmod-test: ");
        let running = results.running.expect("a test was running");
        assert_eq!(running.name, "tests::oops");
        assert_eq!(
            running.log,
            ["[    2.2] BUG: kernel NULL pointer dereference"]
        );
    }
}
