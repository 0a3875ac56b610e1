//! Which physical pages the hypervisor may hand out: RAM from the memory map minus what is already in use.

use crate::boot_info::{MemoryRegion, PhysRange, RegionKind};
use arrayvec::ArrayVec;

pub const PAGE_SIZE: u64 = 4096;
/// RAM below 1 MiB is never handed out: the BIOS data area, the EBDA and, in
/// a later step, the real-mode trampoline that starts application processors
/// (Intel SDM Vol. 3A 9.4.4.1, the SIPI vector is a page below 1 MiB).
pub const LOW_MEMORY_END: u64 = 0x10_0000;
/// Capacity of the result; pieces past it are dropped (lost to use, never double-handed).
pub const MAX_USABLE: usize = 256;

const fn align_up(x: u64) -> u64 {
    x.saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

const fn align_down(x: u64) -> u64 {
    x & !(PAGE_SIZE - 1)
}

/// Removes `hole` from every range in `pieces`.
fn punch(pieces: &mut ArrayVec<PhysRange, MAX_USABLE>, hole: PhysRange) {
    if hole.is_empty() {
        return;
    }
    let mut i = 0;
    while i < pieces.len() {
        let p = pieces[i];
        if hole.end <= p.start || hole.start >= p.end {
            i += 1;
            continue;
        }
        pieces.swap_remove(i);
        let left = PhysRange {
            start: p.start,
            end: hole.start,
        };
        let right = PhysRange {
            start: hole.end,
            end: p.end,
        };
        for part in [left, right] {
            if !part.is_empty() {
                // On overflow the piece is dropped: memory lost, never shared.
                let _ = pieces.try_push(part);
            }
        }
        // `swap_remove` moved an unvisited range into slot `i`; the parts were
        // pushed at the end and do not overlap `hole`, so they are revisited harmlessly.
    }
}

/// Page-aligned ranges of RAM below `limit` that overlap neither a non-RAM
/// region, nor `reserved`, nor another RAM entry (broken maps do overlap),
/// nor the first megabyte.
pub fn usable(
    regions: &[MemoryRegion],
    reserved: &[PhysRange],
    limit: u64,
) -> ArrayVec<PhysRange, MAX_USABLE> {
    let mut out: ArrayVec<PhysRange, MAX_USABLE> = ArrayVec::new();
    for region in regions {
        if region.kind != RegionKind::Ram {
            continue;
        }
        let start = region.range.start.max(LOW_MEMORY_END);
        let end = region.range.end.min(limit);
        let mut pieces: ArrayVec<PhysRange, MAX_USABLE> = ArrayVec::new();
        if start >= end {
            continue;
        }
        pieces.push(PhysRange { start, end });
        for other in regions.iter().filter(|r| r.kind != RegionKind::Ram) {
            punch(&mut pieces, other.range);
        }
        // Pages that earlier RAM entries already contributed (punching the
        // aligned output, not the raw entries, keeps a page that one entry
        // holds whole even where another entry overlaps part of it).
        for taken in &out {
            punch(&mut pieces, *taken);
        }
        for hole in reserved {
            punch(&mut pieces, *hole);
        }
        for p in pieces {
            let aligned = PhysRange {
                start: align_up(p.start),
                end: align_down(p.end),
            };
            if !aligned.is_empty() {
                let _ = out.try_push(aligned);
            }
        }
    }
    out.sort_unstable_by_key(|r| r.start);
    out
}

/// Total bytes in `ranges`.
pub fn total(ranges: &[PhysRange]) -> u64 {
    ranges.iter().map(PhysRange::len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ram(start: u64, end: u64) -> MemoryRegion {
        MemoryRegion {
            range: PhysRange { start, end },
            kind: RegionKind::Ram,
        }
    }

    #[test]
    fn typical_pc_map() {
        let map = [
            ram(0, 0x9fc00),
            MemoryRegion {
                range: PhysRange {
                    start: 0xf0000,
                    end: 0x100000,
                },
                kind: RegionKind::Reserved,
            },
            ram(0x100000, 0x2000_0000),
        ];
        let image = PhysRange {
            start: 0x200000,
            end: 0x280800,
        };
        let got = usable(&map, &[image], u64::MAX);
        assert_eq!(
            got.as_slice(),
            &[
                PhysRange {
                    start: 0x100000,
                    end: 0x200000
                },
                PhysRange {
                    start: 0x281000,
                    end: 0x2000_0000
                },
            ]
        );
        assert_eq!(total(&got), 0x2000_0000 - 0x100000 - 0x81000);
    }

    #[test]
    fn limit_caps_the_top() {
        let got = usable(&[ram(0, 0x1000_0000)], &[], 0x40_0000);
        assert_eq!(
            got.as_slice(),
            &[PhysRange {
                start: 0x100000,
                end: 0x400000
            }]
        );
    }

    const SPACE_PAGES: u64 = 1024; // a 4 MiB model address space

    fn range_strategy() -> impl Strategy<Value = PhysRange> {
        (0..SPACE_PAGES * PAGE_SIZE, 0..SPACE_PAGES * PAGE_SIZE / 4).prop_map(|(s, l)| PhysRange {
            start: s,
            end: s + l,
        })
    }

    proptest! {
        /// The result is exactly the set of whole pages the rules allow, by a page-bitmap model.
        #[test]
        fn agrees_with_page_model(
            rams in proptest::collection::vec(range_strategy(), 0..6),
            holes in proptest::collection::vec(range_strategy(), 0..6),
            reserved in proptest::collection::vec(range_strategy(), 0..6),
            limit in 0..SPACE_PAGES * PAGE_SIZE * 2,
        ) {
            let mut map: Vec<MemoryRegion> = rams.iter().map(|r| ram(r.start, r.end)).collect();
            map.extend(holes.iter().map(|r| MemoryRegion { range: *r, kind: RegionKind::Reserved }));
            let got = usable(&map, &reserved, limit);

            let overlaps = |a: u64, b: u64, r: &PhysRange| a < r.end && r.start < b;
            let inside = |a: u64, b: u64, r: &PhysRange| r.start <= a && b <= r.end;
            for page in 0..SPACE_PAGES {
                let (a, b) = (page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
                let want = a >= LOW_MEMORY_END
                    && b <= limit
                    && rams.iter().any(|r| inside(a, b, r))
                    && !holes.iter().any(|r| overlaps(a, b, r))
                    && !reserved.iter().any(|r| overlaps(a, b, r));
                let have = got.iter().filter(|r| inside(a, b, r)).count();
                prop_assert_eq!(have, usize::from(want), "page {:#x}", a);
            }
            for w in got.windows(2) {
                prop_assert!(w[0].end <= w[1].start, "overlap {:?}", w);
            }
            for r in &got {
                prop_assert!(r.start.is_multiple_of(PAGE_SIZE) && r.end.is_multiple_of(PAGE_SIZE));
                prop_assert!(!reserved.iter().any(|h| overlaps(r.start, r.end, h)));
                prop_assert!(!holes.iter().any(|h| overlaps(r.start, r.end, h)));
                prop_assert!(r.start >= LOW_MEMORY_END && r.end <= limit);
            }
        }
    }
}
