//! `grant_table_op` (public/grant_table.h): version 1 table size and setup; mapping and copying come with the driver domain.

use super::{is_self, read_arg, write_arg, Call, Ret};
use crate::domain::Domain;
use crate::xen::MAX_GRANT_FRAMES;
use xen_abi::grant_table::*;
use xen_abi::hypercall::*;

pub fn call(dom: &mut Domain, call: &Call) -> Ret {
    let (cmd, gva, count) = (call.args[0], call.args[1], call.args[2]);
    match cmd {
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

/// Runs `op` on each of `count` argument structures (a batch), writing each back.
fn each<T: super::Abi>(
    dom: &mut Domain,
    gva: u64,
    count: u64,
    op: impl Fn(&mut Domain, &mut T),
) -> Ret {
    // A batch larger than this is split by the guest; Xen preempts instead.
    if count > 512 {
        return -EINVAL;
    }
    let size = core::mem::size_of::<T>() as u64;
    for i in 0..count {
        let at = gva + i * size;
        let mut arg: T = match read_arg(dom, at) {
            Ok(a) => a,
            Err(f) => return f.into(),
        };
        op(dom, &mut arg);
        if let Err(f) = write_arg(dom, at, &arg) {
            return f.into();
        }
    }
    0
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
