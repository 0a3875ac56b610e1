//! Unit tests of the table builder, run once per entry format: mapping, splitting, alignment, flushes, freeing.

use super::arena::Arena;
use crate::{Ept, Flush, Format, Gpa, Hpa, MapError, MemType, Npt, PageSize, Perms, SecondLevel};
use crate::{TableMemory, Translation};
use Flush::{Needed, None as NoFlush};
use PageSize::{Size1G, Size2M, Size4K};

const K4: u64 = 1 << 12;
const M2: u64 = 1 << 21;
const G1: u64 = 1 << 30;
const WB: MemType = MemType::WriteBack;

/// Each test below runs for EPT and for NPT.
macro_rules! for_both_formats {
    ($($name:ident),* $(,)?) => {
        mod ept { $(#[test] fn $name() { super::$name::<crate::Ept>() })* }
        mod npt { $(#[test] fn $name() { super::$name::<crate::Npt>() })* }
    };
}

for_both_formats!(
    maps_and_translates_each_size,
    flush_only_when_a_present_entry_changes,
    misaligned_and_out_of_range_are_errors,
    small_map_splits_large_page,
    unmap_inside_large_page_splits,
    large_map_replaces_and_frees_small_pages,
    protect_splits_only_where_needed,
    unmapping_everything_frees_every_table,
    out_of_memory_changes_nothing,
);

/// A table and its memory, with the calls shortened: write-back, raw addresses.
struct Space<F: Format> {
    mem: Arena,
    table: SecondLevel<F>,
}

impl<F: Format> Space<F> {
    fn new() -> Self {
        let mut mem = Arena::new();
        let table = SecondLevel::new(&mut mem).unwrap();
        Space { mem, table }
    }

    fn map(&mut self, gpa: u64, hpa: u64, size: PageSize, perms: Perms) -> Result<Flush, MapError> {
        self.table
            .map(&mut self.mem, Gpa(gpa), Hpa(hpa), size, perms, WB)
    }

    /// A map where nothing was mapped: it must not ask for a flush.
    fn map_new(&mut self, gpa: u64, hpa: u64, size: PageSize, perms: Perms) {
        assert_eq!(self.map(gpa, hpa, size, perms), Ok(NoFlush));
    }

    fn unmap(&mut self, gpa: u64, size: PageSize) -> Result<Flush, MapError> {
        self.table.unmap(&mut self.mem, Gpa(gpa), size)
    }

    fn protect(&mut self, gpa: u64, len: u64, perms: Perms) -> Result<Flush, MapError> {
        self.table.protect(&mut self.mem, Gpa(gpa), len, perms)
    }

    fn at(&self, gpa: u64) -> Option<(u64, Perms, PageSize)> {
        let t = self.table.translate(&self.mem, Gpa(gpa))?;
        Some((t.hpa.0, t.perms, t.size))
    }

    fn hpa(&self, gpa: u64) -> Option<u64> {
        self.at(gpa).map(|(hpa, _, _)| hpa)
    }
}

fn maps_and_translates_each_size<F: Format>() {
    let mut s = Space::<F>::new();
    s.map_new(0x1000, 0xa000, Size4K, Perms::RW);
    s.map_new(0x40_0000, 0x80_0000, Size2M, Perms::RX);
    let uc = MemType::Uncacheable;
    let flush = s
        .table
        .map(&mut s.mem, Gpa(G1), Hpa(3 * G1), Size1G, Perms::R, uc);
    assert_eq!(flush, Ok(NoFlush));
    assert_eq!(s.at(0x1abc), Some((0xaabc, Perms::RW, Size4K)));
    assert_eq!(s.at(0x5f_fff8), Some((0x9f_fff8, Perms::RX, Size2M)));
    let expected = Translation {
        hpa: Hpa(3 * G1 + 0x1234_5678),
        perms: Perms::R,
        mem_type: uc,
        size: Size1G,
    };
    assert_eq!(
        s.table.translate(&s.mem, Gpa(G1 + 0x1234_5678)),
        Some(expected)
    );
    for hole in [
        0,
        0x2000,
        0x3f_ffff,
        0x60_0000,
        2 * G1,
        1 << 47,
        1 << 48,
        u64::MAX,
    ] {
        assert_eq!(s.at(hole), None, "{hole:#x}");
    }
}

fn flush_only_when_a_present_entry_changes<F: Format>() {
    let mut s = Space::<F>::new();
    s.map_new(0x1000, 0xa000, Size4K, Perms::RW);
    assert_eq!(
        s.map(0x1000, 0xa000, Size4K, Perms::RW),
        Ok(NoFlush),
        "identical"
    );
    assert_eq!(
        s.map(0x1000, 0xb000, Size4K, Perms::RW),
        Ok(Needed),
        "new frame"
    );
    assert_eq!(
        s.map(0x1000, 0xb000, Size4K, Perms::R),
        Ok(Needed),
        "fewer rights"
    );
    s.map_new(0x2000, 0xc000, Size4K, Perms::R);
    assert_eq!(s.unmap(0x1000, Size4K), Ok(Needed));
    assert_eq!(s.unmap(0x1000, Size4K), Ok(NoFlush), "already gone");
    assert_eq!(s.unmap(5 * G1, Size1G), Ok(NoFlush), "never mapped");
    assert_eq!(s.protect(0, 4 * K4, Perms::R), Ok(NoFlush), "already R");
    assert_eq!(s.protect(0, 4 * K4, Perms::RX), Ok(Needed));
    assert_eq!(s.protect(0, 0, Perms::RW), Ok(NoFlush), "empty range");
    assert_eq!(NoFlush.merge(Needed), Needed);
    assert!(!NoFlush.merge(NoFlush).is_needed());
}

fn misaligned_and_out_of_range_are_errors<F: Format>() {
    let mut s = Space::<F>::new();
    let (misaligned, out_of_range) = (Err(MapError::Misaligned), Err(MapError::OutOfRange));
    assert_eq!(s.map(0x1001, 0x2000, Size4K, Perms::RW), misaligned);
    assert_eq!(s.map(0x1000, 0x2010, Size4K, Perms::RW), misaligned);
    assert_eq!(s.map(0x1000, 0x20_0000, Size2M, Perms::RW), misaligned);
    assert_eq!(s.map(0x20_0000, 0x1000, Size2M, Perms::RW), misaligned);
    assert_eq!(s.map(M2, 0, Size1G, Perms::RW), misaligned);
    assert_eq!(s.map(1 << 48, 0, Size4K, Perms::RW), out_of_range);
    assert_eq!(s.map(0, 1 << 52, Size4K, Perms::RW), out_of_range);
    assert_eq!(s.unmap(0x1800, Size4K), misaligned);
    assert_eq!(s.unmap(K4, Size2M), misaligned);
    assert_eq!(s.protect(0x10, K4, Perms::R), misaligned);
    assert_eq!(s.protect(0, 0x10, Perms::R), misaligned);
    assert_eq!(s.protect((1 << 48) - K4, 2 * K4, Perms::R), out_of_range);
    assert_eq!(s.protect(K4, u64::MAX - 0xfff, Perms::R), out_of_range);
    let write_only = Perms::new(false, true, false);
    assert_eq!(
        s.map(0, 0, Size4K, write_only),
        Err(MapError::UnsupportedPerms(write_only))
    );
    assert_eq!(s.mem.live(), 1, "refusals allocate nothing");
    assert_eq!(s.at(0), None);
}

fn small_map_splits_large_page<F: Format>() {
    let mut s = Space::<F>::new();
    s.map_new(G1, 4 * G1, Size1G, Perms::RX);
    // A 2 MiB page inside the 1 GiB one: the rest keeps its mapping as 2 MiB pages.
    assert_eq!(s.map(G1 + 3 * M2, 0x20_0000, Size2M, Perms::RW), Ok(Needed));
    assert_eq!(
        s.at(G1 + 5 * M2 + 0x42),
        Some((4 * G1 + 5 * M2 + 0x42, Perms::RX, Size2M))
    );
    // And a 4 KiB page inside one of those.
    assert_eq!(
        s.map(G1 + 7 * M2 + 9 * K4, 0x1000, Size4K, Perms::R),
        Ok(Needed)
    );
    for n in [0, 8, 10, 511] {
        let gpa = G1 + 7 * M2 + n * K4;
        assert_eq!(s.at(gpa), Some((gpa + 3 * G1, Perms::RX, Size4K)));
    }
    assert_eq!(s.hpa(G1 + 7 * M2 + 9 * K4 + 5), Some(0x1005));
    assert_eq!(s.hpa(G1 + 3 * M2 + 5), Some(0x20_0005));
    assert_eq!(s.hpa(2 * G1 - 1), Some(5 * G1 - 1));
    assert_eq!(
        s.mem.live(),
        4,
        "PML4, PDPT, PD from the split, PT from the split"
    );
}

fn unmap_inside_large_page_splits<F: Format>() {
    let mut s = Space::<F>::new();
    s.map_new(M2, 0x80_0000, Size2M, Perms::RW);
    assert_eq!(s.unmap(M2 + 4 * K4, Size4K), Ok(Needed));
    assert_eq!(s.hpa(M2 + 4 * K4), None);
    assert_eq!(s.hpa(M2 + 3 * K4), Some(0x80_3000));
    assert_eq!(s.hpa(M2 + 5 * K4), Some(0x80_5000));
    // Unmapping the 2 MiB range removes the other 511 pages and frees the PD and PT.
    assert_eq!(s.unmap(M2, Size2M), Ok(Needed));
    assert_eq!(s.hpa(M2 + 5 * K4), None);
    assert_eq!(s.mem.live(), 1);
}

fn large_map_replaces_and_frees_small_pages<F: Format>() {
    let mut s = Space::<F>::new();
    s.map_new(0x1000, 0xa000, Size4K, Perms::RW);
    s.map_new(M2 + 0x1000, 0xb000, Size4K, Perms::RW);
    assert_eq!(s.mem.live(), 5);
    assert_eq!(s.map(0, 0x4000_0000, Size2M, Perms::R), Ok(Needed));
    assert_eq!(s.mem.live(), 4, "the first PT is freed");
    assert_eq!(s.map(0, G1, Size1G, Perms::R), Ok(Needed));
    assert_eq!(s.mem.live(), 2, "the PD and the second PT are freed");
    assert_eq!(s.hpa(M2 + 0x1000), Some(G1 + M2 + 0x1000));
}

fn protect_splits_only_where_needed<F: Format>() {
    let mut s = Space::<F>::new();
    s.map_new(0, 0x4000_0000, Size2M, Perms::RX);
    assert_eq!(s.protect(0x3000, 2 * K4, Perms::RX), Ok(NoFlush));
    assert_eq!(s.mem.live(), 3, "same perms: no split");
    assert_eq!(s.protect(0x3000, 2 * K4, Perms::RWX), Ok(Needed));
    let perms = |s: &Space<F>, gpa| s.at(gpa).map(|(_, perms, _)| perms);
    assert_eq!(perms(&s, 0x2fff), Some(Perms::RX));
    assert_eq!(perms(&s, 0x3000), Some(Perms::RWX));
    assert_eq!(perms(&s, 0x4fff), Some(Perms::RWX));
    assert_eq!(perms(&s, 0x5000), Some(Perms::RX));
    assert_eq!(s.mem.live(), 4);
    // A range covering a whole 2 MiB page and holes around it: no split, holes stay holes.
    s.map_new(4 * M2, 0x4000_0000, Size2M, Perms::RX);
    assert_eq!(s.protect(3 * M2, 3 * M2, Perms::R), Ok(Needed));
    assert_eq!(s.at(4 * M2 + 7), Some((0x4000_0007, Perms::R, Size2M)));
    assert_eq!(s.hpa(3 * M2), None);
    assert_eq!(s.mem.live(), 4);
}

fn unmapping_everything_frees_every_table<F: Format>() {
    let mut s = Space::<F>::new();
    let pages = [
        (0x1000, Size4K),
        (1 << 40, Size1G),
        ((1 << 40) + G1, Size2M),
    ];
    for (gpa, size) in pages {
        s.map_new(gpa, 0, size, Perms::RW);
    }
    for (gpa, size) in pages {
        assert_eq!(s.unmap(gpa, size), Ok(Needed));
    }
    assert_eq!(s.mem.live(), 1);
    assert!(s.mem.table(s.table.root()).iter().all(|&e| e == 0));
    s.map_new(0x1000, 0xa000, Size4K, Perms::RW);
    s.table.destroy(&mut s.mem);
    assert_eq!(s.mem.live(), 0);
}

fn out_of_memory_changes_nothing<F: Format>() {
    let mut s = Space::<F>::new();
    s.mem.limit = 3;
    assert_eq!(
        s.map(0x1000, 0xa000, Size4K, Perms::RW),
        Err(MapError::OutOfMemory)
    );
    assert_eq!(s.mem.live(), 1, "the tables made on the way are given back");
    s.map_new(0, 0, Size2M, Perms::RW);
    assert_eq!(s.protect(0x1000, K4, Perms::R), Err(MapError::OutOfMemory));
    assert_eq!(s.at(0x1000), Some((0x1000, Perms::RW, Size2M)));
    assert_eq!(s.unmap(0x1000, Size4K), Err(MapError::OutOfMemory));
    assert_eq!(s.hpa(0x1000), Some(0x1000));
}

#[test]
fn entries_carry_each_formats_bits() {
    let mut ept = Space::<Ept>::new();
    ept.map_new(0, 0x4000_0000, Size1G, Perms::RWX);
    let root = ept.mem.table(ept.table.root())[0];
    assert_eq!(root & 0xfff, 0b111, "EPT non-leaf: R, W, X");
    assert_eq!(
        ept.mem.table(Hpa(root & !0xfff))[0],
        0x4000_0000 | 0b111 | 6 << 3 | 1 << 7
    );
    assert_eq!(
        ept.map(0x1000, 0, Size4K, Perms::X),
        Ok(Needed),
        "EPT can say execute-only"
    );
    let mut npt = Space::<Npt>::new();
    npt.map_new(0, 0x5000, Size4K, Perms::RW);
    assert_eq!(
        npt.mem.table(npt.table.root())[0] & 0xfff,
        0b111,
        "NPT non-leaf: P, W, U"
    );
    assert_eq!(
        npt.map(0, 0, Size4K, Perms::X),
        Err(MapError::UnsupportedPerms(Perms::X))
    );
    let wc = MemType::WriteCombining;
    let refused = npt
        .table
        .map(&mut npt.mem, Gpa(0), Hpa(0), Size4K, Perms::R, wc);
    assert_eq!(refused, Err(MapError::UnsupportedMemType(wc)));
}
