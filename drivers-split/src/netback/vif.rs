//! A connected interface: its transmit ring read into packets, its receive ring filled from a queue, both by grant copy.
//!
//! Transmit: each packet is checked ([`tx::parse`]), copied into a buffer
//! of its own in one grant-copy call, and answered; the checksum it left
//! blank is completed unless it is a GSO packet, which goes on whole.
//! Receive: packets wait in a bounded queue until the frontend has posted
//! enough buffers; each takes one request per 4 KiB of data plus one for
//! its GSO extra, and every response goes in the slot of the request it
//! answers (netfront finds its buffers by slot, not by id).

use super::checksum;
use super::config::Mac;
use super::tx::{self, Gso, TxPacket};
use super::xenbus::Peer;
use crate::grant_copy::{Grants, Piece};
use crate::ring::{BackRing, RingError};
use crate::xenstore::RingMemory;
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use xen_abi::grant_table::GNTST_OKAY;
use xen_abi::netif::*;

/// Slot sizes: the larger of request and response (netif.h).
pub const TX_SLOT: usize = 12;
pub const RX_SLOT: usize = 8;
const PAGE: usize = 4096;
/// A receive queue holds at most this many packets and bytes; past that,
/// packets for this interface are dropped (TCP recovers; the driver
/// domain's heap is not spent on a guest that does not read).
pub const QUEUE_PACKETS: usize = 256;
pub const QUEUE_BYTES: usize = 1 << 20;

/// A packet on its way through the switch: its bytes (shared when it is
/// flooded) and what the receiver is told about them.
#[derive(Clone, Debug)]
pub struct Packet {
    pub data: Rc<Vec<u8>>,
    /// `NETRXF_csum_blank` / `NETRXF_data_validated` for the receiver.
    pub rx_flags: u16,
    pub gso: Option<Gso>,
}

impl Packet {
    pub fn dst(&self) -> Mac {
        Mac::from_slice(&self.data[0..6])
    }

    pub fn src(&self) -> Mac {
        Mac::from_slice(&self.data[6..12])
    }

    fn data_slots(&self) -> usize {
        self.data.len().div_ceil(PAGE).max(1)
    }

    /// Receive requests it takes: its data slots and its GSO extra.
    fn rx_slots(&self) -> usize {
        self.data_slots() + usize::from(self.gso.is_some())
    }
}

/// Why a packet did not join a receive queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// A GSO packet for a frontend that did not ask for that kind.
    NoGso,
    /// A packet of several pages for a frontend without `feature-sg`.
    NoSg,
    QueueFull,
}

/// Counters of one interface, for its disconnect line and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Malformed packets and packets whose grants failed.
    pub tx_errors: u64,
    /// Packets sent from another address than the interface's own.
    pub spoofed: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Packets for this interface refused (see [`Refused`]).
    pub dropped: u64,
    pub gso_packets: u64,
    /// Checksums completed for the frontend.
    pub checksums: u64,
}

pub struct Vif<M: RingMemory> {
    pub domid: u16,
    pub mac: Mac,
    peer: Peer,
    tx: BackRing<M>,
    rx: BackRing<M>,
    queue: VecDeque<Packet>,
    queued_bytes: usize,
    pub counters: Counters,
    /// Why the last malformed packet was dropped, until taken for a log line.
    pub last_error: Option<&'static str>,
}

/// What one transmitted packet came to.
enum Sent {
    Packet(Packet),
    Spoofed,
}

impl<M: RingMemory> Vif<M> {
    /// Attaches to the frontend's two one-page rings.
    pub fn new(domid: u16, mac: Mac, peer: Peer, tx: M, rx: M) -> Self {
        Vif {
            domid,
            mac,
            peer,
            tx: BackRing::attach(tx, PAGE, TX_SLOT),
            rx: BackRing::attach(rx, PAGE, RX_SLOT),
            queue: VecDeque::new(),
            queued_bytes: 0,
            counters: Counters::default(),
            last_error: None,
        }
    }

    /// Takes up to `max_packets` packets off the transmit ring and answers
    /// every slot; returns the good ones.
    pub fn take_tx(
        &mut self,
        grants: &mut dyn Grants,
        max_packets: usize,
    ) -> Result<Vec<Packet>, RingError> {
        let mut out = Vec::new();
        for _ in 0..max_packets {
            let waiting = self.tx.unconsumed()? as usize;
            if waiting == 0 {
                break;
            }
            let mut raw = [0u8; TX_SLOT];
            let ring = &self.tx;
            let mut p = tx::parse(waiting, |k| {
                ring.peek_request(k as u32, &mut raw);
                NetifTxRequest::from_bytes(&raw)
            });
            self.tx.consume(p.slots as u32);
            if p.error.is_none() {
                match self.copy_in(&p, grants) {
                    Ok(Sent::Packet(packet)) => {
                        self.counters.tx_packets += 1;
                        self.counters.tx_bytes += packet.data.len() as u64;
                        out.push(packet);
                    }
                    Ok(Sent::Spoofed) => self.counters.spoofed += 1,
                    Err(why) => p.fail(why),
                }
            }
            if let Some(why) = p.error {
                self.counters.tx_errors += 1;
                self.last_error = Some(why);
            }
            for &(id, status) in &p.responses {
                self.tx
                    .put_response(&NetifTxResponse { id, status }.to_bytes());
            }
        }
        Ok(out)
    }

    /// The packet's bytes, by one grant-copy call into a buffer its size.
    fn copy_in(&mut self, p: &TxPacket, grants: &mut dyn Grants) -> Result<Sent, &'static str> {
        let mut data: Vec<u8> = Vec::new();
        data.try_reserve_exact(p.size)
            .map_err(|_| "no memory for the packet")?;
        data.resize(p.size, 0);
        let mut at = 0;
        let pieces: Vec<(Piece, usize)> = p
            .pieces
            .iter()
            .map(|pc| {
                let here = at;
                at += usize::from(pc.len);
                (*pc, here)
            })
            .collect();
        let mut status = vec![0i16; pieces.len()];
        grants.copy_in(self.domid, &pieces, &mut data, &mut status);
        if status.iter().any(|&s| s != GNTST_OKAY) {
            return Err("a fragment's grant is not the guest's to give");
        }
        if Mac::from_slice(&data[6..12]) != self.mac {
            return Ok(Sent::Spoofed);
        }
        let mut rx_flags = 0;
        if p.flags & NETTXF_CSUM_BLANK != 0 {
            // A GSO packet is cut into segments by the receiving stack,
            // which fills in each one's checksum; so is one whose
            // protocol is not known here.
            if p.gso.is_some() || checksum::complete(&mut data).is_err() {
                rx_flags = NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED;
            } else {
                self.counters.checksums += 1;
            }
        } else if p.flags & NETTXF_DATA_VALIDATED != 0 {
            rx_flags = NETRXF_DATA_VALIDATED;
        }
        if p.gso.is_some() {
            self.counters.gso_packets += 1;
        }
        Ok(Sent::Packet(Packet {
            data: Rc::new(data),
            rx_flags,
            gso: p.gso,
        }))
    }

    /// Queues a packet for this interface's receive ring.
    pub fn enqueue(&mut self, p: Packet) -> Result<(), Refused> {
        let refused = match p.gso {
            Some(g) if g.kind == XEN_NETIF_GSO_TYPE_TCPV4 && !self.peer.gso_v4 => {
                Some(Refused::NoGso)
            }
            Some(g) if g.kind == XEN_NETIF_GSO_TYPE_TCPV6 && !self.peer.gso_v6 => {
                Some(Refused::NoGso)
            }
            _ if p.data_slots() > 1 && !self.peer.sg => Some(Refused::NoSg),
            _ if self.queue.len() >= QUEUE_PACKETS
                || self.queued_bytes + p.data.len() > QUEUE_BYTES =>
            {
                Some(Refused::QueueFull)
            }
            _ => None,
        };
        if let Some(r) = refused {
            self.counters.dropped += 1;
            return Err(r);
        }
        self.queued_bytes += p.data.len();
        self.queue.push_back(p);
        Ok(())
    }

    /// Moves queued packets into the receive buffers the frontend posted.
    pub fn deliver(&mut self, grants: &mut dyn Grants) -> Result<(), RingError> {
        while let Some(p) = self.queue.front() {
            let need = p.rx_slots();
            if (self.rx.unconsumed()? as usize) < need {
                break;
            }
            let p = self.queue.pop_front().expect("a front packet");
            self.queued_bytes -= p.data.len();
            self.fill(&p, grants);
        }
        Ok(())
    }

    /// One packet into the next receive requests (there are enough).
    fn fill(&mut self, p: &Packet, grants: &mut dyn Grants) {
        let data_slots = p.data_slots();
        let mut reqs = Vec::with_capacity(p.rx_slots());
        for _ in 0..p.rx_slots() {
            let mut raw = [0u8; RX_SLOT];
            self.rx.take_request(&mut raw);
            reqs.push(NetifRxRequest::from_bytes(&raw));
        }
        // Data goes in the first slot and, after the GSO extra, the rest.
        let extra_at = p.gso.map(|_| 1);
        let data_reqs: Vec<NetifRxRequest> = reqs
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != extra_at)
            .map(|(_, r)| *r)
            .collect();
        let len = p.data.len();
        let pieces: Vec<(Piece, usize)> = data_reqs
            .iter()
            .enumerate()
            .map(|(d, r)| {
                let at = d * PAGE;
                let piece = Piece {
                    gref: r.gref,
                    offset: 0,
                    len: (len - at).min(PAGE) as u16,
                };
                (piece, at)
            })
            .collect();
        let mut status = vec![0i16; pieces.len()];
        grants.copy_out(self.domid, &pieces, &p.data, &mut status);
        let mut d = 0;
        for (i, r) in reqs.iter().enumerate() {
            if Some(i) == extra_at {
                let g = p.gso.expect("a GSO packet");
                let extra = NetifExtraInfo {
                    kind: XEN_NETIF_EXTRA_TYPE_GSO,
                    flags: 0,
                    gso_size: g.size,
                    gso_type: g.kind,
                    gso_pad: 0,
                    gso_features: 0,
                };
                self.rx.put_response(&extra.to_bytes());
                continue;
            }
            let mut flags = 0;
            if d == 0 {
                flags |= p.rx_flags;
                if extra_at.is_some() {
                    flags |= NETRXF_EXTRA_INFO;
                }
            }
            if d + 1 < data_slots {
                flags |= NETRXF_MORE_DATA;
            }
            let rsp = NetifRxResponse {
                id: r.id,
                offset: 0,
                flags,
                status: if status[d] == GNTST_OKAY {
                    pieces[d].0.len as i16
                } else {
                    NETIF_RSP_ERROR
                },
            };
            self.rx.put_response(&rsp.to_bytes());
            d += 1;
        }
        self.counters.rx_packets += 1;
        self.counters.rx_bytes += len as u64;
    }

    /// Publishes the responses of both rings; true if the frontend is to
    /// be notified (one event channel serves both).
    pub fn push(&mut self) -> bool {
        let tx = self.tx.push_responses();
        let rx = self.rx.push_responses();
        tx || rx
    }

    /// Before the driver domain sleeps: asks for an event on the next
    /// transmit request and, if packets wait for buffers, on the next
    /// receive request; true if there is work after all.
    pub fn idle_check(&mut self) -> Result<bool, RingError> {
        let tx = self.tx.final_check()?;
        let rx = match self.queue.front() {
            Some(p) => {
                let need = p.rx_slots();
                self.rx.final_check()?;
                self.rx.unconsumed()? as usize >= need
            }
            None => false,
        };
        Ok(tx || rx)
    }

    /// The two rings' shared pages, for tests playing the frontend.
    #[cfg(test)]
    pub fn rings(&mut self) -> (&mut M, &mut M) {
        (self.tx.memory(), self.rx.memory())
    }

    /// Packets waiting for receive buffers.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}
