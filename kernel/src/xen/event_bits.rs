//! The 2-level event bits of one domain in guest memory: pending and mask in shared_info, selector and upcall flag in vcpu_info.

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use vcpu::AddressSpace;
use xen_abi::shared_info::{
    vcpu_info_offset, EVTCHN_MASK_OFFSET, EVTCHN_PENDING_OFFSET, PENDING_SEL_OFFSET,
    UPCALL_PENDING_OFFSET,
};
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
