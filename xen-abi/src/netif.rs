//! The network interface rings (public/io/netif.h), x86-64 layout: transmit and receive requests and responses, and the extra-info slot.
//!
//! As with blkif, a slot is read out of the shared page once into these
//! structures (`from_bytes`) and checked afterwards, because the guest may
//! rewrite it at any time.

use core::mem::{offset_of, size_of};
use static_assertions::const_assert_eq;

// NETTXF_* (netif.h): `NetifTxRequest::flags`.
/// The L4 checksum is not computed: only the pseudo-header sum is in place.
pub const NETTXF_CSUM_BLANK: u16 = 1;
/// The packet's checksums were verified (or will be computed, with csum_blank).
pub const NETTXF_DATA_VALIDATED: u16 = 2;
/// The next slot continues this packet.
pub const NETTXF_MORE_DATA: u16 = 4;
/// The next slot is a `NetifExtraInfo`.
pub const NETTXF_EXTRA_INFO: u16 = 8;

// NETRXF_* (netif.h): `NetifRxResponse::flags`.
pub const NETRXF_DATA_VALIDATED: u16 = 1;
pub const NETRXF_CSUM_BLANK: u16 = 2;
pub const NETRXF_MORE_DATA: u16 = 4;
pub const NETRXF_EXTRA_INFO: u16 = 8;

// XEN_NETIF_EXTRA_TYPE_* (netif.h).
pub const XEN_NETIF_EXTRA_TYPE_GSO: u8 = 1;
pub const XEN_NETIF_EXTRA_TYPE_MCAST_ADD: u8 = 2;
pub const XEN_NETIF_EXTRA_TYPE_MCAST_DEL: u8 = 3;
pub const XEN_NETIF_EXTRA_TYPE_HASH: u8 = 4;
/// Types below this are defined (`XEN_NETIF_EXTRA_TYPE_MAX` is 6 with XDP).
pub const XEN_NETIF_EXTRA_TYPE_MAX: u8 = 6;
/// Another extra-info slot follows (`XEN_NETIF_EXTRA_FLAG_MORE`).
pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1;

// XEN_NETIF_GSO_TYPE_* (netif.h).
pub const XEN_NETIF_GSO_TYPE_TCPV4: u8 = 1;
pub const XEN_NETIF_GSO_TYPE_TCPV6: u8 = 2;

// NETIF_RSP_* (netif.h).
pub const NETIF_RSP_DROPPED: i16 = -2;
pub const NETIF_RSP_ERROR: i16 = -1;
pub const NETIF_RSP_OKAY: i16 = 0;
/// The response to an extra-info slot.
pub const NETIF_RSP_NULL: i16 = 1;

/// Slots of one packet every backend must accept (`XEN_NETIF_NR_SLOTS_MIN`).
pub const XEN_NETIF_NR_SLOTS_MIN: usize = 18;
/// The largest packet the 16-bit size field can describe (`XEN_NETIF_MAX_TX_SIZE`).
pub const XEN_NETIF_MAX_TX_SIZE: usize = 0xffff;

/// `struct netif_tx_request`: one fragment of a packet, within one granted page.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetifTxRequest {
    pub gref: u32,
    pub offset: u16,
    pub flags: u16,
    pub id: u16,
    /// The whole packet's size in its first slot, the fragment's in the others.
    pub size: u16,
}

const_assert_eq!(size_of::<NetifTxRequest>(), 12);
const_assert_eq!(offset_of!(NetifTxRequest, offset), 4);
const_assert_eq!(offset_of!(NetifTxRequest, flags), 6);
const_assert_eq!(offset_of!(NetifTxRequest, id), 8);
const_assert_eq!(offset_of!(NetifTxRequest, size), 10);

impl NetifTxRequest {
    pub fn from_bytes(b: &[u8; 12]) -> Self {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        NetifTxRequest {
            gref: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            offset: u16_at(4),
            flags: u16_at(6),
            id: u16_at(8),
            size: u16_at(10),
        }
    }

    pub fn to_bytes(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&self.gref.to_le_bytes());
        b[4..6].copy_from_slice(&self.offset.to_le_bytes());
        b[6..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..10].copy_from_slice(&self.id.to_le_bytes());
        b[10..12].copy_from_slice(&self.size.to_le_bytes());
        b
    }
}

/// `struct netif_tx_response`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetifTxResponse {
    pub id: u16,
    pub status: i16,
}

const_assert_eq!(size_of::<NetifTxResponse>(), 4);
const_assert_eq!(offset_of!(NetifTxResponse, status), 2);

impl NetifTxResponse {
    pub fn to_bytes(&self) -> [u8; 4] {
        let mut b = [0u8; 4];
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[2..4].copy_from_slice(&self.status.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; 4]) -> Self {
        NetifTxResponse {
            id: u16::from_le_bytes([b[0], b[1]]),
            status: i16::from_le_bytes([b[2], b[3]]),
        }
    }
}

/// `struct netif_rx_request`: a whole page granted writable for one slot of data.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetifRxRequest {
    pub id: u16,
    pub pad: u16,
    pub gref: u32,
}

const_assert_eq!(size_of::<NetifRxRequest>(), 8);
const_assert_eq!(offset_of!(NetifRxRequest, gref), 4);

impl NetifRxRequest {
    pub fn from_bytes(b: &[u8; 8]) -> Self {
        NetifRxRequest {
            id: u16::from_le_bytes([b[0], b[1]]),
            pad: u16::from_le_bytes([b[2], b[3]]),
            gref: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    pub fn to_bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[2..4].copy_from_slice(&self.pad.to_le_bytes());
        b[4..8].copy_from_slice(&self.gref.to_le_bytes());
        b
    }
}

/// `struct netif_rx_response`: `status` > 0 is the bytes in this slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetifRxResponse {
    pub id: u16,
    pub offset: u16,
    pub flags: u16,
    pub status: i16,
}

const_assert_eq!(size_of::<NetifRxResponse>(), 8);
const_assert_eq!(offset_of!(NetifRxResponse, offset), 2);
const_assert_eq!(offset_of!(NetifRxResponse, flags), 4);
const_assert_eq!(offset_of!(NetifRxResponse, status), 6);

impl NetifRxResponse {
    pub fn to_bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[2..4].copy_from_slice(&self.offset.to_le_bytes());
        b[4..6].copy_from_slice(&self.flags.to_le_bytes());
        b[6..8].copy_from_slice(&self.status.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; 8]) -> Self {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        NetifRxResponse {
            id: u16_at(0),
            offset: u16_at(2),
            flags: u16_at(4),
            status: u16_at(6) as i16,
        }
    }
}

/// `struct netif_extra_info`, the GSO member of its union (the others are
/// read as their type only): it takes a whole slot of either ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetifExtraInfo {
    pub kind: u8,
    pub flags: u8,
    /// `u.gso.size`: the maximum segment size.
    pub gso_size: u16,
    /// `u.gso.type`: `XEN_NETIF_GSO_TYPE_*`.
    pub gso_type: u8,
    pub gso_pad: u8,
    pub gso_features: u16,
}

const_assert_eq!(size_of::<NetifExtraInfo>(), 8);
const_assert_eq!(offset_of!(NetifExtraInfo, flags), 1);
const_assert_eq!(offset_of!(NetifExtraInfo, gso_size), 2);
const_assert_eq!(offset_of!(NetifExtraInfo, gso_type), 4);
const_assert_eq!(offset_of!(NetifExtraInfo, gso_features), 6);

impl NetifExtraInfo {
    /// From the first 8 bytes of a slot.
    pub fn from_bytes(b: &[u8]) -> Self {
        NetifExtraInfo {
            kind: b[0],
            flags: b[1],
            gso_size: u16::from_le_bytes([b[2], b[3]]),
            gso_type: b[4],
            gso_pad: b[5],
            gso_features: u16::from_le_bytes([b[6], b[7]]),
        }
    }

    pub fn to_bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.kind;
        b[1] = self.flags;
        b[2..4].copy_from_slice(&self.gso_size.to_le_bytes());
        b[4] = self.gso_type;
        b[5] = self.gso_pad;
        b[6..8].copy_from_slice(&self.gso_features.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip() {
        let t = NetifTxRequest {
            gref: 0x1234_5678,
            offset: 100,
            flags: NETTXF_MORE_DATA | NETTXF_CSUM_BLANK,
            id: 7,
            size: 1514,
        };
        assert_eq!(NetifTxRequest::from_bytes(&t.to_bytes()), t);
        let r = NetifRxResponse {
            id: 3,
            offset: 0,
            flags: NETRXF_MORE_DATA,
            status: -1,
        };
        assert_eq!(NetifRxResponse::from_bytes(&r.to_bytes()), r);
        let e = NetifExtraInfo {
            kind: XEN_NETIF_EXTRA_TYPE_GSO,
            flags: 0,
            gso_size: 1448,
            gso_type: XEN_NETIF_GSO_TYPE_TCPV4,
            gso_pad: 0,
            gso_features: 0,
        };
        assert_eq!(NetifExtraInfo::from_bytes(&e.to_bytes()), e);
    }
}
