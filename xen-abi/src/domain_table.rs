//! The domain table: what the hypervisor tells the driver domain about each guest at boot (Xenolith's own ABI, docs/xen-abi.md).
//!
//! The driver domain's `hvm_start_info` carries it as module 0: a
//! [`DomainTableHeader`] followed by `count` [`DomainTableEntry`] records,
//! `entry_size` bytes apart (so later versions may append fields), then one
//! [`DriverResources`] record: the identity-mapped DMA pool, the PCI
//! devices handed over and the RAM disks, whose bytes follow later in the
//! same module. All integers are little-endian. The driver domain treats
//! the table as untrusted input and checks every field.

use core::mem::offset_of;
use static_assertions::const_assert_eq;

/// "XNDT" read as a little-endian u32.
pub const DOMAIN_TABLE_MAGIC: u32 = u32::from_le_bytes(*b"XNDT");
pub const DOMAIN_TABLE_VERSION: u32 = 3;
/// Most guests a table describes.
pub const DOMAIN_TABLE_MAX: usize = 64;
/// Bytes of `DomainTableEntry::name`, NUL-padded (xl's names are longer,
/// but a console prefix should stay short).
pub const DOMAIN_NAME_MAX: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainTableHeader {
    pub magic: u32,
    pub version: u32,
    pub count: u32,
    pub entry_size: u32,
}

const_assert_eq!(core::mem::size_of::<DomainTableHeader>(), 16);

/// One guest: its identity, its memory and the two pages and unbound event
/// channels start of day created for its backends. The console and
/// XenStore pages are also the guest's grant refs 0 and 1
/// (GNTTAB_RESERVED_CONSOLE/XENSTORE, public/grant_table.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainTableEntry {
    pub domid: u16,
    pub vcpus: u16,
    /// Ports in the guest, unbound with remote domain 0.
    pub console_port: u32,
    pub store_port: u32,
    pub reserved: u32,
    /// Guest RAM in KiB at start of day: its XenStore `memory/target`.
    pub memory_kib: u64,
    pub console_gfn: u64,
    pub store_gfn: u64,
    pub name: [u8; DOMAIN_NAME_MAX],
    /// The most RAM it may balloon up to, in KiB, in the same units as
    /// `memory_kib` (xl.cfg `maxmem`): its `memory/static-max` (version 3).
    pub static_max_kib: u64,
}

const_assert_eq!(core::mem::size_of::<DomainTableEntry>(), 80);
const_assert_eq!(offset_of!(DomainTableEntry, console_port), 4);
const_assert_eq!(offset_of!(DomainTableEntry, store_port), 8);
const_assert_eq!(offset_of!(DomainTableEntry, memory_kib), 16);
const_assert_eq!(offset_of!(DomainTableEntry, console_gfn), 24);
const_assert_eq!(offset_of!(DomainTableEntry, store_gfn), 32);
const_assert_eq!(offset_of!(DomainTableEntry, name), 40);
const_assert_eq!(offset_of!(DomainTableEntry, static_max_kib), 72);

/// The header for `count` entries of this version.
pub fn header(count: usize) -> DomainTableHeader {
    DomainTableHeader {
        magic: DOMAIN_TABLE_MAGIC,
        version: DOMAIN_TABLE_VERSION,
        count: count as u32,
        entry_size: DomainTableEntry::SIZE as u32,
    }
}

/// `name` as the NUL-padded `DomainTableEntry::name` field, cut at
/// `DOMAIN_NAME_MAX` bytes.
pub fn name_field(name: &str) -> [u8; DOMAIN_NAME_MAX] {
    let mut out = [0u8; DOMAIN_NAME_MAX];
    let n = name.len().min(DOMAIN_NAME_MAX);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

impl DomainTableHeader {
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.magic.to_le_bytes());
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.count.to_le_bytes());
        b[12..16].copy_from_slice(&self.entry_size.to_le_bytes());
        b
    }
}

impl DomainTableEntry {
    pub const SIZE: usize = core::mem::size_of::<DomainTableEntry>();

    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..2].copy_from_slice(&self.domid.to_le_bytes());
        b[2..4].copy_from_slice(&self.vcpus.to_le_bytes());
        b[4..8].copy_from_slice(&self.console_port.to_le_bytes());
        b[8..12].copy_from_slice(&self.store_port.to_le_bytes());
        b[12..16].copy_from_slice(&self.reserved.to_le_bytes());
        b[16..24].copy_from_slice(&self.memory_kib.to_le_bytes());
        b[24..32].copy_from_slice(&self.console_gfn.to_le_bytes());
        b[32..40].copy_from_slice(&self.store_gfn.to_le_bytes());
        b[40..72].copy_from_slice(&self.name);
        b[72..80].copy_from_slice(&self.static_max_kib.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let mut name = [0u8; DOMAIN_NAME_MAX];
        name.copy_from_slice(&b[40..72]);
        DomainTableEntry {
            domid: u16_at(0),
            vcpus: u16_at(2),
            console_port: u32_at(4),
            store_port: u32_at(8),
            reserved: u32_at(12),
            memory_kib: u64_at(16),
            console_gfn: u64_at(24),
            store_gfn: u64_at(32),
            name,
            static_max_kib: u64_at(72),
        }
    }
}

/// Most PCI devices and RAM disks a table names.
pub const MAX_DEVICES: usize = 8;
pub const MAX_RAMDISKS: usize = 8;

/// `PciDeviceEntry::kind`: a virtio block device with the legacy (0.9.5)
/// interface in I/O BAR 0 (PCI 1af4:1001).
pub const DEVICE_VIRTIO_BLK_LEGACY: u16 = 1;

/// A PCI device handed to the driver domain: bus mastering is on, and the
/// I/O ports of its BAR 0 are passed through; its configuration space is not.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PciDeviceEntry {
    pub kind: u16,
    /// bus << 8 | device << 3 | function.
    pub bdf: u16,
    pub io_base: u16,
    pub io_size: u16,
    pub vendor: u16,
    pub device: u16,
    pub reserved: u32,
}

const_assert_eq!(core::mem::size_of::<PciDeviceEntry>(), 16);
const_assert_eq!(offset_of!(PciDeviceEntry, io_base), 4);
const_assert_eq!(offset_of!(PciDeviceEntry, vendor), 8);

/// A RAM disk: `size` bytes at `offset` from the start of module 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RamDiskEntry {
    pub offset: u64,
    pub size: u64,
    /// The boot module it came from, NUL-padded.
    pub name: [u8; DOMAIN_NAME_MAX],
}

const_assert_eq!(core::mem::size_of::<RamDiskEntry>(), 48);
const_assert_eq!(offset_of!(RamDiskEntry, name), 16);

/// What the driver domain owns besides its RAM and COM1.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverResources {
    /// Guest-physical = host-physical: devices' DMA lands here. Size 0: none.
    pub dma_base: u64,
    pub dma_size: u64,
    pub nr_devices: u32,
    pub nr_ramdisks: u32,
    pub devices: [PciDeviceEntry; MAX_DEVICES],
    pub ramdisks: [RamDiskEntry; MAX_RAMDISKS],
}

const_assert_eq!(core::mem::size_of::<DriverResources>(), 536);
const_assert_eq!(offset_of!(DriverResources, nr_devices), 16);
const_assert_eq!(offset_of!(DriverResources, devices), 24);
const_assert_eq!(offset_of!(DriverResources, ramdisks), 152);

impl DriverResources {
    pub const SIZE: usize = core::mem::size_of::<DriverResources>();

    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..8].copy_from_slice(&self.dma_base.to_le_bytes());
        b[8..16].copy_from_slice(&self.dma_size.to_le_bytes());
        b[16..20].copy_from_slice(&self.nr_devices.to_le_bytes());
        b[20..24].copy_from_slice(&self.nr_ramdisks.to_le_bytes());
        for (i, d) in self.devices.iter().enumerate() {
            let at = 24 + i * 16;
            let fields = [d.kind, d.bdf, d.io_base, d.io_size, d.vendor, d.device];
            for (j, f) in fields.iter().enumerate() {
                b[at + j * 2..at + j * 2 + 2].copy_from_slice(&f.to_le_bytes());
            }
            b[at + 12..at + 16].copy_from_slice(&d.reserved.to_le_bytes());
        }
        for (i, r) in self.ramdisks.iter().enumerate() {
            let at = 152 + i * 48;
            b[at..at + 8].copy_from_slice(&r.offset.to_le_bytes());
            b[at + 8..at + 16].copy_from_slice(&r.size.to_le_bytes());
            b[at + 16..at + 48].copy_from_slice(&r.name);
        }
        b
    }

    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let mut r = DriverResources {
            dma_base: u64_at(0),
            dma_size: u64_at(8),
            nr_devices: u32_at(16),
            nr_ramdisks: u32_at(20),
            ..Default::default()
        };
        for (i, d) in r.devices.iter_mut().enumerate() {
            let at = 24 + i * 16;
            *d = PciDeviceEntry {
                kind: u16_at(at),
                bdf: u16_at(at + 2),
                io_base: u16_at(at + 4),
                io_size: u16_at(at + 6),
                vendor: u16_at(at + 8),
                device: u16_at(at + 10),
                reserved: u32_at(at + 12),
            };
        }
        for (i, d) in r.ramdisks.iter_mut().enumerate() {
            let at = 152 + i * 48;
            d.offset = u64_at(at);
            d.size = u64_at(at + 8);
            d.name.copy_from_slice(&b[at + 16..at + 48]);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_round_trip() {
        let mut r = DriverResources {
            dma_base: 0x1234_5000,
            dma_size: 4 << 20,
            nr_devices: 1,
            nr_ramdisks: 2,
            ..Default::default()
        };
        r.devices[0] = PciDeviceEntry {
            kind: DEVICE_VIRTIO_BLK_LEGACY,
            bdf: 0x20,
            io_base: 0xc000,
            io_size: 0x40,
            vendor: 0x1af4,
            device: 0x1001,
            reserved: 0,
        };
        r.ramdisks[1] = RamDiskEntry {
            offset: 4096,
            size: 1 << 20,
            name: name_field("disk.img"),
        };
        assert_eq!(DriverResources::from_bytes(&r.to_bytes()), r);
    }
}
