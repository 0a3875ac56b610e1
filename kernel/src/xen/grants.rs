//! A domain's grant table as `xenolith::grant_table` sees it: v1 entries in its grant frames, RAM-only frames for grants.

use core::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use ept::Gpa;
use vcpu::AddressSpace;
use xen_abi::grant_table::{GrantEntryV1, GrantRef};
use xenolith::grant_table::{ActiveGrants, GrantEntries, GuestFrames, Maptrack};

/// v1 entries per 4 KiB frame (8 bytes each, grant_table.h).
const PER_FRAME: u32 = 512;
/// Grant mappings one domain may hold at once.
const MAPTRACK_LIMIT: usize = 256;

/// The grant bookkeeping of one domain: refs of its own that others pinned,
/// and the mappings it holds of others' grants.
pub struct GrantState {
    pub active: ActiveGrants,
    pub maptrack: Maptrack,
}

impl GrantState {
    pub fn new() -> Self {
        GrantState {
            active: ActiveGrants::new(),
            maptrack: Maptrack::new(MAPTRACK_LIMIT),
        }
    }
}

/// The v1 entries in a domain's grant frames (host frames the hypervisor
/// owns, identity-mapped; the guest writes them through its own mapping).
pub struct FrameEntries<'a> {
    pub frames: &'a [(u64, Option<u64>)],
}

impl FrameEntries<'_> {
    /// The host address of entry `gref` (callers keep `gref < nr_entries`).
    fn at(&self, gref: GrantRef) -> u64 {
        self.frames[(gref / PER_FRAME) as usize].0 + u64::from(gref % PER_FRAME) * 8
    }

    fn word(&self, gref: GrantRef, offset: u64) -> &AtomicU32 {
        // SAFETY: an aligned word of an entry inside an owned grant frame;
        // the guest writes it concurrently, so only atomics touch it.
        unsafe { &*((self.at(gref) + offset) as *const AtomicU32) }
    }
}

impl GrantEntries for FrameEntries<'_> {
    fn nr_entries(&self) -> u32 {
        self.frames.len() as u32 * PER_FRAME
    }

    fn read_header(&self, gref: GrantRef) -> u32 {
        self.word(gref, 0).load(Ordering::Acquire)
    }

    fn read_frame(&self, gref: GrantRef) -> u32 {
        self.word(gref, 4).load(Ordering::Acquire)
    }

    fn cmpxchg_header(&mut self, gref: GrantRef, old: u32, new: u32) -> u32 {
        match self
            .word(gref, 0)
            .compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(v) | Err(v) => v,
        }
    }

    fn clear_flags(&mut self, gref: GrantRef, mask: u16) {
        // SAFETY: the 16-bit flags at the start of the entry, as above.
        let flags = unsafe { &*(self.at(gref) as *const AtomicU16) };
        flags.fetch_and(!mask, Ordering::AcqRel);
    }

    fn write(&mut self, gref: GrantRef, e: GrantEntryV1) {
        self.word(gref, 4).store(e.frame, Ordering::Release);
        // SAFETY: the 16-bit domid and flags of the entry, as above.
        let (flags, domid) = unsafe {
            (
                &*(self.at(gref) as *const AtomicU16),
                &*((self.at(gref) + 2) as *const AtomicU16),
            )
        };
        domid.store(e.domid, Ordering::Release);
        flags.store(e.flags, Ordering::Release);
    }
}

/// A granter's own RAM, through its second-level tables: grant frames,
/// shared_info and pages it mapped from others are not RAM and cannot be granted.
pub struct RamFrames<'a> {
    pub space: &'a dyn AddressSpace,
    /// The domain's RAM, host-physical.
    pub ram: core::ops::Range<u64>,
    /// The driver domain's DMA pool (empty for others): its memory too.
    pub dma: core::ops::Range<u64>,
}

impl GuestFrames for RamFrames<'_> {
    fn ram_frame(&self, gfn: u64) -> Option<u64> {
        let gpa = gfn.checked_mul(4096)?;
        let hpa = self.space.translate(Gpa(gpa))?.hpa.0 & !0xfff;
        (self.ram.contains(&hpa) || self.dma.contains(&hpa)).then_some(hpa)
    }
}
