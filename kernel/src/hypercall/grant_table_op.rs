//! `grant_table_op` (public/grant_table.h): version 1 table size and setup; mapping and copying come with the driver domain.

use super::{is_self, read_arg, write_arg, Call, Ret};
use crate::domain::{Domain, Others};
use crate::memory::HostFrames;
use crate::xen::grants::{FrameEntries, RamFrames};
use crate::xen::MAX_GRANT_FRAMES;
use alloc::vec;
use alloc::vec::Vec;
use ept::{Gpa, Hpa, MemType, PageSize, Perms};
use xen_abi::event_channel::DOMID_SELF;
use xen_abi::grant_table::*;
use xen_abi::hypercall::*;
use xenolith::grant_table::{
    copy, map_grant_ref, unmap_grant_ref, CopyDomains, DynGranter, Granter, MapRequest,
    UnmapRequest,
};

pub fn call(dom: &mut Domain, others: &mut Others, call: &Call) -> Ret {
    let (cmd, gva, count) = (call.args[0], call.args[1], call.args[2]);
    match cmd {
        GNTTABOP_MAP_GRANT_REF => {
            each::<GnttabMapGrantRef>(dom, gva, count, |dom, op| map(dom, others, op))
        }
        GNTTABOP_UNMAP_GRANT_REF => {
            each::<GnttabUnmapGrantRef>(dom, gva, count, |dom, op| unmap(dom, others, op))
        }
        GNTTABOP_COPY => copy_batch(dom, others, gva, count),
        GNTTABOP_QUERY_SIZE => each::<GnttabQuerySize>(dom, gva, count, |dom, q| {
            if is_self(dom, q.dom) {
                q.nr_frames = dom.xen.grant_frames.len() as u32;
                q.max_nr_frames = MAX_GRANT_FRAMES as u32;
                q.status = GNTST_OKAY;
            } else {
                q.status = GNTST_BAD_DOMAIN;
            }
        }),
        GNTTABOP_SETUP_TABLE => each::<GnttabSetupTable>(dom, gva, count, setup_table),
        // Only version 1 exists here (spec 6): asking for it succeeds, 2 is refused.
        GNTTABOP_SET_VERSION => match read_arg::<GnttabSetVersion>(dom, gva) {
            Ok(v) if v.version == 1 => 0,
            Ok(_) => -EINVAL,
            Err(f) => f.into(),
        },
        GNTTABOP_GET_VERSION => match read_arg::<GnttabGetVersion>(dom, gva) {
            Ok(mut v) if is_self(dom, v.dom) => {
                v.version = 1;
                match write_arg(dom, gva, &v) {
                    Ok(()) => 0,
                    Err(f) => f.into(),
                }
            }
            Ok(_) => -EPERM,
            Err(f) => f.into(),
        },
        _ => -ENOSYS,
    }
}

/// Largest batch: a bigger one is split by the guest (Xen preempts instead).
const MAX_BATCH: u64 = 512;

/// Reads a batch of `count` argument structures at `gva`, refusing one
/// over [`MAX_BATCH`].
fn read_batch<T: super::Abi>(dom: &Domain, gva: u64, count: u64) -> Result<Vec<T>, Ret> {
    if count > MAX_BATCH {
        return Err(-EINVAL);
    }
    let mut ops = vec![T::default(); count as usize];
    super::read_args(dom, gva, &mut ops).map_err(Ret::from)?;
    Ok(ops)
}

/// Runs `op` on each of `count` argument structures (a batch): all are read
/// first, and all are written back after.
fn each<T: super::Abi>(
    dom: &mut Domain,
    gva: u64,
    count: u64,
    mut op: impl FnMut(&mut Domain, &mut T),
) -> Ret {
    let mut ops = match read_batch::<T>(dom, gva, count) {
        Ok(ops) => ops,
        Err(rc) => return rc,
    };
    for arg in ops.iter_mut() {
        op(dom, arg);
    }
    match super::write_args(dom, gva, &ops) {
        Ok(()) => 0,
        Err(f) => f.into(),
    }
}

/// GNTTABOP_setup_table for an auto-translated guest: report where each frame
/// is mapped (XENMEM_add_to_physmap puts them), or an invalid GFN.
fn setup_table(dom: &mut Domain, s: &mut GnttabSetupTable) {
    if !is_self(dom, s.dom) {
        s.status = GNTST_BAD_DOMAIN;
        return;
    }
    if s.nr_frames as usize > MAX_GRANT_FRAMES {
        s.status = GNTST_GENERAL_ERROR;
        return;
    }
    for i in 0..s.nr_frames as usize {
        let gfn = dom
            .xen
            .grant_frames
            .get(i)
            .and_then(|f| f.1)
            .unwrap_or(u64::MAX);
        if let Err(_f) = write_arg(dom, s.frame_list + 8 * i as u64, &gfn) {
            s.status = GNTST_BAD_VIRT_ADDR;
            return;
        }
    }
    s.status = GNTST_OKAY;
}

/// GNTTABOP_map_grant_ref for one op: the checks of `xenolith::grant_table`,
/// then the granted frame mapped at `host_addr` in the caller's second-level
/// tables (read-only unless the map is writable). A domain mapping its own
/// grants is not supported (GNTST_general_error).
fn map(dom: &mut Domain, others: &mut Others, op: &mut GnttabMapGrantRef) {
    op.dev_bus_addr = 0;
    let Some(peer) = (op.dom != dom.id && op.dom != DOMID_SELF)
        .then(|| others.find(op.dom))
        .flatten()
    else {
        op.status = if op.dom == dom.id || op.dom == DOMID_SELF {
            GNTST_GENERAL_ERROR
        } else {
            GNTST_BAD_DOMAIN
        };
        return;
    };
    lend_granter(peer, |granter| map_from(dom, granter, op));
}

/// The second half of `map`, with the granter lent.
fn map_from(dom: &mut Domain, granter: &mut DynGranter<'_>, op: &mut GnttabMapGrantRef) {
    let req = MapRequest {
        gref: op.r#ref,
        flags: op.flags,
        host_addr: op.host_addr,
    };
    let mapped = match map_grant_ref(&mut dom.xen.grants.maptrack, dom.id, granter, req) {
        Ok(m) => m,
        Err(status) => {
            op.status = status;
            return;
        }
    };
    let perms = if mapped.writable { Perms::RW } else { Perms::R };
    let result = dom.space.map(
        &mut HostFrames,
        Gpa(mapped.gpa),
        Hpa(mapped.hpa),
        PageSize::Size4K,
        perms,
        MemType::WriteBack,
    );
    match result {
        Ok(flush) => {
            if flush.is_needed() {
                dom.vcpu.flush_second_level();
            }
            op.handle = mapped.handle;
            op.status = GNTST_OKAY;
        }
        Err(_) => {
            // Undo the pin: the frame never became reachable.
            let undo = UnmapRequest {
                handle: mapped.handle,
                host_addr: mapped.gpa,
                dev_bus_addr: 0,
            };
            let _ = unmap_grant_ref(&mut dom.xen.grants.maptrack, granter, undo);
            op.status = GNTST_GENERAL_ERROR;
        }
    }
}

/// GNTTABOP_unmap_grant_ref for one op: releases the pin and removes the
/// page from the caller's second-level tables, flushing them.
fn unmap(dom: &mut Domain, others: &mut Others, op: &mut GnttabUnmapGrantRef) {
    let Some(entry) = dom.xen.grants.maptrack.get(op.handle) else {
        op.status = GNTST_BAD_HANDLE;
        return;
    };
    let Some(peer) = others.find(entry.granter) else {
        op.status = GNTST_BAD_HANDLE;
        return;
    };
    lend_granter(peer, |granter| unmap_from(dom, granter, op));
}

/// The second half of `unmap`, with the granter lent.
fn unmap_from(dom: &mut Domain, granter: &mut DynGranter<'_>, op: &mut GnttabUnmapGrantRef) {
    let req = UnmapRequest {
        handle: op.handle,
        host_addr: op.host_addr,
        dev_bus_addr: op.dev_bus_addr,
    };
    match unmap_grant_ref(&mut dom.xen.grants.maptrack, granter, req) {
        Ok(Some(u)) => {
            let _ = dom
                .space
                .unmap(&mut HostFrames, Gpa(u.gpa), PageSize::Size4K);
            dom.vcpu.flush_second_level();
            op.status = GNTST_OKAY;
        }
        Ok(None) => op.status = GNTST_OKAY,
        Err(status) => op.status = status,
    }
}

/// Lends `f` the granter side of `d`: its grant entries, its RAM frames and
/// its active pins (the one place a `Granter` is built from a `Domain`).
fn lend_granter<R>(d: &mut Domain, f: impl FnOnce(&mut DynGranter<'_>) -> R) -> R {
    let ram = d.ram_range();
    let mut entries = FrameEntries {
        frames: &d.xen.grant_frames,
    };
    let frames = RamFrames {
        space: d.space.as_ref(),
        ram,
        dma: d.dma_range(),
    };
    let mut granter: DynGranter<'_> = Granter {
        domid: d.id,
        entries: &mut entries,
        frames: &frames,
        active: &mut d.xen.grants.active,
    };
    f(&mut granter)
}

/// The domains a GNTTABOP_copy by `me` can reach: itself and the others.
struct Copier<'a, 'b> {
    me: &'a mut Domain,
    others: &'a mut Others<'b>,
}

impl CopyDomains for Copier<'_, '_> {
    fn with_granter(&mut self, domid: u16, f: &mut dyn FnMut(&mut DynGranter<'_>)) -> bool {
        let d: &mut Domain = if domid == self.me.id {
            self.me
        } else {
            match self.others.find(domid) {
                Some(d) => d,
                None => return false,
            }
        };
        lend_granter(d, |g| f(g));
        true
    }

    fn copy_bytes(&mut self, src_hpa: u64, src_off: u16, dst_hpa: u64, dst_off: u16, len: u16) {
        // SAFETY: both ranges lie within a page of domain RAM the checks just
        // claimed (identity-mapped); `byte_copy::copy` allows them to overlap.
        unsafe {
            xenolith::byte_copy::copy(
                (src_hpa + u64::from(src_off)) as *const u8,
                (dst_hpa + u64::from(dst_off)) as *mut u8,
                usize::from(len),
            )
        };
    }
}

/// GNTTABOP_copy: the batch copied in, each op checked and done by
/// `xenolith::grant_table::copy` (one failing op does not stop the others),
/// the statuses copied out. Reading the array in one piece rather than op by
/// op halved the time a 256-op batch takes under QEMU TCG (docs/block.md).
fn copy_batch(dom: &mut Domain, others: &mut Others, gva: u64, count: u64) -> Ret {
    let mut ops = match read_batch::<GnttabCopy>(dom, gva, count) {
        Ok(ops) => ops,
        Err(rc) => return rc,
    };
    let caller = dom.id;
    copy(&mut Copier { me: dom, others }, caller, &mut ops);
    match super::write_args(dom, gva, &ops) {
        Ok(()) => 0,
        Err(f) => f.into(),
    }
}
