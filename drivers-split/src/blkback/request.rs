//! A blkif request as the frontend sent it, checked: what to do, where on the disk, and which granted sectors carry the data.

use alloc::vec::Vec;
use xen_abi::blkif::*;

pub use crate::grant_copy::Piece;

/// What a checked request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Data from the disk into the pieces, or from the pieces to the disk,
    /// starting at `sector` (512-byte units).
    Read {
        sector: u64,
        pieces: Vec<Piece>,
    },
    Write {
        sector: u64,
        pieces: Vec<Piece>,
    },
    /// Flush the write cache (FLUSH_DISKCACHE without data). A
    /// WRITE_BARRIER, or a FLUSH_DISKCACHE with data, is a `Write` that the
    /// batch follows with a flush before its response.
    Flush,
    Discard {
        sector: u64,
        count: u64,
    },
    /// The segments are in indirect pages, yet to be read.
    Indirect {
        write: bool,
        sector: u64,
        nr_segments: u16,
        pages: Vec<u32>,
    },
}

/// Why a request gets an error response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// BLKIF_RSP_EOPNOTSUPP: an operation this disk does not offer.
    NotSupported,
    /// BLKIF_RSP_ERROR: a malformed request, one past the end of the disk,
    /// or a write to a read-only disk.
    Invalid(&'static str),
}

impl Refusal {
    pub fn status(self) -> i16 {
        match self {
            Refusal::NotSupported => BLKIF_RSP_EOPNOTSUPP,
            Refusal::Invalid(_) => BLKIF_RSP_ERROR,
        }
    }
}

/// What a disk offers, for checking requests against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Size in 512-byte sectors.
    pub sectors: u64,
    pub read_only: bool,
    pub flush: bool,
    pub discard: bool,
    /// The `feature-max-indirect-segments` advertised (0: no indirect).
    pub max_indirect_segments: u16,
}

/// Bytes `pieces` carry.
pub fn bytes(pieces: &[Piece]) -> u64 {
    pieces.iter().map(|p| u64::from(p.len)).sum()
}

/// Segment descriptors to pieces: `first_sect <= last_sect <= 7`.
pub fn pieces(segs: &[BlkifSegment]) -> Result<Vec<Piece>, Refusal> {
    segs.iter()
        .map(|s| {
            if s.first_sect > s.last_sect || s.last_sect > 7 {
                return Err(Refusal::Invalid("segment sectors out of the page"));
            }
            Ok(Piece {
                gref: s.gref,
                offset: u16::from(s.first_sect) * 512,
                len: (u16::from(s.last_sect - s.first_sect) + 1) * 512,
            })
        })
        .collect()
}

/// Whether `count` sectors from `sector` lie on the disk.
fn in_range(limits: &Limits, sector: u64, count: u64) -> bool {
    sector
        .checked_add(count)
        .is_some_and(|end| end <= limits.sectors)
}

/// Checks the whole of a data transfer, once its pieces are known.
pub fn check_transfer(
    limits: &Limits,
    write: bool,
    sector: u64,
    pieces: &[Piece],
) -> Result<(), Refusal> {
    if write && limits.read_only {
        return Err(Refusal::Invalid("write to a read-only disk"));
    }
    if !in_range(limits, sector, bytes(pieces) / BLKIF_SECTOR_SIZE) {
        return Err(Refusal::Invalid("beyond the end of the disk"));
    }
    Ok(())
}

/// Reads a slot: the request's id and operation (for the response), and
/// what it asks or why it is refused.
pub fn parse(slot: &[u8; BLKIF_SLOT_SIZE], limits: &Limits) -> (u64, u8, Result<Op, Refusal>) {
    // An indirect request's response carries its `indirect_op` (blkback
    // `make_response`); Linux's blkfront disables a disk whose response
    // says BLKIF_OP_INDIRECT ("response has wrong operation").
    let operation = match slot[0] {
        BLKIF_OP_INDIRECT => slot[1],
        op => op,
    };
    let id = u64::from_le_bytes(slot[8..16].try_into().expect("8 bytes"));
    (id, operation, parse_op(slot, limits))
}

fn parse_op(slot: &[u8; BLKIF_SLOT_SIZE], limits: &Limits) -> Result<Op, Refusal> {
    // Linux's blkfront sends a FUA or pre-flush write as FLUSH_DISKCACHE
    // with its data segments (blkif_queue_rw_req); blkback treats it as a
    // write with a flush (dispatch_rw_block_io), and so does this.
    let data_flush = slot[0] == BLKIF_OP_FLUSH_DISKCACHE && slot[1] != 0;
    match slot[0] {
        op @ (BLKIF_OP_READ | BLKIF_OP_WRITE | BLKIF_OP_WRITE_BARRIER)
        | op @ BLKIF_OP_FLUSH_DISKCACHE
            if op != BLKIF_OP_FLUSH_DISKCACHE || data_flush =>
        {
            let r = BlkifRequest::from_bytes(slot);
            let n = usize::from(r.nr_segments);
            if n == 0 || n > BLKIF_MAX_SEGMENTS_PER_REQUEST {
                return Err(Refusal::Invalid("bad segment count"));
            }
            if op >= BLKIF_OP_WRITE_BARRIER && !limits.flush {
                return Err(Refusal::NotSupported);
            }
            let pieces = pieces(&r.seg[..n])?;
            let write = op != BLKIF_OP_READ;
            check_transfer(limits, write, r.sector_number, &pieces)?;
            Ok(if write {
                Op::Write {
                    sector: r.sector_number,
                    pieces,
                }
            } else {
                Op::Read {
                    sector: r.sector_number,
                    pieces,
                }
            })
        }
        BLKIF_OP_FLUSH_DISKCACHE => {
            if limits.flush {
                Ok(Op::Flush)
            } else {
                Err(Refusal::NotSupported)
            }
        }
        BLKIF_OP_DISCARD => {
            let d = BlkifRequestDiscard::from_bytes(slot);
            if !limits.discard {
                return Err(Refusal::NotSupported);
            }
            if limits.read_only {
                return Err(Refusal::Invalid("discard on a read-only disk"));
            }
            if !in_range(limits, d.sector_number, d.nr_sectors) {
                return Err(Refusal::Invalid("discard beyond the end of the disk"));
            }
            Ok(Op::Discard {
                sector: d.sector_number,
                count: d.nr_sectors,
            })
        }
        BLKIF_OP_INDIRECT => {
            let r = BlkifRequestIndirect::from_bytes(slot);
            if limits.max_indirect_segments == 0 {
                return Err(Refusal::NotSupported);
            }
            let write = match r.indirect_op {
                BLKIF_OP_READ => false,
                BLKIF_OP_WRITE => true,
                _ => return Err(Refusal::Invalid("indirect operation not read or write")),
            };
            if r.nr_segments == 0 || r.nr_segments > limits.max_indirect_segments {
                return Err(Refusal::Invalid("bad indirect segment count"));
            }
            if write && limits.read_only {
                return Err(Refusal::Invalid("write to a read-only disk"));
            }
            let pages = usize::from(r.nr_segments).div_ceil(BLKIF_SEGMENTS_PER_INDIRECT_FRAME);
            Ok(Op::Indirect {
                write,
                sector: r.sector_number,
                nr_segments: r.nr_segments,
                pages: r.indirect_grefs[..pages].to_vec(),
            })
        }
        _ => Err(Refusal::NotSupported),
    }
}

/// The segments of an indirect request, from its pages' bytes (copied out
/// of the guest, `pages.len()` × 4 KiB), checked as direct ones are.
pub fn indirect_pieces(
    limits: &Limits,
    write: bool,
    sector: u64,
    nr_segments: u16,
    page_bytes: &[u8],
) -> Result<Vec<Piece>, Refusal> {
    let n = usize::from(nr_segments);
    if page_bytes.len() < n * 8 {
        return Err(Refusal::Invalid("indirect pages missing"));
    }
    let segs: Vec<BlkifSegment> = page_bytes[..n * 8]
        .chunks_exact(8)
        .map(|c| BlkifSegment::from_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let pieces = pieces(&segs)?;
    check_transfer(limits, write, sector, &pieces)?;
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DISK: Limits = Limits {
        sectors: 2048,
        read_only: false,
        flush: true,
        discard: true,
        max_indirect_segments: 64,
    };

    fn rw(op: u8, sector: u64, segs: &[(u32, u8, u8)]) -> [u8; BLKIF_SLOT_SIZE] {
        let mut r = BlkifRequest {
            operation: op,
            nr_segments: segs.len() as u8,
            id: 99,
            sector_number: sector,
            ..Default::default()
        };
        for (i, &(gref, first_sect, last_sect)) in segs.iter().enumerate() {
            r.seg[i] = BlkifSegment {
                gref,
                first_sect,
                last_sect,
                pad: 0,
            };
        }
        r.to_bytes()
    }

    #[test]
    fn reads_and_writes_become_pieces() {
        let (id, op, r) = parse(&rw(BLKIF_OP_READ, 8, &[(5, 0, 7), (6, 2, 3)]), &DISK);
        assert_eq!((id, op), (99, BLKIF_OP_READ));
        assert_eq!(
            r,
            Ok(Op::Read {
                sector: 8,
                pieces: alloc::vec![
                    Piece {
                        gref: 5,
                        offset: 0,
                        len: 4096
                    },
                    Piece {
                        gref: 6,
                        offset: 1024,
                        len: 1024
                    }
                ]
            })
        );
        // The last sectors of the disk, exactly.
        assert!(parse(&rw(BLKIF_OP_WRITE, 2040, &[(5, 0, 7)]), &DISK)
            .2
            .is_ok());
    }

    #[test]
    fn garbage_is_refused() {
        let bad =
            |slot: [u8; BLKIF_SLOT_SIZE], limits: &Limits| parse(&slot, limits).2.unwrap_err();
        assert_eq!(
            bad(rw(BLKIF_OP_READ, 0, &[]), &DISK),
            Refusal::Invalid("bad segment count")
        );
        let mut twelve = rw(BLKIF_OP_READ, 0, &[(1, 0, 0)]);
        twelve[1] = 12;
        assert_eq!(bad(twelve, &DISK), Refusal::Invalid("bad segment count"));
        assert_eq!(
            bad(rw(BLKIF_OP_READ, 0, &[(1, 3, 2)]), &DISK),
            Refusal::Invalid("segment sectors out of the page")
        );
        assert_eq!(
            bad(rw(BLKIF_OP_READ, 0, &[(1, 0, 8)]), &DISK),
            Refusal::Invalid("segment sectors out of the page")
        );
        assert_eq!(
            bad(rw(BLKIF_OP_READ, 2041, &[(1, 0, 7)]), &DISK),
            Refusal::Invalid("beyond the end of the disk")
        );
        assert_eq!(
            bad(rw(BLKIF_OP_READ, u64::MAX - 2, &[(1, 0, 7)]), &DISK),
            Refusal::Invalid("beyond the end of the disk")
        );
        let ro = Limits {
            read_only: true,
            ..DISK
        };
        assert_eq!(
            bad(rw(BLKIF_OP_WRITE, 0, &[(1, 0, 7)]), &ro),
            Refusal::Invalid("write to a read-only disk")
        );
        let mut op = rw(BLKIF_OP_READ, 0, &[(1, 0, 7)]);
        op[0] = 4;
        assert_eq!(bad(op, &DISK), Refusal::NotSupported);
        op[0] = 200;
        assert_eq!(bad(op, &DISK), Refusal::NotSupported);
        let plain = Limits {
            flush: false,
            discard: false,
            max_indirect_segments: 0,
            ..DISK
        };
        assert_eq!(
            bad(rw(BLKIF_OP_FLUSH_DISKCACHE, 0, &[]), &plain),
            Refusal::NotSupported
        );
        assert_eq!(
            bad(rw(BLKIF_OP_WRITE_BARRIER, 0, &[(1, 0, 7)]), &plain),
            Refusal::NotSupported
        );
        assert_eq!(
            bad(rw(BLKIF_OP_FLUSH_DISKCACHE, 0, &[(1, 0, 7)]), &plain),
            Refusal::NotSupported
        );
    }

    #[test]
    fn a_flush_with_data_is_a_write() {
        assert_eq!(
            parse(&rw(BLKIF_OP_FLUSH_DISKCACHE, 0, &[]), &DISK).2,
            Ok(Op::Flush)
        );
        assert!(matches!(
            parse(&rw(BLKIF_OP_FLUSH_DISKCACHE, 16, &[(3, 0, 7)]), &DISK).2,
            Ok(Op::Write { sector: 16, .. })
        ));
    }

    #[test]
    fn discard_and_indirect() {
        let d = BlkifRequestDiscard {
            operation: BLKIF_OP_DISCARD,
            id: 1,
            sector_number: 1000,
            nr_sectors: 1048,
            ..Default::default()
        };
        assert_eq!(
            parse(&d.to_bytes(), &DISK).2,
            Ok(Op::Discard {
                sector: 1000,
                count: 1048
            })
        );
        let d = BlkifRequestDiscard {
            nr_sectors: 1049,
            ..d
        };
        assert!(parse(&d.to_bytes(), &DISK).2.is_err());
        let i = BlkifRequestIndirect {
            operation: BLKIF_OP_INDIRECT,
            indirect_op: BLKIF_OP_WRITE,
            nr_segments: 64,
            indirect_grefs: [10, 11, 0, 0, 0, 0, 0, 0],
            ..Default::default()
        };
        assert_eq!(
            parse(&i.to_bytes(), &DISK).2,
            Ok(Op::Indirect {
                write: true,
                sector: 0,
                nr_segments: 64,
                pages: alloc::vec![10]
            })
        );
        assert_eq!(parse(&i.to_bytes(), &DISK).1, BLKIF_OP_WRITE);
        let too_many = BlkifRequestIndirect {
            nr_segments: 65,
            ..i
        };
        assert!(parse(&too_many.to_bytes(), &DISK).2.is_err());
        let mut page = alloc::vec![0u8; 4096];
        for s in 0..64 {
            page[s * 8..s * 8 + 8].copy_from_slice(
                &BlkifSegment {
                    gref: 100 + s as u32,
                    first_sect: 0,
                    last_sect: 7,
                    pad: 0,
                }
                .to_bytes(),
            );
        }
        let p = indirect_pieces(&DISK, true, 0, 64, &page).unwrap();
        assert_eq!(bytes(&p), 64 * 4096);
        // 64 pages from sector 1537 run past the end (2048).
        assert!(indirect_pieces(&DISK, true, 1537, 64, &page).is_err());
    }

    proptest! {
        /// Any slot: a refusal or an operation inside the disk, never a panic.
        #[test]
        fn any_slot(raw in proptest::collection::vec(any::<u8>(), BLKIF_SLOT_SIZE)) {
            let slot: [u8; BLKIF_SLOT_SIZE] = raw.try_into().unwrap();
            match parse(&slot, &DISK).2 {
                Ok(Op::Read { sector, pieces }) | Ok(Op::Write { sector, pieces }) => {
                    prop_assert!(sector + bytes(&pieces) / 512 <= DISK.sectors);
                    prop_assert!(pieces.iter().all(|p| p.offset as u32 + p.len as u32 <= 4096));
                }
                Ok(Op::Discard { sector, count }) => prop_assert!(sector + count <= DISK.sectors),
                Ok(Op::Indirect { nr_segments, pages, .. }) => {
                    prop_assert!(nr_segments <= 64 && !pages.is_empty() && pages.len() <= 8);
                }
                _ => {}
            }
        }
    }
}
