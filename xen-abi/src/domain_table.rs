//! The domain table: what the hypervisor tells the driver domain about each guest at boot (Xenolith's own ABI, docs/xen-abi.md).
//!
//! The driver domain's `hvm_start_info` carries it as module 0: a
//! [`DomainTableHeader`] followed by `count` [`DomainTableEntry`] records,
//! `entry_size` bytes apart (so later versions may append fields). All
//! integers are little-endian. The driver domain treats the table as
//! untrusted input and checks every field.

use core::mem::offset_of;
use static_assertions::const_assert_eq;

/// "XNDT" read as a little-endian u32.
pub const DOMAIN_TABLE_MAGIC: u32 = u32::from_le_bytes(*b"XNDT");
pub const DOMAIN_TABLE_VERSION: u32 = 1;
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
    /// Guest RAM in KiB (static-max = target).
    pub memory_kib: u64,
    pub console_gfn: u64,
    pub store_gfn: u64,
    pub name: [u8; DOMAIN_NAME_MAX],
}

const_assert_eq!(core::mem::size_of::<DomainTableEntry>(), 72);
const_assert_eq!(offset_of!(DomainTableEntry, console_port), 4);
const_assert_eq!(offset_of!(DomainTableEntry, store_port), 8);
const_assert_eq!(offset_of!(DomainTableEntry, memory_kib), 16);
const_assert_eq!(offset_of!(DomainTableEntry, console_gfn), 24);
const_assert_eq!(offset_of!(DomainTableEntry, store_gfn), 32);
const_assert_eq!(offset_of!(DomainTableEntry, name), 40);

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
        }
    }
}
