//! `memory_op` (public/memory.h): placing shared_info and grant frames in the guest's physical map, and its memory map.

use super::{is_self, read_arg, write_arg, Call, Ret};
use crate::domain::Domain;
use crate::memory::HostFrames;
use crate::xen::{map_frame, MAX_GRANT_FRAMES};
use ept::{Gpa, PageSize};
use vcpu::FrameAlloc;
use xen_abi::hypercall::*;
use xen_abi::memory::*;
use xenolith::grant_table::{guest_element, memory_map_count, place_xen_page, XenPage};

/// Guest frame numbers must stay below 2^36 (a 48-bit guest-physical space).
const MAX_GFN: u64 = 1 << 36;

pub fn call(dom: &mut Domain, call: &Call) -> Ret {
    // Bits 6 and up carry a continuation's start extent (memory.h).
    match call.args[0] & MEMOP_CMD_MASK {
        // A 32-bit caller passes the compat layout (32-bit idx and gpfn),
        // as Xen's compat_memory_op translates it.
        XENMEM_ADD_TO_PHYSMAP if !dom.vcpu.in_64bit_mode() => {
            match read_arg::<XenAddToPhysmapCompat>(dom, call.args[1]) {
                Ok(arg) => add_to_physmap(dom, &arg.into()),
                Err(f) => f.into(),
            }
        }
        XENMEM_ADD_TO_PHYSMAP => match read_arg::<XenAddToPhysmap>(dom, call.args[1]) {
            Ok(arg) => add_to_physmap(dom, &arg),
            Err(f) => f.into(),
        },
        XENMEM_MEMORY_MAP => memory_map(dom, call.args[1]),
        _ => -ENOSYS,
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
