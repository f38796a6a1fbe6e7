//! A PCI driver for QEMU's `edu` device (`-device edu`, 1234:11e8): it
//! checks the identification register, computes factorials and copies a
//! page to the device and back by DMA, both finished by an interrupt (MSI
//! where the kernel gives it, else INTx). In the bound device's directory,
//! `/sys/bus/pci/devices/<bdf>/`: `version` (from the identification
//! register), `factorial` (write n; read the 32-bit result), `irq_count`
//! (interrupts handled), `irq_kind` (`msi` or `intx`) and `dma_test`
//! (reading it runs the round trip: `ok`, or the first offset that came
//! back different). Without the device the module loads and does nothing.
#![no_std]

extern crate alloc;

use alloc::boxed::Box;
use core::fmt::Write;
use core::pin::Pin;

use kmod_runtime::alloc::{try_box, GFP_KERNEL};
use kmod_runtime::dma::CoherentBuffer;
use kmod_runtime::error::{EINVAL, ENODEV, ETIMEDOUT};
use kmod_runtime::pci::{
    self, Bar, BusMaster, DeviceId, Enabled, Handler, IrqRegistration, IrqReturn, IrqTypes,
};
use kmod_runtime::pinned_init::try_pin_init;
use kmod_runtime::sync::{Arc, Mutex, SpinLock};
use kmod_runtime::sysfs::{Attribute, DeviceGroup, Page};
use kmod_runtime::wait::WaitQueue;
use kmod_runtime::{new_mutex, new_spinlock, new_wait_queue, pr_err, pr_info, Error, Result};
use pinned_init::pin_data;

kmod_runtime::module! {
    type: EduModule,
    name: "edu",
    license: "GPL",
    author: "kmod-build developers",
    description: "A PCI driver for QEMU's edu device",
}

/// The registers (docs/specs/edu.rst in QEMU), offsets in BAR 0.
const IDENTIFICATION: usize = 0x00;
const FACTORIAL: usize = 0x08;
const STATUS: usize = 0x20;
const IRQ_STATUS: usize = 0x24;
const IRQ_ACK: usize = 0x64;
const DMA_SOURCE: usize = 0x80;
const DMA_DESTINATION: usize = 0x88;
const DMA_COUNT: usize = 0x90;
const DMA_COMMAND: usize = 0x98;

/// STATUS: raise an interrupt when a factorial is done.
const STATUS_IRQ_FACTORIAL: u32 = 0x80;
/// IRQ_STATUS bits: a factorial done, a DMA transfer done.
const IRQ_FACTORIAL: u32 = 0x1;
const IRQ_DMA: u32 = 0x100;
/// DMA_COMMAND: start; direction device to RAM (else RAM to device);
/// raise an interrupt when done.
const DMA_START: u64 = 0x1;
const DMA_TO_RAM: u64 = 0x2;
const DMA_IRQ: u64 = 0x4;
/// The device's own buffer, in its address space; the coherent buffer has
/// its size.
const DEVICE_BUFFER: u64 = 0x40000;
const BUFFER_LEN: usize = 4096;
/// What a transfer copies: all but the last byte, as QEMU up to 8.0 checks
/// the range's end with `<` (hw/misc/edu.c, `within`) and stops the
/// machine on a transfer reaching the buffer's end.
const DMA_LEN: usize = BUFFER_LEN - 1;
/// The addresses the device can reach.
const DMA_BITS: u32 = 28;
/// How long an operation waits for its interrupt: a bounded wait, so
/// that removing the device (which waits for the sysfs callbacks
/// running) is never held up for longer.
const TIMEOUT_MS: u32 = 1000;

struct EduModule {
    _driver: pci::Registration<Edu>,
}

impl kmod_runtime::Module for EduModule {
    fn init() -> Result<Self> {
        let driver = pci::Registration::register(c"edu")?;
        pr_info!("driver registered");
        Ok(EduModule { _driver: driver })
    }
}

/// One bound device: dropped in `remove`, field by field in this order:
/// the files first (waiting for their callbacks), then the interrupt,
/// then bus mastering (no DMA after it), then the mapping and the buffer
/// (with the last owner of `Shared`), then the device disabled.
struct Edu {
    _attributes: DeviceGroup<Shared>,
    _irq: IrqRegistration<Shared>,
    _master: BusMaster,
    _shared: Pin<Arc<Shared>>,
    _enabled: Enabled,
}

/// What the interrupt handler and the files share.
#[pin_data]
struct Shared {
    bar: Bar,
    identification: u32,
    msi: bool,
    #[pin]
    events: SpinLock<Events>,
    #[pin]
    raised: WaitQueue,
    /// One operation at a time, and the DMA buffer it uses.
    #[pin]
    busy: Mutex<CoherentBuffer>,
}

struct Events {
    /// Interrupts handled.
    count: u64,
    /// IRQ_STATUS bits raised and not yet waited for.
    pending: u32,
}

impl Handler for Shared {
    fn handle(&self) -> IrqReturn {
        // The line may be shared (INTx): nothing raised is not ours.
        let status = match self.bar.read32(IRQ_STATUS) {
            Ok(status) if status != 0 => status,
            _ => return IrqReturn::None,
        };
        if self.bar.write32(IRQ_ACK, status).is_err() {
            return IrqReturn::None;
        }
        let mut events = self.events.lock();
        events.count += 1;
        events.pending |= status;
        drop(events);
        self.raised.notify_all();
        IrqReturn::Handled
    }
}

impl Shared {
    /// Forgets an earlier `bit` (one whose wait timed out).
    fn clear(&self, bit: u32) {
        self.events.lock().pending &= !bit;
    }

    /// Waits for the interrupt `bit`, at most `TIMEOUT_MS`.
    fn wait_for(&self, bit: u32) -> Result {
        let mut events = self.events.lock();
        let raised =
            self.raised
                .wait_interruptible_timeout_while(&mut events, TIMEOUT_MS, |events| {
                    events.pending & bit == 0
                })?;
        if !raised {
            return Err(ETIMEDOUT);
        }
        events.pending &= !bit;
        Ok(())
    }

    /// One DMA transfer of `DMA_LEN` bytes, waited for.
    fn transfer(&self, source: u64, destination: u64, command: u64) -> Result {
        self.clear(IRQ_DMA);
        self.bar.write64(DMA_SOURCE, source)?;
        self.bar.write64(DMA_DESTINATION, destination)?;
        self.bar.write64(DMA_COUNT, DMA_LEN as u64)?;
        self.bar
            .write64(DMA_COMMAND, command | DMA_START | DMA_IRQ)?;
        self.wait_for(IRQ_DMA)
    }
}

impl pci::Driver for Edu {
    const ID_TABLE: &'static [DeviceId] = &[DeviceId::new(0x1234, 0x11e8)];

    fn probe(device: &pci::Device, _: &DeviceId) -> Result<Pin<Box<Self>>> {
        let enabled = device.enable()?;
        let bar = device.iomap_region(0, c"edu")?;
        let identification = bar.read32(IDENTIFICATION)?;
        if identification & 0xff != 0xed {
            pr_err!("not an edu device: identification {identification:#010x}");
            return Err(ENODEV);
        }
        let master = device.set_master();
        device.dma_set_mask_and_coherent(DMA_BITS)?;
        let vectors = device.alloc_irq_vectors(1, 1, IrqTypes::MSI_OR_INTX)?;
        let msi = vectors.is_msi();
        let buffer = CoherentBuffer::alloc(device, BUFFER_LEN)?;
        let shared = Arc::pin_init(
            try_pin_init!(Shared {
                bar,
                identification,
                msi,
                events <- new_spinlock!(Events {
                    count: 0,
                    pending: 0,
                }),
                raised <- new_wait_queue!(),
                busy <- new_mutex!(buffer),
            }? Error),
            GFP_KERNEL,
        )?;
        let irq = vectors.request(0, c"edu", shared.clone())?;
        let attributes = DeviceGroup::create(device, shared.clone(), &ATTRIBUTES)?;
        pr_info!(
            "bound {:04x}:{:04x}, version {}.{}, irq {} ({})",
            device.vendor_id(),
            device.device_id(),
            identification >> 24,
            (identification >> 16) & 0xff,
            irq.irq(),
            if msi { "MSI" } else { "INTx" },
        );
        let edu = try_box(Edu {
            _attributes: attributes,
            _irq: irq,
            _master: master,
            _shared: shared,
            _enabled: enabled,
        })?;
        Ok(Box::into_pin(edu))
    }
}

static ATTRIBUTES: [Attribute<Shared>; 5] = [
    Attribute::read_only(c"version", show_version),
    Attribute::read_write(c"factorial", show_factorial, store_factorial),
    Attribute::read_only(c"irq_count", show_irq_count),
    Attribute::read_only(c"irq_kind", show_irq_kind),
    Attribute::read_only(c"dma_test", show_dma_test),
];

fn show_version(shared: &Shared, page: &mut Page) -> Result {
    let id = shared.identification;
    writeln!(page, "{}.{}", id >> 24, (id >> 16) & 0xff)?;
    Ok(())
}

fn show_factorial(shared: &Shared, page: &mut Page) -> Result {
    let _busy = shared.busy.lock();
    writeln!(page, "{}", shared.bar.read32(FACTORIAL)?)?;
    Ok(())
}

/// `n` in decimal: the device computes n! (modulo 2^32) and says when.
fn store_factorial(shared: &Shared, input: &[u8]) -> Result {
    let text = core::str::from_utf8(input)?.trim();
    let n: u32 = text.parse().map_err(|_| EINVAL)?;
    let _busy = shared.busy.lock();
    shared.clear(IRQ_FACTORIAL);
    shared.bar.write32(STATUS, STATUS_IRQ_FACTORIAL)?;
    shared.bar.write32(FACTORIAL, n)?;
    shared.wait_for(IRQ_FACTORIAL)
}

fn show_irq_count(shared: &Shared, page: &mut Page) -> Result {
    let count = shared.events.lock().count;
    writeln!(page, "{count}")?;
    Ok(())
}

fn show_irq_kind(shared: &Shared, page: &mut Page) -> Result {
    writeln!(page, "{}", if shared.msi { "msi" } else { "intx" })?;
    Ok(())
}

/// The byte the round trip writes at `offset`.
fn pattern(offset: usize) -> u8 {
    (offset as u8).wrapping_mul(7) ^ (offset >> 8) as u8 ^ 0x5a
}

/// A page (less its last byte, see `DMA_LEN`) out to the device and back:
/// `ok`, or the first offset that differs.
fn show_dma_test(shared: &Shared, page: &mut Page) -> Result {
    let mut buffer = shared.busy.lock();
    let mut chunk = [0u8; 64];
    for offset in (0..BUFFER_LEN).step_by(chunk.len()) {
        for (i, byte) in chunk.iter_mut().enumerate() {
            *byte = pattern(offset + i);
        }
        buffer.write(offset, &chunk)?;
    }
    let ram = buffer.dma_handle();
    shared.transfer(ram, DEVICE_BUFFER, 0)?;
    for offset in (0..BUFFER_LEN).step_by(chunk.len()) {
        buffer.write(offset, &[0; 64])?;
    }
    shared.transfer(DEVICE_BUFFER, ram, DMA_TO_RAM)?;
    for offset in (0..DMA_LEN).step_by(chunk.len()) {
        let len = chunk.len().min(DMA_LEN - offset);
        let chunk = &mut chunk[..len];
        buffer.read(offset, chunk)?;
        if let Some(i) = (0..len).find(|&i| chunk[i] != pattern(offset + i)) {
            writeln!(page, "mismatch at {}", offset + i)?;
            return Ok(());
        }
    }
    writeln!(page, "ok")?;
    Ok(())
}
