//! A domain's grant table as `xenolith::grant_table` sees it: v1 entries in its grant frames, RAM-only frames for grants, the domains a caller reaches.

use super::XenState;
use crate::domain::{Domain, Others};
use crate::memory::HostFrames;
use core::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use ept::{Gpa, Hpa, MemType, PageSize, Perms};
use vcpu::AddressSpace;
use xen_abi::event_channel::DomId;
use xen_abi::grant_table::{GrantEntryV1, GrantRef};
use xenolith::grant_table::{
    self, ActiveGrants, Domains, DynGranter, GrantEntries, Granter, GuestFrames, Life, Maptrack,
};

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
    /// The host frames the domain holds as RAM.
    pub ram: &'a xenolith::reservation::Holdings,
    /// The driver domain's DMA pool (empty for others): its memory too.
    pub dma: core::ops::Range<u64>,
}

impl GuestFrames for RamFrames<'_> {
    fn ram_frame(&self, gfn: u64) -> Option<u64> {
        let gpa = gfn.checked_mul(4096)?;
        let hpa = self.space.translate(Gpa(gpa))?.hpa.0 & !0xfff;
        (self.ram.owns(hpa) || self.dma.contains(&hpa)).then_some(hpa)
    }
}

/// Lends `f` domain `d` as a granter (its grant entries, its RAM frames and
/// its active pins) together with its own maptrack: the one place a
/// `Granter` is built from a `Domain`.
pub fn lend<R>(d: &mut Domain, f: impl FnOnce(&mut Maptrack, &mut DynGranter<'_>) -> R) -> R {
    let dma = d.dma_range();
    let grants = &mut *d.xen.grants;
    let mut entries = FrameEntries {
        frames: &d.xen.grant_frames,
    };
    let frames = RamFrames {
        space: d.space.as_ref(),
        ram: &d.ram,
        dma,
    };
    let mut granter: DynGranter<'_> = Granter {
        domid: d.id,
        entries: &mut entries,
        frames: &frames,
        active: &mut grants.active,
    };
    f(&mut grants.maptrack, &mut granter)
}

/// What one domain's grant operations reach: itself, and every other
/// domain, ended ones included (their grants can still be unmapped).
pub struct Reach<'a, 'b> {
    pub me: &'a mut Domain,
    pub others: &'a mut Others<'b>,
}

impl Domains for Reach<'_, '_> {
    fn caller(&self) -> DomId {
        self.me.id
    }

    fn life(&mut self, domid: DomId) -> Option<Life> {
        let d: &Domain = if domid == self.me.id {
            self.me
        } else {
            self.others.find_any(domid)?
        };
        Some(if d.ending.is_some() {
            Life::Ended
        } else {
            Life::Running
        })
    }

    fn maptrack(&mut self) -> &mut Maptrack {
        &mut self.me.xen.grants.maptrack
    }

    fn with_granter(
        &mut self,
        granter: DomId,
        f: &mut dyn FnMut(&mut Maptrack, &mut DynGranter<'_>),
    ) -> bool {
        if granter == self.me.id {
            lend(self.me, |maptrack, g| f(maptrack, g));
            return true;
        }
        let Some(peer) = self.others.find_any(granter) else {
            return false;
        };
        let maptrack = &mut self.me.xen.grants.maptrack;
        lend(peer, |_, g| f(maptrack, g));
        true
    }

    fn map_page(&mut self, gpa: u64, hpa: u64, writable: bool) -> bool {
        let perms = if writable { Perms::RW } else { Perms::R };
        let mapped = self.me.space.map(
            &mut HostFrames,
            Gpa(gpa),
            Hpa(hpa),
            PageSize::Size4K,
            perms,
            MemType::WriteBack,
        );
        match mapped {
            Ok(flush) => {
                if flush.is_needed() {
                    self.me.vcpu.flush_second_level();
                }
                unhook_xen_pages(&mut self.me.xen, gpa / 4096);
                true
            }
            Err(_) => false,
        }
    }

    fn unmap_page(&mut self, gpa: u64) {
        // A 4 KiB leaf the grant map wrote: removing it splits nothing.
        let _ = self
            .me
            .space
            .unmap(&mut HostFrames, Gpa(gpa), PageSize::Size4K);
        self.me.vcpu.flush_second_level();
    }

    fn free_memory(&mut self, domid: DomId) {
        if domid == self.me.id {
            self.me.free_ram();
        } else if let Some(d) = self.others.find_any(domid) {
            d.free_ram();
        }
    }
}

/// A grant mapped at `gfn` replaced shared_info or a grant frame there (Xen
/// `p2m_add_page` unhooks a RAM-typed page, which these are): it is mapped
/// nowhere now, so a later `XENMEM_add_to_physmap` must not unmap `gfn` as
/// its old place, and `GNTTABOP_setup_table` reports it unmapped.
fn unhook_xen_pages(xen: &mut XenState, gfn: u64) {
    if xen.shared_info_gfn == Some(gfn) {
        xen.shared_info_gfn = None;
    }
    for frame in xen.grant_frames.iter_mut() {
        if frame.1 == Some(gfn) {
            frame.1 = None;
        }
    }
}

/// Domain `i` has ended (or the run has): its grant mappings of others'
/// pages are released and removed from its tables, and every ended domain
/// this leaves unmapped has its RAM freed (`grant_table::release_mappings`).
pub fn release_mappings(domains: &mut [Domain], i: usize) {
    let (me, mut others) = Others::split(domains, i);
    grant_table::release_mappings(&mut Reach {
        me,
        others: &mut others,
    });
}
