//! A guest's pages grant-mapped into this domain, seen through `RingMemory` with volatile and atomic accesses.

use core::sync::atomic::{AtomicU32, Ordering};
use drivers_split::xenstore::RingMemory;

/// 4 KiB pages at `addr` in this domain, shared with a guest that may
/// change them at any time.
pub struct MappedPage {
    addr: u64,
    bytes: usize,
}

impl MappedPage {
    /// One page.
    ///
    /// # Safety
    /// `addr` must be a page-aligned address mapped for the life of the value.
    pub unsafe fn new(addr: u64) -> Self {
        MappedPage { addr, bytes: 4096 }
    }

    /// `pages` contiguous pages (a multi-page ring).
    ///
    /// # Safety
    /// As `new`, for every page.
    pub unsafe fn span(addr: u64, pages: usize) -> Self {
        MappedPage {
            addr,
            bytes: pages * 4096,
        }
    }

    fn at(&self, off: usize, len: usize) -> u64 {
        assert!(off + len <= self.bytes, "ring access outside its pages");
        self.addr + off as u64
    }
}

impl RingMemory for MappedPage {
    fn load_u32(&self, off: usize) -> u32 {
        let p = self.at(off, 4) as *const AtomicU32;
        // SAFETY: inside the mapped page (checked), 4-aligned by the ring
        // layout; atomic because the guest writes it concurrently.
        unsafe { (*p).load(Ordering::Acquire) }
    }

    fn store_u32(&mut self, off: usize, v: u32) {
        let p = self.at(off, 4) as *const AtomicU32;
        // SAFETY: as `load_u32`.
        unsafe { (*p).store(v, Ordering::Release) }
    }

    fn read_bytes(&self, off: usize, out: &mut [u8]) {
        let base = self.at(off, out.len());
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: inside the mapped page (checked above).
            *b = unsafe { core::ptr::read_volatile((base + i as u64) as *const u8) };
        }
    }

    fn write_bytes(&mut self, off: usize, data: &[u8]) {
        let base = self.at(off, data.len());
        for (i, &b) in data.iter().enumerate() {
            // SAFETY: as `read_bytes`.
            unsafe { core::ptr::write_volatile((base + i as u64) as *mut u8, b) };
        }
    }
}
