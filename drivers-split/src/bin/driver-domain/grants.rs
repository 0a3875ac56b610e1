//! GNTTABOP_copy between guests' grants and this domain's memory, for every backend.

use crate::xen;
use alloc::vec::Vec;
use drivers_split::grant_copy::{Grants, Piece};
use xen_abi::event_channel::DOMID_SELF;
use xen_abi::grant_table::*;

/// This domain's memory is identity-mapped, so a buffer's address is its
/// guest-physical address and the copy names it by frame and offset.
pub struct HypervisorGrants;

/// One hypercall for all `pieces`, between the guest's frames and the
/// buffer at `base` (`len` bytes).
fn copy(
    domid: u16,
    to_guest: bool,
    pieces: &[(Piece, usize)],
    base: u64,
    len: usize,
    status: &mut [i16],
) {
    let mut ops: Vec<GnttabCopy> = Vec::with_capacity(pieces.len() + 8);
    let mut owner: Vec<usize> = Vec::with_capacity(pieces.len() + 8);
    for (i, (p, at)) in pieces.iter().enumerate() {
        if at + usize::from(p.len) > len {
            status[i] = GNTST_BAD_COPY_ARG;
            continue;
        }
        // A piece crossing a page of this domain's buffer is two copies.
        let mut done = 0u16;
        while done < p.len {
            let local = base + (*at as u64) + u64::from(done);
            let n = (p.len - done).min((4096 - (local & 0xfff)) as u16);
            let guest = GnttabCopyPtr {
                u: u64::from(p.gref),
                domid,
                offset: p.offset + done,
                pad: 0,
            };
            let me = GnttabCopyPtr {
                u: local >> 12,
                domid: DOMID_SELF,
                offset: (local & 0xfff) as u16,
                pad: 0,
            };
            let (source, dest, flags) = if to_guest {
                (me, guest, GNTCOPY_DEST_GREF)
            } else {
                (guest, me, GNTCOPY_SOURCE_GREF)
            };
            ops.push(GnttabCopy {
                source,
                dest,
                len: n,
                flags,
                status: 0,
                pad: 0,
            });
            owner.push(i);
            done += n;
        }
        status[i] = GNTST_OKAY;
    }
    xen::grant_copy(&mut ops);
    for (op, &i) in ops.iter().zip(&owner) {
        if op.status != GNTST_OKAY {
            status[i] = op.status;
        }
    }
}

impl Grants for HypervisorGrants {
    fn copy_in(
        &mut self,
        domid: u16,
        pieces: &[(Piece, usize)],
        buf: &mut [u8],
        status: &mut [i16],
    ) {
        copy(
            domid,
            false,
            pieces,
            buf.as_mut_ptr() as u64,
            buf.len(),
            status,
        );
    }

    fn copy_out(&mut self, domid: u16, pieces: &[(Piece, usize)], buf: &[u8], status: &mut [i16]) {
        copy(domid, true, pieces, buf.as_ptr() as u64, buf.len(), status);
    }
}
