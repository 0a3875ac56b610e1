//! Tests of the reservation bookkeeping: holdings and their runs, every refusal, and a property test of decrease/increase/populate sequences against a model of the physmap, the TLB and the allocator.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Host frames 0x100000.. : a 16-frame block at 0x100000 (12 RAM, 4
/// padding), the allocator's free frames above it.
const BASE: u64 = 0x10_0000;
const BLOCK: u64 = 16;
const RAM: u64 = 12;
const POOL: u64 = 0x20_0000;

/// The physmap, the TLB and the allocator, with every rule checked as it
/// happens: a frame is freed only once, only when no translation and no
/// unflushed TLB entry reaches it.
#[derive(Default)]
struct World {
    p2m: BTreeMap<u64, Slot>,
    /// Frames unmapped since the last flush: still reachable through the TLB.
    stale: BTreeSet<u64>,
    free: BTreeSet<u64>,
    /// Refuse the next table-frame allocation a map or a split needs.
    table_shortage: bool,
    frees: u64,
}

impl World {
    fn new(pool: u64) -> Self {
        let mut w = World::default();
        for i in 0..pool {
            w.free.insert(POOL + i * PAGE);
        }
        // GFN i maps block frame i; GFN 100 is shared_info; GFN 101 maps another domain's page.
        for i in 0..RAM {
            w.p2m.insert(i, Slot::Ram(BASE + i * PAGE));
        }
        w.p2m.insert(100, Slot::XenPage);
        w.p2m.insert(101, Slot::Other);
        w
    }

    fn mapped_frames(&self) -> impl Iterator<Item = u64> + '_ {
        self.p2m.values().filter_map(|s| match s {
            Slot::Ram(h) => Some(*h),
            _ => None,
        })
    }
}

impl Physmap for World {
    fn slot(&self, gfn: u64) -> Slot {
        self.p2m.get(&gfn).copied().unwrap_or(Slot::Hole)
    }
    fn map(&mut self, gfn: u64, hpa: u64) -> bool {
        if std::mem::take(&mut self.table_shortage) {
            return false;
        }
        assert!(!self.p2m.contains_key(&gfn), "map over GFN {gfn:#x}");
        self.p2m.insert(gfn, Slot::Ram(hpa));
        true
    }
    fn unmap(&mut self, gfn: u64) -> bool {
        if std::mem::take(&mut self.table_shortage) {
            return false;
        }
        if let Some(Slot::Ram(h)) = self.p2m.remove(&gfn) {
            self.stale.insert(h);
        }
        true
    }
    fn flush(&mut self) {
        self.stale.clear();
    }
}

impl Frames for World {
    fn alloc(&mut self) -> Option<u64> {
        let f = *self.free.iter().next()?;
        self.free.remove(&f);
        Some(f)
    }
    fn free(&mut self, hpa: u64) {
        assert!(
            !self.stale.contains(&hpa),
            "{hpa:#x} freed before the flush"
        );
        assert!(
            !self.mapped_frames().any(|h| h == hpa),
            "{hpa:#x} freed while mapped"
        );
        assert!(self.free.insert(hpa), "{hpa:#x} freed twice");
        self.frees += 1;
    }
}

fn holdings(max: u64) -> Holdings {
    Holdings::new(BASE, BLOCK, RAM, max)
}

fn no_pins(_: u64) -> bool {
    false
}

#[test]
fn new_holdings_count_ram_not_padding() {
    let h = holdings(20);
    assert_eq!((h.tot_pages(), h.max_pages()), (RAM, 20));
    assert!(h.owns(BASE) && h.owns(BASE + (BLOCK - 1) * PAGE));
    assert!(!h.owns(BASE + BLOCK * PAGE) && !h.owns(BASE - PAGE));
}

#[test]
fn release_is_once_and_never_padding() {
    let mut h = holdings(20);
    assert!(h.release(BASE + PAGE));
    assert!(!h.release(BASE + PAGE), "released twice");
    assert!(!h.release(BASE + RAM * PAGE), "padding is not RAM");
    assert!(!h.release(POOL), "never held");
    assert!(!h.release(BASE + 1), "not a frame address");
    assert_eq!(h.tot_pages(), RAM - 1);
    assert!(h.take(BASE + PAGE));
    assert!(!h.take(BASE + PAGE), "taken twice");
    assert_eq!(h.tot_pages(), RAM);
}

#[test]
fn take_stops_at_max() {
    let mut h = holdings(RAM + 1);
    assert!(h.take(POOL));
    assert!(!h.take(POOL + PAGE));
    assert_eq!(h.tot_pages(), RAM + 1);
}

#[test]
fn whole_block_drains_as_one_run() {
    let mut h = holdings(20);
    let mut runs = Vec::new();
    h.drain(|a, n| runs.push((a, n)));
    assert_eq!(runs, [(BASE, BLOCK as usize)]);
    assert_eq!(h.tot_pages(), 0);
    let mut again = Vec::new();
    h.drain(|a, n| again.push((a, n)));
    assert!(again.is_empty(), "drained twice");
}

#[test]
fn partial_block_drains_frame_by_frame_with_extras() {
    let mut h = Holdings::new(BASE, 128, 100, 200);
    assert!(h.release(BASE + 3 * PAGE));
    assert!(h.take(POOL));
    let mut runs = Vec::new();
    h.drain(|a, n| runs.push((a, n)));
    // Word 0 frame by frame without frame 3, word 1 whole, the extra.
    assert_eq!(runs.len(), 63 + 1 + 1);
    assert!(runs.contains(&(BASE + 64 * PAGE, 64)));
    assert!(!runs.iter().any(|&(a, _)| a == BASE + 3 * PAGE));
    assert!(runs.contains(&(POOL, 1)));
    let frames: usize = runs.iter().map(|r| r.1).sum();
    assert_eq!(frames, 128);
}

#[test]
fn decrease_gives_ram_back_after_the_flush() {
    let mut w = World::new(8);
    let mut h = holdings(20);
    let mut work = Work::new();
    assert!(decrease_extent(&mut h, &mut w, &mut work, 2, 1, &no_pins));
    assert_eq!(w.slot(2), Slot::Hole);
    assert_eq!(w.slot(3), Slot::Hole);
    assert_eq!(w.frees, 0, "nothing freed before the flush");
    let mut freed = Collect(Vec::new());
    work.finish(&mut w, &mut freed);
    assert!(w.stale.is_empty(), "flushed");
    assert_eq!(freed.0, [BASE + 2 * PAGE, BASE + 3 * PAGE]);
    assert_eq!(h.tot_pages(), RAM - 2);
}

#[test]
fn decrease_refuses_holes_foreign_pages_and_pins() {
    let mut w = World::new(8);
    let mut h = holdings(20);
    let mut work = Work::new();
    assert!(!decrease_extent(&mut h, &mut w, &mut work, 50, 0, &no_pins));
    assert!(!decrease_extent(
        &mut h, &mut w, &mut work, 101, 0, &no_pins
    ));
    let pinned = |hpa: u64| hpa == BASE + 5 * PAGE;
    assert!(!decrease_extent(&mut h, &mut w, &mut work, 5, 0, &pinned));
    assert!(!decrease_extent(
        &mut h, &mut w, &mut work, MAX_GFN, 0, &no_pins
    ));
    assert!(!decrease_extent(
        &mut h,
        &mut w,
        &mut work,
        u64::MAX,
        1,
        &no_pins
    ));
    assert_eq!(h.tot_pages(), RAM);
    // Order 1 at 11: GFN 11 goes, 12 is a hole: the extent does not count.
    assert!(!decrease_extent(&mut h, &mut w, &mut work, 11, 1, &no_pins));
    assert_eq!(h.tot_pages(), RAM - 1);
}

#[test]
fn decrease_of_shared_info_unmaps_it_uncounted() {
    let mut w = World::new(8);
    let mut h = holdings(20);
    let mut work = Work::new();
    assert!(decrease_extent(&mut h, &mut w, &mut work, 100, 0, &no_pins));
    assert_eq!(w.slot(100), Slot::Hole);
    assert_eq!(h.tot_pages(), RAM);
}

#[test]
fn populate_is_all_or_nothing() {
    let mut w = World::new(8);
    let mut h = holdings(RAM + 2);
    let mut work = Work::new();
    // Over a mapping: refused.
    assert!(!populate_extent(
        &mut h,
        &mut w,
        &mut World::new(8),
        &mut work,
        0,
        0,
        0
    ));
    assert!(!populate_extent(
        &mut h,
        &mut w,
        &mut World::new(8),
        &mut work,
        100,
        0,
        0
    ));
    // Past max_pages: refused, nothing allocated.
    assert!(!populate_extent(
        &mut h,
        &mut w,
        &mut World::new(8),
        &mut work,
        40,
        2,
        0
    ));
    assert_eq!(h.tot_pages(), RAM);
    let mut pool = World::new(8);
    assert!(populate_extent(
        &mut h, &mut w, &mut pool, &mut work, 40, 1, 0
    ));
    assert_eq!(h.tot_pages(), RAM + 2);
    assert!(matches!(w.slot(41), Slot::Ram(_)));
    // A table shortage on the second page: the first is undone.
    let mut h = holdings(30);
    w.table_shortage = false;
    let mut pool = World::new(8);
    let mut work = Work::new();
    let mut flaky = Flaky {
        inner: &mut w,
        fail_at: 1,
    };
    assert!(!populate_extent(
        &mut h, &mut flaky, &mut pool, &mut work, 60, 1, 0
    ));
    work.finish(&mut w, &mut pool);
    assert_eq!(w.slot(60), Slot::Hole);
    assert_eq!(pool.free.len(), 8, "every frame back");
    assert_eq!(h.tot_pages(), RAM);
}

#[test]
fn address_bits_limit_allocation() {
    let mut w = World::new(0);
    let mut h = holdings(30);
    let mut pool = World::new(4);
    let mut work = Work::new();
    // POOL is at 2 MiB: 21 bits do not reach above it.
    assert!(!populate_extent(
        &mut h, &mut w, &mut pool, &mut work, 40, 0, 21
    ));
    assert_eq!(pool.free.len(), 4);
    assert!(populate_extent(
        &mut h, &mut w, &mut pool, &mut work, 40, 0, 32
    ));
    assert_eq!(address_bits(0), Some(0));
    assert_eq!(address_bits(12), None);
    assert_eq!(address_bits(1), None);
    assert_eq!(address_bits(13 | 1 << 16), Some(13));
}

#[test]
fn increase_holds_unmapped_frames_within_max() {
    let mut h = holdings(RAM + 4);
    let mut pool = World::new(8);
    assert!(increase_extent(&mut h, &mut pool, 2, 0));
    assert!(!increase_extent(&mut h, &mut pool, 0, 0));
    assert_eq!(h.tot_pages(), RAM + 4);
    assert_eq!(pool.free.len(), 4);
}

/// A physmap whose `fail_at`-th map fails (counting from 0).
struct Flaky<'a> {
    inner: &'a mut World,
    fail_at: u32,
}

impl Physmap for Flaky<'_> {
    fn slot(&self, gfn: u64) -> Slot {
        self.inner.slot(gfn)
    }
    fn map(&mut self, gfn: u64, hpa: u64) -> bool {
        if self.fail_at == 0 {
            return false;
        }
        self.fail_at -= 1;
        self.inner.map(gfn, hpa)
    }
    fn unmap(&mut self, gfn: u64) -> bool {
        self.inner.unmap(gfn)
    }
    fn flush(&mut self) {
        self.inner.flush();
    }
}

#[derive(Clone, Debug)]
enum Op {
    Decrease(u64, u32),
    Populate(u64, u32),
    Increase(u32),
    Shortage,
    Pin(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..24u64, 0..3u32).prop_map(|(g, o)| Op::Decrease(g, o)),
        (0..24u64, 0..3u32).prop_map(|(g, o)| Op::Populate(g, o)),
        (0..2u32).prop_map(Op::Increase),
        Just(Op::Shortage),
        (0..24u64).prop_map(Op::Pin),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any sequence: tot_pages never exceeds max_pages and equals the
    /// frames held; every mapped RAM frame is held; no frame is freed twice,
    /// while mapped or before the flush (World's asserts); held and free
    /// frames never overlap; at the end every frame is back.
    #[test]
    fn sequences_keep_the_books(ops in proptest::collection::vec(op(), 1..80), max in RAM..RAM + 10) {
        let pool_size = 16;
        let mut w = World::new(pool_size);
        let mut h = holdings(max);
        let mut pinned_gfn: Option<u64> = None;
        for op in ops {
            let mut work = Work::new();
            let mut world = std::mem::take(&mut w);
            let pin_hpa = pinned_gfn.and_then(|g| match world.slot(g) {
                Slot::Ram(h) => Some(h),
                _ => None,
            });
            let pinned = move |hpa: u64| Some(hpa) == pin_hpa;
            match op {
                Op::Decrease(g, o) => {
                    let before = h.tot_pages();
                    let ok = decrease_extent(&mut h, &mut world, &mut work, g, o, &pinned);
                    if ok {
                        prop_assert!(h.tot_pages() <= before);
                    }
                    if let Some(hpa) = pin_hpa {
                        prop_assert!(h.owns(hpa), "a pinned frame was given back");
                    }
                }
                Op::Populate(g, o) => {
                    let before = h.tot_pages();
                    let mut frames = World { free: std::mem::take(&mut world.free), ..World::default() };
                    let ok = populate_extent(&mut h, &mut world, &mut frames, &mut work, g, o, 0);
                    world.free = std::mem::take(&mut frames.free);
                    prop_assert_eq!(h.tot_pages(), before + if ok { 1 << o } else { 0 });
                }
                Op::Increase(o) => {
                    let mut frames = World { free: std::mem::take(&mut world.free), ..World::default() };
                    increase_extent(&mut h, &mut frames, o, 0);
                    world.free = std::mem::take(&mut frames.free);
                }
                Op::Shortage => world.table_shortage = true,
                Op::Pin(g) => pinned_gfn = Some(g),
            }
            let mut freed = Collect(Vec::new());
            work.finish(&mut world, &mut freed);
            for hpa in freed.0 {
                world.free(hpa);
            }
            w = world;
            prop_assert!(h.tot_pages() <= h.max_pages());
            for hpa in w.mapped_frames() {
                prop_assert!(h.owns(hpa), "GFN maps {:#x}, not held", hpa);
            }
            for &f in &w.free {
                prop_assert!(!h.owns(f), "{:#x} both free and held", f);
            }
            // Every RAM frame is held or free, never both, never neither.
            let universe = (0..RAM).map(|i| BASE + i * PAGE).chain((0..pool_size).map(|i| POOL + i * PAGE));
            let mut held = 0;
            for f in universe {
                prop_assert!(h.owns(f) != w.free.contains(&f), "{:#x} held and free, or lost", f);
                held += u64::from(h.owns(f));
            }
            prop_assert_eq!(h.tot_pages(), held);
        }
        // The domain ends: its tables go, then every held frame.
        w.p2m.clear();
        h.drain(|hpa, n| {
            for i in 0..n as u64 {
                assert!(w.free.insert(hpa + i * PAGE), "drained twice");
            }
        });
        prop_assert_eq!(w.free.len() as u64, pool_size + BLOCK);
    }
}

/// A `Frames` that collects frees (the world is borrowed as the physmap
/// while `finish` runs).
struct Collect(Vec<u64>);

impl Frames for Collect {
    fn alloc(&mut self) -> Option<u64> {
        None
    }
    fn free(&mut self, hpa: u64) {
        self.0.push(hpa);
    }
}
