//! The event bits of one domain in guest memory: 2-level pending and mask in shared_info, selector and upcall flag in vcpu_info, FIFO event words and control blocks in guest RAM frames.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use vcpu::AddressSpace;
use xen_abi::shared_info::{
    vcpu_info_offset, EVTCHN_MASK_OFFSET, EVTCHN_PENDING_OFFSET, PENDING_SEL_OFFSET,
    UPCALL_PENDING_OFFSET,
};
use xenolith::evtchn::fifo::FifoMemory;
use xenolith::evtchn::{EventBits, Port};

pub struct DomainBits<'a> {
    /// The shared_info frame (host-physical).
    shared_info: u64,
    /// vCPU 0's registered vcpu_info (guest-physical), if any.
    vcpu_info_gpa: Option<u64>,
    space: &'a dyn AddressSpace,
}

impl<'a> DomainBits<'a> {
    pub fn new(shared_info: u64, vcpu_info_gpa: Option<u64>, space: &'a dyn AddressSpace) -> Self {
        DomainBits {
            shared_info,
            vcpu_info_gpa,
            space,
        }
    }

    fn word(&self, base: usize, port: Port) -> (&AtomicU64, u64) {
        // Ports are below MAX_PORTS (checked by the channel table), so the
        // word lies inside the pending or mask array.
        let offset = base + (port as usize % 4096 / 64) * 8;
        // SAFETY: an 8-aligned word inside the shared_info frame, which the
        // domain's Xen state owns; atomic, as the guest accesses it concurrently.
        let word = unsafe { &*((self.shared_info + offset as u64) as *const AtomicU64) };
        (word, 1 << (port % 64))
    }

    /// vCPU 0's vcpu_info in host memory: the registered one (a RAM page of
    /// the guest, translated through its tables) or the legacy slot.
    fn vcpu_info(&self) -> Option<u64> {
        match self.vcpu_info_gpa {
            None => Some(self.shared_info + vcpu_info_offset(0) as u64),
            Some(gpa) => {
                let t = self.space.translate(ept::Gpa(gpa))?;
                // The registration checked that the 64 bytes stay in one page.
                t.perms.write.then_some(t.hpa.0)
            }
        }
    }
}

impl EventBits for DomainBits<'_> {
    fn test_and_set_pending(&mut self, port: Port) -> bool {
        let (w, bit) = self.word(EVTCHN_PENDING_OFFSET, port);
        w.fetch_or(bit, Ordering::SeqCst) & bit != 0
    }

    fn clear_pending(&mut self, port: Port) {
        let (w, bit) = self.word(EVTCHN_PENDING_OFFSET, port);
        w.fetch_and(!bit, Ordering::SeqCst);
    }

    fn is_pending(&self, port: Port) -> bool {
        let (w, bit) = self.word(EVTCHN_PENDING_OFFSET, port);
        w.load(Ordering::SeqCst) & bit != 0
    }

    fn is_masked(&self, port: Port) -> bool {
        let (w, bit) = self.word(EVTCHN_MASK_OFFSET, port);
        w.load(Ordering::SeqCst) & bit != 0
    }

    fn test_and_clear_mask(&mut self, port: Port) -> bool {
        let (w, bit) = self.word(EVTCHN_MASK_OFFSET, port);
        w.fetch_and(!bit, Ordering::SeqCst) & bit != 0
    }

    fn test_and_set_selector(&mut self, _vcpu: u32, word: u32) -> bool {
        let Some(info) = self.vcpu_info() else {
            return true;
        };
        // SAFETY: an 8-aligned word of a vcpu_info in a page owned by the
        // domain (or the hypervisor), identity-mapped; atomic, as the guest
        // clears bits concurrently.
        let sel = unsafe { &*((info + PENDING_SEL_OFFSET as u64) as *const AtomicU64) };
        let bit = 1u64 << (word % 64);
        sel.fetch_or(bit, Ordering::SeqCst) & bit != 0
    }

    fn test_and_set_upcall_pending(&mut self, _vcpu: u32) -> bool {
        let Some(info) = self.vcpu_info() else {
            return true;
        };
        // SAFETY: as above, one byte.
        let flag = unsafe { &*((info + UPCALL_PENDING_OFFSET as u64) as *const AtomicU8) };
        flag.swap(1, Ordering::SeqCst) != 0
    }
}

/// A FIFO word: `frame` is the host-physical address of a RAM frame of the
/// domain, resolved when the guest registered it (`resolve_fifo_frame`),
/// which stays the domain's until the domain ends; the offset is kept
/// 4-aligned inside the frame whatever the caller passes.
fn fifo_word(frame: u64, offset: u32) -> &'static AtomicU32 {
    let at = (frame & !0xfff) + u64::from(offset & 0xffc);
    // SAFETY: an aligned u32 inside a guest RAM frame the domain owns,
    // identity-mapped in the hypervisor; the guest accesses it
    // concurrently, so only atomic operations are used.
    unsafe { &*(at as *const AtomicU32) }
}

impl FifoMemory for DomainBits<'_> {
    fn fifo_load(&self, frame: u64, offset: u32) -> u32 {
        fifo_word(frame, offset).load(Ordering::SeqCst)
    }

    fn fifo_store(&mut self, frame: u64, offset: u32, value: u32) {
        fifo_word(frame, offset).store(value, Ordering::SeqCst);
    }

    fn fifo_cmpxchg(&mut self, frame: u64, offset: u32, old: u32, new: u32) -> u32 {
        match fifo_word(frame, offset).compare_exchange(
            old,
            new,
            Ordering::SeqCst,
            Ordering::SeqCst,
        ) {
            Ok(v) | Err(v) => v,
        }
    }

    fn fifo_fetch_or(&mut self, frame: u64, offset: u32, bits: u32) -> u32 {
        fifo_word(frame, offset).fetch_or(bits, Ordering::SeqCst)
    }

    fn fifo_fetch_and(&mut self, frame: u64, offset: u32, bits: u32) -> u32 {
        fifo_word(frame, offset).fetch_and(bits, Ordering::SeqCst)
    }
}
