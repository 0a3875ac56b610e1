//! Property tests of the guest walker in every paging mode against a reference written bit by bit from the SDM's tables.
//!
//! Guest memory is a few table frames whose entries (at the indices the
//! addresses use) are random: present or not, any rights, PS, XD, a stray
//! reserved bit, pointing at another frame, at memory that is not guest RAM,
//! or anywhere for a leaf. The reference reads each entry and applies SDM
//! Vol. 3A 4.3 (32-bit), 4.4 (PAE) and 4.5 (4- and 5-level) table by table,
//! one mode at a time, and 4.6/4.7 for rights and the error code, without
//! sharing code with the walker.

use crate::{
    Access, Gpa, GuestPageSize, GuestPaging, GuestPhysRead, GuestTranslation, Gva, PageFaultCode,
    PagingMode, WalkError,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::vec::Vec;

/// Table frames live at `FRAME_BASE + i * 4 KiB`, for `i < FRAMES`.
const FRAMES: u64 = 6;
const FRAME_BASE: u64 = 0x10_0000;
/// A frame that is not guest RAM.
const HOLE: u64 = 0x7_0000;
/// The table indices guest addresses use, per table format.
const INDICES_64: [u64; 5] = [0, 1, 2, 3, 511];
const INDICES_32: [u64; 5] = [0, 1, 2, 3, 1023];

#[derive(Default, Debug)]
struct Ram(BTreeMap<u64, u64>);

impl GuestPhysRead for Ram {
    fn read_u64(&self, gpa: Gpa) -> Option<u64> {
        let frame = gpa.0 & !0xfff;
        let is_ram = (FRAME_BASE..FRAME_BASE + FRAMES * 0x1000).contains(&frame);
        (gpa.0.is_multiple_of(8) && is_ram).then(|| self.0.get(&gpa.0).copied().unwrap_or(0))
    }
}

impl Ram {
    fn set_u32(&mut self, gpa: u64, value: u32) {
        let word = self.0.entry(gpa & !7).or_insert(0);
        let shift = 8 * (gpa & 4);
        *word = *word & !(0xffff_ffff << shift) | u64::from(value) << shift;
    }
}

fn bit(value: u64, n: u32) -> bool {
    value >> n & 1 != 0
}

/// Bits `hi:lo` of `value`, shifted down.
fn bits(value: u64, hi: u32, lo: u32) -> u64 {
    value >> lo & ((1u64 << (hi - lo + 1)) - 1)
}

/// One random entry: where it points and its flags.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// 0..FRAMES: a table frame; FRAMES: the hole; above: a random address.
    target: u64,
    random_address: u64,
    present: bool,
    flags: u64,
    /// A bit set on top, often a reserved one.
    stray: Option<u32>,
}

impl Entry {
    fn value(self) -> u64 {
        let address = match self.target {
            t if t < FRAMES => FRAME_BASE + t * 0x1000,
            t if t == FRAMES => HOLE,
            _ => self.random_address,
        };
        let stray = self.stray.map_or(0, |b| 1u64 << b);
        address | self.flags | stray | u64::from(self.present)
    }
}

fn entry() -> impl Strategy<Value = Entry> {
    let target = prop_oneof![6 => 0..FRAMES, 1 => Just(FRAMES), 2 => Just(FRAMES + 1)];
    // RW, US, PWT, PCD, A, D, PS, G, XD.
    let flags = prop::collection::vec(
        prop::sample::select(&[1u32, 2, 3, 4, 5, 6, 7, 8, 63][..]),
        0..6,
    )
    .prop_map(|bs| bs.iter().fold(0u64, |f, &b| f | 1 << b));
    let stray = prop_oneof![
        6 => Just(None),
        1 => (1u32..64).prop_map(Some),
        1 => prop::sample::select(&[12u32, 13, 17, 20, 21, 29, 35, 39, 40, 45, 51][..]).prop_map(Some),
    ];
    // A random address aligned for a 4 KiB, 2 or 4 MiB, or 1 GiB page, so
    // that large pages are often valid.
    let align = prop::sample::select(&[12u32, 21, 22, 30][..]);
    (
        target,
        (0u64..1 << 52, align),
        prop::bool::weighted(0.9),
        flags,
        stray,
    )
        .prop_map(|(target, (a, align), present, flags, stray)| Entry {
            target,
            random_address: a >> align << align,
            present,
            flags,
            stray,
        })
}

#[derive(Clone, Debug)]
struct Case {
    mode: PagingMode,
    cr3: u64,
    wp: bool,
    nxe: bool,
    pse: bool,
    max_phys: u8,
    /// Entries for each frame at each index of the format's index set.
    entries: Vec<Entry>,
    addresses: Vec<u64>,
}

fn mode() -> impl Strategy<Value = PagingMode> {
    prop::sample::select(
        &[
            PagingMode::Bits32,
            PagingMode::Pae,
            PagingMode::Level4,
            PagingMode::Level5,
        ][..],
    )
}

/// An address whose index at each level is one of those with entries, and
/// whether to make it canonical for the mode (else the bits above the
/// walked ones are left as they come, or disturbed).
fn address() -> impl Strategy<Value = (u64, bool)> {
    (
        prop::collection::vec(0..INDICES_64.len(), 5),
        0u64..0x1000,
        prop_oneof![4 => Just(0u64), 1 => any::<u64>()],
        any::<bool>(),
        prop::bool::weighted(0.7),
    )
        .prop_map(|(picks, offset, noise, sign, canonical)| {
            let mut gva = offset;
            for (level, &i) in picks.iter().enumerate() {
                gva |= INDICES_64[i] << (12 + 9 * level as u64);
            }
            if sign {
                gva |= 0xfe00_0000_0000_0000;
            }
            (gva ^ noise, canonical)
        })
}

/// `gva` sign-extended from bit `top`.
fn sign_extend(gva: u64, top: u32) -> u64 {
    let unused = 63 - top;
    ((gva << unused) as i64 >> unused) as u64
}

/// The same for 32-bit and PAE addresses (PDPTE index 0..3, then 9 + 9
/// bits; or 10 + 10 bits), sometimes above 4 GiB.
fn address_32() -> impl Strategy<Value = u64> {
    (
        0..INDICES_32.len(),
        0..INDICES_32.len(),
        0u64..0x1000,
        0u64..4,
        prop::bool::weighted(0.05),
    )
        .prop_map(|(a, b, offset, pdpte, high)| {
            let pae = INDICES_64[a] << 21 | INDICES_64[b] << 12 | pdpte << 30;
            let two_level = INDICES_32[a] << 22 | INDICES_32[b] << 12;
            // Both kinds of index in one address: the low bits of each
            // level's index pick different entries in the two formats.
            let gva = if offset % 2 == 0 { pae } else { two_level } | offset;
            gva | u64::from(high) << 32
        })
}

fn case() -> impl Strategy<Value = Case> {
    let frames = FRAMES as usize * INDICES_64.len();
    (
        mode(),
        (0..FRAMES, 0u64..0x1000),
        any::<(bool, bool, bool)>(),
        prop::sample::select(&[32u8, 36, 39, 40, 46, 52][..]),
        prop::collection::vec(entry(), frames),
        prop::collection::vec(address(), 24),
        prop::collection::vec(address_32(), 24),
    )
        .prop_map(
            |(mode, (frame, low), (wp, nxe, pse), max_phys, entries, long, short)| {
                let top = if mode == PagingMode::Level4 { 47 } else { 56 };
                let long = long
                    .into_iter()
                    .map(|(gva, canonical)| {
                        if canonical {
                            sign_extend(gva, top)
                        } else {
                            gva
                        }
                    })
                    .collect();
                let wide = matches!(mode, PagingMode::Level4 | PagingMode::Level5);
                Case {
                    mode,
                    cr3: (FRAME_BASE + frame * 0x1000) | low,
                    wp,
                    nxe,
                    pse,
                    max_phys,
                    entries,
                    addresses: if wide { long } else { short },
                }
            },
        )
}

impl Case {
    fn ram(&self) -> Ram {
        let mut ram = Ram::default();
        for frame in 0..FRAMES {
            for (k, &i) in INDICES_64.iter().enumerate() {
                let e = self.entries[frame as usize * INDICES_64.len() + k];
                let base = FRAME_BASE + frame * 0x1000;
                if self.mode == PagingMode::Bits32 {
                    ram.set_u32(base + INDICES_32[k] * 4, e.value() as u32);
                } else {
                    ram.0.insert(base + i * 8, e.value());
                }
            }
        }
        // PAE: the four PDPTEs at CR3[31:5] are the frame's first entries,
        // wherever in the frame CR3 points.
        if self.mode == PagingMode::Pae {
            let pdpt = self.cr3 & 0xffff_ffe0;
            let frame = pdpt & !0xfff;
            for k in 0..4 {
                let e = self.entries[((frame - FRAME_BASE) / 0x1000) as usize * 5 + k];
                ram.0.insert(pdpt + k as u64 * 8, e.value());
            }
        }
        ram
    }

    fn paging(&self) -> GuestPaging {
        GuestPaging {
            mode: self.mode,
            cr3: self.cr3,
            write_protect: self.wp,
            no_execute: self.nxe,
            large_pages: self.pse,
            max_phys_bits: self.max_phys,
        }
    }
}

type Outcome = Result<GuestTranslation, WalkError>;

/// The reference walk.
fn reference(case: &Case, ram: &Ram, gva: u64, access: Access) -> Outcome {
    // 4.7: the error code. I/D only where execute-disable exists and is on.
    let pf = |protection: bool, rsvd: bool| {
        let mut code = 0;
        if protection {
            code |= PageFaultCode::PRESENT;
        }
        if access.write {
            code |= PageFaultCode::WRITE;
        }
        if access.user {
            code |= PageFaultCode::USER;
        }
        if rsvd {
            code |= PageFaultCode::RESERVED;
        }
        if access.fetch && case.nxe && case.mode != PagingMode::Bits32 {
            code |= PageFaultCode::FETCH;
        }
        Err(WalkError::PageFault(PageFaultCode(code)))
    };
    let read64 = |gpa: u64| {
        ram.read_u64(Gpa(gpa))
            .ok_or(WalkError::Unreadable(Gpa(gpa)))
    };
    let m = u32::from(case.max_phys);
    // Bits (M-1):12 of an 8-byte entry, and its reserved bits 51:M.
    let address = |e: u64| bits(e, m - 1, 12) << 12;
    let above_m = |e: u64| m < 52 && bits(e, 51, m) != 0;
    let xd_reserved = |e: u64| !case.nxe && bit(e, 63);
    // The entries that gave the rights, and the page.
    let mut path: Vec<u64> = Vec::new();
    let (gpa, size) = match case.mode {
        PagingMode::Bits32 => {
            if gva >> 32 != 0 {
                return Err(WalkError::NonCanonical);
            }
            // 4.3: PDE at CR3[31:12] | gva[31:22] << 2.
            let pde_at = bits(case.cr3, 31, 12) << 12 | bits(gva, 31, 22) << 2;
            let pde = u64::from(
                ram.read_u32(Gpa(pde_at))
                    .ok_or(WalkError::Unreadable(Gpa(pde_at)))?,
            );
            if !bit(pde, 0) {
                return pf(false, false);
            }
            path.push(pde);
            if case.pse && bit(pde, 7) {
                // Table 4-4, M = min(MAXPHYADDR, 40): bits 21:(M-19) reserved.
                let m4 = m.min(40);
                if (m4 - 19..=21).any(|b| bit(pde, b)) {
                    return pf(true, true);
                }
                let high = bits(pde, 20, 13);
                (
                    high << 32 | bits(pde, 31, 22) << 22 | bits(gva, 21, 0),
                    GuestPageSize::Size4M,
                )
            } else {
                let pte_at = bits(pde, 31, 12) << 12 | bits(gva, 21, 12) << 2;
                let pte = u64::from(
                    ram.read_u32(Gpa(pte_at))
                        .ok_or(WalkError::Unreadable(Gpa(pte_at)))?,
                );
                if !bit(pte, 0) {
                    return pf(false, false);
                }
                path.push(pte);
                (
                    bits(pte, 31, 12) << 12 | bits(gva, 11, 0),
                    GuestPageSize::Size4K,
                )
            }
        }
        _ => {
            // The table the 8-byte levels start at, and the first level.
            let (mut table, mut level) = match case.mode {
                PagingMode::Pae => {
                    if gva >> 32 != 0 {
                        return Err(WalkError::NonCanonical);
                    }
                    // 4.4.1: PDPTE i at CR3[31:5] | i << 3; table 4-8,
                    // but for bit 5, the accessed bit QEMU sets.
                    let at = bits(case.cr3, 31, 5) << 5 | bits(gva, 31, 30) << 3;
                    let pdpte = read64(at)?;
                    if !bit(pdpte, 0) {
                        return pf(false, false);
                    }
                    let reserved = [1, 2, 6, 7, 8, 63].iter().any(|&b| bit(pdpte, b));
                    if reserved || above_m(pdpte) {
                        return pf(true, true);
                    }
                    (address(pdpte), 2)
                }
                PagingMode::Level4 | PagingMode::Level5 => {
                    let top = if case.mode == PagingMode::Level4 {
                        47
                    } else {
                        56
                    };
                    let sign = bits(gva, 63, top);
                    if sign != 0 && sign != (1 << (64 - top)) - 1 {
                        return Err(WalkError::NonCanonical);
                    }
                    let levels = if case.mode == PagingMode::Level4 {
                        4
                    } else {
                        5
                    };
                    (address(case.cr3), levels)
                }
                PagingMode::Disabled | PagingMode::Bits32 => unreachable!(),
            };
            loop {
                let index_lo = 12 + 9 * (level - 1);
                let entry = read64(table | bits(gva, index_lo + 8, index_lo) << 3)?;
                if !bit(entry, 0) {
                    return pf(false, false);
                }
                let ps = bit(entry, 7);
                let reserved = above_m(entry)
                    || xd_reserved(entry)
                    || (level >= 4 && ps)
                    || (level == 3 && ps && bits(entry, 29, 13) != 0)
                    || (level == 2 && ps && bits(entry, 20, 13) != 0);
                if reserved {
                    return pf(true, true);
                }
                path.push(entry);
                if level == 1 {
                    break (address(entry) | bits(gva, 11, 0), GuestPageSize::Size4K);
                }
                if level == 2 && ps {
                    break (
                        bits(entry, m - 1, 21) << 21 | bits(gva, 20, 0),
                        GuestPageSize::Size2M,
                    );
                }
                if level == 3 && ps {
                    break (
                        bits(entry, m - 1, 30) << 30 | bits(gva, 29, 0),
                        GuestPageSize::Size1G,
                    );
                }
                table = address(entry);
                level -= 1;
            }
        }
    };
    // 4.6: rights are the AND over every entry that has them.
    let writable = path.iter().all(|&e| bit(e, 1));
    let user = path.iter().all(|&e| bit(e, 2));
    let executable =
        case.mode == PagingMode::Bits32 || !case.nxe || path.iter().all(|&e| !bit(e, 63));
    let denied = (access.user && !user)
        || (access.write && !writable && (access.user || case.wp))
        || (access.fetch && !executable);
    if denied {
        return pf(true, false);
    }
    Ok(GuestTranslation {
        gpa: Gpa(gpa),
        size,
        writable,
        user,
        executable,
    })
}

const ACCESSES: [Access; 6] = [
    Access::READ,
    Access::WRITE,
    Access::FETCH,
    Access::READ.by_user(),
    Access::WRITE.by_user(),
    Access::FETCH.by_user(),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn walker_agrees_with_reference(case in case()) {
        let ram = case.ram();
        let paging = case.paging();
        for &gva in &case.addresses {
            for access in ACCESSES {
                let got = paging.translate(&ram, Gva(gva), access);
                let want = reference(&case, &ram, gva, access);
                prop_assert_eq!(got, want, "{:?} {:#x} {:?}", case.mode, gva, access);
            }
        }
    }
}

/// The generator reaches what the property is about: pages of every size
/// in every mode, and each kind of failure.
#[test]
fn cases_cover_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::BTreeSet;
    let mut runner = TestRunner::deterministic();
    let mut seen = BTreeSet::new();
    for _ in 0..2000 {
        let case = case().new_tree(&mut runner).unwrap().current();
        let ram = case.ram();
        for &gva in &case.addresses {
            let kind = match reference(&case, &ram, gva, Access::READ) {
                Ok(t) => std::format!("{:?} {:?}", case.mode, t.size),
                Err(WalkError::PageFault(c)) if c.has(PageFaultCode::RESERVED) => {
                    std::format!("{:?} rsvd", case.mode)
                }
                Err(WalkError::PageFault(_)) => std::format!("{:?} pf", case.mode),
                Err(WalkError::NonCanonical) => std::format!("{:?} noncanonical", case.mode),
                Err(WalkError::Unreadable(_)) => std::format!("{:?} unreadable", case.mode),
            };
            seen.insert(kind);
        }
    }
    for want in [
        "Bits32 Size4K",
        "Bits32 Size4M",
        "Bits32 rsvd",
        "Bits32 pf",
        "Bits32 noncanonical",
        "Bits32 unreadable",
        "Pae Size4K",
        "Pae Size2M",
        "Pae rsvd",
        "Pae pf",
        "Pae noncanonical",
        "Pae unreadable",
        "Level4 Size4K",
        "Level4 Size2M",
        "Level4 Size1G",
        "Level4 rsvd",
        "Level4 noncanonical",
        "Level5 Size4K",
        "Level5 Size1G",
        "Level5 rsvd",
        "Level5 noncanonical",
    ] {
        assert!(seen.contains(want), "never generated: {want}; saw {seen:?}");
    }
}
