//! The shared ring page (`struct xenstore_domain_interface`, xs_wire.h; xenstore-ring.txt) and the request reader.

use super::wire::{Header, HEADER_LEN, PAYLOAD_MAX};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{fence, Ordering};

/// `XENSTORE_RING_SIZE`.
pub const RING_SIZE: u32 = 1024;
/// Byte offsets in the page.
pub const REQ: usize = 0;
pub const RSP: usize = 1024;
pub const REQ_CONS: usize = 2048;
pub const REQ_PROD: usize = 2052;
pub const RSP_CONS: usize = 2056;
pub const RSP_PROD: usize = 2060;
pub const SERVER_FEATURES: usize = 2064;
pub const CONNECTION: usize = 2068;
pub const ERROR: usize = 2072;
pub const EVTCHN_PORT: usize = 2076;
/// Page size of the ring page.
pub const PAGE_SIZE: usize = 4096;

/// `XENSTORE_SERVER_FEATURE_ERROR`: the `error` field is used.
pub const FEATURE_ERROR: u32 = 2;
/// Values of the `error` field (xs_wire.h).
pub const ERROR_RINGIDX: u32 = 2;
pub const ERROR_PROTO: u32 = 3;

/// `MASK_XENSTORE_IDX`.
fn mask(idx: u32) -> usize {
    (idx & (RING_SIZE - 1)) as usize
}

/// Access to the 4 KiB ring page. Implementations on guest memory must use
/// volatile (or atomic) accesses: the guest changes the page concurrently.
/// The ring orders the accesses with fences (xenstored's `xen_mb`).
pub trait RingMemory {
    /// Little-endian u32 at a 4-aligned offset.
    fn load_u32(&self, off: usize) -> u32;
    fn store_u32(&mut self, off: usize, v: u32);
    fn read_bytes(&self, off: usize, out: &mut [u8]);
    fn write_bytes(&mut self, off: usize, data: &[u8]);
}

impl RingMemory for [u8; PAGE_SIZE] {
    fn load_u32(&self, off: usize) -> u32 {
        u32::from_le_bytes([self[off], self[off + 1], self[off + 2], self[off + 3]])
    }
    fn store_u32(&mut self, off: usize, v: u32) {
        self[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn read_bytes(&self, off: usize, out: &mut [u8]) {
        out.copy_from_slice(&self[off..off + out.len()]);
    }
    fn write_bytes(&mut self, off: usize, data: &[u8]) {
        self[off..off + data.len()].copy_from_slice(data);
    }
}

impl<T: RingMemory + ?Sized> RingMemory for &mut T {
    fn load_u32(&self, off: usize) -> u32 {
        (**self).load_u32(off)
    }
    fn store_u32(&mut self, off: usize, v: u32) {
        (**self).store_u32(off, v)
    }
    fn read_bytes(&self, off: usize, out: &mut [u8]) {
        (**self).read_bytes(off, out)
    }
    fn write_bytes(&mut self, off: usize, data: &[u8]) {
        (**self).write_bytes(off, data)
    }
}

impl<T: RingMemory + ?Sized> RingMemory for Box<T> {
    fn load_u32(&self, off: usize) -> u32 {
        (**self).load_u32(off)
    }
    fn store_u32(&mut self, off: usize, v: u32) {
        (**self).store_u32(off, v)
    }
    fn read_bytes(&self, off: usize, out: &mut [u8]) {
        (**self).read_bytes(off, out)
    }
    fn write_bytes(&mut self, off: usize, data: &[u8]) {
        (**self).write_bytes(off, data)
    }
}

/// `prod - cons > RING_SIZE`: the guest corrupted its indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadIndex;

/// Where requests come from: the ring, or a byte slice in tests.
pub trait ByteSource {
    /// Copy up to `buf.len()` bytes; 0 = nothing available now.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, BadIndex>;
}

impl ByteSource for &[u8] {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, BadIndex> {
        let n = buf.len().min(self.len());
        buf[..n].copy_from_slice(&self[..n]);
        *self = &self[n..];
        Ok(n)
    }
}

/// The server's side of one domain's ring page.
pub struct Ring<M> {
    mem: M,
}

impl<M: RingMemory> Ring<M> {
    /// Take over a ring page. Advertises the `error` field
    /// (`server_features` bits are only ever set) and leaves the indices
    /// alone: guests must not assume they start at 0 (xenstore-ring.txt).
    pub fn new(mut mem: M) -> Self {
        let f = mem.load_u32(SERVER_FEATURES);
        mem.store_u32(SERVER_FEATURES, f | FEATURE_ERROR);
        Ring { mem }
    }

    pub fn memory(&self) -> &M {
        &self.mem
    }

    pub fn memory_mut(&mut self) -> &mut M {
        &mut self.mem
    }

    /// Request bytes waiting (or a broken index).
    pub fn pending_requests(&self) -> Result<u32, BadIndex> {
        let cons = self.mem.load_u32(REQ_CONS);
        let prod = self.mem.load_u32(REQ_PROD);
        fence(Ordering::SeqCst);
        check(cons, prod)
    }

    /// Room left in the response ring (or a broken index).
    pub fn response_space(&self) -> Result<u32, BadIndex> {
        let cons = self.mem.load_u32(RSP_CONS);
        let prod = self.mem.load_u32(RSP_PROD);
        fence(Ordering::SeqCst);
        check(cons, prod).map(|used| RING_SIZE - used)
    }

    /// xenstored `writechn`: copy as much of `data` as fits, then publish
    /// it by moving `rsp_prod` (data first, barrier, index). Returns the
    /// bytes written; the caller must notify the guest's port if > 0.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, BadIndex> {
        // Read the indices once, before anything else, and check them.
        let cons = self.mem.load_u32(RSP_CONS);
        let prod = self.mem.load_u32(RSP_PROD);
        fence(Ordering::SeqCst);
        let used = check(cons, prod)?;
        let space = (RING_SIZE - used) as usize;
        let n = data.len().min(space);
        let mut done = 0;
        while done < n {
            let at = mask(prod.wrapping_add(done as u32));
            let chunk = (n - done).min(RING_SIZE as usize - at);
            self.mem.write_bytes(RSP + at, &data[done..done + chunk]);
            done += chunk;
        }
        fence(Ordering::SeqCst);
        self.mem.store_u32(RSP_PROD, prod.wrapping_add(n as u32));
        Ok(n)
    }

    /// Record a fatal protocol error in the page's `error` field.
    pub fn set_error(&mut self, code: u32) {
        self.mem.store_u32(ERROR, code);
    }
}

impl<M: RingMemory> ByteSource for Ring<M> {
    /// xenstored `readchn`: indices read once and checked, data copied,
    /// barrier, then `req_cons` moved. The caller must notify the guest if
    /// it consumed anything (Linux waits for room in a full ring).
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, BadIndex> {
        let cons = self.mem.load_u32(REQ_CONS);
        let prod = self.mem.load_u32(REQ_PROD);
        fence(Ordering::SeqCst);
        let avail = check(cons, prod)? as usize;
        let n = buf.len().min(avail);
        let mut done = 0;
        while done < n {
            let at = mask(cons.wrapping_add(done as u32));
            let chunk = (n - done).min(RING_SIZE as usize - at);
            self.mem.read_bytes(REQ + at, &mut buf[done..done + chunk]);
            done += chunk;
        }
        fence(Ordering::SeqCst);
        self.mem.store_u32(REQ_CONS, cons.wrapping_add(n as u32));
        Ok(n)
    }
}

/// xenstored `check_indexes`: free-running u32s, at most a ring apart.
fn check(cons: u32, prod: u32) -> Result<u32, BadIndex> {
    let used = prod.wrapping_sub(cons);
    if used > RING_SIZE {
        Err(BadIndex)
    } else {
        Ok(used)
    }
}

/// A complete request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub payload: Vec<u8>,
}

/// Why the reader stopped for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Broken ring indices (`XENSTORE_ERROR_RINGIDX`).
    BadIndex,
    /// `len` > `XENSTORE_PAYLOAD_MAX` (`XENSTORE_ERROR_PROTO`); xenstored
    /// drops such a client, as the stream can no longer be trusted.
    TooLong(Header),
}

/// Reassembles requests that arrive in pieces: a request may be larger
/// than the ring, and a header may straddle its end.
#[derive(Clone, Debug, Default)]
pub struct MessageReader {
    hdr: [u8; HEADER_LEN],
    hdr_used: usize,
    header: Option<Header>,
    payload: Vec<u8>,
}

impl MessageReader {
    /// Read what is available; a message once it is complete.
    pub fn poll(&mut self, src: &mut impl ByteSource) -> Result<Option<Message>, ReadError> {
        let header = match self.header {
            Some(h) => h,
            None => {
                while self.hdr_used < HEADER_LEN {
                    let n = src
                        .read(&mut self.hdr[self.hdr_used..])
                        .map_err(|_| ReadError::BadIndex)?;
                    if n == 0 {
                        return Ok(None);
                    }
                    self.hdr_used += n;
                }
                let h = Header::parse(&self.hdr);
                if h.len as usize > PAYLOAD_MAX {
                    return Err(ReadError::TooLong(h));
                }
                self.header = Some(h);
                self.payload = Vec::with_capacity(h.len as usize);
                h
            }
        };
        let want = header.len as usize;
        let mut buf = [0u8; 256];
        while self.payload.len() < want {
            let k = (want - self.payload.len()).min(buf.len());
            let n = src.read(&mut buf[..k]).map_err(|_| ReadError::BadIndex)?;
            if n == 0 {
                return Ok(None);
            }
            self.payload.extend_from_slice(&buf[..n]);
        }
        self.header = None;
        self.hdr_used = 0;
        Ok(Some(Message {
            header,
            payload: core::mem::take(&mut self.payload),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::{encode, MsgType};
    use super::*;
    use alloc::vec;

    /// The guest side, as Linux xenbus_comms.c does it.
    fn guest_write(page: &mut [u8; PAGE_SIZE], data: &[u8]) -> usize {
        let cons = page.load_u32(REQ_CONS);
        let prod = page.load_u32(REQ_PROD);
        let n = data
            .len()
            .min((RING_SIZE - prod.wrapping_sub(cons)) as usize);
        for (i, b) in data[..n].iter().enumerate() {
            page[REQ + mask(prod.wrapping_add(i as u32))] = *b;
        }
        page.store_u32(REQ_PROD, prod.wrapping_add(n as u32));
        n
    }

    fn guest_read(page: &mut [u8; PAGE_SIZE]) -> Vec<u8> {
        let cons = page.load_u32(RSP_CONS);
        let prod = page.load_u32(RSP_PROD);
        let out = (0..prod.wrapping_sub(cons))
            .map(|i| page[RSP + mask(cons.wrapping_add(i))])
            .collect();
        page.store_u32(RSP_CONS, prod);
        out
    }

    fn page_at(idx: u32) -> Box<[u8; PAGE_SIZE]> {
        let mut p = Box::new([0u8; PAGE_SIZE]);
        for off in [REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD] {
            p.store_u32(off, idx);
        }
        p
    }

    #[test]
    fn layout_and_features() {
        let mut p = page_at(0);
        p.store_u32(SERVER_FEATURES, 1);
        let r = Ring::new(&mut *p);
        assert_eq!(r.memory().load_u32(SERVER_FEATURES), 1 | FEATURE_ERROR);
        assert_eq!(EVTCHN_PORT, 2076);
        assert_eq!(CONNECTION, 2068);
    }

    #[test]
    fn header_straddles_the_end_and_indices_wrap() {
        // Indices near u32::MAX, positioned so the header crosses byte 1023.
        let start = u32::MAX - 1024 - 5;
        let mut p = page_at(start.wrapping_add(1024 - 7));
        p.store_u32(REQ_CONS, start.wrapping_add(1024 - 7));
        let msg = encode(MsgType::Read, 42, 0, b"device\0");
        assert_eq!(guest_write(&mut p, &msg), msg.len());
        let mut ring = Ring::new(&mut *p);
        let mut rd = MessageReader::default();
        let m = rd.poll(&mut ring).unwrap().unwrap();
        assert_eq!(m.header.req_id, 42);
        assert_eq!(m.payload, b"device\0");
        assert_eq!(ring.pending_requests(), Ok(0));
        // Responses wrap as well.
        let reply = vec![7u8; 600];
        assert_eq!(ring.write(&reply), Ok(600));
        assert_eq!(ring.write(&reply), Ok(424)); // ring full
        assert_eq!(ring.response_space(), Ok(0));
        assert_eq!(guest_read(&mut p).len(), 1024);
    }

    #[test]
    fn request_larger_than_the_ring() {
        let mut p = page_at(100);
        let payload = vec![b'a'; 3000];
        let msg = encode(MsgType::Write, 1, 0, &payload);
        let mut rd = MessageReader::default();
        let mut sent = 0;
        let mut got = None;
        while got.is_none() {
            sent += guest_write(&mut p, &msg[sent..]);
            got = rd.poll(&mut Ring::new(&mut *p)).unwrap();
        }
        assert_eq!(got.unwrap().payload, payload);
    }

    #[test]
    fn broken_indices_are_refused() {
        let mut p = page_at(0);
        p.store_u32(REQ_PROD, RING_SIZE + 1);
        let mut ring = Ring::new(&mut *p);
        assert_eq!(ring.pending_requests(), Err(BadIndex));
        let mut rd = MessageReader::default();
        assert_eq!(rd.poll(&mut ring), Err(ReadError::BadIndex));
        // cons ahead of prod is just as broken.
        ring.memory_mut().store_u32(REQ_PROD, 0);
        ring.memory_mut().store_u32(REQ_CONS, 1);
        assert_eq!(rd.poll(&mut ring), Err(ReadError::BadIndex));
        ring.memory_mut().store_u32(RSP_CONS, 5);
        assert_eq!(ring.write(b"x"), Err(BadIndex));
        // Exactly full is fine.
        ring.memory_mut().store_u32(RSP_CONS, 0);
        ring.memory_mut().store_u32(RSP_PROD, RING_SIZE);
        assert_eq!(ring.write(b"x"), Ok(0));
    }

    #[test]
    fn oversized_length_is_a_protocol_error() {
        let mut msg = encode(MsgType::Read, 1, 0, b"");
        msg[12..16].copy_from_slice(&4097u32.to_le_bytes());
        let mut rd = MessageReader::default();
        assert!(matches!(rd.poll(&mut &msg[..]), Err(ReadError::TooLong(h)) if h.len == 4097));
    }
}
