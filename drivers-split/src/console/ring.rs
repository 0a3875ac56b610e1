//! The backend's side of `struct xencons_interface` (public/io/console.h): drain `out`, fill `in`.

use crate::xenstore::RingMemory;
use core::sync::atomic::{fence, Ordering};

// console.h: in[1024], out[2048], then in_cons, in_prod, out_cons, out_prod.
// Indices run freely; MASK_XENCONS_IDX(idx, ring) = idx & (sizeof(ring) - 1).
const IN: usize = 0;
const IN_SIZE: u32 = 1024;
const OUT: usize = 1024;
const OUT_SIZE: u32 = 2048;
const IN_CONS: usize = 3072;
const IN_PROD: usize = 3076;
const OUT_CONS: usize = 3080;
const OUT_PROD: usize = 3084;

/// The guest's indices are impossible (producer more than a ring ahead of
/// the consumer): the guest broke the protocol; the ring is left alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Broken;

/// One guest's console page, mapped by the backend.
pub struct ConsoleRing<M> {
    mem: M,
}

impl<M: RingMemory> ConsoleRing<M> {
    pub fn new(mem: M) -> Self {
        ConsoleRing { mem }
    }

    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Moves up to `max` bytes of what the guest wrote into `sink` (at most
    /// 256 bytes at a time) and frees their space. Returns the bytes moved.
    /// What is left stays in the ring: a guest whose output cannot go out
    /// yet finds its ring full and waits (Linux's hvc_xen yields), instead
    /// of having its lines dropped.
    pub fn drain(&mut self, max: usize, mut sink: impl FnMut(&[u8])) -> Result<usize, Broken> {
        let cons = self.mem.load_u32(OUT_CONS);
        let prod = self.mem.load_u32(OUT_PROD);
        let waiting = prod.wrapping_sub(cons);
        if waiting > OUT_SIZE {
            return Err(Broken);
        }
        let len = waiting.min(u32::try_from(max).unwrap_or(u32::MAX));
        // Read the bytes only after the producer index (xencons_interface
        // users pair this with the guest's wmb before it publishes out_prod).
        fence(Ordering::Acquire);
        let mut buf = [0u8; 256];
        let mut done = 0u32;
        while done < len {
            let at = cons.wrapping_add(done) & (OUT_SIZE - 1);
            // Up to the end of the ring, the end of the data, or the buffer.
            let n = (OUT_SIZE - at).min(len - done).min(buf.len() as u32);
            let chunk = &mut buf[..n as usize];
            self.mem.read_bytes(OUT + at as usize, chunk);
            sink(chunk);
            done += n;
        }
        fence(Ordering::Release);
        self.mem.store_u32(OUT_CONS, cons.wrapping_add(len));
        Ok(len as usize)
    }

    /// Puts as much of `bytes` in the guest's input ring as fits; returns
    /// how many went in.
    pub fn push_input(&mut self, bytes: &[u8]) -> Result<usize, Broken> {
        let cons = self.mem.load_u32(IN_CONS);
        let prod = self.mem.load_u32(IN_PROD);
        let used = prod.wrapping_sub(cons);
        if used > IN_SIZE {
            return Err(Broken);
        }
        let n = (IN_SIZE - used).min(bytes.len() as u32);
        for (i, &b) in bytes[..n as usize].iter().enumerate() {
            let at = prod.wrapping_add(i as u32) & (IN_SIZE - 1);
            self.mem.write_bytes(IN + at as usize, &[b]);
        }
        // The bytes before the index that publishes them.
        fence(Ordering::Release);
        self.mem.store_u32(IN_PROD, prod.wrapping_add(n));
        Ok(n as usize)
    }
}
