//! PCI configuration mechanism #1 (ports 0xCF8/0xCFC): finding the virtio block devices the driver domain is given.

use arrayvec::ArrayVec;
use x86::io::{inl, outl};
use xen_abi::domain_table::{PciDeviceEntry, DEVICE_VIRTIO_BLK_LEGACY, MAX_DEVICES};

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

/// Virtio's PCI vendor, and the transitional block device's id
/// (virtio 1.0 section 4.1.2.1: 0x1000 + subsystem id 2, legacy interface
/// in I/O BAR 0).
const VIRTIO_VENDOR: u16 = 0x1af4;
const VIRTIO_BLK_TRANSITIONAL: u16 = 0x1001;

/// Command register bits (PCI Local Bus 3.0 section 6.2.2).
const COMMAND_IO: u32 = 1 << 0;
const COMMAND_BUS_MASTER: u32 = 1 << 2;

fn address(bdf: u16, offset: u8) -> u32 {
    0x8000_0000 | u32::from(bdf) << 8 | u32::from(offset & 0xfc)
}

fn read(bdf: u16, offset: u8) -> u32 {
    // SAFETY: the configuration ports, used only by the hypervisor at start
    // of day (they are never passed through).
    unsafe {
        outl(CONFIG_ADDRESS, address(bdf, offset));
        inl(CONFIG_DATA)
    }
}

fn write(bdf: u16, offset: u8, value: u32) {
    // SAFETY: as `read`.
    unsafe {
        outl(CONFIG_ADDRESS, address(bdf, offset));
        outl(CONFIG_DATA, value);
    }
}

/// Every virtio block device with an I/O BAR 0 on buses 0..=255, made
/// ready for its driver: I/O decoding and bus mastering on.
pub fn virtio_block_devices() -> ArrayVec<PciDeviceEntry, MAX_DEVICES> {
    let mut found = ArrayVec::new();
    for bus in 0..=255u16 {
        for dev in 0..32u16 {
            let functions = if read(bus << 8 | dev << 3, 0x0c) & 0x0080_0000 != 0 {
                8
            } else {
                1
            };
            for func in 0..functions {
                let bdf = bus << 8 | dev << 3 | func;
                let id = read(bdf, 0);
                let (vendor, device) = (id as u16, (id >> 16) as u16);
                if vendor != VIRTIO_VENDOR || device != VIRTIO_BLK_TRANSITIONAL {
                    continue;
                }
                let Some(entry) = claim(bdf, vendor, device) else {
                    continue;
                };
                if found.try_push(entry).is_err() {
                    return found;
                }
            }
        }
    }
    found
}

/// Sizes BAR 0 (all ones written, the mask read back, the base restored)
/// and turns on I/O decoding and bus mastering.
fn claim(bdf: u16, vendor: u16, device: u16) -> Option<PciDeviceEntry> {
    let bar = read(bdf, 0x10);
    if bar & 1 == 0 || bar & !3 == 0 {
        return None;
    }
    let command = read(bdf, 0x04);
    write(bdf, 0x04, command & !COMMAND_IO);
    write(bdf, 0x10, 0xffff_ffff);
    let mask = read(bdf, 0x10) & !3;
    write(bdf, 0x10, bar);
    let size = (!(mask | 0xffff_0000)).wrapping_add(1) & 0xffff;
    write(bdf, 0x04, command | COMMAND_IO | COMMAND_BUS_MASTER);
    let io_base = u16::try_from(bar & !3).ok()?;
    let io_size = u16::try_from(size).ok().filter(|s| *s > 0)?;
    io_base.checked_add(io_size - 1)?;
    Some(PciDeviceEntry {
        kind: DEVICE_VIRTIO_BLK_LEGACY,
        bdf,
        io_base,
        io_size,
        vendor,
        device,
        reserved: 0,
    })
}
