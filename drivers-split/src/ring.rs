//! The backend side of a Xen shared request/response ring (public/io/ring.h `BACK_RING`), over one or more shared pages.
//!
//! The frontend owns `req_prod` and `rsp_event`, the backend `rsp_prod`
//! and `req_event`; slots hold a request until the backend overwrites them
//! with a response. The frontend can write anything at any time, so every
//! index it owns is read once and checked: a producer index that runs more
//! than a ring's worth ahead of the consumer is a broken frontend
//! ([`RingError::Overrun`]), and the backend stops serving that ring.

use crate::xenstore::RingMemory;
use core::sync::atomic::{fence, Ordering};

/// The shared header (ring.h `struct *_sring`): producer and event indices.
const REQ_PROD: usize = 0;
const REQ_EVENT: usize = 4;
const RSP_PROD: usize = 8;
const RSP_EVENT: usize = 12;
/// Slots start after the header and its padding (64 bytes on every ABI).
pub const HEADER: usize = 64;

/// The frontend broke the ring protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// `req_prod` is more than a ring ahead of what was consumed.
    Overrun { req_prod: u32, req_cons: u32 },
}

/// The backend's view of a ring of `slots` slots of `slot_size` bytes.
pub struct BackRing<M: RingMemory> {
    mem: M,
    slots: u32,
    slot_size: usize,
    /// Next request to consume (`req_cons`).
    req_cons: u32,
    /// Next response slot (`rsp_prod_pvt`), published by `push_responses`.
    rsp_prod_pvt: u32,
}

/// Slots in a ring of `bytes` bytes: the largest power of two that fits
/// after the header (ring.h `__RING_SIZE`).
pub const fn slots_for(bytes: usize, slot_size: usize) -> u32 {
    let fit = bytes.saturating_sub(HEADER) / slot_size;
    if fit == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - fit.leading_zeros())
    }
}

impl<M: RingMemory> BackRing<M> {
    /// A backend attached to a ring the frontend initialised
    /// (`BACK_RING_ATTACH`: both private indices start at `rsp_prod`, so a
    /// reconnect carries on where the frontend expects).
    pub fn attach(mem: M, bytes: usize, slot_size: usize) -> Self {
        let start = mem.load_u32(RSP_PROD);
        BackRing {
            mem,
            slots: slots_for(bytes, slot_size),
            slot_size,
            req_cons: start,
            rsp_prod_pvt: start,
        }
    }

    fn slot_offset(&self, index: u32) -> usize {
        HEADER + (index & (self.slots - 1)) as usize * self.slot_size
    }

    /// Requests waiting, or the frontend's protocol error
    /// (`RING_HAS_UNCONSUMED_REQUESTS`, with the overrun check Xen's
    /// `RING_REQUEST_PROD_OVERFLOW` adds).
    pub fn unconsumed(&self) -> Result<u32, RingError> {
        let req_prod = self.mem.load_u32(REQ_PROD);
        let waiting = req_prod.wrapping_sub(self.req_cons);
        // Requests plus responses not yet produced can never exceed a ring.
        let in_flight = self.req_cons.wrapping_sub(self.rsp_prod_pvt);
        if waiting > self.slots || waiting.wrapping_add(in_flight) > self.slots {
            return Err(RingError::Overrun {
                req_prod,
                req_cons: self.req_cons,
            });
        }
        Ok(waiting)
    }

    /// Copies the next request's slot into `out` (`slot_size` bytes) and
    /// consumes it. Call only while `unconsumed` is positive.
    pub fn take_request(&mut self, out: &mut [u8]) {
        let at = self.slot_offset(self.req_cons);
        self.mem.read_bytes(at, &mut out[..self.slot_size]);
        self.req_cons = self.req_cons.wrapping_add(1);
    }

    /// Copies the slot `k` places after the next request into `out`
    /// without consuming it. Call only with `k` below `unconsumed`.
    pub fn peek_request(&self, k: u32, out: &mut [u8]) {
        let at = self.slot_offset(self.req_cons.wrapping_add(k));
        self.mem.read_bytes(at, &mut out[..self.slot_size]);
    }

    /// Consumes `n` requests already looked at with `peek_request`.
    pub fn consume(&mut self, n: u32) {
        self.req_cons = self.req_cons.wrapping_add(n);
    }

    /// Writes a response into the next response slot (not yet visible).
    pub fn put_response(&mut self, rsp: &[u8]) {
        debug_assert!(rsp.len() <= self.slot_size);
        debug_assert!(
            self.rsp_prod_pvt != self.req_cons,
            "more responses than requests"
        );
        let at = self.slot_offset(self.rsp_prod_pvt);
        self.mem.write_bytes(at, rsp);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
    }

    /// Publishes the responses written so far; true if the frontend asked
    /// to be notified (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`: the event
    /// index lies in the newly produced range).
    pub fn push_responses(&mut self) -> bool {
        let old = self.mem.load_u32(RSP_PROD);
        let new = self.rsp_prod_pvt;
        if old == new {
            return false;
        }
        // Slots before the index (store_u32 is a release store).
        self.mem.store_u32(RSP_PROD, new);
        // The index before reading the frontend's event (ring.h: xen_mb()).
        fence(Ordering::SeqCst);
        let event = self.mem.load_u32(RSP_EVENT);
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }

    /// Before going idle: asks for a notification on the next request and
    /// looks once more (`RING_FINAL_CHECK_FOR_REQUESTS`), so a request
    /// that raced the event index is not left waiting for a wake-up that
    /// never comes. True if there is work after all.
    pub fn final_check(&mut self) -> Result<bool, RingError> {
        if self.unconsumed()? > 0 {
            return Ok(true);
        }
        self.mem.store_u32(REQ_EVENT, self.req_cons.wrapping_add(1));
        fence(Ordering::SeqCst);
        Ok(self.unconsumed()? > 0)
    }

    /// The shared memory, for tests.
    pub fn memory(&mut self) -> &mut M {
        &mut self.mem
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// Ring memory on the heap, of any size.
    pub struct Heap(pub Vec<u8>);

    impl RingMemory for Heap {
        fn load_u32(&self, off: usize) -> u32 {
            u32::from_le_bytes(self.0[off..off + 4].try_into().unwrap())
        }
        fn store_u32(&mut self, off: usize, v: u32) {
            self.0[off..off + 4].copy_from_slice(&v.to_le_bytes());
        }
        fn read_bytes(&self, off: usize, out: &mut [u8]) {
            out.copy_from_slice(&self.0[off..off + out.len()]);
        }
        fn write_bytes(&mut self, off: usize, data: &[u8]) {
            self.0[off..off + data.len()].copy_from_slice(data);
        }
    }

    /// A frontend-initialised ring (`SHARED_RING_INIT`): producers 0,
    /// events 1.
    pub fn fresh(bytes: usize) -> Heap {
        let mut h = Heap(vec![0; bytes]);
        h.store_u32(REQ_EVENT, 1);
        h.store_u32(RSP_EVENT, 1);
        h
    }

    #[test]
    fn sizes_match_ring_h() {
        assert_eq!(slots_for(4096, 112), 32);
        assert_eq!(slots_for(4 * 4096, 112), 128);
        assert_eq!(slots_for(16 * 4096, 112), 512);
        assert_eq!(slots_for(4096, 12), 256);
        assert_eq!(slots_for(4096, 8), 256);
        assert_eq!(slots_for(32, 8), 0);
    }

    #[test]
    fn requests_in_responses_out_with_notification_rules() {
        let mut h = fresh(4096);
        // Frontend puts three requests.
        for i in 0..3u8 {
            h.0[HEADER + i as usize * 16] = i + 10;
        }
        h.store_u32(REQ_PROD, 3);
        let mut r = BackRing::attach(&mut h, 4096, 16);
        assert_eq!(r.unconsumed(), Ok(3));
        let mut slot = [0u8; 16];
        for i in 0..3u8 {
            r.take_request(&mut slot);
            assert_eq!(slot[0], i + 10);
            r.put_response(&[i; 4]);
        }
        // rsp_event is 1: the first push notifies.
        assert!(r.push_responses());
        // Nothing new: no notification.
        assert!(!r.push_responses());
        assert_eq!(r.final_check(), Ok(false));
        assert_eq!(h.load_u32(REQ_EVENT), 4);
        assert_eq!(h.load_u32(RSP_PROD), 3);
    }

    #[test]
    fn a_frontend_not_waiting_is_not_notified() {
        let mut h = fresh(4096);
        h.store_u32(REQ_PROD, 2);
        // The frontend wants an event only after response 5.
        h.store_u32(RSP_EVENT, 5);
        let mut r = BackRing::attach(&mut h, 4096, 16);
        let mut slot = [0u8; 16];
        r.take_request(&mut slot);
        r.put_response(&[0; 16]);
        assert!(!r.push_responses());
    }

    #[test]
    fn a_request_racing_the_final_check_is_seen() {
        let mut h = fresh(4096);
        let mut r = BackRing::attach(&mut h, 4096, 16);
        assert_eq!(r.final_check(), Ok(false));
        r.memory().store_u32(REQ_PROD, 1);
        assert_eq!(r.final_check(), Ok(true));
    }

    #[test]
    fn an_overrunning_producer_is_an_error() {
        let mut h = fresh(4096);
        h.store_u32(REQ_PROD, 33);
        let r = BackRing::attach(&mut h, 4096, 112);
        assert!(matches!(r.unconsumed(), Err(RingError::Overrun { .. })));
        // Wrapped indices are fine.
        let mut h = fresh(4096);
        h.store_u32(RSP_PROD, u32::MAX - 1);
        h.store_u32(REQ_PROD, 3);
        let r = BackRing::attach(&mut h, 4096, 112);
        assert_eq!(r.unconsumed(), Ok(5));
    }
}
