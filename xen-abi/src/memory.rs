//! `memory_op` sub-operations and their arguments (public/memory.h).

use crate::event_channel::DomId;
use core::mem::offset_of;
use static_assertions::{assert_eq_size, const_assert_eq};

// XENMEM_* (memory.h); `memory_op(cmd, arg)`.
pub const XENMEM_INCREASE_RESERVATION: u64 = 0;
pub const XENMEM_DECREASE_RESERVATION: u64 = 1;
pub const XENMEM_MAXIMUM_RAM_PAGE: u64 = 2;
pub const XENMEM_CURRENT_RESERVATION: u64 = 3;
pub const XENMEM_MAXIMUM_RESERVATION: u64 = 4;
pub const XENMEM_MACHPHYS_MFN_LIST: u64 = 5;
pub const XENMEM_POPULATE_PHYSMAP: u64 = 6;
/// Argument: `XenAddToPhysmap`.
pub const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
/// Argument: `XenMemoryMap`; entries are `E820Entry`.
pub const XENMEM_MEMORY_MAP: u64 = 9;
pub const XENMEM_MACHINE_MEMORY_MAP: u64 = 10;
pub const XENMEM_EXCHANGE: u64 = 11;
pub const XENMEM_MACHPHYS_MAPPING: u64 = 12;
pub const XENMEM_SET_MEMORY_MAP: u64 = 13;
pub const XENMEM_MAXIMUM_GPFN: u64 = 14;
/// Argument: `XenRemoveFromPhysmap`.
pub const XENMEM_REMOVE_FROM_PHYSMAP: u64 = 15;
/// Argument: `struct xen_pod_target` (x86 only, control domain only).
pub const XENMEM_SET_POD_TARGET: u64 = 16;
pub const XENMEM_GET_POD_TARGET: u64 = 17;
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u64 = 23;
pub const XENMEM_CLAIM_PAGES: u64 = 24;
pub const XENMEM_GET_VNUMAINFO: u64 = 26;
pub const XENMEM_RESERVED_DEVICE_MEMORY_MAP: u64 = 27;
pub const XENMEM_ACQUIRE_RESOURCE: u64 = 28;

/// `MEMOP_EXTENT_SHIFT` (xen/include/xen/hypercall.h, not public): bits 6
/// and up of `cmd` carry a continuation's start extent.
pub const MEMOP_EXTENT_SHIFT: u32 = 6;
/// `MEMOP_CMD_MASK`: the sub-operation is `cmd & MEMOP_CMD_MASK`.
pub const MEMOP_CMD_MASK: u64 = (1 << MEMOP_EXTENT_SHIFT) - 1;

// XENMAPSPACE_* (memory.h), `XenAddToPhysmap::space`.
/// The shared_info page (`idx` must be 0).
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// Grant-table frame `idx` (| `XENMAPIDX_GRANT_TABLE_STATUS` for v2 status frames).
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
pub const XENMAPSPACE_GMFN: u32 = 2;
/// `XenAddToPhysmap::size` pages; add_to_physmap only.
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
/// A GMFN of another domain (add_to_physmap_batch only).
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
/// Device MMIO (ARM).
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;

/// `XENMAPIDX_grant_table_status` (memory.h): in `idx`, selects a v2 status frame.
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

// XENMEMF_* (memory.h), `XenMemoryReservation::mem_flags`.
pub const XENMEMF_POPULATE_ON_DEMAND: u32 = 1 << 16;
pub const XENMEMF_EXACT_NODE_REQUEST: u32 = 1 << 17;
pub const XENMEMF_VNODE: u32 = 1 << 18;

/// `struct xen_add_to_physmap` (memory.h), 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenAddToPhysmap {
    /// The domain whose physmap changes (`DOMID_SELF`).
    pub domid: DomId,
    /// Pages, for `XENMAPSPACE_gmfn_range` only.
    pub size: u16,
    /// `XENMAPSPACE_*`.
    pub space: u32,
    /// Index into the space.
    pub idx: u64,
    /// The GFN where the page appears.
    pub gpfn: u64,
}

/// `struct xen_remove_from_physmap` (memory.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenRemoveFromPhysmap {
    pub domid: DomId,
    pub pad: [u16; 3],
    pub gpfn: u64,
}

/// `struct xen_memory_map` (memory.h), `XENMEM_memory_map`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryMap {
    /// In: capacity of `buffer` in entries; out: entries stored.
    pub nr_entries: u32,
    pub pad: u32,
    /// Guest handle (guest-virtual address) of `E820Entry[nr_entries]`.
    pub buffer: u64,
}

/// One entry of the `XENMEM_memory_map` buffer: "the format returned by the
/// BIOS INT 0x15 EAX=0xE820 call" (memory.h), i.e. 20 packed bytes — not the
/// 24-byte `hvm_memmap_table_entry`.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    /// E820 type, as `crate::start_info::MEMMAP_TYPE_*`.
    pub kind: u32,
}

/// `struct xen_memory_reservation` (memory.h), increase/decrease_reservation
/// and populate_physmap.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryReservation {
    /// Guest handle of the `xen_pfn_t` array.
    pub extent_start: u64,
    pub nr_extents: u64,
    pub extent_order: u32,
    /// `XENMEMF_*`.
    pub mem_flags: u32,
    pub domid: DomId,
    pub pad: [u16; 3],
}

assert_eq_size!(XenAddToPhysmap, [u8; 24]);
const_assert_eq!(offset_of!(XenAddToPhysmap, size), 2);
const_assert_eq!(offset_of!(XenAddToPhysmap, space), 4);
const_assert_eq!(offset_of!(XenAddToPhysmap, idx), 8);
const_assert_eq!(offset_of!(XenAddToPhysmap, gpfn), 16);
assert_eq_size!(XenRemoveFromPhysmap, [u8; 16]);
const_assert_eq!(offset_of!(XenRemoveFromPhysmap, pad), 2);
const_assert_eq!(offset_of!(XenRemoveFromPhysmap, gpfn), 8);
assert_eq_size!(XenMemoryMap, [u8; 16]);
const_assert_eq!(offset_of!(XenMemoryMap, pad), 4);
const_assert_eq!(offset_of!(XenMemoryMap, buffer), 8);
assert_eq_size!(E820Entry, [u8; 20]);
const_assert_eq!(offset_of!(E820Entry, size), 8);
const_assert_eq!(offset_of!(E820Entry, kind), 16);
assert_eq_size!(XenMemoryReservation, [u8; 32]);
const_assert_eq!(offset_of!(XenMemoryReservation, nr_extents), 8);
const_assert_eq!(offset_of!(XenMemoryReservation, extent_order), 16);
const_assert_eq!(offset_of!(XenMemoryReservation, mem_flags), 20);
const_assert_eq!(offset_of!(XenMemoryReservation, domid), 24);
const_assert_eq!(offset_of!(XenMemoryReservation, pad), 26);
