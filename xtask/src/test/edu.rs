//! `examples/edu` driving QEMU's `edu` device: a boot with the device
//! (MSI), another with `pci=nomsi` (INTx), each: (probe, the identification, factorials and DMA finished by interrupts,
//! unbind and bind through sysfs, an unbind while a DMA read waits, rmmod
//! while bound); one without it (the module loads and does nothing).

use anyhow::{ensure, Context, Result};
use camino::Utf8Path;
use kmod_build::driver::qemu::Guest;
use kmod_build::KernelTree;

use super::ensure_clean;
use super::examples::{expect_failure, expect_output};
use crate::workspace::ModuleCrate;

const WITH_DEVICE: &str = r#"
section load insmod /modules/edu.ko
B=$(ls /sys/bus/pci/drivers/edu | grep '^0000:')
D=/sys/bus/pci/devices/$B
section bound sh -c "ls /sys/bus/pci/drivers/edu | grep -c '^0000:'"
section files sh -c "cd $D && stat -c '%a %n' version factorial irq_count irq_kind dma_test"
section version cat $D/version
section kind cat $D/irq_kind
section irqs_before cat $D/irq_count
section fact5 sh -c "echo 5 >$D/factorial && cat $D/factorial"
section fact12 sh -c "echo 12 >$D/factorial && cat $D/factorial"
section fact_bad sh -c "echo five >$D/factorial"
section irqs_fact cat $D/irq_count
section dma cat $D/dma_test
section irqs_dma cat $D/irq_count
section unbind sh -c "echo $B >/sys/bus/pci/drivers/edu/unbind"
section unbound ls $D/factorial
section bind sh -c "echo $B >/sys/bus/pci/drivers/edu/bind"
section rebound_irqs cat $D/irq_count
section rebound_fact sh -c "echo 6 >$D/factorial && cat $D/factorial"
section rebound_dma cat $D/dma_test
exec 3<$D/dma_test
cat <&3 >/tmp/racing 2>&1 &
sleep 0.1
section unbind_reading sh -c "echo $B >/sys/bus/pci/drivers/edu/unbind"
wait
exec 3<&-
section racing cat /tmp/racing
section bind_again sh -c "echo $B >/sys/bus/pci/drivers/edu/bind && cat $D/dma_test"
section unload rmmod edu
section gone ls -d /sys/module/edu /sys/bus/pci/drivers/edu $D/factorial
section log dmesg -r
"#;

const WITHOUT_DEVICE: &str = r#"
section load insmod /modules/edu.ko
section driver ls /sys/bus/pci/drivers/edu
section unload rmmod edu
section gone ls -d /sys/module/edu
section log dmesg -r
"#;

pub fn run(tree: &KernelTree) -> Result<()> {
    let ko = ModuleCrate::find("edu")?.build(tree)?;
    let vmlinuz = tree.image();
    with_device(tree, &ko, Interrupts::Msi).context("with the device")?;
    with_device(tree, &ko, Interrupts::Intx).context("with the device, pci=nomsi")?;
    let log = Guest::new(&vmlinuz)
        .file(&ko)
        .run(WITHOUT_DEVICE)
        .context("without the device")?;
    let driver = log.expect_section("driver")?.output;
    ensure!(
        !driver.contains("0000:"),
        "without the device, edu bound something: {driver}"
    );
    expect_output(&log, &[("load", ""), ("unload", "")])?;
    expect_failure(&log, &[("gone", None)])?;
    let kernel_log = log.expect_section("log")?.output;
    ensure!(
        kernel_log.contains("] edu: driver registered") && !kernel_log.contains("] edu: bound"),
        "without the device: no registration, or a probe:\n{kernel_log}"
    );
    ensure_clean(kernel_log.lines())?;
    ensure!(
        !kernel_log.contains("memory leak"),
        "edu leaked memory without the device:\n{kernel_log}"
    );
    Ok(())
}

/// MSI (the kernel gives it on QEMU's PC), or INTx (`pci=nomsi`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Interrupts {
    Msi,
    Intx,
}

fn with_device(tree: &KernelTree, ko: &Utf8Path, interrupts: Interrupts) -> Result<()> {
    let mut guest = Guest::new(&tree.image());
    guest.cpus(2).qemu_arg("-device").qemu_arg("edu").file(ko);
    if interrupts == Interrupts::Intx {
        guest.kernel_arg("pci=nomsi");
    }
    let log = guest.run(WITH_DEVICE)?;
    let kind = log.expect_section("kind")?.output.trim().to_owned();
    expect_output(
        &log,
        &[
            ("load", ""),
            ("bound", "1\n"),
            (
                "files",
                "444 version\n644 factorial\n444 irq_count\n444 irq_kind\n444 dma_test\n",
            ),
            ("version", "1.0\n"),
            ("irqs_before", "0\n"),
            ("fact5", "120\n"),
            ("fact12", "479001600\n"),
            // Two factorials, one interrupt each.
            ("irqs_fact", "2\n"),
            ("dma", "ok\n"),
            // Two transfers, one interrupt each.
            ("irqs_dma", "4\n"),
            ("unbind", ""),
            ("bind", ""),
            // A new binding, new driver data.
            ("rebound_irqs", "0\n"),
            ("rebound_fact", "720\n"),
            ("rebound_dma", "ok\n"),
            ("unbind_reading", ""),
            ("bind_again", "ok\n"),
            ("unload", ""),
        ],
    )?;
    expect_failure(
        &log,
        &[
            ("fact_bad", Some(kmod_build::Errno::EINVAL)),
            ("unbound", None),
            ("gone", None),
        ],
    )?;
    // The read either finished before the files went (removal waits for
    // it) or, started too late, found the device gone.
    let racing = log.expect_section("racing")?.output;
    ensure!(
        racing == "ok\n" || racing.contains("No such device"),
        "a dma_test read across an unbind gave {racing:?}"
    );
    ensure!(kind == "msi" || kind == "intx", "irq_kind says {kind:?}");
    let kernel_log = log.expect_section("log")?.output;
    let bound = kernel_log
        .lines()
        .filter(|line| line.contains("] edu: bound 1234:11e8, version 1.0, irq "))
        .count();
    ensure!(
        bound == 3,
        "expected 3 probes (load, bind, bind again) in the kernel log, found {bound}:\n{kernel_log}"
    );
    ensure_clean(kernel_log.lines())?;
    ensure!(
        !kernel_log.contains("memory leak"),
        "edu leaked memory:\n{kernel_log}"
    );
    eprintln!(
        "    {}: edu bound with {} interrupts, read across an unbind gave {:?}",
        tree.release,
        kind.to_uppercase(),
        racing.trim()
    );
    Ok(())
}
