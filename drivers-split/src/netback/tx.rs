//! One packet's transmit slots, read once and checked (netif.h "Guest transmit"; Linux xen-netback `xenvif_count_requests`, `xenvif_get_extras`).
//!
//! A packet is its first slot (the whole packet's size and its flags),
//! the extra-info slots its flags announce, then continuation slots while
//! `NETTXF_more_data` says so. Every slot gets a response: extra-info
//! slots `NETIF_RSP_NULL`, the others `OKAY` or, if anything about the
//! packet is wrong, `ERROR`, and the packet goes nowhere. Where Linux
//! would disconnect the frontend for a malformed chain, only the packet is
//! dropped here: a frontend breaking the rules hurts its own traffic.

use crate::grant_copy::Piece;
use alloc::vec::Vec;
use xen_abi::netif::*;

/// Data slots one packet may use (the minimum every backend must take;
/// Linux netfront never uses more).
pub const MAX_DATA_SLOTS: usize = XEN_NETIF_NR_SLOTS_MIN;
/// Extra-info slots one packet may carry: one of each type at most.
pub const MAX_EXTRA_SLOTS: usize = XEN_NETIF_EXTRA_TYPE_MAX as usize - 1;
/// The shortest packet: an Ethernet header.
pub const ETH_HLEN: usize = 14;
const PAGE: usize = 4096;

/// Segmentation offload metadata from a GSO extra-info slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gso {
    /// Maximum segment size.
    pub size: u16,
    /// `XEN_NETIF_GSO_TYPE_TCPV4` or `_TCPV6`.
    pub kind: u8,
}

/// A packet's slots as parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxPacket {
    /// Slots it took off the ring.
    pub slots: usize,
    /// One `(id, status)` per slot, in ring order: `NETIF_RSP_NULL` for
    /// extra-info slots, `NETIF_RSP_OKAY` for the others until something fails.
    pub responses: Vec<(u16, i16)>,
    /// The data, in order; the first piece is what the first slot holds
    /// (the total less the continuation slots).
    pub pieces: Vec<Piece>,
    pub size: usize,
    /// The first slot's `NETTXF_*` flags.
    pub flags: u16,
    pub gso: Option<Gso>,
    /// Why the packet is dropped, if it is.
    pub error: Option<&'static str>,
}

impl TxPacket {
    /// Marks the packet dropped: its data slots answer ERROR.
    pub fn fail(&mut self, why: &'static str) {
        if self.error.is_none() {
            self.error = Some(why);
        }
        for r in self.responses.iter_mut().filter(|r| r.1 != NETIF_RSP_NULL) {
            r.1 = NETIF_RSP_ERROR;
        }
    }
}

/// Parses the packet starting at the first of `available` waiting slots
/// (`available` > 0); `slot(k)` reads the k-th waiting slot, and each is
/// read at most once. A chain still open at the last waiting slot is an
/// error: netfront publishes whole packets.
pub fn parse(available: usize, mut slot: impl FnMut(usize) -> NetifTxRequest) -> TxPacket {
    let first = slot(0);
    let mut p = TxPacket {
        slots: 1,
        responses: alloc::vec![(first.id, NETIF_RSP_OKAY)],
        pieces: Vec::new(),
        size: usize::from(first.size),
        flags: first.flags,
        gso: None,
        error: None,
    };
    let mut why: Option<&'static str> = None;
    // Extra-info slots: each a `netif_extra_info` overlaid on the slot.
    let mut more_extras = first.flags & NETTXF_EXTRA_INFO != 0;
    while more_extras {
        if p.slots == available {
            why.get_or_insert("extra-info slots run past the published requests");
            break;
        }
        let raw = slot(p.slots).to_bytes();
        p.slots += 1;
        let extra = NetifExtraInfo::from_bytes(&raw);
        p.responses
            .push((u16::from_le_bytes([raw[8], raw[9]]), NETIF_RSP_NULL));
        more_extras = extra.flags & XEN_NETIF_EXTRA_FLAG_MORE != 0;
        if p.slots - 1 > MAX_EXTRA_SLOTS {
            why.get_or_insert("too many extra-info slots");
            continue;
        }
        match extra.kind {
            XEN_NETIF_EXTRA_TYPE_GSO => {
                if extra.gso_size == 0
                    || !matches!(
                        extra.gso_type,
                        XEN_NETIF_GSO_TYPE_TCPV4 | XEN_NETIF_GSO_TYPE_TCPV6
                    )
                {
                    why.get_or_insert("a GSO extra with no size or an unknown type");
                } else {
                    p.gso = Some(Gso {
                        size: extra.gso_size,
                        kind: extra.gso_type,
                    });
                }
            }
            // Multicast filters and hash values are hints a switch that
            // floods group traffic does not need.
            XEN_NETIF_EXTRA_TYPE_MCAST_ADD
            | XEN_NETIF_EXTRA_TYPE_MCAST_DEL
            | XEN_NETIF_EXTRA_TYPE_HASH => {}
            _ => {
                why.get_or_insert("an unknown extra-info type");
            }
        }
    }
    // The data slots: the first, then the continuation chain.
    let mut data = alloc::vec![first];
    let mut more = first.flags & NETTXF_MORE_DATA != 0;
    while more {
        if p.slots == available {
            why.get_or_insert("a fragment chain without an end");
            break;
        }
        let next = slot(p.slots);
        p.slots += 1;
        p.responses.push((next.id, NETIF_RSP_OKAY));
        more = next.flags & NETTXF_MORE_DATA != 0;
        data.push(next);
    }
    if data.len() > MAX_DATA_SLOTS {
        why.get_or_insert("more fragments than a packet may have");
    }
    if p.size < ETH_HLEN {
        why.get_or_insert("a packet shorter than an Ethernet header");
    }
    // The first slot holds what the others do not.
    let rest: usize = data[1..].iter().map(|d| usize::from(d.size)).sum();
    if rest > p.size {
        why.get_or_insert("fragments larger than the packet");
    }
    let first_len = p.size.saturating_sub(rest);
    for (i, d) in data.iter().enumerate() {
        let len = if i == 0 {
            first_len
        } else {
            usize::from(d.size)
        };
        if usize::from(d.offset) + len > PAGE {
            why.get_or_insert("a fragment crosses its page");
        }
        if len > 0 {
            p.pieces.push(Piece {
                gref: d.gref,
                offset: d.offset,
                len: len.min(PAGE) as u16,
            });
        }
    }
    if let Some(w) = why {
        p.fail(w);
    }
    p
}
