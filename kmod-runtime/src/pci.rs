//! PCI drivers: a [`Registration`] of a [`Driver`] whose `probe` gets each
//! matching [`Device`] and returns its driver data, which the kernel keeps
//! until `remove` drops it.
//!
//! What `probe` acquires is an owner whose `Drop` releases it:
//! [`Enabled`] (`pci_disable_device`), [`BusMaster`] (`pci_clear_master`),
//! [`Bar`] (`pci_iounmap`, `pci_release_region`), [`IrqVectors`]
//! (`pci_free_irq_vectors`), [`IrqRegistration`] (`free_irq`, then its
//! vectors), [`CoherentBuffer`](crate::dma::CoherentBuffer) and
//! [`DeviceGroup`](crate::sysfs::DeviceGroup). Kept in the driver data,
//! they are released when the device is unbound, in the order of its
//! fields. Each holds a reference to the `pci_dev` (`pci_dev_get`), so none
//! can point to a freed device, wherever it is kept.
//!
//! A [`Device`] itself is only lent to `probe` (`&Device`): safe code
//! cannot keep it past the call.

use alloc_crate::boxed::Box;
use alloc_crate::vec::Vec;
use core::ffi::{c_int, c_void, CStr};
use core::marker::PhantomData;
use core::pin::Pin;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::bindings;
use crate::error::{Error, Result, EBUSY, EINVAL, ENODEV, ENOMEM};
use crate::sync::Arc;
use crate::types::Opaque;

/// One entry of a driver's id table: a vendor and device id, any subsystem.
#[derive(Clone, Copy)]
pub struct DeviceId {
    vendor: u16,
    device: u16,
}

impl DeviceId {
    pub const fn new(vendor: u16, device: u16) -> Self {
        DeviceId { vendor, device }
    }
}

/// A PCI device the kernel lends to [`Driver::probe`].
#[repr(transparent)]
pub struct Device(Opaque<bindings::pci_dev>);

impl Device {
    /// # Safety
    /// `pdev` is a live `pci_dev` for at least `'a`.
    unsafe fn from_raw<'a>(pdev: *mut bindings::pci_dev) -> &'a Device {
        // SAFETY: `Device` is `repr(transparent)` over the `pci_dev`, which
        // lives for `'a` (the caller says).
        unsafe { &*pdev.cast::<Device>() }
    }

    fn as_raw(&self) -> *mut bindings::pci_dev {
        self.0.get()
    }

    /// The `struct device` inside, for the DMA and sysfs functions.
    pub(crate) fn as_device(&self) -> *mut bindings::device {
        // SAFETY: a field of the live `pci_dev`; no reference is made.
        unsafe { &raw mut (*self.as_raw()).dev }
    }

    pub(crate) fn get_ref(&self) -> DeviceRef {
        // SAFETY: the device is live (lent to us); the reference taken
        // keeps its memory until `DeviceRef::drop` puts it.
        let pdev = unsafe { bindings::pci_dev_get(self.as_raw()) };
        DeviceRef {
            // SAFETY: `pci_dev_get` returns its non-NULL argument.
            pdev: unsafe { NonNull::new_unchecked(pdev) },
        }
    }

    pub fn vendor_id(&self) -> u16 {
        // SAFETY: the field is set before probe and not written after.
        unsafe { (*self.as_raw()).vendor }
    }

    pub fn device_id(&self) -> u16 {
        // SAFETY: as in `vendor_id`.
        unsafe { (*self.as_raw()).device }
    }

    /// `pci_enable_device`: undone when the [`Enabled`] is dropped.
    pub fn enable(&self) -> Result<Enabled> {
        // SAFETY: a live device, probed by this driver.
        Error::from_return(unsafe { bindings::pci_enable_device(self.as_raw()) })?;
        Ok(Enabled {
            device: self.get_ref(),
        })
    }

    /// `pci_set_master`: the device may then DMA, until the [`BusMaster`]
    /// is dropped (`pci_clear_master`).
    pub fn set_master(&self) -> BusMaster {
        // SAFETY: as in `enable`.
        unsafe { bindings::pci_set_master(self.as_raw()) };
        BusMaster {
            device: self.get_ref(),
        }
    }

    /// `pci_request_region` and `pci_iomap` of memory BAR `bar` (0 to 5),
    /// whole. EINVAL for another number, ENODEV for a BAR that is not
    /// memory or is empty; EBUSY if the region is taken.
    pub fn iomap_region(&self, bar: u8, name: &'static CStr) -> Result<Bar> {
        if bar > 5 {
            return Err(EINVAL);
        }
        let index = c_int::from(bar);
        // SAFETY: a live device and a valid BAR number; `name` lives
        // forever, as the resource keeps it.
        unsafe {
            let len = bindings::kmod_pci_resource_len(self.as_raw(), index);
            if len == 0 || !bindings::kmod_pci_resource_is_mem(self.as_raw(), index) {
                return Err(ENODEV);
            }
            let len = usize::try_from(len).map_err(|_| ENOMEM)?;
            Error::from_return(bindings::pci_request_region(
                self.as_raw(),
                index,
                name.as_ptr(),
            ))?;
            let base = bindings::pci_iomap(self.as_raw(), index, 0);
            let Some(base) = NonNull::new(base) else {
                bindings::pci_release_region(self.as_raw(), index);
                return Err(ENOMEM);
            };
            Ok(Bar {
                device: self.get_ref(),
                base: base.cast(),
                len,
                index,
            })
        }
    }

    /// `dma_set_mask_and_coherent(DMA_BIT_MASK(bits))`: the addresses the
    /// device can reach (EINVAL for `bits` over 64; EIO if the platform
    /// cannot give them).
    pub fn dma_set_mask_and_coherent(&self, bits: u32) -> Result {
        if bits > 64 {
            return Err(EINVAL);
        }
        // SAFETY: the device's `struct device`, live.
        let set = unsafe { bindings::kmod_dma_set_mask_and_coherent(self.as_device(), bits) };
        Error::from_return(set).map(|_| ())
    }

    /// `pci_alloc_irq_vectors`: between `min` and `max` vectors of the
    /// [`IrqTypes`] asked for, MSI preferred; freed when the
    /// [`IrqVectors`] is dropped. EBUSY while an earlier `IrqVectors` of
    /// the device exists: freeing either would free the other's vectors
    /// (`pci_free_irq_vectors` frees them all) under its interrupt.
    pub fn alloc_irq_vectors(&self, min: u32, max: u32, types: IrqTypes) -> Result<IrqVectors> {
        let slot = claim_vectors(self.as_raw())?;
        // SAFETY: as in `enable`.
        let count = unsafe {
            bindings::kmod_pci_alloc_irq_vectors(self.as_raw(), min, max, types.msi, types.intx)
        };
        let count = match Error::from_return(count) {
            Ok(count) => count,
            Err(error) => {
                release_vectors(slot);
                return Err(error);
            }
        };
        Ok(IrqVectors {
            device: self.get_ref(),
            count: count as u32,
            slot,
        })
    }
}

/// A counted reference to a `pci_dev`: its memory stays while one exists.
pub(crate) struct DeviceRef {
    pdev: NonNull<bindings::pci_dev>,
}

// SAFETY: `pci_dev_put` may be called from any task; the functions the
// owners call with it take the device's own locks.
unsafe impl Send for DeviceRef {}
// SAFETY: as above; `&DeviceRef` gives nothing but the pointer.
unsafe impl Sync for DeviceRef {}

impl DeviceRef {
    pub(crate) fn as_raw(&self) -> *mut bindings::pci_dev {
        self.pdev.as_ptr()
    }

    pub(crate) fn as_device(&self) -> *mut bindings::device {
        // SAFETY: the referenced `pci_dev` is live; no reference is made.
        unsafe { &raw mut (*self.as_raw()).dev }
    }
}

impl Drop for DeviceRef {
    fn drop(&mut self) {
        // SAFETY: the reference `Device::get_ref` took.
        unsafe { bindings::pci_dev_put(self.as_raw()) }
    }
}

/// The device enabled by [`Device::enable`]; dropping it disables it.
pub struct Enabled {
    device: DeviceRef,
}

impl Drop for Enabled {
    fn drop(&mut self) {
        // SAFETY: enabled by `Device::enable`, once per `Enabled`.
        unsafe { bindings::pci_disable_device(self.device.as_raw()) }
    }
}

/// Bus mastering on ([`Device::set_master`]); dropping it turns it off,
/// and the device can DMA no more.
pub struct BusMaster {
    device: DeviceRef,
}

impl Drop for BusMaster {
    fn drop(&mut self) {
        // SAFETY: a live device (referenced).
        unsafe { bindings::pci_clear_master(self.device.as_raw()) }
    }
}

/// A memory BAR requested and mapped whole ([`Device::iomap_region`]).
/// Every access is checked against its length and alignment: one outside
/// gives EINVAL and touches nothing.
pub struct Bar {
    device: DeviceRef,
    base: NonNull<u8>,
    len: usize,
    index: c_int,
}

// SAFETY: MMIO through `readl`/`writel` from any task or CPU is what the
// kernel does; the mapping is released only by `drop`.
unsafe impl Send for Bar {}
// SAFETY: as above: accesses are single MMIO instructions, with `&self`.
unsafe impl Sync for Bar {}

impl Bar {
    /// The BAR's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn address(&self, offset: usize, size: usize) -> Result<*mut c_void> {
        if !offset.is_multiple_of(size) || offset.checked_add(size).is_none_or(|end| end > self.len)
        {
            return Err(EINVAL);
        }
        // SAFETY: `offset + size` is within the mapping, checked above.
        Ok(unsafe { self.base.as_ptr().add(offset) }.cast())
    }

    /// `readl` at `offset` (a multiple of 4 within the BAR).
    pub fn read32(&self, offset: usize) -> Result<u32> {
        let address = self.address(offset, 4)?;
        // SAFETY: an aligned address inside the live mapping.
        Ok(unsafe { bindings::kmod_readl(address) })
    }

    /// `writel` at `offset` (a multiple of 4 within the BAR).
    pub fn write32(&self, offset: usize, value: u32) -> Result {
        let address = self.address(offset, 4)?;
        // SAFETY: as in `read32`.
        unsafe { bindings::kmod_writel(value, address) };
        Ok(())
    }

    /// `readq` at `offset` (a multiple of 8 within the BAR).
    pub fn read64(&self, offset: usize) -> Result<u64> {
        let address = self.address(offset, 8)?;
        // SAFETY: as in `read32`.
        Ok(unsafe { bindings::kmod_readq(address) })
    }

    /// `writeq` at `offset` (a multiple of 8 within the BAR).
    pub fn write64(&self, offset: usize, value: u64) -> Result {
        let address = self.address(offset, 8)?;
        // SAFETY: as in `read32`.
        unsafe { bindings::kmod_writeq(value, address) };
        Ok(())
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // SAFETY: mapped and requested by `iomap_region`, once per `Bar`;
        // nothing borrows the mapping past `&self`.
        unsafe {
            bindings::pci_iounmap(self.device.as_raw(), self.base.as_ptr().cast());
            bindings::pci_release_region(self.device.as_raw(), self.index);
        }
    }
}

/// Which interrupt types [`Device::alloc_irq_vectors`] may use.
#[derive(Clone, Copy)]
pub struct IrqTypes {
    msi: bool,
    intx: bool,
}

impl IrqTypes {
    pub const MSI: IrqTypes = IrqTypes {
        msi: true,
        intx: false,
    };
    pub const INTX: IrqTypes = IrqTypes {
        msi: false,
        intx: true,
    };
    pub const MSI_OR_INTX: IrqTypes = IrqTypes {
        msi: true,
        intx: true,
    };
}

/// The devices of this module with an [`IrqVectors`]: one at most each.
/// A claim is only made in `probe` (the only holder of a `&Device`), which
/// the driver core runs under the device's lock, so two claims for one
/// device never race; a release comes after the vectors are freed.
static VECTORS: [AtomicPtr<bindings::pci_dev>; 32] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; 32];

/// A slot of `VECTORS` for `pdev`: EBUSY if it has one, or all are taken.
fn claim_vectors(pdev: *mut bindings::pci_dev) -> Result<usize> {
    if VECTORS
        .iter()
        .any(|slot| slot.load(Ordering::Acquire) == pdev)
    {
        return Err(EBUSY);
    }
    VECTORS
        .iter()
        .position(|slot| {
            slot.compare_exchange(
                core::ptr::null_mut(),
                pdev,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        })
        .ok_or(EBUSY)
}

fn release_vectors(slot: usize) {
    VECTORS[slot].store(core::ptr::null_mut(), Ordering::Release);
}

/// Interrupt vectors of a device ([`Device::alloc_irq_vectors`]).
pub struct IrqVectors {
    device: DeviceRef,
    count: u32,
    slot: usize,
}

impl IrqVectors {
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether the vectors are MSI (else INTx).
    pub fn is_msi(&self) -> bool {
        // SAFETY: a live device (referenced); a flag the allocation set.
        unsafe { bindings::kmod_pci_msi_enabled(self.device.as_raw()) }
    }

    /// `request_irq` on vector `index` (shared, as INTx lines may be):
    /// `handler`'s [`Handler::handle`] runs in hard interrupt context for
    /// each interrupt until the [`IrqRegistration`] is dropped. The vectors
    /// go with it, freed after the interrupt; on an error they are freed.
    pub fn request<T: Handler + 'static>(
        self,
        index: u32,
        name: &'static CStr,
        handler: Pin<Arc<T>>,
    ) -> Result<IrqRegistration<T>> {
        if index >= self.count {
            return Err(EINVAL);
        }
        // SAFETY: a live device whose vectors these are.
        let irq = unsafe { bindings::pci_irq_vector(self.device.as_raw(), index) };
        let irq = Error::from_return(irq)? as u32;
        let data: *const T = &*handler;
        // SAFETY: `data` stays valid until `free_irq` in `drop` (the
        // registration owns an `Arc` of it); `irq_handler::<T>` treats
        // `dev_id` as that `T`; `name` lives forever.
        let requested = unsafe {
            bindings::kmod_request_irq(
                irq,
                Some(irq_handler::<T>),
                bindings::IRQF_SHARED as _,
                name.as_ptr(),
                data.cast_mut().cast(),
            )
        };
        Error::from_return(requested)?;
        Ok(IrqRegistration {
            irq,
            handler,
            _vectors: self,
        })
    }
}

impl Drop for IrqVectors {
    fn drop(&mut self) {
        // SAFETY: allocated by `alloc_irq_vectors`; no interrupt of them is
        // requested any more (an `IrqRegistration` frees its own first).
        unsafe { bindings::pci_free_irq_vectors(self.device.as_raw()) };
        release_vectors(self.slot);
    }
}

/// What an interrupt handler says.
pub enum IrqReturn {
    /// Not this device's interrupt.
    None,
    /// Handled.
    Handled,
}

/// Interrupt handler data: called in hard interrupt context (it must not
/// sleep), on any CPU, concurrently with the rest of the driver, hence
/// `Sync`; dropped by whichever task drops the last owner, hence `Send`.
pub trait Handler: Send + Sync {
    fn handle(&self) -> IrqReturn;
}

/// A requested interrupt; dropping it frees the interrupt (waiting for a
/// running handler), then the vectors, then its handler data.
pub struct IrqRegistration<T: Handler + 'static> {
    irq: u32,
    handler: Pin<Arc<T>>,
    _vectors: IrqVectors,
}

impl<T: Handler + 'static> IrqRegistration<T> {
    /// The Linux interrupt number.
    pub fn irq(&self) -> u32 {
        self.irq
    }
}

impl<T: Handler + 'static> Drop for IrqRegistration<T> {
    fn drop(&mut self) {
        let data: *const T = &*self.handler;
        // SAFETY: requested by `IrqVectors::request` with this `dev_id`;
        // `free_irq` waits for a running handler, and none runs after.
        unsafe { bindings::free_irq(self.irq, data.cast_mut().cast()) };
    }
}

unsafe extern "C" fn irq_handler<T: Handler + 'static>(
    _: c_int,
    data: *mut c_void,
) -> bindings::irqreturn_t {
    // SAFETY: `dev_id` is the `T` the registration keeps alive until
    // `free_irq` has returned (see `IrqVectors::request`).
    let handler = unsafe { &*data.cast_const().cast::<T>() };
    match handler.handle() {
        IrqReturn::None => bindings::irqreturn_IRQ_NONE,
        IrqReturn::Handled => bindings::irqreturn_IRQ_HANDLED,
    }
}

/// A PCI driver: its data per bound device.
///
/// `Send + Sync`: `remove` may run on another task than `probe`, and the
/// data may be shared (sysfs callbacks, interrupts).
pub trait Driver: Send + Sync + Sized + 'static {
    /// The devices it binds to.
    const ID_TABLE: &'static [DeviceId];

    /// A matching device: what it returns is kept until the device is
    /// unbound (`remove`, or the driver unregistered), then dropped; an
    /// error leaves the device unbound (`-ENODEV`: not this driver's).
    fn probe(device: &Device, id: &DeviceId) -> Result<Pin<Box<Self>>>;
}

/// What the kernel points to, allocated once and never moved.
struct Inner {
    driver: bindings::pci_driver,
    _ids: Box<[bindings::pci_device_id]>,
}

/// A registered `pci_driver`; dropping it unregisters it, which unbinds
/// (removes) every device bound to it first.
pub struct Registration<T: Driver> {
    inner: NonNull<Inner>,
    _driver: PhantomData<T>,
}

// SAFETY: the registration is a kernel object any task may unregister; the
// driver data it leads to is `Send + Sync`.
unsafe impl<T: Driver> Send for Registration<T> {}
// SAFETY: `&Registration` gives nothing.
unsafe impl<T: Driver> Sync for Registration<T> {}

impl<T: Driver> Registration<T> {
    /// `pci_register_driver` as `name`: devices already there that match
    /// are probed before it returns.
    pub fn register(name: &'static CStr) -> Result<Self> {
        let mut ids = Vec::new();
        ids.try_reserve_exact(T::ID_TABLE.len() + 1)?;
        for id in T::ID_TABLE {
            // SAFETY: all-zero is a valid `pci_device_id` (the terminator).
            let mut raw: bindings::pci_device_id = unsafe { core::mem::zeroed() };
            raw.vendor = id.vendor.into();
            raw.device = id.device.into();
            raw.subvendor = bindings::PCI_ANY_ID as _;
            raw.subdevice = bindings::PCI_ANY_ID as _;
            ids.push(raw);
        }
        // SAFETY: as above.
        ids.push(unsafe { core::mem::zeroed() });
        let ids = ids.into_boxed_slice();
        // SAFETY: all-zero is a valid `pci_driver` before registration,
        // which initialises the rest.
        let mut driver: bindings::pci_driver = unsafe { core::mem::zeroed() };
        driver.name = name.as_ptr();
        driver.id_table = ids.as_ptr();
        driver.probe = Some(probe::<T>);
        driver.remove = Some(remove::<T>);
        let inner = NonNull::from(Box::leak(crate::alloc::try_box(Inner {
            driver,
            _ids: ids,
        })?));
        // SAFETY: `inner` stays where it is until `drop` has unregistered
        // the driver (or below, when registration failed); THIS_MODULE and
        // the name live as long as the module.
        let registered = unsafe {
            bindings::__pci_register_driver(
                &raw mut (*inner.as_ptr()).driver,
                crate::this_module(),
                name.as_ptr(),
            )
        };
        if let Err(error) = Error::from_return(registered) {
            // SAFETY: not registered: the kernel points to nothing of it.
            drop(unsafe { Box::from_raw(inner.as_ptr()) });
            return Err(error);
        }
        Ok(Registration {
            inner,
            _driver: PhantomData,
        })
    }
}

impl<T: Driver> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: registered by `register`; unregistering removes every
        // bound device (dropping its data) and returns with no callback
        // running, so `inner` is ours again.
        unsafe {
            bindings::pci_unregister_driver(&raw mut (*self.inner.as_ptr()).driver);
            drop(Box::from_raw(self.inner.as_ptr()));
        }
    }
}

unsafe extern "C" fn probe<T: Driver>(
    pdev: *mut bindings::pci_dev,
    id: *const bindings::pci_device_id,
) -> c_int {
    // SAFETY: the PCI core lends a live device for the call, and an entry
    // of our id table.
    let (device, id) = unsafe {
        (
            Device::from_raw(pdev),
            DeviceId::new((*id).vendor as u16, (*id).device as u16),
        )
    };
    match T::probe(device, &id) {
        Ok(data) => {
            // SAFETY: the data is pinned from here until `remove` takes it
            // back and drops it in place; only `remove` reads the pointer.
            unsafe {
                let data = Box::into_raw(Pin::into_inner_unchecked(data));
                bindings::kmod_pci_set_drvdata(pdev, data.cast());
            }
            0
        }
        Err(error) => error.to_errno(),
    }
}

unsafe extern "C" fn remove<T: Driver>(pdev: *mut bindings::pci_dev) {
    // SAFETY: a device `probe` bound, whose driver data is the `T` it
    // leaked; the core calls `remove` once per successful probe.
    unsafe {
        let data = bindings::kmod_pci_get_drvdata(pdev).cast::<T>();
        bindings::kmod_pci_set_drvdata(pdev, core::ptr::null_mut());
        drop(Pin::new_unchecked(Box::from_raw(data)));
    }
}
