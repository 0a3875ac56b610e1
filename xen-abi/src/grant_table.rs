//! Grant tables: `GNTTABOP_*` arguments, `grant_entry_v1`, flags and status codes (public/grant_table.h).

use crate::event_channel::DomId;
use core::mem::offset_of;
use static_assertions::{assert_eq_size, const_assert_eq};

/// `grant_ref_t` (grant_table.h).
pub type GrantRef = u32;
/// `grant_handle_t` (grant_table.h).
pub type GrantHandle = u32;

// GNTTABOP_* (grant_table.h); `grant_table_op(cmd, uop, count)`.
/// Argument: `GnttabMapGrantRef[count]`.
pub const GNTTABOP_MAP_GRANT_REF: u64 = 0;
/// Argument: `GnttabUnmapGrantRef[count]`.
pub const GNTTABOP_UNMAP_GRANT_REF: u64 = 1;
/// Argument: `GnttabSetupTable`.
pub const GNTTABOP_SETUP_TABLE: u64 = 2;
pub const GNTTABOP_DUMP_TABLE: u64 = 3;
pub const GNTTABOP_TRANSFER: u64 = 4;
/// Argument: `GnttabCopy[count]`.
pub const GNTTABOP_COPY: u64 = 5;
/// Argument: `GnttabQuerySize`.
pub const GNTTABOP_QUERY_SIZE: u64 = 6;
pub const GNTTABOP_UNMAP_AND_REPLACE: u64 = 7;
/// Argument: `GnttabSetVersion`.
pub const GNTTABOP_SET_VERSION: u64 = 8;
/// Argument: `GnttabGetStatusFrames`.
pub const GNTTABOP_GET_STATUS_FRAMES: u64 = 9;
/// Argument: `GnttabGetVersion`.
pub const GNTTABOP_GET_VERSION: u64 = 10;
pub const GNTTABOP_SWAP_GRANT_REF: u64 = 11;
pub const GNTTABOP_CACHE_FLUSH: u64 = 12;

/// `GNTTAB_NR_RESERVED_ENTRIES` (grant_table.h): refs 0–7 are the toolstack's.
pub const GNTTAB_NR_RESERVED_ENTRIES: GrantRef = 8;
/// `GNTTAB_RESERVED_CONSOLE`: ref 0 grants the console ring to its backend.
pub const GNTTAB_RESERVED_CONSOLE: GrantRef = 0;
/// `GNTTAB_RESERVED_XENSTORE`: ref 1 grants the XenStore ring to its server.
pub const GNTTAB_RESERVED_XENSTORE: GrantRef = 1;
/// Version-1 entries per 4 KiB frame (4096 / 8).
pub const GRANT_ENTRIES_V1_PER_FRAME: u32 = 512;

// GTF_* (grant_table.h), `GrantEntryV1::flags`. Bits 1:0 are the type.
pub const GTF_INVALID: u16 = 0;
pub const GTF_PERMIT_ACCESS: u16 = 1;
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// Version 2 only.
pub const GTF_TRANSITIVE: u16 = 3;
pub const GTF_TYPE_MASK: u16 = 3;
/// Set by the guest: the grantee may only read.
pub const GTF_READONLY: u16 = 1 << 2;
/// Set by the hypervisor while the frame is mapped or copied for reading.
pub const GTF_READING: u16 = 1 << 3;
/// Set by the hypervisor while the frame is mapped or copied for writing.
pub const GTF_WRITING: u16 = 1 << 4;
pub const GTF_PWT: u16 = 1 << 5;
pub const GTF_PCD: u16 = 1 << 6;
pub const GTF_PAT: u16 = 1 << 7;
/// Version 2 only.
pub const GTF_SUB_PAGE: u16 = 1 << 8;
/// Accept-transfer entries only.
pub const GTF_TRANSFER_COMMITTED: u16 = 1 << 2;
/// Accept-transfer entries only.
pub const GTF_TRANSFER_COMPLETED: u16 = 1 << 3;

// GNTMAP_* (grant_table.h), `GnttabMapGrantRef::flags`.
pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
pub const GNTMAP_READONLY: u32 = 1 << 2;
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;
pub const GNTMAP_GUEST_AVAIL_MASK: u32 = !0 << 16;

// GNTCOPY_* (grant_table.h), `GnttabCopy::flags`.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

// GNTST_* (grant_table.h): per-operation `status` values.
pub const GNTST_OKAY: i16 = 0;
pub const GNTST_GENERAL_ERROR: i16 = -1;
pub const GNTST_BAD_DOMAIN: i16 = -2;
pub const GNTST_BAD_GNTREF: i16 = -3;
pub const GNTST_BAD_HANDLE: i16 = -4;
pub const GNTST_BAD_VIRT_ADDR: i16 = -5;
pub const GNTST_BAD_DEV_ADDR: i16 = -6;
pub const GNTST_NO_DEVICE_SPACE: i16 = -7;
pub const GNTST_PERMISSION_DENIED: i16 = -8;
pub const GNTST_BAD_PAGE: i16 = -9;
pub const GNTST_BAD_COPY_ARG: i16 = -10;
pub const GNTST_ADDRESS_TOO_BIG: i16 = -11;
pub const GNTST_EAGAIN: i16 = -12;
pub const GNTST_NO_SPACE: i16 = -13;

/// `struct grant_entry_v1` (grant_table.h), 8 bytes. The guest writes
/// `domid` and `frame` before `flags`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantEntryV1 {
    /// `GTF_*`.
    pub flags: u16,
    /// The domain granted access.
    pub domid: DomId,
    /// The granted GFN.
    pub frame: u32,
}

/// `struct gnttab_map_grant_ref` (grant_table.h), 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabMapGrantRef {
    /// For an auto-translated mapper: the GPA where the frame appears.
    pub host_addr: u64,
    /// `GNTMAP_*`.
    pub flags: u32,
    pub r#ref: GrantRef,
    /// The granting domain.
    pub dom: DomId,
    /// Out: `GNTST_*`.
    pub status: i16,
    /// Out.
    pub handle: GrantHandle,
    /// Out.
    pub dev_bus_addr: u64,
}

/// `struct gnttab_unmap_grant_ref` (grant_table.h), 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabUnmapGrantRef {
    pub host_addr: u64,
    pub dev_bus_addr: u64,
    pub handle: GrantHandle,
    /// Out: `GNTST_*`.
    pub status: i16,
    pub pad: u16,
}

/// `struct gnttab_setup_table` (grant_table.h), 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabSetupTable {
    pub dom: DomId,
    pub pad0: u16,
    pub nr_frames: u32,
    /// Out: `GNTST_*`.
    pub status: i16,
    pub pad1: [u16; 3],
    /// Guest handle of the `xen_pfn_t[nr_frames]` output.
    pub frame_list: u64,
}

/// One side of a `gnttab_copy` (`struct gnttab_copy_ptr`), 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabCopyPtr {
    /// The union `u`: a grant ref in the low 32 bits (with
    /// `GNTCOPY_*_gref`) or a GFN of the caller (`xen_pfn_t gmfn`).
    pub u: u64,
    pub domid: DomId,
    pub offset: u16,
    pub pad: u32,
}

impl GnttabCopyPtr {
    /// `u.ref`: the low half of the union on x86 (little-endian).
    pub const fn gref(&self) -> GrantRef {
        self.u as u32
    }
}

/// `struct gnttab_copy` (grant_table.h), 40 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabCopy {
    pub source: GnttabCopyPtr,
    pub dest: GnttabCopyPtr,
    pub len: u16,
    /// `GNTCOPY_*`.
    pub flags: u16,
    /// Out: `GNTST_*`.
    pub status: i16,
    pub pad: u16,
}

/// `struct gnttab_query_size` (grant_table.h), 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabQuerySize {
    pub dom: DomId,
    pub pad0: u16,
    /// Out.
    pub nr_frames: u32,
    /// Out.
    pub max_nr_frames: u32,
    /// Out: `GNTST_*`.
    pub status: i16,
    pub pad1: u16,
}

/// `struct gnttab_set_version` (grant_table.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabSetVersion {
    /// In: the version wanted; out: the version in force.
    pub version: u32,
}

/// `struct gnttab_get_version` (grant_table.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabGetVersion {
    pub dom: DomId,
    pub pad: u16,
    /// Out.
    pub version: u32,
}

/// `struct gnttab_get_status_frames` (grant_table.h), version 2.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabGetStatusFrames {
    pub nr_frames: u32,
    pub dom: DomId,
    /// Out: `GNTST_*`.
    pub status: i16,
    /// Guest handle of the `uint64_t[nr_frames]` output.
    pub frame_list: u64,
}

assert_eq_size!(GrantEntryV1, [u8; 8]);
const_assert_eq!(offset_of!(GrantEntryV1, domid), 2);
const_assert_eq!(offset_of!(GrantEntryV1, frame), 4);
assert_eq_size!(GnttabMapGrantRef, [u8; 32]);
const_assert_eq!(offset_of!(GnttabMapGrantRef, flags), 8);
const_assert_eq!(offset_of!(GnttabMapGrantRef, r#ref), 12);
const_assert_eq!(offset_of!(GnttabMapGrantRef, dom), 16);
const_assert_eq!(offset_of!(GnttabMapGrantRef, status), 18);
const_assert_eq!(offset_of!(GnttabMapGrantRef, handle), 20);
const_assert_eq!(offset_of!(GnttabMapGrantRef, dev_bus_addr), 24);
assert_eq_size!(GnttabUnmapGrantRef, [u8; 24]);
const_assert_eq!(offset_of!(GnttabUnmapGrantRef, dev_bus_addr), 8);
const_assert_eq!(offset_of!(GnttabUnmapGrantRef, handle), 16);
const_assert_eq!(offset_of!(GnttabUnmapGrantRef, status), 20);
const_assert_eq!(offset_of!(GnttabUnmapGrantRef, pad), 22);
assert_eq_size!(GnttabSetupTable, [u8; 24]);
const_assert_eq!(offset_of!(GnttabSetupTable, pad0), 2);
const_assert_eq!(offset_of!(GnttabSetupTable, nr_frames), 4);
const_assert_eq!(offset_of!(GnttabSetupTable, status), 8);
const_assert_eq!(offset_of!(GnttabSetupTable, pad1), 10);
const_assert_eq!(offset_of!(GnttabSetupTable, frame_list), 16);
assert_eq_size!(GnttabCopyPtr, [u8; 16]);
const_assert_eq!(offset_of!(GnttabCopyPtr, domid), 8);
const_assert_eq!(offset_of!(GnttabCopyPtr, offset), 10);
const_assert_eq!(offset_of!(GnttabCopyPtr, pad), 12);
assert_eq_size!(GnttabCopy, [u8; 40]);
const_assert_eq!(offset_of!(GnttabCopy, dest), 16);
const_assert_eq!(offset_of!(GnttabCopy, len), 32);
const_assert_eq!(offset_of!(GnttabCopy, flags), 34);
const_assert_eq!(offset_of!(GnttabCopy, status), 36);
const_assert_eq!(offset_of!(GnttabCopy, pad), 38);
assert_eq_size!(GnttabQuerySize, [u8; 16]);
const_assert_eq!(offset_of!(GnttabQuerySize, pad0), 2);
const_assert_eq!(offset_of!(GnttabQuerySize, nr_frames), 4);
const_assert_eq!(offset_of!(GnttabQuerySize, max_nr_frames), 8);
const_assert_eq!(offset_of!(GnttabQuerySize, status), 12);
const_assert_eq!(offset_of!(GnttabQuerySize, pad1), 14);
assert_eq_size!(GnttabSetVersion, [u8; 4]);
assert_eq_size!(GnttabGetVersion, [u8; 8]);
const_assert_eq!(offset_of!(GnttabGetVersion, pad), 2);
const_assert_eq!(offset_of!(GnttabGetVersion, version), 4);
assert_eq_size!(GnttabGetStatusFrames, [u8; 16]);
const_assert_eq!(offset_of!(GnttabGetStatusFrames, dom), 4);
const_assert_eq!(offset_of!(GnttabGetStatusFrames, status), 6);
const_assert_eq!(offset_of!(GnttabGetStatusFrames, frame_list), 8);
const_assert_eq!(
    GRANT_ENTRIES_V1_PER_FRAME as usize * core::mem::size_of::<GrantEntryV1>(),
    4096
);
