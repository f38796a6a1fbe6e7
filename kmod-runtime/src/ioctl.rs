//! `ioctl(2)` command numbers, as C's `_IO`/`_IOR`/`_IOW`/`_IOWR` make
//! them with this architecture's field layout (from the tree's headers).

use crate::bindings;

const fn command(direction: u32, kind: u8, number: u8, size: usize) -> u32 {
    // The size field is `_IOC_SIZEBITS` wide: a bigger type cannot be an
    // argument (C's `_IOC_TYPECHECK` refuses it too), so this fails to build.
    assert!(
        size < 1 << bindings::_IOC_SIZEBITS,
        "ioctl argument too large"
    );
    (direction << bindings::_IOC_DIRSHIFT)
        | ((kind as u32) << bindings::_IOC_TYPESHIFT)
        | ((number as u32) << bindings::_IOC_NRSHIFT)
        | ((size as u32) << bindings::_IOC_SIZESHIFT)
}

/// `_IO(kind, number)`: no argument.
pub const fn io(kind: u8, number: u8) -> u32 {
    command(bindings::_IOC_NONE, kind, number, 0)
}

/// `_IOR(kind, number, T)`: the driver writes a `T` to user space.
pub const fn ior<T>(kind: u8, number: u8) -> u32 {
    command(bindings::_IOC_READ, kind, number, size_of::<T>())
}

/// `_IOW(kind, number, T)`: the driver reads a `T` from user space.
pub const fn iow<T>(kind: u8, number: u8) -> u32 {
    command(bindings::_IOC_WRITE, kind, number, size_of::<T>())
}

/// `_IOWR(kind, number, T)`: both.
pub const fn iowr<T>(kind: u8, number: u8) -> u32 {
    command(
        bindings::_IOC_READ | bindings::_IOC_WRITE,
        kind,
        number,
        size_of::<T>(),
    )
}

/// The argument size a command number carries (`_IOC_SIZE`).
pub const fn size(command: u32) -> usize {
    ((command >> bindings::_IOC_SIZESHIFT) & ((1 << bindings::_IOC_SIZEBITS) - 1)) as usize
}
