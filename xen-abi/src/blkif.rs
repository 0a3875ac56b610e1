//! The block device ring (public/io/blkif.h and io/ring.h), x86-64 layout: requests, responses and the shared ring's header.
//!
//! Requests are read out of the shared page byte by byte into these
//! structures (`from_bytes`) and checked afterwards: the guest may rewrite
//! a slot while the backend looks at it, so a field is read exactly once.

use core::mem::{offset_of, size_of};
use static_assertions::const_assert_eq;

// BLKIF_OP_* (blkif.h).
pub const BLKIF_OP_READ: u8 = 0;
pub const BLKIF_OP_WRITE: u8 = 1;
/// Write with ordering against everything before it ("feature-barrier").
pub const BLKIF_OP_WRITE_BARRIER: u8 = 2;
/// Flush the device's write cache ("feature-flush-cache"); may carry no segments.
pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = 3;
/// Discard a range ("feature-discard"): a `BlkifRequestDiscard` in the slot.
pub const BLKIF_OP_DISCARD: u8 = 5;
/// Segments listed in granted pages ("feature-max-indirect-segments"): a
/// `BlkifRequestIndirect` in the slot.
pub const BLKIF_OP_INDIRECT: u8 = 6;

/// Segments a direct request carries (`BLKIF_MAX_SEGMENTS_PER_REQUEST`).
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// Indirect pages one request may name (`BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`).
pub const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// Segment descriptors in one indirect page (4096 / 8).
pub const BLKIF_SEGMENTS_PER_INDIRECT_FRAME: usize = 512;

// BLKIF_RSP_* (blkif.h): `BlkifResponse::status`.
pub const BLKIF_RSP_OKAY: i16 = 0;
pub const BLKIF_RSP_ERROR: i16 = -1;
/// Only for barrier, flush and discard: the frontend stops using the feature.
pub const BLKIF_RSP_EOPNOTSUPP: i16 = -2;

/// `BLKIF_DISCARD_SECURE`: the discarded range must read back as zeros.
pub const BLKIF_DISCARD_SECURE: u8 = 1;

// VDISK_* (blkif.h): the backend's `info` node.
pub const VDISK_CDROM: u32 = 1;
pub const VDISK_REMOVABLE: u32 = 2;
pub const VDISK_READONLY: u32 = 4;

/// Sectors in blkif requests are 512 bytes, whatever `sector-size` says.
pub const BLKIF_SECTOR_SIZE: u64 = 512;

/// `struct blkif_request_segment`: sectors `first_sect..=last_sect` of the
/// granted 4 KiB frame `gref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkifSegment {
    pub gref: u32,
    pub first_sect: u8,
    pub last_sect: u8,
    pub pad: u16,
}

const_assert_eq!(size_of::<BlkifSegment>(), 8);
const_assert_eq!(offset_of!(BlkifSegment, first_sect), 4);
const_assert_eq!(offset_of!(BlkifSegment, last_sect), 5);

impl BlkifSegment {
    pub fn from_bytes(b: &[u8; 8]) -> Self {
        BlkifSegment {
            gref: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            first_sect: b[4],
            last_sect: b[5],
            pad: u16::from_le_bytes([b[6], b[7]]),
        }
    }

    pub fn to_bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0..4].copy_from_slice(&self.gref.to_le_bytes());
        b[4] = self.first_sect;
        b[5] = self.last_sect;
        b[6..8].copy_from_slice(&self.pad.to_le_bytes());
        b
    }
}

/// `struct blkif_request` (READ, WRITE, WRITE_BARRIER, FLUSH_DISKCACHE).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkifRequest {
    pub operation: u8,
    pub nr_segments: u8,
    /// `blkif_vdev_t`: only for the frontend's own bookkeeping.
    pub handle: u16,
    pub pad: u32,
    /// Echoed in the response.
    pub id: u64,
    /// In 512-byte sectors.
    pub sector_number: u64,
    pub seg: [BlkifSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
}

const_assert_eq!(size_of::<BlkifRequest>(), 112);
const_assert_eq!(offset_of!(BlkifRequest, nr_segments), 1);
const_assert_eq!(offset_of!(BlkifRequest, handle), 2);
const_assert_eq!(offset_of!(BlkifRequest, id), 8);
const_assert_eq!(offset_of!(BlkifRequest, sector_number), 16);
const_assert_eq!(offset_of!(BlkifRequest, seg), 24);

/// `struct blkif_request_discard`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkifRequestDiscard {
    pub operation: u8,
    /// `BLKIF_DISCARD_SECURE`.
    pub flag: u8,
    pub handle: u16,
    pub pad: u32,
    pub id: u64,
    pub sector_number: u64,
    pub nr_sectors: u64,
}

const_assert_eq!(size_of::<BlkifRequestDiscard>(), 32);
const_assert_eq!(offset_of!(BlkifRequestDiscard, id), 8);
const_assert_eq!(offset_of!(BlkifRequestDiscard, sector_number), 16);
const_assert_eq!(offset_of!(BlkifRequestDiscard, nr_sectors), 24);

/// `struct blkif_request_indirect`: the segments are in the pages of
/// `indirect_grefs`, `BLKIF_SEGMENTS_PER_INDIRECT_FRAME` per page.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkifRequestIndirect {
    pub operation: u8,
    /// READ or WRITE.
    pub indirect_op: u8,
    pub nr_segments: u16,
    pub pad1: u32,
    pub id: u64,
    pub sector_number: u64,
    pub handle: u16,
    pub pad2: u16,
    pub indirect_grefs: [u32; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
    pub pad3: u32,
}

const_assert_eq!(size_of::<BlkifRequestIndirect>(), 64);
const_assert_eq!(offset_of!(BlkifRequestIndirect, nr_segments), 2);
const_assert_eq!(offset_of!(BlkifRequestIndirect, id), 8);
const_assert_eq!(offset_of!(BlkifRequestIndirect, sector_number), 16);
const_assert_eq!(offset_of!(BlkifRequestIndirect, handle), 24);
const_assert_eq!(offset_of!(BlkifRequestIndirect, indirect_grefs), 28);

/// `struct blkif_response`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkifResponse {
    pub id: u64,
    pub operation: u8,
    pub pad: u8,
    /// `BLKIF_RSP_*`.
    pub status: i16,
    pub pad2: u32,
}

const_assert_eq!(size_of::<BlkifResponse>(), 16);
const_assert_eq!(offset_of!(BlkifResponse, operation), 8);
const_assert_eq!(offset_of!(BlkifResponse, status), 10);

impl BlkifResponse {
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&self.id.to_le_bytes());
        b[8] = self.operation;
        b[10..12].copy_from_slice(&self.status.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; 16]) -> Self {
        BlkifResponse {
            id: u64::from_le_bytes(b[0..8].try_into().expect("8 bytes")),
            operation: b[8],
            pad: 0,
            status: i16::from_le_bytes([b[10], b[11]]),
            pad2: 0,
        }
    }
}

/// A ring slot holds a request or its response (`union blkif_sring_entry`).
pub const BLKIF_SLOT_SIZE: usize = 112;
/// The shared ring's header before the slots (`struct blkif_sring`:
/// req_prod, req_event, rsp_prod, rsp_event, 48 bytes of padding).
pub const SRING_HEADER: usize = 64;
pub const SRING_REQ_PROD: usize = 0;
pub const SRING_REQ_EVENT: usize = 4;
pub const SRING_RSP_PROD: usize = 8;
pub const SRING_RSP_EVENT: usize = 12;

/// Most ring pages a frontend may use (Linux's `XENBUS_MAX_RING_GRANT_ORDER`
/// is 4; a backend advertises its own `max-ring-page-order`).
pub const BLKIF_MAX_RING_PAGE_ORDER: u32 = 4;

/// Slots in a ring of `pages` 4 KiB pages: the largest power of two that
/// fits after the header (ring.h `__RING_SIZE`).
pub const fn ring_slots(pages: usize) -> usize {
    let fit = (pages * 4096 - SRING_HEADER) / BLKIF_SLOT_SIZE;
    if fit == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - fit.leading_zeros())
    }
}

const_assert_eq!(ring_slots(1), 32);
const_assert_eq!(ring_slots(4), 128);

impl BlkifRequest {
    /// The request in a ring slot, field by field.
    pub fn from_bytes(b: &[u8; BLKIF_SLOT_SIZE]) -> Self {
        let mut seg = [BlkifSegment::default(); BLKIF_MAX_SEGMENTS_PER_REQUEST];
        for (i, s) in seg.iter_mut().enumerate() {
            let at = 24 + i * 8;
            *s = BlkifSegment::from_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        }
        BlkifRequest {
            operation: b[0],
            nr_segments: b[1],
            handle: u16::from_le_bytes([b[2], b[3]]),
            pad: 0,
            id: u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
            sector_number: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
            seg,
        }
    }

    pub fn to_bytes(&self) -> [u8; BLKIF_SLOT_SIZE] {
        let mut b = [0u8; BLKIF_SLOT_SIZE];
        b[0] = self.operation;
        b[1] = self.nr_segments;
        b[2..4].copy_from_slice(&self.handle.to_le_bytes());
        b[8..16].copy_from_slice(&self.id.to_le_bytes());
        b[16..24].copy_from_slice(&self.sector_number.to_le_bytes());
        for (i, s) in self.seg.iter().enumerate() {
            b[24 + i * 8..32 + i * 8].copy_from_slice(&s.to_bytes());
        }
        b
    }
}

impl BlkifRequestDiscard {
    pub fn from_bytes(b: &[u8; BLKIF_SLOT_SIZE]) -> Self {
        BlkifRequestDiscard {
            operation: b[0],
            flag: b[1],
            handle: u16::from_le_bytes([b[2], b[3]]),
            pad: 0,
            id: u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
            sector_number: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
            nr_sectors: u64::from_le_bytes(b[24..32].try_into().expect("8 bytes")),
        }
    }

    pub fn to_bytes(&self) -> [u8; BLKIF_SLOT_SIZE] {
        let mut b = [0u8; BLKIF_SLOT_SIZE];
        b[0] = self.operation;
        b[1] = self.flag;
        b[2..4].copy_from_slice(&self.handle.to_le_bytes());
        b[8..16].copy_from_slice(&self.id.to_le_bytes());
        b[16..24].copy_from_slice(&self.sector_number.to_le_bytes());
        b[24..32].copy_from_slice(&self.nr_sectors.to_le_bytes());
        b
    }
}

impl BlkifRequestIndirect {
    pub fn from_bytes(b: &[u8; BLKIF_SLOT_SIZE]) -> Self {
        let mut indirect_grefs = [0u32; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
        for (i, g) in indirect_grefs.iter_mut().enumerate() {
            let at = 28 + i * 4;
            *g = u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        }
        BlkifRequestIndirect {
            operation: b[0],
            indirect_op: b[1],
            nr_segments: u16::from_le_bytes([b[2], b[3]]),
            pad1: 0,
            id: u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
            sector_number: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
            handle: u16::from_le_bytes([b[24], b[25]]),
            pad2: 0,
            indirect_grefs,
            pad3: 0,
        }
    }

    pub fn to_bytes(&self) -> [u8; BLKIF_SLOT_SIZE] {
        let mut b = [0u8; BLKIF_SLOT_SIZE];
        b[0] = self.operation;
        b[1] = self.indirect_op;
        b[2..4].copy_from_slice(&self.nr_segments.to_le_bytes());
        b[8..16].copy_from_slice(&self.id.to_le_bytes());
        b[16..24].copy_from_slice(&self.sector_number.to_le_bytes());
        b[24..26].copy_from_slice(&self.handle.to_le_bytes());
        for (i, g) in self.indirect_grefs.iter().enumerate() {
            b[28 + i * 4..32 + i * 4].copy_from_slice(&g.to_le_bytes());
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_a_slot() {
        let mut r = BlkifRequest {
            operation: BLKIF_OP_WRITE,
            nr_segments: 2,
            handle: 51712,
            id: 0xdead_beef_0000_0001,
            sector_number: 4096,
            ..Default::default()
        };
        r.seg[0] = BlkifSegment {
            gref: 77,
            first_sect: 0,
            last_sect: 7,
            pad: 0,
        };
        r.seg[10].gref = 9;
        assert_eq!(BlkifRequest::from_bytes(&r.to_bytes()), r);
        let i = BlkifRequestIndirect {
            operation: BLKIF_OP_INDIRECT,
            indirect_op: BLKIF_OP_READ,
            nr_segments: 300,
            id: 5,
            sector_number: 8,
            handle: 1,
            indirect_grefs: [1, 2, 3, 4, 5, 6, 7, 8],
            ..Default::default()
        };
        assert_eq!(BlkifRequestIndirect::from_bytes(&i.to_bytes()), i);
        let rsp = BlkifResponse {
            id: 3,
            operation: BLKIF_OP_READ,
            status: BLKIF_RSP_ERROR,
            ..Default::default()
        };
        assert_eq!(BlkifResponse::from_bytes(&rsp.to_bytes()), rsp);
    }
}
