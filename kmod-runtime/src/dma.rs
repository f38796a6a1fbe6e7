//! Coherent DMA memory: a [`CoherentBuffer`] the CPU and a device both
//! see, allocated for a bound PCI device and freed when dropped.

use core::ptr::NonNull;

use crate::bindings;
use crate::error::{Result, EINVAL, ENOMEM};
use crate::pci::{Device, DeviceRef};

/// `dma_alloc_coherent` memory of a device. The device may write it at any
/// time, so the CPU reads and writes it with volatile accesses only, and
/// through `&mut self`: one task at a time.
///
/// What the device does with the address ([`CoherentBuffer::dma_handle`])
/// is up to the driver's programming of it; turn bus mastering off
/// ([`BusMaster`](crate::pci::BusMaster) dropped) before this is freed if
/// a transfer may still be under way.
pub struct CoherentBuffer {
    device: DeviceRef,
    cpu: NonNull<u8>,
    handle: bindings::dma_addr_t,
    len: usize,
}

// SAFETY: the memory is the buffer's own; `dma_free_coherent` may run on
// any task (in process context, as `Drop` does).
unsafe impl Send for CoherentBuffer {}
// SAFETY: `&CoherentBuffer` gives only the address and length.
unsafe impl Sync for CoherentBuffer {}

impl CoherentBuffer {
    /// `len` bytes (not 0) of coherent memory for `device`, within its
    /// DMA mask; ENOMEM if there are none.
    pub fn alloc(device: &Device, len: usize) -> Result<Self> {
        if len == 0 {
            return Err(EINVAL);
        }
        let mut handle: bindings::dma_addr_t = 0;
        // SAFETY: a live device lent to probe; `handle` is ours.
        let cpu =
            unsafe { bindings::kmod_dma_alloc_coherent(device.as_device(), len, &mut handle) };
        let cpu = NonNull::new(cpu.cast::<u8>()).ok_or(ENOMEM)?;
        Ok(CoherentBuffer {
            device: device.get_ref(),
            cpu,
            handle,
            len,
        })
    }

    /// The address the device uses for the buffer.
    pub fn dma_handle(&self) -> u64 {
        self.handle
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, offset: usize, len: usize) -> Result {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(EINVAL),
        }
    }

    /// Copies `data` in at `offset`; EINVAL if it does not fit.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Result {
        self.check(offset, data.len())?;
        for (i, byte) in data.iter().enumerate() {
            // SAFETY: within the allocation (checked above).
            unsafe { self.cpu.as_ptr().add(offset + i).write_volatile(*byte) };
        }
        Ok(())
    }

    /// Copies `data.len()` bytes out from `offset`; EINVAL if past the end.
    pub fn read(&mut self, offset: usize, data: &mut [u8]) -> Result {
        self.check(offset, data.len())?;
        for (i, byte) in data.iter_mut().enumerate() {
            // SAFETY: as in `write`.
            *byte = unsafe { self.cpu.as_ptr().add(offset + i).read_volatile() };
        }
        Ok(())
    }
}

impl Drop for CoherentBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated by `alloc` for this device with this length,
        // freed once; the CPU side is borrowed no more.
        unsafe {
            bindings::kmod_dma_free_coherent(
                self.device.as_device(),
                self.len,
                self.cpu.as_ptr().cast(),
                self.handle,
            )
        }
    }
}
