//! Property tests: random map/unmap/protect sequences against a replay model, for both formats.

use super::arena::Arena;
use crate::{Ept, Flush, Format, Gpa, Hpa, MemType, Npt, PageSize, Perms, SecondLevel};
use proptest::collection::vec;
use proptest::prelude::*;
use std::vec::Vec;

#[derive(Clone, Copy, Debug)]
enum Op {
    Map(u64, u64, PageSize, Perms, MemType),
    Unmap(u64, PageSize),
    Protect(u64, u64, Perms),
}

/// What a guest-physical address should lead to: host address, perms, memory type.
type Expected = Option<(u64, Perms, MemType)>;

/// The model is the log of operations itself: the last map or unmap covering
/// an address decides it, and the last protect after that map decides its perms.
fn expected(log: &[Op], addr: u64) -> Expected {
    let covers = |gpa: u64, len: u64| (gpa..gpa + len).contains(&addr);
    let mut protected = None;
    for op in log.iter().rev() {
        match *op {
            Op::Protect(gpa, len, perms) if covers(gpa, len) => {
                protected.get_or_insert(perms);
            }
            Op::Unmap(gpa, size) if covers(gpa, size.bytes()) => return None,
            Op::Map(gpa, hpa, size, perms, mem_type) if covers(gpa, size.bytes()) => {
                return Some((hpa + (addr - gpa), protected.unwrap_or(perms), mem_type));
            }
            _ => {}
        }
    }
    None
}

/// Three 1 GiB regions (two under one PML4 entry, one under another).
const GIGS: [u64; 3] = [0, 1, 512];

/// Guest addresses are built from few choices per level so that operations
/// overlap often: a few 2 MiB and 4 KiB slots, including the last ones.
fn gpa(size: PageSize) -> impl Strategy<Value = u64> {
    let slot = || prop_oneof![0..3u64, Just(511)];
    let gig = proptest::sample::select(&GIGS[..]);
    (gig, slot(), slot())
        .prop_map(move |(g, m, k)| (g << 30 | m << 21 | k << 12) & !(size.bytes() - 1))
}

/// Checked after every step: the slots used, their neighbours and a region
/// never used, each at a page start and mid-page.
fn query_grid() -> Vec<u64> {
    let slots = [0u64, 1, 2, 3, 510, 511];
    let pages = [0u64, 1, 2, 512]
        .into_iter()
        .flat_map(|g| slots.map(|m| g << 30 | m << 21));
    let pages = pages.flat_map(|base| slots.map(|k| base | k << 12));
    pages.flat_map(|page| [page, page + 0x7f8]).collect()
}

/// Checked at the end: every 4 KiB page of the 2 MiB slots used, and a few
/// pages of every other 2 MiB slot of the regions used.
fn sweep() -> impl Iterator<Item = u64> {
    GIGS.into_iter().flat_map(|g| {
        (0..512u64).flat_map(move |m| {
            let used = !(4..510).contains(&m);
            let pages = if used { 0..512 } else { 0..3 };
            pages.map(move |k| g << 30 | m << 21 | (if used { k } else { k * 255 }) << 12 | 0x10)
        })
    })
}

fn page_size() -> impl Strategy<Value = PageSize> {
    prop_oneof![3 => Just(PageSize::Size4K), 2 => Just(PageSize::Size2M), 1 => Just(PageSize::Size1G)]
}

/// Permissions and memory types both formats can express.
fn perms() -> impl Strategy<Value = Perms> {
    proptest::sample::select(&[Perms::R, Perms::RW, Perms::RX, Perms::RWX][..])
}

fn mem_type() -> impl Strategy<Value = MemType> {
    use MemType::*;
    proptest::sample::select(&[WriteBack, Uncacheable, WriteThrough][..])
}

fn op() -> impl Strategy<Value = Op> {
    let map = (page_size(), 0u64..1 << 28, perms(), mem_type());
    let map = map.prop_flat_map(|(size, frame, perms, mem_type)| {
        let hpa = (frame << 12) & !(size.bytes() - 1);
        gpa(size).prop_map(move |gpa| Op::Map(gpa, hpa, size, perms, mem_type))
    });
    let unmap =
        page_size().prop_flat_map(|size| gpa(size).prop_map(move |gpa| Op::Unmap(gpa, size)));
    let len = prop_oneof![
        (1u64..1024).prop_map(|pages| pages << 12),
        proptest::sample::select(&[(1 << 21) + (1 << 12), 1 << 30, (1 << 30) + (1 << 21)][..]),
    ];
    let protect = (gpa(PageSize::Size4K), len, perms())
        .prop_map(|(gpa, len, perms)| Op::Protect(gpa, len, perms));
    prop_oneof![4 => map, 2 => unmap, 2 => protect]
}

fn apply<F: Format>(t: &mut SecondLevel<F>, mem: &mut Arena, op: Op) -> Flush {
    let result = match op {
        Op::Map(gpa, hpa, size, perms, mem_type) => {
            t.map(mem, Gpa(gpa), Hpa(hpa), size, perms, mem_type)
        }
        Op::Unmap(gpa, size) => t.unmap(mem, Gpa(gpa), size),
        Op::Protect(gpa, len, perms) => t.protect(mem, Gpa(gpa), len, perms),
    };
    result.expect("every generated operation is valid")
}

fn actual<F: Format>(t: &SecondLevel<F>, mem: &Arena, addr: u64) -> Expected {
    t.translate(mem, Gpa(addr))
        .map(|tr| (tr.hpa.0, tr.perms, tr.mem_type))
}

/// Runs `ops`, checking after each one that every grid address translates as
/// the model says, that a flush is reported whenever a present translation
/// changed or went away, and that a map into space no earlier map touched
/// reports none. At the end, checks the sweep and `extra`, then unmaps every
/// mapped range and checks that nothing translates and every table but the
/// root was freed.
fn check<F: Format>(ops: &[Op], extra: &[u64]) -> Result<(), TestCaseError> {
    let mut mem = Arena::new();
    let mut t = SecondLevel::<F>::new(&mut mem).unwrap();
    let grid = query_grid();
    let mut log = Vec::new();
    let mut before: Vec<Expected> = grid.iter().map(|_| None).collect();
    for &op in ops {
        let flush = apply(&mut t, &mut mem, op);
        let after: Vec<Expected> = grid.iter().map(|&a| actual(&t, &mem, a)).collect();
        let changed = before
            .iter()
            .zip(&after)
            .any(|(b, a)| b.is_some() && b != a);
        prop_assert!(
            !changed || flush.is_needed(),
            "{} missed a flush for {:?}",
            F::NAME,
            op
        );
        if let Op::Map(gpa, _, size, ..) = op {
            let apart = |earlier: &Op| match *earlier {
                Op::Map(g, _, s, ..) => g + s.bytes() <= gpa || gpa + size.bytes() <= g,
                _ => true,
            };
            let fresh = log.iter().all(apart);
            prop_assert!(
                !fresh || !flush.is_needed(),
                "{} flushed for fresh {:?}",
                F::NAME,
                op
            );
        }
        log.push(op);
        for (&addr, got) in grid.iter().zip(&after) {
            prop_assert_eq!(
                *got,
                expected(&log, addr),
                "{} at {:#x} after {:?}",
                F::NAME,
                addr,
                op
            );
        }
        before = after;
    }
    for addr in sweep().chain(extra.iter().copied()) {
        prop_assert_eq!(
            actual(&t, &mem, addr),
            expected(&log, addr),
            "{} at {:#x}",
            F::NAME,
            addr
        );
    }
    for op in &log {
        if let Op::Map(gpa, _, size, ..) = *op {
            let _ = apply(&mut t, &mut mem, Op::Unmap(gpa, size));
        }
    }
    for addr in grid
        .iter()
        .copied()
        .chain(sweep())
        .chain(extra.iter().copied())
    {
        prop_assert_eq!(
            actual(&t, &mem, addr),
            None,
            "{} at {:#x} after unmapping all",
            F::NAME,
            addr
        );
    }
    prop_assert_eq!(mem.live(), 1, "{} leaked tables", F::NAME);
    t.destroy(&mut mem);
    prop_assert_eq!(mem.live(), 0);
    Ok(())
}

/// Random addresses anywhere, to catch a translation the grid does not look at.
fn extra() -> impl Strategy<Value = Vec<u64>> {
    vec(
        prop_oneof![
            0u64..1 << 31,
            (0u64..1 << 40).prop_map(|a| a | 1 << 39),
            any::<u64>()
        ],
        16,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn ept_agrees_with_model(ops in vec(op(), 1..40), extra in extra()) {
        check::<Ept>(&ops, &extra)?;
    }

    #[test]
    fn npt_agrees_with_model(ops in vec(op(), 1..40), extra in extra()) {
        check::<Npt>(&ops, &extra)?;
    }
}
