//! A frontend, its grants and a RAM disk on the host, against `Blkif`.

use super::*;
use crate::blkback::device::RamDisk;
use crate::grant_copy::fake::GuestPages;
use crate::ring::tests::{fresh, Heap};
use proptest::prelude::*;

type Guest = GuestPages;

const LIMITS: Limits = Limits {
    sectors: 1024,
    read_only: false,
    flush: true,
    discard: true,
    max_indirect_segments: 256,
};

fn push(h: &mut Heap, slots: u32, slot: [u8; BLKIF_SLOT_SIZE]) {
    let prod = h.load_u32(0);
    let at = 64 + (prod & (slots - 1)) as usize * BLKIF_SLOT_SIZE;
    h.write_bytes(at, &slot);
    h.store_u32(0, prod + 1);
}

fn response(h: &Heap, slots: u32, i: u32) -> BlkifResponse {
    let at = 64 + (i & (slots - 1)) as usize * BLKIF_SLOT_SIZE;
    BlkifResponse::from_bytes(h.0[at..at + 16].try_into().unwrap())
}

fn rw(op: u8, id: u64, sector: u64, grefs: &[u32]) -> [u8; BLKIF_SLOT_SIZE] {
    let mut r = BlkifRequest {
        operation: op,
        nr_segments: grefs.len() as u8,
        id,
        sector_number: sector,
        ..Default::default()
    };
    for (i, &g) in grefs.iter().enumerate() {
        r.seg[i] = BlkifSegment {
            gref: g,
            first_sect: 0,
            last_sect: 7,
            pad: 0,
        };
    }
    r.to_bytes()
}

fn page(fill: u8) -> Vec<u8> {
    vec![fill; 4096]
}

#[test]
fn write_then_read_back_through_the_ring() {
    let mut ring = fresh(4096);
    let mut guest = Guest::default();
    guest.grant(1, 10, page(0xab), true);
    guest.grant(1, 11, page(0xcd), true);
    guest.grant(1, 20, page(0), false);
    guest.grant(1, 21, page(0), false);
    push(&mut ring, 32, rw(BLKIF_OP_WRITE, 1, 8, &[10, 11]));
    push(&mut ring, 32, rw(BLKIF_OP_READ, 2, 8, &[20, 21]));
    let mut disk = RamDisk::new(vec![0u8; 1024 * 512]);
    let mut scratch = vec![0u8; 64 * 1024];
    let mut b = Blkif::new(1, &mut ring, 4096, LIMITS);
    assert_eq!(b.serve(&mut disk, &mut guest, &mut scratch), Ok(true));
    assert_eq!(b.counters.bytes_written, 8192);
    assert_eq!(b.counters.bytes_read, 8192);
    // One copy in, one copy out for the batch.
    assert_eq!(guest.calls, 2);
    assert_eq!(response(&ring, 32, 0).status, BLKIF_RSP_OKAY);
    assert_eq!(response(&ring, 32, 1).id, 2);
    assert!(guest.page(1, 20).iter().all(|&b| b == 0xab));
    assert!(guest.page(1, 21).iter().all(|&b| b == 0xcd));
    assert!(disk.bytes()[8 * 512..9 * 512].iter().all(|&b| b == 0xab));
}

#[test]
fn garbage_gets_errors_and_good_requests_still_work() {
    let mut ring = fresh(4096);
    let mut guest = Guest::default();
    guest.grant(1, 10, page(0x11), true);
    guest.grant(1, 20, page(0), false);
    let mut bad_count = rw(BLKIF_OP_READ, 1, 0, &[20]);
    bad_count[1] = 200;
    push(&mut ring, 32, bad_count);
    // A grant the guest does not own: the write must not reach the disk.
    push(&mut ring, 32, rw(BLKIF_OP_WRITE, 2, 0, &[999]));
    push(&mut ring, 32, rw(BLKIF_OP_READ, 3, 1023, &[20]));
    // Reading into a read-only grant.
    push(&mut ring, 32, rw(BLKIF_OP_READ, 4, 0, &[10]));
    push(&mut ring, 32, rw(77, 5, 0, &[]));
    push(&mut ring, 32, rw(BLKIF_OP_WRITE, 6, 16, &[10]));
    let mut disk = RamDisk::new(vec![0x5au8; 1024 * 512]);
    let mut scratch = vec![0u8; 64 * 1024];
    let mut b = Blkif::new(1, &mut ring, 4096, LIMITS);
    assert_eq!(b.serve(&mut disk, &mut guest, &mut scratch), Ok(true));
    assert_eq!(b.counters.errors, 5);
    let got: Vec<(u64, i16)> = (0..6)
        .map(|i| {
            let r = response(&ring, 32, i);
            (r.id, r.status)
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, -1),
            (2, -1),
            (3, -1),
            (4, -1),
            (5, BLKIF_RSP_EOPNOTSUPP),
            (6, 0)
        ]
    );
    assert!(disk.bytes()[..4096].iter().all(|&b| b == 0x5a));
    assert!(disk.bytes()[16 * 512..17 * 512].iter().all(|&b| b == 0x11));
}

#[test]
fn indirect_requests_and_small_scratch_batches() {
    let mut ring = fresh(4 * 4096);
    let slots = 128;
    let mut guest = Guest::default();
    // 40 data pages, listed in one indirect page.
    let mut list = page(0);
    for s in 0..40u32 {
        guest.grant(1, 100 + s, page(s as u8), true);
        list[s as usize * 8..s as usize * 8 + 8].copy_from_slice(
            &BlkifSegment {
                gref: 100 + s,
                first_sect: 0,
                last_sect: 7,
                pad: 0,
            }
            .to_bytes(),
        );
    }
    guest.grant(1, 50, list, true);
    for id in 0..3u64 {
        let r = BlkifRequestIndirect {
            operation: BLKIF_OP_INDIRECT,
            indirect_op: BLKIF_OP_WRITE,
            nr_segments: 40,
            id,
            sector_number: id * 320,
            indirect_grefs: [50, 0, 0, 0, 0, 0, 0, 0],
            ..Default::default()
        };
        push(&mut ring, slots, r.to_bytes());
    }
    let mut disk = RamDisk::new(vec![0u8; 1024 * 512]);
    // Room for one 160 KiB request at a time: three batches.
    let mut scratch = vec![0u8; 200 * 1024];
    let mut b = Blkif::new(1, &mut ring, 4 * 4096, LIMITS);
    assert_eq!(b.serve(&mut disk, &mut guest, &mut scratch), Ok(true));
    assert_eq!(b.counters.batches, 3);
    assert_eq!(b.counters.errors, 0);
    for id in 0..3usize {
        for s in 0..40usize {
            let at = (id * 320 + s * 8) * 512;
            assert!(disk.bytes()[at..at + 4096].iter().all(|&b| b == s as u8));
        }
    }
}

#[test]
fn an_overrun_ring_is_an_error() {
    let mut ring = fresh(4096);
    ring.store_u32(0, 1000);
    let mut b = Blkif::new(1, &mut ring, 4096, LIMITS);
    let mut disk = RamDisk::new(vec![0u8; 1024 * 512]);
    let mut scratch = vec![0u8; 4096];
    assert!(b
        .serve(&mut disk, &mut Guest::default(), &mut scratch)
        .is_err());
}

proptest! {
    /// Any ring contents: a response for every request consumed, each one
    /// OKAY or an error, never a panic.
    #[test]
    fn any_requests(slots in proptest::collection::vec(proptest::collection::vec(any::<u8>(), BLKIF_SLOT_SIZE), 1..32)) {
        let mut ring = fresh(4096);
        let mut guest = Guest::default();
        for g in 0..4 {
            guest.grant(1, g, page(g as u8), g % 2 == 0);
        }
        for s in &slots {
            push(&mut ring, 32, s.clone().try_into().unwrap());
        }
        let mut disk = RamDisk::new(vec![0u8; 1024 * 512]);
        let mut scratch = vec![0u8; 1 << 20];
        let mut b = Blkif::new(1, &mut ring, 4096, LIMITS);
        prop_assert!(b.serve(&mut disk, &mut guest, &mut scratch).is_ok());
        prop_assert_eq!(ring.load_u32(8), slots.len() as u32);
        for i in 0..slots.len() as u32 {
            let s = response(&ring, 32, i).status;
            prop_assert!(s == 0 || s == -1 || s == -2);
        }
    }
}

#[test]
fn a_busy_ring_gives_the_caller_back_control() {
    // 12 requests of 64 KiB, a scratch area of 64 KiB: one per batch.
    let mut ring = fresh(4096);
    let mut guest = Guest::default();
    for g in 0..11 {
        guest.grant(1, g, page(0), false);
    }
    let grefs: Vec<u32> = (0..11).collect();
    for id in 0..12 {
        push(&mut ring, 32, rw(BLKIF_OP_READ, id, 0, &grefs));
    }
    let mut disk = RamDisk::new(vec![0u8; 1024 * 512]);
    let mut scratch = vec![0u8; 11 * 4096];
    let mut b = Blkif::new(1, &mut ring, 4096, LIMITS);
    assert!(b.pending());
    assert!(b.serve(&mut disk, &mut guest, &mut scratch).is_ok());
    assert_eq!(b.counters.batches, BATCHES_PER_TURN as u64);
    // Work is left: the caller must come back without an event.
    assert!(b.pending());
    assert!(b.serve(&mut disk, &mut guest, &mut scratch).is_ok());
    assert_eq!(b.counters.requests, 12);
    assert!(!b.pending());
    assert_eq!(ring.load_u32(8), 12);
}
