//! Ballooning's bookkeeping: the host frames a domain holds against its `max_pages`, and the page-by-page work of decrease_reservation, populate_physmap and increase_reservation (Xen common/memory.c) over a physmap and a frame allocator.

extern crate alloc;

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

/// The largest `extent_order` a domU may use: Xen's `max_order()` for a
/// domain that is neither control, hardware nor passthrough is
/// `CONFIG_DOMU_MAX_ORDER`, `PAGETABLE_ORDER` (9, 2 MiB) on x86
/// (xen/arch/x86/include/asm/config.h).
pub const DOMU_MAX_ORDER: u32 = 9;

/// Guest frame numbers stay below 2^36: a 48-bit guest-physical space, as
/// the second-level tables map.
pub const MAX_GFN: u64 = 1 << 36;

const PAGE: u64 = 4096;

/// The host frames a domain holds (Xen's `d->page_list` and `tot_pages`):
/// the block start of day gave it, less what it gave back, plus frames it
/// was given since. `tot_pages` never exceeds `max_pages`, and a frame is
/// given up at most once.
#[derive(Clone, Debug)]
pub struct Holdings {
    /// The start-of-day block (host-physical), as the allocator handed it
    /// out: `block` frames, naturally aligned.
    base: u64,
    block: u64,
    /// The first `ram` frames of the block are counted RAM; the rest is
    /// allocator padding the domain holds, uncounted, until it ends.
    ram: u64,
    /// One bit per block frame: still held.
    held: Vec<u64>,
    /// Frames outside the block it was given since.
    extra: BTreeSet<u64>,
    tot: u64,
    max: u64,
}

impl Holdings {
    /// A domain holding the whole block of `block` frames at `base` (a
    /// power of two, aligned to its size, as a buddy allocator gives), of
    /// which the first `ram` are its RAM; it may hold up to `max` pages.
    pub fn new(base: u64, block: u64, ram: u64, max: u64) -> Self {
        let words = block.div_ceil(64) as usize;
        let mut held = alloc::vec![u64::MAX; words];
        if !block.is_multiple_of(64) {
            if let Some(last) = held.last_mut() {
                *last = (1u64 << (block % 64)) - 1;
            }
        }
        Holdings {
            base,
            block,
            ram: ram.min(block),
            held,
            extra: BTreeSet::new(),
            tot: ram.min(block),
            max,
        }
    }

    /// Holds nothing (a domain whose memory is not tracked page by page).
    pub fn empty() -> Self {
        Holdings::new(0, 0, 0, 0)
    }

    /// Counted pages held: `XENMEM_current_reservation`.
    pub fn tot_pages(&self) -> u64 {
        self.tot
    }

    /// `XENMEM_maximum_reservation`.
    pub fn max_pages(&self) -> u64 {
        self.max
    }

    /// Whether `n` more pages keep the domain within `max_pages` (Xen
    /// `assign_pages`: "Over-allocation" otherwise).
    pub fn room_for(&self, n: u64) -> bool {
        self.tot.checked_add(n).is_some_and(|t| t <= self.max)
    }

    fn index(&self, hpa: u64) -> Option<u64> {
        let i = hpa.checked_sub(self.base)? / PAGE;
        (i < self.block).then_some(i)
    }

    fn bit(&self, i: u64) -> bool {
        self.held[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Whether the page at host address `hpa` is one this domain holds.
    pub fn owns(&self, hpa: u64) -> bool {
        let frame = hpa & !(PAGE - 1);
        match self.index(frame) {
            Some(i) => self.bit(i),
            None => self.extra.contains(&frame),
        }
    }

    /// Takes the fresh frame `hpa` into the holdings, counted. Refused
    /// (nothing changes) past `max_pages` or if it is already held.
    pub fn take(&mut self, hpa: u64) -> bool {
        if !self.room_for(1) || !hpa.is_multiple_of(PAGE) || self.owns(hpa) {
            return false;
        }
        match self.index(hpa) {
            // Padding is held from the start, so a taken block frame is RAM.
            Some(i) => self.held[(i / 64) as usize] |= 1 << (i % 64),
            None => {
                self.extra.insert(hpa);
            }
        }
        self.tot += 1;
        true
    }

    /// Gives up the held RAM frame `hpa` (the caller frees it once no
    /// translation reaches it). Refused if it is not held, so no frame is
    /// ever given up twice, and for the block's padding, which nothing maps.
    pub fn release(&mut self, hpa: u64) -> bool {
        if !hpa.is_multiple_of(PAGE) || !self.owns(hpa) {
            return false;
        }
        match self.index(hpa) {
            Some(i) if i >= self.ram => return false,
            Some(i) => self.held[(i / 64) as usize] &= !(1 << (i % 64)),
            None => {
                self.extra.remove(&hpa);
            }
        }
        self.tot -= 1;
        true
    }

    /// Hands every held frame to `free` as (host address, frames) runs the
    /// allocator can take back (each a power of two, aligned to its size:
    /// the whole block, 64-frame words, or single frames) and holds nothing
    /// afterwards.
    pub fn drain(&mut self, mut free: impl FnMut(u64, usize)) {
        let whole = self.held.iter().enumerate().all(|(w, &bits)| {
            let full = if (w as u64 + 1) * 64 <= self.block {
                u64::MAX
            } else {
                (1u64 << (self.block % 64)) - 1
            };
            bits == full
        });
        if self.block > 0 && whole {
            free(self.base, self.block as usize);
        } else {
            for (w, bits) in self.held.iter().enumerate() {
                let first = self.base + w as u64 * 64 * PAGE;
                if *bits == u64::MAX {
                    free(first, 64);
                    continue;
                }
                for b in 0..64 {
                    if bits & (1 << b) != 0 {
                        free(first + b * PAGE, 1);
                    }
                }
            }
        }
        for &hpa in &self.extra {
            free(hpa, 1);
        }
        self.held.iter_mut().for_each(|w| *w = 0);
        self.extra.clear();
        self.block = 0;
        self.ram = 0;
        self.tot = 0;
    }
}

/// What a guest frame number holds, as decrease_reservation sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Nothing (Xen: `p2m_invalid`, guest_remove_page fails).
    Hole,
    /// A RAM page at this host address.
    Ram(u64),
    /// shared_info or a grant-table frame the guest placed there: removing
    /// it unmaps it, the page stays the hypervisor's.
    XenPage,
    /// Anything else (a page grant-mapped from another domain, a device):
    /// not the domain's to give back (Xen: `get_page` fails, -ENXIO).
    Other,
}

/// A domain's guest-physical map as the reservation operations change it.
pub trait Physmap {
    fn slot(&self, gfn: u64) -> Slot;
    /// Maps the fresh frame `hpa` at the hole `gfn`; false if no table
    /// frame could be had (nothing changed).
    fn map(&mut self, gfn: u64, hpa: u64) -> bool;
    /// Removes what `gfn` maps; false if splitting a large page needed a
    /// table frame there was none for (nothing changed).
    fn unmap(&mut self, gfn: u64) -> bool;
    /// Makes every unmap so far reach the TLBs (INVEPT or a new ASID): only
    /// then may a removed frame go back to the allocator.
    fn flush(&mut self);
}

/// The hypervisor's frame allocator, one 4 KiB frame at a time.
pub trait Frames {
    /// A zeroed frame (scrubbed: no guest reads another's bytes).
    fn alloc(&mut self) -> Option<u64>;
    fn free(&mut self, hpa: u64);
}

/// One entry's worth of changes: frames taken out of the physmap wait
/// here for the flush before they are freed.
#[derive(Default)]
pub struct Work {
    unmapped: bool,
    freed: Vec<u64>,
}

impl Work {
    pub fn new() -> Self {
        Work::default()
    }

    /// Flushes if anything was unmapped, then frees what was removed.
    pub fn finish(&mut self, map: &mut impl Physmap, frames: &mut impl Frames) {
        if core::mem::take(&mut self.unmapped) {
            map.flush();
        }
        for hpa in self.freed.drain(..) {
            frames.free(hpa);
        }
    }
}

/// An allocation limit from `XENMEMF_address_bits`: frames must end at or
/// below 2^bits (0: none).
fn below(hpa: u64, bits: u32) -> bool {
    bits == 0 || bits >= 64 || hpa + PAGE <= 1u64 << bits
}

/// decrease_reservation of the extent of `1 << order` pages at `gfn`
/// (Xen `guest_remove_page` on each): RAM is unmapped and given back,
/// shared_info or a grant frame is unmapped. Stops at the first page that
/// cannot go (a hole, another domain's page, a frame `pinned` by another
/// domain's grant mapping): the pages before it are gone, the extent does
/// not count (false), as in Xen.
pub fn decrease_extent(
    holdings: &mut Holdings,
    map: &mut impl Physmap,
    work: &mut Work,
    gfn: u64,
    order: u32,
    pinned: &dyn Fn(u64) -> bool,
) -> bool {
    for j in 0..1u64 << order {
        let Some(g) = gfn.checked_add(j).filter(|&g| g < MAX_GFN) else {
            return false;
        };
        match map.slot(g) {
            Slot::Ram(hpa) => {
                if pinned(hpa) || !holdings.owns(hpa) || !map.unmap(g) {
                    return false;
                }
                work.unmapped = true;
                if holdings.release(hpa) {
                    work.freed.push(hpa);
                }
            }
            Slot::XenPage => {
                if !map.unmap(g) {
                    return false;
                }
                work.unmapped = true;
            }
            Slot::Hole | Slot::Other => return false,
        }
    }
    true
}

/// populate_physmap of the extent of `1 << order` pages at `gfn`: fresh
/// zeroed frames mapped there, all or none. Refused if a page of it is
/// already mapped, lies past `MAX_GFN`, would take the domain past
/// `max_pages`, or no frame (below `address_bits`) can be had.
pub fn populate_extent(
    holdings: &mut Holdings,
    map: &mut impl Physmap,
    frames: &mut impl Frames,
    work: &mut Work,
    gfn: u64,
    order: u32,
    address_bits: u32,
) -> bool {
    let n = 1u64 << order;
    let Some(end) = gfn.checked_add(n).filter(|&e| e <= MAX_GFN) else {
        return false;
    };
    if (gfn..end).any(|g| map.slot(g) != Slot::Hole) || !holdings.room_for(n) {
        return false;
    }
    let Some(got) = alloc_frames(frames, n, address_bits) else {
        return false;
    };
    for (j, &hpa) in got.iter().enumerate() {
        if !map.map(gfn + j as u64, hpa) {
            // Undo the pages mapped so far: fresh 4 KiB leaves, nothing to
            // split; their frames go once the flush is done.
            for (k, &back) in got[..j].iter().enumerate() {
                map.unmap(gfn + k as u64);
                holdings.release(back);
            }
            work.unmapped |= j > 0;
            work.freed.extend_from_slice(&got);
            return false;
        }
        holdings.take(hpa);
    }
    true
}

/// increase_reservation of one extent for a translated guest: the frames
/// become the domain's (counted) but appear nowhere in its physmap, as in
/// Xen, where only populate_physmap maps them.
pub fn increase_extent(
    holdings: &mut Holdings,
    frames: &mut impl Frames,
    order: u32,
    address_bits: u32,
) -> bool {
    let n = 1u64 << order;
    if !holdings.room_for(n) {
        return false;
    }
    let Some(got) = alloc_frames(frames, n, address_bits) else {
        return false;
    };
    for hpa in got {
        holdings.take(hpa);
    }
    true
}

/// `n` frames below `address_bits`, or none (those got are given back).
fn alloc_frames(frames: &mut impl Frames, n: u64, address_bits: u32) -> Option<Vec<u64>> {
    let mut got = Vec::with_capacity(n as usize);
    for _ in 0..n {
        match frames.alloc() {
            Some(hpa) if below(hpa, address_bits) => got.push(hpa),
            other => {
                if let Some(hpa) = other {
                    frames.free(hpa);
                }
                for hpa in got {
                    frames.free(hpa);
                }
                return None;
            }
        }
    }
    Some(got)
}

/// `XENMEMF_get_address_bits`: the low 8 bits of `mem_flags`. Xen refuses
/// (the operation does nothing) a limit at or below the page size: `None`.
/// One at or above the host's physical width is no limit.
pub fn address_bits(mem_flags: u32) -> Option<u32> {
    match mem_flags & 0xff {
        0 => Some(0),
        b if b <= 12 => None,
        b => Some(b),
    }
}

#[cfg(test)]
mod tests;
