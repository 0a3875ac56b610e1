//! PVH start of day: `hvm_start_info` and its tables (public/arch-x86/hvm/start_info.h).

use static_assertions::{assert_eq_size, const_assert_eq};

/// `XEN_HVM_START_MAGIC_VALUE`: the first word of `hvm_start_info`.
pub const HVM_START_MAGIC: u32 = 0x336e_c578;

/// `XEN_HVM_MEMMAP_TYPE_*`: the E820 type numbers (start_info.h).
pub const MEMMAP_TYPE_RAM: u32 = 1;
pub const MEMMAP_TYPE_RESERVED: u32 = 2;
pub const MEMMAP_TYPE_ACPI: u32 = 3;
pub const MEMMAP_TYPE_NVS: u32 = 4;
pub const MEMMAP_TYPE_UNUSABLE: u32 = 5;

/// `struct hvm_start_info`. Version 0 ends at `rsdp_paddr`; version 1 adds the
/// memory map. EBX holds its physical address at the PVH entry point.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HvmStartInfo {
    pub magic: u32,
    pub version: u32,
    pub flags: u32,
    pub nr_modules: u32,
    pub modlist_paddr: u64,
    pub cmdline_paddr: u64,
    pub rsdp_paddr: u64,
    pub memmap_paddr: u64,
    pub memmap_entries: u32,
    pub reserved: u32,
}

/// `struct hvm_modlist_entry`: one module, its command line a NUL-terminated string.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HvmModlistEntry {
    pub paddr: u64,
    pub size: u64,
    pub cmdline_paddr: u64,
    pub reserved: u64,
}

/// `struct hvm_memmap_table_entry`: one E820-style range.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HvmMemmapTableEntry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
    pub reserved: u32,
}

// Offsets from the comment block at the top of start_info.h.
assert_eq_size!(HvmStartInfo, [u8; 56]);
const_assert_eq!(core::mem::offset_of!(HvmStartInfo, modlist_paddr), 16);
const_assert_eq!(core::mem::offset_of!(HvmStartInfo, cmdline_paddr), 24);
const_assert_eq!(core::mem::offset_of!(HvmStartInfo, rsdp_paddr), 32);
const_assert_eq!(core::mem::offset_of!(HvmStartInfo, memmap_paddr), 40);
const_assert_eq!(core::mem::offset_of!(HvmStartInfo, memmap_entries), 48);
assert_eq_size!(HvmModlistEntry, [u8; 32]);
const_assert_eq!(core::mem::offset_of!(HvmModlistEntry, cmdline_paddr), 16);
assert_eq_size!(HvmMemmapTableEntry, [u8; 24]);
const_assert_eq!(core::mem::offset_of!(HvmMemmapTableEntry, kind), 16);
