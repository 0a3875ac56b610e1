//! `memory_op` (public/memory.h): placing shared_info and grant frames in the guest's physical map, and its memory map.

use super::{is_self, read_arg, write_arg, Call, Ret};
use crate::domain::Domain;
use crate::memory::HostFrames;
use crate::xen::{map_frame, MAX_GRANT_FRAMES};
use vcpu::FrameAlloc;
use xen_abi::hypercall::*;
use xen_abi::memory::*;

/// Guest frame numbers must stay below 2^36 (a 48-bit guest-physical space).
const MAX_GFN: u64 = 1 << 36;

pub fn call(dom: &mut Domain, call: &Call) -> Ret {
    // Bits 6 and up carry a continuation's start extent (memory.h).
    match call.args[0] & MEMOP_CMD_MASK {
        XENMEM_ADD_TO_PHYSMAP => match read_arg::<XenAddToPhysmap>(dom, call.args[1]) {
            Ok(arg) => add_to_physmap(dom, &arg),
            Err(f) => f.into(),
        },
        XENMEM_MEMORY_MAP => memory_map(dom, call.args[1]),
        _ => -ENOSYS,
    }
}

fn add_to_physmap(dom: &mut Domain, arg: &XenAddToPhysmap) -> Ret {
    if !is_self(dom, arg.domid) {
        return -EPERM;
    }
    if arg.gpfn >= MAX_GFN {
        return -EINVAL;
    }
    let hpa = match arg.space {
        XENMAPSPACE_SHARED_INFO if arg.idx == 0 => dom.xen.shared_info,
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
            dom.xen.grant_frames[arg.idx as usize].0
        }
        _ => return -EINVAL,
    };
    let flush = match map_frame(dom.space.as_mut(), arg.gpfn, hpa) {
        Ok(flush) => flush,
        Err(_) => return -ENOMEM,
    };
    if flush.is_needed() {
        dom.vcpu.flush_second_level();
    }
    match arg.space {
        XENMAPSPACE_SHARED_INFO => {
            dom.xen.shared_info_gfn = Some(arg.gpfn);
            // The guest reads time and wallclock right away (spec 10, item 7).
            crate::xen::time::publish_shared(&dom.xen);
        }
        _ => dom.xen.grant_frames[arg.idx as usize].1 = Some(arg.gpfn),
    }
    0
}

/// XENMEM_memory_map: the E820 map as 20-byte packed entries (memory.h).
fn memory_map(dom: &mut Domain, gva: u64) -> Ret {
    let mut arg: XenMemoryMap = match read_arg(dom, gva) {
        Ok(a) => a,
        Err(f) => return f.into(),
    };
    let entries = &dom.plan.memmap;
    if (arg.nr_entries as usize) < entries.len() {
        return -EINVAL;
    }
    for (i, e) in entries.iter().enumerate() {
        let mut raw = [0u8; 20];
        raw[0..8].copy_from_slice(&e.addr.to_le_bytes());
        raw[8..16].copy_from_slice(&e.size.to_le_bytes());
        raw[16..20].copy_from_slice(&e.kind.to_le_bytes());
        let paging = dom.vcpu.paging();
        if let Err(f) =
            super::memory(dom).write_gva(&paging, false, arg.buffer + 20 * i as u64, &raw)
        {
            return f.into();
        }
    }
    arg.nr_entries = entries.len() as u32;
    match write_arg(dom, gva, &arg) {
        Ok(()) => 0,
        Err(f) => f.into(),
    }
}
