//! Copies between guests' granted pages and this domain's memory (GNTTABOP_copy), as the backends see them.
//!
//! A backend names a guest's bytes as [`Piece`]s of granted frames and its
//! own as offsets into one buffer; the driver-domain binary turns that
//! into hypercall ops, and host tests into a map of pages.

/// Part of a granted 4 KiB frame: `len` bytes at `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub gref: u32,
    pub offset: u16,
    pub len: u16,
}

/// Copies between a guest's granted frames and this domain's memory.
/// Each `(piece, at)` moves `piece.len` bytes between the frame and
/// `buf[at..]`; each `status` is set to a `GNTST_*` value.
pub trait Grants {
    /// From the guest's frames into `buf`.
    fn copy_in(
        &mut self,
        domid: u16,
        pieces: &[(Piece, usize)],
        buf: &mut [u8],
        status: &mut [i16],
    );
    /// From `buf` into the guest's frames (which it must have granted writable).
    fn copy_out(&mut self, domid: u16, pieces: &[(Piece, usize)], buf: &[u8], status: &mut [i16]);
}

/// A guest's granted pages on the host, for backend tests.
#[cfg(test)]
pub mod fake {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;
    use xen_abi::grant_table::{GNTST_BAD_GNTREF, GNTST_OKAY, GNTST_PERMISSION_DENIED};

    /// gref → (page, read-only), per domain; `calls` counts hypercalls.
    #[derive(Default)]
    pub struct GuestPages {
        pub pages: BTreeMap<(u16, u32), (Vec<u8>, bool)>,
        pub calls: usize,
    }

    impl GuestPages {
        pub fn grant(&mut self, domid: u16, gref: u32, page: Vec<u8>, read_only: bool) {
            self.pages.insert((domid, gref), (page, read_only));
        }

        pub fn page(&self, domid: u16, gref: u32) -> &[u8] {
            &self.pages[&(domid, gref)].0
        }
    }

    impl Grants for GuestPages {
        fn copy_in(
            &mut self,
            domid: u16,
            pieces: &[(Piece, usize)],
            buf: &mut [u8],
            status: &mut [i16],
        ) {
            self.calls += 1;
            for ((p, at), s) in pieces.iter().zip(status.iter_mut()) {
                let Some((page, _)) = self.pages.get(&(domid, p.gref)) else {
                    *s = GNTST_BAD_GNTREF;
                    continue;
                };
                let (o, l) = (usize::from(p.offset), usize::from(p.len));
                buf[*at..*at + l].copy_from_slice(&page[o..o + l]);
                *s = GNTST_OKAY;
            }
        }

        fn copy_out(
            &mut self,
            domid: u16,
            pieces: &[(Piece, usize)],
            buf: &[u8],
            status: &mut [i16],
        ) {
            self.calls += 1;
            for ((p, at), s) in pieces.iter().zip(status.iter_mut()) {
                let Some((page, ro)) = self.pages.get_mut(&(domid, p.gref)) else {
                    *s = GNTST_BAD_GNTREF;
                    continue;
                };
                if *ro {
                    *s = GNTST_PERMISSION_DENIED;
                    continue;
                }
                let (o, l) = (usize::from(p.offset), usize::from(p.len));
                page[o..o + l].copy_from_slice(&buf[*at..*at + l]);
                *s = GNTST_OKAY;
            }
        }
    }
}
