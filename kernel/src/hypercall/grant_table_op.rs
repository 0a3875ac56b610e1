//! `grant_table_op` (public/grant_table.h): version 1 map, unmap and copy (checked by `xenolith::grant_table`), table size and setup.

use super::{is_self, read_arg, write_arg, Call, Ret};
use crate::domain::{Domain, Others};
use crate::xen::grants::{lend, Reach};
use crate::xen::MAX_GRANT_FRAMES;
use alloc::vec;
use alloc::vec::Vec;
use xen_abi::grant_table::*;
use xen_abi::hypercall::*;
use xenolith::grant_table::{
    copy, guest_element, map, unmap, CopyDomains, DynGranter, MapRequest, UnmapRequest,
};

pub fn call(dom: &mut Domain, others: &mut Others, call: &Call) -> Ret {
    let (cmd, gva, count) = (call.args[0], call.args[1], call.args[2]);
    match cmd {
        GNTTABOP_MAP_GRANT_REF => each::<GnttabMapGrantRef>(dom, gva, count, |me, op| {
            map_one(&mut Reach { me, others }, op)
        }),
        GNTTABOP_UNMAP_GRANT_REF => each::<GnttabUnmapGrantRef>(dom, gva, count, |me, op| {
            unmap_one(&mut Reach { me, others }, op)
        }),
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
        // As Xen 4.17's gnttab_set_version for a domain whose
        // max_grant_version is 1 (xl.cfg `max_grant_version = 1`): 1 is
        // the version in force (0), 2 is -ENOSYS ("behave as before
        // set_version was introduced": XTF then takes v2 as absent),
        // anything else -EINVAL; the version in force is written back.
        GNTTABOP_SET_VERSION => match read_arg::<GnttabSetVersion>(dom, gva) {
            Ok(mut v) => {
                let ret = match v.version {
                    1 => 0,
                    2 => -ENOSYS,
                    _ => -EINVAL,
                };
                v.version = 1;
                match write_arg(dom, gva, &v) {
                    Ok(()) => ret,
                    Err(f) => f.into(),
                }
            }
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
/// is mapped (XENMEM_add_to_physmap puts them), or an invalid GFN. A
/// `frame_list` whose end would pass the top of the address space is
/// GNTST_bad_virt_addr with nothing written: what Xen answers a PVH caller
/// for a `frame_list` it cannot write (`guest_handle_okay` passes every
/// array of a paging_mode_external domain; the copy fails).
fn setup_table(dom: &mut Domain, s: &mut GnttabSetupTable) {
    if !is_self(dom, s.dom) {
        s.status = GNTST_BAD_DOMAIN;
        return;
    }
    if s.nr_frames as usize > MAX_GRANT_FRAMES {
        s.status = GNTST_GENERAL_ERROR;
        return;
    }
    let nr = u64::from(s.nr_frames);
    if nr > 0 && guest_element(s.frame_list, nr - 1, 8).is_none() {
        s.status = GNTST_BAD_VIRT_ADDR;
        return;
    }
    for i in 0..nr {
        let gfn = dom
            .xen
            .grant_frames
            .get(i as usize)
            .and_then(|f| f.1)
            .unwrap_or(u64::MAX);
        let Some(at) = guest_element(s.frame_list, i, 8) else {
            s.status = GNTST_BAD_VIRT_ADDR;
            return;
        };
        if let Err(_f) = write_arg(dom, at, &gfn) {
            s.status = GNTST_BAD_VIRT_ADDR;
            return;
        }
    }
    s.status = GNTST_OKAY;
}

/// GNTTABOP_map_grant_ref for one op: `xenolith::grant_table::map` checks
/// it, pins the entry and maps the granted frame at `host_addr` in the
/// caller's second-level tables (read-only unless the map is writable).
/// `op.dom` is looked up by id: the caller's own id maps its own grant.
fn map_one(reach: &mut Reach<'_, '_>, op: &mut GnttabMapGrantRef) {
    op.dev_bus_addr = 0;
    let req = MapRequest {
        gref: op.r#ref,
        flags: op.flags,
        host_addr: op.host_addr,
    };
    match map(reach, op.dom, req) {
        Ok(m) => {
            op.handle = m.handle;
            op.status = GNTST_OKAY;
        }
        Err(status) => op.status = status,
    }
}

/// GNTTABOP_unmap_grant_ref for one op: releases the pin and removes the
/// page from the caller's second-level tables, flushing them; a handle of a
/// granter that has ended still unmaps (and the last one frees its RAM).
fn unmap_one(reach: &mut Reach<'_, '_>, op: &mut GnttabUnmapGrantRef) {
    let req = UnmapRequest {
        handle: op.handle,
        host_addr: op.host_addr,
        dev_bus_addr: op.dev_bus_addr,
    };
    op.status = match unmap(reach, req) {
        Ok(_) => GNTST_OKAY,
        Err(status) => status,
    };
}

/// The domains a GNTTABOP_copy by `me` can reach: itself and the live others.
impl CopyDomains for Reach<'_, '_> {
    fn with_granter(&mut self, domid: u16, f: &mut dyn FnMut(&mut DynGranter<'_>)) -> bool {
        let d: &mut Domain = if domid == self.me.id {
            self.me
        } else {
            match self.others.find(domid) {
                Some(d) => d,
                None => return false,
            }
        };
        lend(d, |_, g| f(g));
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
    copy(&mut Reach { me: dom, others }, caller, &mut ops);
    match super::write_args(dom, gva, &ops) {
        Ok(()) => 0,
        Err(f) => f.into(),
    }
}
