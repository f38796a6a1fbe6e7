//! The runtime's examples built for a kernel and exercised inside it: one
//! boot loads, uses and unloads `params`, `chardev`, `ticker`, `counter`
//! and `worker`, then the
//! checks below read what the guest printed. Another boot loads the
//! `panics` fixture to see the panic handler at work.

use anyhow::{ensure, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kmod_build::{Errno, KernelTree};
use xshell::Shell;

use super::ensure_clean;
use crate::workspace::ModuleCrate;
use kmod_build::driver::qemu::{Guest, GuestLog};

const EXAMPLES: &[&str] = &["params", "chardev", "ticker", "counter", "worker"];

const SCRIPT: &str = r#"
section params_refused insmod /modules/params.ko greetings=99
section params_ports_bad insmod /modules/params.ko ports=1,x
section params_ports_many insmod /modules/params.ko ports=1,2,3,4,5
section params_load insmod /modules/params.ko greetings=3 shout=1 whom=kernel ports=80,443
section params_sysfs sh -c 'for p in greetings shout whom ports flags; do echo "$p=$(cat /sys/module/params/parameters/$p)"; done'
section params_level_set sh -c 'echo 7 >/sys/module/params/parameters/level && cat /sys/module/params/parameters/level'
section params_level_bad sh -c 'echo seven >/sys/module/params/parameters/level'
section params_flags_set sh -c 'echo 1,0 >/sys/module/params/parameters/flags && cat /sys/module/params/parameters/flags'
section params_flags_many sh -c 'echo 1,1,1,1 >/sys/module/params/parameters/flags'
section params_flags_bad sh -c 'echo 0,x >/sys/module/params/parameters/flags'
section params_flags_partial cat /sys/module/params/parameters/flags
section params_flags_after sh -c 'echo 1,0 >/sys/module/params/parameters/flags && cat /sys/module/params/parameters/flags'
section params_modes sh -c 'cd /sys/module/params/parameters && stat -c "%a %n" greetings level ports flags'
section params_group sh -c 'cd /sys/kernel/params && stat -c "%a %n" * && cat greeting threshold'
section params_threshold_set sh -c 'echo 42 >/sys/kernel/params/threshold && cat /sys/kernel/params/threshold'
section params_threshold_bad sh -c 'echo bad >/sys/kernel/params/threshold'
section params_threshold_high sh -c 'echo 101 >/sys/kernel/params/threshold'
section params_threshold_kept cat /sys/kernel/params/threshold
section params_greeting_ro sh -c 'echo hi >/sys/kernel/params/greeting'
section params_unload rmmod params
section params_gone ls -d /sys/module/params
section params_group_gone ls -d /sys/kernel/params

section chardev_load insmod /modules/chardev.ko
section chardev_node ls -l /dev/chardev
exec 3<>/dev/chardev
section chardev_write sh -c "printf 'hello, chardev' >&3"
section chardev_read5 sh -c 'dd bs=5 count=1 <&3 2>/dev/null'
section chardev_read5_again sh -c 'dd bs=5 count=1 <&3 2>/dev/null'
section chardev_read_rest sh -c 'cat <&3'
section chardev_not_text sh -c "printf '\377' | dd 2>&1 >&3"
section chardev_other_open sh -c 'printf other >/dev/chardev && cat /dev/chardev'
section chardev_full sh -c "head -c 5000 /dev/zero | tr '\\0' a | dd bs=1000 2>&1 >/dev/chardev"
section chardev_after sh -c 'printf "!" >&3 && cat <&3'
exec 3>&-
section chardev_unload rmmod chardev
section chardev_gone ls -d /dev/chardev /sys/module/chardev

section ticker_load insmod /modules/ticker.ko period_ms=50
sleep 1
section ticker_first cat /proc/ticker
sleep 1
section ticker_second cat /proc/ticker
section ticker_unload rmmod ticker
sleep 0.5
section ticker_gone ls -d /proc/ticker /sys/module/ticker
section counter_load insmod /modules/counter.ko
section counter_64 /modules/counter-client
section counter_32 /modules/counter-client-32
section counter_unload rmmod counter
section counter_gone ls -d /dev/counter /sys/module/counter

section worker_load insmod /modules/worker.ko period_ms=2000
section worker_client /modules/worker-client
section worker_two_readers sh -c '(head -n 1 /dev/worker & head -n 1 /dev/worker; wait) | uniq -c'
section worker_unload rmmod worker
section worker_fast insmod /modules/worker.ko period_ms=1 work_ms=20
section worker_closes sh -c 'for i in $(seq 20); do head -n 1 /dev/worker; done'
cat /dev/worker >/dev/null &
sleep 0.5
section worker_busy rmmod worker
kill $!
wait
section worker_fast_unload rmmod worker
section worker_gone ls -d /dev/worker /sys/module/worker

section lsmod lsmod
section log dmesg -r
"#;

/// Builds the examples for `tree`, boots it once and checks each one.
pub fn run(sh: &Shell, tree: &KernelTree) -> Result<()> {
    let vmlinuz = tree.image();
    let mut guest = Guest::new(&vmlinuz);
    // Two CPUs: the ticker's timer and its readers, and each lock's users,
    // can then meet for real.
    guest.cpus(2);
    for name in EXAMPLES {
        let ko = ModuleCrate::find(name)?.build(tree)?;
        guest.file(&ko);
    }
    let clients = counter_clients(sh, tree)?;
    for client in &clients {
        guest.file(client);
    }
    guest.file(&static_client(sh, tree, "worker", Width::Native)?);
    // Without a 32-bit client (arm64: no 32-bit ARM cross compiler is
    // installed) compat_ioctl goes untested.
    let script = if clients.len() == 2 {
        SCRIPT.to_owned()
    } else {
        SCRIPT.replace(COUNTER_32, "")
    };
    let log = guest.run(&script)?;
    let kernel_log = log.expect_section("log")?.output;
    params(&log, kernel_log).context("params")?;
    chardev(&log, kernel_log).context("chardev")?;
    ticker(&log, kernel_log).context("ticker")?;
    counter(&log, kernel_log, clients.len() == 2).context("counter")?;
    worker(&log, kernel_log).context("worker")?;
    ensure!(
        log.expect_section("lsmod")?.output.lines().count() <= 1,
        "modules left loaded:\n{}",
        log.expect_section("lsmod")?.output
    );
    ensure_clean(kernel_log.lines())?;
    // The runtime counts allocations and reports any left after exit.
    ensure!(
        !kernel_log.contains("memory leak"),
        "an example leaked memory:\n{kernel_log}"
    );
    eprintln!(
        "    {} ran the examples in {:.1}s",
        tree.release,
        log.elapsed.as_secs_f64()
    );
    panic_handler(tree, &vmlinuz).context("panic handler")
}

/// A panic in `init` logs where it happened and oopses the `insmod` task
/// only: the kernel goes on running the script.
fn panic_handler(tree: &KernelTree, vmlinuz: &Utf8Path) -> Result<()> {
    let ko = ModuleCrate::find("panics")?.build(tree)?;
    let log = Guest::new(vmlinuz).file(&ko).run(
        "section insmod insmod /modules/panics.ko
         section alive echo alive
         section log dmesg -r
",
    )?;
    ensure!(
        log.expect_section("insmod")?.rc != 0,
        "insmod of a module whose init panics succeeded"
    );
    expect_output(&log, &[("alive", "alive\n")])?;
    let kernel_log = log.expect_section("log")?.output;
    // KERN_EMERG (0), with the file and line of the out-of-bounds index.
    ensure!(
        kernel_log.lines().any(|line| line.starts_with("<0>[")
            && line.contains("] panics: panicked at xtask/fixtures/panics/src/lib.rs:25:")
            && line.ends_with(": index out of bounds: the len is 3 but the index is 7")),
        "no panic message at KERN_EMERG in the kernel log:\n{kernel_log}"
    );
    ensure!(
        kernel_log.contains("kernel BUG at") && !kernel_log.contains("Kernel panic"),
        "no BUG() oops, or a kernel panic:\n{kernel_log}"
    );
    Ok(())
}

/// Sections that must have succeeded and printed exactly `expected`.
pub(super) fn expect_output(log: &GuestLog, checks: &[(&str, &str)]) -> Result<()> {
    for (section, expected) in checks {
        let found = log.expect_section(section)?;
        ensure!(
            found.rc == 0 && found.output == *expected,
            "{section}: expected {expected:?} (rc 0), got {:?} (rc {})",
            found.output,
            found.rc
        );
    }
    Ok(())
}

/// Sections that must have failed, with the shell printing the errno's
/// `strerror` (any failure for `None`, e.g. `ls` of what unloading removed).
pub(super) fn expect_failure(log: &GuestLog, checks: &[(&str, Option<Errno>)]) -> Result<()> {
    for (section, errno) in checks {
        let found = log.expect_section(section)?;
        let says = errno.map_or("", Errno::message);
        ensure!(
            found.rc != 0 && found.output.contains(says),
            "{section}: expected a failure with {errno:?} ({says:?}), got {:?} (rc {})",
            found.output,
            found.rc
        );
    }
    Ok(())
}

/// A `dmesg -r` line at `level` (6 is KERN_INFO) ending with `message`.
fn expect_logged(kernel_log: &str, level: u8, message: &str) -> Result<()> {
    ensure!(
        kernel_log
            .lines()
            .any(|line| line.starts_with(&format!("<{level}>[")) && line.ends_with(message)),
        "no `<{level}>... {message}` in the kernel log:\n{kernel_log}"
    );
    Ok(())
}

fn params(log: &GuestLog, kernel_log: &str) -> Result<()> {
    let refused = log.expect_section("params_refused")?.insmod();
    ensure!(
        refused == Ok(Some(Errno::EINVAL)),
        "greetings=99: insmod gave {refused:?}"
    );
    expect_logged(kernel_log, 3, "] params: greetings=99 is not in 0..=10")?;
    // A value the element's parser refuses, or more than the array holds.
    for section in ["params_ports_bad", "params_ports_many"] {
        let refused = log.expect_section(section)?.insmod();
        ensure!(
            refused == Ok(Some(Errno::EINVAL)),
            "{section}: insmod gave {refused:?}"
        );
    }
    expect_logged(kernel_log, 3, "ports: can only take 4 arguments")?;
    expect_output(
        log,
        &[
            ("params_load", ""),
            (
                "params_sysfs",
                "greetings=3\nshout=Y\nwhom=kernel\nports=80,443\nflags=N,N,N\n",
            ),
            ("params_level_set", "7\n"),
            ("params_flags_set", "Y,N\n"),
            // The kernel's parser set the value before the bad one.
            ("params_flags_partial", "N\n"),
            ("params_flags_after", "Y,N\n"),
            (
                "params_modes",
                "444 greetings\n644 level\n444 ports\n644 flags\n",
            ),
            (
                "params_group",
                "444 greeting\n644 threshold\nHELLO, KERNEL\n50\n",
            ),
            ("params_threshold_set", "42\n"),
            // The refused writes left it as it was.
            ("params_threshold_kept", "42\n"),
            ("params_unload", ""),
        ],
    )?;
    expect_logged(kernel_log, 6, "] params: ports [80, 443]")?;
    expect_failure(
        log,
        &[
            ("params_flags_many", Some(Errno::EINVAL)),
            ("params_flags_bad", Some(Errno::EINVAL)),
            ("params_threshold_bad", Some(Errno::EINVAL)),
            ("params_threshold_high", Some(Errno::EINVAL)),
        ],
    )?;
    // 0444: not even root opens it for writing (EACCES).
    let read_only = log.expect_section("params_greeting_ro")?;
    ensure!(
        read_only.rc != 0 && read_only.output.contains("Permission denied"),
        "writing /sys/kernel/params/greeting: rc {}, {:?}",
        read_only.rc,
        read_only.output
    );
    expect_logged(
        kernel_log,
        6,
        "] params: greetings=3 shout=true whom=kernel",
    )?;
    for number in 1..=3 {
        expect_logged(
            kernel_log,
            6,
            &format!("] params: {number}/3: HELLO, KERNEL"),
        )?;
    }
    // The kernel's parser refuses what is not an int; the module saw the
    // value sysfs set.
    expect_failure(log, &[("params_level_bad", Some(Errno::EINVAL))])?;
    expect_logged(
        kernel_log,
        6,
        "] params: unloaded at level 7, flags [true, false], threshold 42",
    )?;
    expect_failure(log, &[("params_gone", None), ("params_group_gone", None)])
}

fn chardev(log: &GuestLog, kernel_log: &str) -> Result<()> {
    let node = log.expect_section("chardev_node")?;
    ensure!(
        node.rc == 0 && node.output.starts_with('c'),
        "/dev/chardev is not a character device: {}",
        node.output
    );
    expect_output(
        log,
        &[
            ("chardev_load", ""),
            ("chardev_write", ""),
            // Partial reads continue where the last one stopped.
            ("chardev_read5", "hello"),
            ("chardev_read5_again", ", cha"),
            ("chardev_read_rest", "rdev"),
            // Another open file has its own, empty, text.
            ("chardev_other_open", ""),
            // The refused write left the first file's text as it was.
            ("chardev_after", "!"),
            ("chardev_unload", ""),
        ],
    )?;
    expect_failure(
        log,
        &[
            // A byte that is not UTF-8.
            ("chardev_not_text", Some(Errno::EINVAL)),
            // 4 KiB fit in one open file, the fifth 1000-byte write does not.
            ("chardev_full", Some(Errno::ENOSPC)),
        ],
    )?;
    expect_logged(kernel_log, 6, "] chardev: registered /dev/chardev")?;
    expect_logged(kernel_log, 6, "] chardev: removing /dev/chardev")?;
    expect_failure(log, &[("chardev_gone", None)])
}

fn ticker(log: &GuestLog, kernel_log: &str) -> Result<()> {
    expect_output(log, &[("ticker_load", ""), ("ticker_unload", "")])?;
    let ticks = |section: &str| -> Result<u64> {
        let output = log.expect_section(section)?.output;
        output
            .lines()
            .find_map(|line| line.strip_prefix("ticks: ")?.parse().ok())
            .with_context(|| format!("{section}: no `ticks: N` in {output:?}"))
    };
    let (first, second) = (ticks("ticker_first")?, ticks("ticker_second")?);
    ensure!(
        0 < first && first < second,
        "the counter did not advance: {first}, then {second}"
    );
    expect_logged(
        kernel_log,
        6,
        "] ticker: ticking every 50 ms in /proc/ticker",
    )?;
    let stopped = kernel_log
        .lines()
        .find_map(|line| {
            line.split("] ticker: stopping after ")
                .nth(1)?
                .strip_suffix(" ticks")?
                .parse::<u64>()
                .ok()
        })
        .context("no `ticker: stopping after N ticks` in the kernel log")?;
    ensure!(
        stopped >= second,
        "stopped after {stopped} ticks, fewer than the {second} read before"
    );
    expect_failure(log, &[("ticker_gone", None)])
}

/// The script's line that runs the 32-bit client.
const COUNTER_32: &str = "section counter_32 /modules/counter-client-32\n";

/// `examples/counter/client.c`, static, for the guest: as a 64-bit program
/// and, on x86, as a 32-bit one (which goes through `compat_ioctl`).
fn counter_clients(sh: &Shell, tree: &KernelTree) -> Result<Vec<Utf8PathBuf>> {
    let client = static_client(sh, tree, "counter", Width::Native)?;
    if tree.arch == "arm64" {
        return Ok(vec![client]);
    }
    Ok(vec![
        client,
        static_client(sh, tree, "counter", Width::X86_32)?,
    ])
}

/// Which program `static_client` builds.
#[derive(PartialEq)]
enum Width {
    /// For the tree's architecture.
    Native,
    /// 32-bit x86, for compat system calls.
    X86_32,
}

/// `examples/<example>/client.c` built static for the guest, as
/// `<example>-client` (`-32` for 32-bit x86).
fn static_client(
    sh: &Shell,
    tree: &KernelTree,
    example: &str,
    width: Width,
) -> Result<Utf8PathBuf> {
    let source = crate::project_root().join(format!("examples/{example}/client.c"));
    let out = ModuleCrate::find(example)?.output_dir(tree);
    if width == Width::X86_32 {
        let client = out.join(format!("{example}-client-32"));
        // x86's <asm/*.h> serve both widths; gcc-multilib, which links them
        // into /usr/include, conflicts with every cross compiler, so they are
        // looked for after the 32-bit headers instead.
        let asm = "/usr/include/x86_64-linux-gnu";
        xshell::cmd!(
            sh,
            "gcc -m32 -static -O2 -Wall -Werror -idirafter {asm} -o {client} {source}"
        )
        .run()
        .with_context(|| {
            format!("building the 32-bit {example} client (apt-get install libc6-dev-i386 gcc-12-multilib)")
        })?;
        return Ok(client);
    }
    let client = out.join(format!("{example}-client"));
    if tree.arch == "arm64" {
        xshell::cmd!(
            sh,
            "aarch64-linux-gnu-gcc -static -O2 -Wall -Werror -o {client} {source}"
        )
        .run()
        .with_context(|| {
            format!("building the arm64 {example} client (apt-get install gcc-aarch64-linux-gnu)")
        })?;
    } else {
        xshell::cmd!(sh, "gcc -static -O2 -Wall -Werror -o {client} {source}")
            .run()
            .with_context(|| {
                format!("building the 64-bit {example} client (apt-get install gcc libc6-dev)")
            })?;
    }
    Ok(client)
}

fn counter(log: &GuestLog, kernel_log: &str, with_32_bit: bool) -> Result<()> {
    // The same answers for both: the 32-bit client's calls went through
    // compat_ioctl. `client.c` computes the numbers with C's macros. Then
    // O_NONBLOCK reads, poll, and children asleep in poll and read, woken
    // by an ioctl or interrupted by a signal.
    let expected = "get 41\n\
                    add 1 -> 42\n\
                    add max: Value too large for defined data type\n\
                    after reset 0\n\
                    get32: Inappropriate ioctl for device\n\
                    unknown: Inappropriate ioctl for device\n\
                    bad pointer: Bad address\n\
                    other open 0\n\
                    nonblocking read: Resource temporarily unavailable\n\
                    poll 0, revents 0\n\
                    poll 1, revents 0x1\n\
                    read 8: 7\n\
                    read again: Resource temporarily unavailable\n\
                    child asleep\n\
                    child poll 1, revents 0x1\n\
                    child read 8\n\
                    child asleep\n\
                    child read 9\n\
                    child asleep\n\
                    child read: Interrupted system call\n";
    let mut sections = vec![("counter_load", ""), ("counter_64", expected)];
    if with_32_bit {
        sections.push(("counter_32", expected));
    }
    sections.push(("counter_unload", ""));
    expect_output(log, &sections)?;
    expect_logged(kernel_log, 6, "] counter: registered /dev/counter")?;
    expect_failure(log, &[("counter_gone", None)])
}

fn worker(log: &GuestLog, kernel_log: &str) -> Result<()> {
    // One feed for the module, from `line 0` at load (2 s apart here); a
    // file reads the lines made after its open, and a read gives what
    // fits and leaves the rest.
    let client = "nonblocking read: Resource temporarily unavailable\n\
                  interrupted read: Interrupted system call\n\
                  read 7: line 1\n\
                  read 3: lin\n\
                  read 4: e 2\n";
    expect_output(
        log,
        &[
            ("worker_load", ""),
            ("worker_client", client),
            // Two processes blocked on two files, both woken by the one
            // line the feed made next.
            ("worker_two_readers", "      2 line 3\n"),
            ("worker_unload", ""),
            ("worker_fast", ""),
            ("worker_fast_unload", ""),
        ],
    )?;
    // Twenty files opened, read once and closed, the work (20 ms asleep,
    // queued again every 1 ms) running or pending then: each gets a line
    // made after the one before it closed.
    let closes = log.expect_section("worker_closes")?;
    let lines: Vec<u64> = closes
        .output
        .lines()
        .filter_map(|line| line.strip_prefix("line ")?.parse().ok())
        .collect();
    ensure!(
        closes.rc == 0
            && lines.len() == 20
            && closes.output.lines().count() == 20
            && lines.windows(2).all(|pair| pair[0] < pair[1]),
        "expected 20 lines `line N`, N increasing: rc {}, {:?}",
        closes.rc,
        closes.output
    );
    expect_logged(
        kernel_log,
        6,
        "] worker: first line made, one every 2000 ms",
    )?;
    expect_logged(kernel_log, 6, "] worker: first line made, one every 1 ms")?;
    let made: Vec<u64> = kernel_log
        .lines()
        .filter_map(|line| {
            line.split("] worker: unloading after ")
                .nth(1)?
                .strip_suffix(" lines")?
                .parse()
                .ok()
        })
        .collect();
    // The first load made lines 0 to 3 at least (what was read); the
    // second at least up to the last line the twenty files read.
    let last = lines.last().copied().unwrap_or_default();
    ensure!(
        made.len() == 2 && made[0] >= 4 && made[1] > last,
        "expected two `worker: unloading after N lines`, N >= 4 then > {last}: {made:?}"
    );
    // A reader blocked in `read` holds the module.
    let busy = log.expect_section("worker_busy")?;
    ensure!(
        busy.rc != 0 && busy.output.contains("worker"),
        "rmmod with a reader blocked: rc {}, {:?}",
        busy.rc,
        busy.output
    );
    expect_failure(log, &[("worker_gone", None)])
}
