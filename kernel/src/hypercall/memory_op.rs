//! `memory_op` (public/memory.h): ballooning (the reservation sub-ops), placing shared_info and grant frames in the guest's physical map, and its memory map.

use super::{is_self, memory, read_arg, write_arg, Call, Continue, Ret};
use crate::domain::{Domain, Others};
use crate::memory::HostFrames;
use crate::xen::{map_frame, XenState, MAX_GRANT_FRAMES};
use alloc::vec::Vec;
use ept::{Gpa, Hpa, MemType, PageSize, Perms};
use vcpu::{AddressSpace, FrameAlloc, Vcpu};
use xen_abi::hypercall::*;
use xen_abi::memory::*;
use xenolith::grant_table::{guest_element, memory_map_count, place_xen_page, XenPage};
use xenolith::reservation::{self, Physmap, Slot, Work, DOMU_MAX_ORDER, MAX_GFN};

/// Pages one entry of a reservation sub-op handles before it continues
/// (Xen checks `hypercall_preempt_check` between extents): at least one
/// extent, then no more than this, so a huge `nr_extents` never holds the
/// CPU; the guest re-enters with the count done in `cmd`'s upper bits.
const PAGES_PER_ENTRY: u64 = 512;

pub fn call(dom: &mut Domain, others: &mut Others, call: &Call) -> Result<Ret, Continue> {
    // Bits 6 and up carry a continuation's start extent (memory.h).
    let start = call.args[0] >> MEMOP_EXTENT_SHIFT;
    let op = call.args[0] & MEMOP_CMD_MASK;
    Ok(match op {
        XENMEM_INCREASE_RESERVATION | XENMEM_DECREASE_RESERVATION | XENMEM_POPULATE_PHYSMAP => {
            return reserve(dom, op, start, call.args[1]);
        }
        XENMEM_CURRENT_RESERVATION | XENMEM_MAXIMUM_RESERVATION => {
            if start != 0 {
                return Ok(-EINVAL);
            }
            let domid = match read_arg::<u16>(dom, call.args[1]) {
                Ok(d) => d,
                Err(f) => return Ok(f.into()),
            };
            if !is_self(dom, domid) {
                // Xen: rcu_lock_domain_by_any_id, then XSM_TARGET.
                return Ok(if others.find_any(domid).is_some() {
                    -EPERM
                } else {
                    -ESRCH
                });
            }
            if op == XENMEM_CURRENT_RESERVATION {
                dom.ram.tot_pages() as i64
            } else {
                dom.ram.max_pages() as i64
            }
        }
        XENMEM_MAXIMUM_RAM_PAGE if start != 0 => -EINVAL,
        // Xen answers every domain with the host's `max_page`.
        XENMEM_MAXIMUM_RAM_PAGE => crate::memory::max_page() as i64,
        XENMEM_GET_POD_TARGET | XENMEM_SET_POD_TARGET => {
            // struct xen_pod_target: four uint64_t, then domid (memory.h).
            let mut raw = [0u8; 34];
            let paging = dom.vcpu.paging();
            if memory(dom)
                .read_gva(&paging, false, call.args[1], &mut raw)
                .is_err()
            {
                return Ok(-EFAULT);
            }
            let domid = u16::from_le_bytes([raw[32], raw[33]]);
            // XSM_PRIV: the control domain's alone, not even about itself.
            if is_self(dom, domid) || others.find_any(domid).is_some() {
                -EPERM
            } else {
                -ESRCH
            }
        }
        XENMEM_ADD_TO_PHYSMAP => match read_arg::<XenAddToPhysmap>(dom, call.args[1]) {
            Ok(arg) => add_to_physmap(dom, &arg),
            Err(f) => f.into(),
        },
        XENMEM_MEMORY_MAP => memory_map(dom, call.args[1]),
        _ => -ENOSYS,
    })
}

/// One reservation request, whichever guest width made it.
struct Request {
    extent_start: u64,
    nr_extents: u64,
    extent_order: u32,
    mem_flags: u32,
    domid: u16,
    /// Bytes per `xen_pfn_t` in the list: 8, or 4 from 32-bit code
    /// (compat_pfn_t, Xen's compat_memory_op).
    pfn_size: u64,
}

/// The `xen_memory_reservation` at `gva`: the native layout from 64-bit
/// code, the compat one (32-bit handle and `nr_extents`, 20 bytes) from
/// 32-bit code.
fn read_request(dom: &Domain, gva: u64) -> Option<Request> {
    if dom.vcpu.in_64bit_mode() {
        let r: XenMemoryReservation = read_arg(dom, gva).ok()?;
        return Some(Request {
            extent_start: r.extent_start,
            nr_extents: r.nr_extents,
            extent_order: r.extent_order,
            mem_flags: r.mem_flags,
            domid: r.domid,
            pfn_size: 8,
        });
    }
    let mut raw = [0u8; 20];
    let paging = dom.vcpu.paging();
    memory(dom).read_gva(&paging, false, gva, &mut raw).ok()?;
    let word = |i: usize| u32::from_le_bytes(raw[i..i + 4].try_into().expect("4 bytes"));
    Some(Request {
        extent_start: u64::from(word(0)),
        nr_extents: u64::from(word(4)),
        extent_order: word(8),
        mem_flags: word(12),
        domid: u16::from_le_bytes([raw[16], raw[17]]),
        pfn_size: 4,
    })
}

/// XENMEM_increase_reservation, decrease_reservation and populate_physmap
/// (Xen do_memory_op): the result is the number of extents done, counting
/// those done by earlier entries of a continued call. What Xen refuses
/// before doing anything (an unreadable argument, `nr_extents` too large
/// to encode a continuation, `start` at or past `nr_extents`, another
/// domain's id, an `address_bits` at or below the page size, an
/// `extent_order` above the domU limit, populate-on-demand on oneself) is
/// answered with `start`: no extent more done. An extent that cannot be
/// done (a hole or foreign page to decrease, a GFN already mapped or a
/// `max_pages` that would be passed to populate, an unreadable list entry)
/// ends the call there.
fn reserve(dom: &mut Domain, op: u64, start: u64, gva: u64) -> Result<Ret, Continue> {
    let done = start as i64;
    let Some(r) = read_request(dom, gva) else {
        return Ok(done);
    };
    if r.nr_extents > u64::from(u32::MAX >> MEMOP_EXTENT_SHIFT) || start >= r.nr_extents {
        return Ok(done);
    }
    if !is_self(dom, r.domid) {
        return Ok(done);
    }
    let Some(address_bits) = reservation::address_bits(r.mem_flags) else {
        return Ok(done);
    };
    if r.extent_order > DOMU_MAX_ORDER {
        return Ok(done);
    }
    if op == XENMEM_POPULATE_PHYSMAP && r.mem_flags & XENMEMF_POPULATE_ON_DEMAND != 0 {
        // "Disallow populating PoD pages on oneself."
        return Ok(done);
    }
    let pinned: Vec<u64> = dom.xen.grants.active.iter().map(|a| a.hpa).collect();
    let paging = dom.vcpu.paging();
    let mut work = Work::new();
    let mut map = DomainMap {
        space: dom.space.as_mut(),
        vcpu: dom.vcpu.as_mut(),
        xen: &mut dom.xen,
        unmapped_once: dom.unmapped_once.map(|u| u.0 / 4096),
    };
    let mut frames = Frames;
    let mut i = start;
    let mut pages = 0;
    let mut preempted = false;
    while i < r.nr_extents {
        if i != start && pages >= PAGES_PER_ENTRY {
            preempted = true;
            break;
        }
        let gfn = if op == XENMEM_INCREASE_RESERVATION {
            0
        } else {
            let Some(at) = guest_element(r.extent_start, i, r.pfn_size) else {
                break;
            };
            let mut raw = [0u8; 8];
            let n = r.pfn_size as usize;
            if memory_of(map.space)
                .read_gva(&paging, false, at, &mut raw[..n])
                .is_err()
            {
                break;
            }
            u64::from_le_bytes(raw)
        };
        let ok = match op {
            XENMEM_DECREASE_RESERVATION => reservation::decrease_extent(
                &mut dom.ram,
                &mut map,
                &mut work,
                gfn,
                r.extent_order,
                &|hpa| pinned.contains(&hpa),
            ),
            XENMEM_POPULATE_PHYSMAP => reservation::populate_extent(
                &mut dom.ram,
                &mut map,
                &mut frames,
                &mut work,
                gfn,
                r.extent_order,
                address_bits,
            ),
            _ => reservation::increase_extent(
                &mut dom.ram,
                &mut frames,
                r.extent_order,
                address_bits,
            ),
        };
        if !ok {
            break;
        }
        i += 1;
        pages += 1 << r.extent_order;
    }
    work.finish(&mut map, &mut frames);
    if preempted {
        return Err(Continue([op | (i << MEMOP_EXTENT_SHIFT), gva, 0]));
    }
    Ok(i as i64)
}

fn memory_of(space: &dyn AddressSpace) -> crate::guest_memory::GuestMemory<'_> {
    crate::guest_memory::GuestMemory::new(space)
}

/// A domain's physmap as the reservation sub-ops see it: its second-level
/// tables, and the hypervisor pages it placed there.
struct DomainMap<'a> {
    space: &'a mut dyn AddressSpace,
    vcpu: &'a mut dyn Vcpu,
    xen: &'a mut XenState,
    /// The page `TEST_OP_UNMAP_ONCE` holds back: not a hole to fill.
    unmapped_once: Option<u64>,
}

impl Physmap for DomainMap<'_> {
    fn slot(&self, gfn: u64) -> Slot {
        let placed = self.xen.shared_info_gfn == Some(gfn)
            || self.xen.grant_frames.iter().any(|f| f.1 == Some(gfn));
        if placed {
            return Slot::XenPage;
        }
        if self.xen.grants.maptrack.maps_gpfn(gfn) || self.unmapped_once == Some(gfn) {
            return Slot::Other;
        }
        match self.space.translate(Gpa(gfn * 4096)) {
            None => Slot::Hole,
            // Whether it is RAM the domain holds is the caller's check.
            Some(t) => Slot::Ram(t.hpa.0 & !0xfff),
        }
    }

    fn map(&mut self, gfn: u64, hpa: u64) -> bool {
        // A hole filled: no translation was cached, nothing to flush.
        self.space
            .map(
                &mut HostFrames,
                Gpa(gfn * 4096),
                Hpa(hpa),
                PageSize::Size4K,
                Perms::RWX,
                MemType::WriteBack,
            )
            .is_ok()
    }

    fn unmap(&mut self, gfn: u64) -> bool {
        // Inside a 2 MiB page the split takes a table frame and may fail.
        if self
            .space
            .unmap(&mut HostFrames, Gpa(gfn * 4096), PageSize::Size4K)
            .is_err()
        {
            return false;
        }
        // shared_info or a grant frame removed: mapped nowhere now.
        if self.xen.shared_info_gfn == Some(gfn) {
            self.xen.shared_info_gfn = None;
        }
        for frame in self.xen.grant_frames.iter_mut() {
            if frame.1 == Some(gfn) {
                frame.1 = None;
            }
        }
        true
    }

    fn flush(&mut self) {
        self.vcpu.flush_second_level();
    }
}

/// The hypervisor's frame allocator: frames scrubbed as they are handed out.
struct Frames;

impl reservation::Frames for Frames {
    fn alloc(&mut self) -> Option<u64> {
        crate::memory::alloc_zeroed_frame()
    }

    fn free(&mut self, hpa: u64) {
        crate::memory::free_frames(hpa, 1);
    }
}

/// XENMEM_add_to_physmap of shared_info or a grant frame (Xen
/// `xenmem_add_to_physmap_one`): the page is mapped at `gpfn` and nowhere
/// else (its old GFN is unmapped, left a hole), another hypervisor page at
/// `gpfn` is unhooked, RAM there is replaced; a grant mapped at `gpfn` is
/// not replaced (-ENXIO, nothing changed).
fn add_to_physmap(dom: &mut Domain, arg: &XenAddToPhysmap) -> Ret {
    if !is_self(dom, arg.domid) {
        return -EPERM;
    }
    if arg.gpfn >= MAX_GFN {
        return -EINVAL;
    }
    let (page, hpa) = match arg.space {
        XENMAPSPACE_SHARED_INFO if arg.idx == 0 => (XenPage::SharedInfo, dom.xen.shared_info),
        XENMAPSPACE_GRANT_TABLE => {
            // Status frames exist only in grant-table v2.
            if arg.idx & XENMAPIDX_GRANT_TABLE_STATUS != 0 || arg.idx >= MAX_GRANT_FRAMES as u64 {
                return -EINVAL;
            }
            // Growing the table to idx + 1 frames, as Xen does (gnttab_grow_table).
            while dom.xen.grant_frames.len() <= arg.idx as usize {
                let Some(frame) = HostFrames.alloc_zeroed(1) else {
                    return -ENOMEM;
                };
                dom.xen.grant_frames.push((frame, None));
            }
            let idx = arg.idx as usize;
            (XenPage::GrantFrame(idx), dom.xen.grant_frames[idx].0)
        }
        _ => return -EINVAL,
    };
    let placed = core::iter::once((XenPage::SharedInfo, dom.xen.shared_info_gfn)).chain(
        dom.xen
            .grant_frames
            .iter()
            .enumerate()
            .map(|(i, f)| (XenPage::GrantFrame(i), f.1)),
    );
    let grant_mapped = dom.xen.grants.maptrack.maps_gpfn(arg.gpfn);
    let plan = match place_xen_page(placed, page, arg.gpfn, grant_mapped) {
        Ok(plan) => plan,
        Err(rc) => return rc,
    };
    // Mapped at the new GFN first: if that fails, nothing has changed.
    let mut flush = match map_frame(dom.space.as_mut(), arg.gpfn, hpa) {
        Ok(flush) => flush.is_needed(),
        Err(_) => return -ENOMEM,
    };
    if let Some(old) = plan.unmap_old {
        // A 4 KiB leaf an earlier add_to_physmap wrote: removing it splits
        // nothing, so it cannot fail for want of a table frame.
        flush |= dom
            .space
            .unmap(&mut HostFrames, Gpa(old * 4096), PageSize::Size4K)
            .map_or(true, |f| f.is_needed());
    }
    if flush {
        dom.vcpu.flush_second_level();
    }
    match plan.displaced {
        Some(XenPage::SharedInfo) => dom.xen.shared_info_gfn = None,
        Some(XenPage::GrantFrame(i)) => dom.xen.grant_frames[i].1 = None,
        None => {}
    }
    match page {
        XenPage::SharedInfo => {
            dom.xen.shared_info_gfn = Some(arg.gpfn);
            // The guest reads time and wallclock right away (spec 10, item 7).
            crate::xen::time::publish_shared(&dom.xen);
        }
        XenPage::GrantFrame(i) => dom.xen.grant_frames[i].1 = Some(arg.gpfn),
    }
    0
}

/// XENMEM_memory_map: the E820 map as 20-byte packed entries (memory.h). A
/// buffer shorter than the map gets its first entries and `nr_entries` says
/// how many (Xen truncates: `min(map.nr_entries, nr_e820)`); a buffer that
/// would end past the top of the address space is -EFAULT, nothing written.
fn memory_map(dom: &mut Domain, gva: u64) -> Ret {
    let mut arg: XenMemoryMap = match read_arg(dom, gva) {
        Ok(a) => a,
        Err(f) => return f.into(),
    };
    let entries = &dom.plan.memmap;
    let count = memory_map_count(arg.nr_entries, entries.len());
    if count > 0 && guest_element(arg.buffer, u64::from(count) - 1, 20).is_none() {
        return -EFAULT;
    }
    for (i, e) in entries.iter().take(count as usize).enumerate() {
        let Some(at) = guest_element(arg.buffer, i as u64, 20) else {
            return -EFAULT;
        };
        let mut raw = [0u8; 20];
        raw[0..8].copy_from_slice(&e.addr.to_le_bytes());
        raw[8..16].copy_from_slice(&e.size.to_le_bytes());
        raw[16..20].copy_from_slice(&e.kind.to_le_bytes());
        let paging = dom.vcpu.paging();
        if let Err(f) = super::memory(dom).write_gva(&paging, false, at, &raw) {
            return f.into();
        }
    }
    arg.nr_entries = count;
    match write_arg(dom, gva, &arg) {
        Ok(()) => 0,
        Err(f) => f.into(),
    }
}
