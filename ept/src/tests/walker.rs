//! Tests of the guest page-table walker over hand-built guest tables: translations of each page size and every fault bit.

use crate::{
    Access, Gpa, GuestPageSize, GuestPaging, GuestPhysRead, Gva, PageFaultCode, PagingMode,
    WalkError,
};
use std::collections::BTreeMap;
use GuestPageSize::{Size1G, Size2M, Size4K, Size4M};

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PS: u64 = 1 << 7;
const XD: u64 = 1 << 63;

const PF_P: u32 = PageFaultCode::PRESENT;
const PF_W: u32 = PageFaultCode::WRITE;
const PF_U: u32 = PageFaultCode::USER;
const PF_RSVD: u32 = PageFaultCode::RESERVED;
const PF_I: u32 = PageFaultCode::FETCH;

/// Guest RAM as 4 KiB pages; a page that is absent is not guest RAM.
#[derive(Default)]
struct GuestRam(BTreeMap<u64, [u64; 512]>);

impl GuestRam {
    fn set(&mut self, gpa: u64, value: u64) {
        self.0.entry(gpa & !0xfff).or_insert([0; 512])[(gpa & 0xfff) as usize / 8] = value;
    }
}

impl GuestPhysRead for GuestRam {
    fn read_u64(&self, gpa: Gpa) -> Option<u64> {
        self.0
            .get(&(gpa.0 & !0xfff))
            .map(|page| page[(gpa.0 & 0xfff) as usize / 8])
    }
}

const PML4: u64 = 0x1000;
const PDPT: u64 = 0x2000;
const PD: u64 = 0x3000;
const PT: u64 = 0x4000;
const G1: u64 = 1 << 30;

/// Guest tables with:
/// - 0x1000: 4 KiB user RW page at 0x75000
/// - 0x2000: 4 KiB user read-only NX page at 0x76000
/// - 0x3000: not present (PTE clear)
/// - 0x20_0000: 2 MiB user read-only page at 0x60_0000
/// - 0x4000_0000: 1 GiB supervisor RW page at 0x8000_0000
fn guest() -> GuestRam {
    let mut ram = GuestRam::default();
    ram.set(PML4, PDPT | P | RW | US);
    ram.set(PDPT, PD | P | RW | US);
    ram.set(PDPT + 8, 0x8000_0000 | P | RW | PS);
    ram.set(PD, PT | P | RW | US);
    ram.set(PD + 8, 0x60_0000 | P | US | PS);
    ram.set(PT + 8, 0x75000 | P | RW | US);
    ram.set(PT + 16, 0x76000 | P | US | XD);
    ram.set(PT + 24, 0);
    ram
}

/// Long mode with CR0.WP and EFER.NXE, MAXPHYADDR 40.
fn paging() -> GuestPaging {
    let (cr0, cr4, efer) = (1 << 31 | 1 << 16 | 1, 1 << 5, 1 << 10 | 1 << 11 | 1 << 8);
    GuestPaging::from_registers(cr0, PML4, cr4, efer, 40)
}

type Outcome = Result<(u64, GuestPageSize), WalkError>;

fn fault(code: u32) -> Outcome {
    Err(WalkError::PageFault(PageFaultCode(code)))
}

fn walk(ram: &GuestRam, paging: GuestPaging, gva: u64, access: Access) -> Outcome {
    paging
        .translate(ram, Gva(gva), access)
        .map(|t| (t.gpa.0, t.size))
}

/// Walks each `(gva, access, expected)` case.
fn check(ram: &GuestRam, paging: GuestPaging, cases: &[(u64, Access, Outcome)]) {
    for &(gva, access, expected) in cases {
        assert_eq!(
            walk(ram, paging, gva, access),
            expected,
            "{gva:#x} {access:?}"
        );
    }
}

const R: Access = Access::READ;
const W: Access = Access::WRITE;
const X: Access = Access::FETCH;

#[test]
fn translates_each_page_size() {
    assert_eq!(paging().mode, PagingMode::Level4);
    let cases = [
        (0x1abc, W.by_user(), Ok((0x75abc, Size4K))),
        (0x2f_edcb, R.by_user(), Ok((0x6f_edcb, Size2M))),
        (0x4123_4567, X, Ok((0x8123_4567, Size1G))),
    ];
    check(&guest(), paging(), &cases);
    let t = paging().translate(&guest(), Gva(0x2000), R).unwrap();
    assert!(t.user && !t.writable && !t.executable);
}

#[test]
fn not_present_faults_report_the_access() {
    let cases = [
        (0x3000, R, fault(0)),
        (0x3000, W.by_user(), fault(PF_W | PF_U)),
        (0x3000, X, fault(PF_I)),
        // Missing at the PML4 (entry 1), PDPT (entry 2) and PD (entry 5) levels.
        (1 << 39, R.by_user(), fault(PF_U)),
        (2 << 30, R.by_user(), fault(PF_U)),
        (5 << 21, R.by_user(), fault(PF_U)),
        // The upper half is canonical but not mapped here.
        (0xffff_8000_0000_0000, R, fault(0)),
    ];
    check(&guest(), paging(), &cases);
}

#[test]
fn protection_faults_combine_every_level() {
    let cases = [
        // User access to the supervisor 1 GiB page.
        (0x4000_0000, R.by_user(), fault(PF_P | PF_U)),
        // Supervisor write to the read-only 2 MiB page with CR0.WP.
        (0x20_0000, W, fault(PF_P | PF_W)),
        // Fetch from the NX page, user or not.
        (0x2000, X, fault(PF_P | PF_I)),
        (0x2000, X.by_user(), fault(PF_P | PF_U | PF_I)),
    ];
    check(&guest(), paging(), &cases);
    // Without CR0.WP only user writes respect read-only pages.
    let mut no_wp = paging();
    no_wp.write_protect = false;
    assert_eq!(walk(&guest(), no_wp, 0x20_0000, W), Ok((0x60_0000, Size2M)));
    assert_eq!(
        walk(&guest(), no_wp, 0x20_0000, W.by_user()),
        fault(PF_P | PF_W | PF_U)
    );
    // A restriction at an upper level applies even though the PTE allows it.
    let mut ram = guest();
    ram.set(PD, PT | P | US | XD);
    assert_eq!(
        walk(&ram, paging(), 0x1000, W.by_user()),
        fault(PF_P | PF_W | PF_U)
    );
    assert_eq!(walk(&ram, paging(), 0x1000, X), fault(PF_P | PF_I));
    ram.set(PDPT, PD | P | RW | XD);
    assert_eq!(
        walk(&ram, paging(), 0x1000, R.by_user()),
        fault(PF_P | PF_U)
    );
}

#[test]
fn reserved_bits_fault_with_rsvd() {
    let rsvd = fault(PF_P | PF_RSVD);
    let cases = [
        ("PS in a PML4E", PML4, PDPT | P | RW | US | PS, 0x1000),
        (
            "1 GiB page bits 29:13",
            PDPT + 8,
            0x8000_0000 | P | PS | 1 << 13,
            G1,
        ),
        (
            "2 MiB page bits 20:13",
            PD + 8,
            0x60_0000 | P | PS | 1 << 20,
            0x20_0000,
        ),
        ("above MAXPHYADDR", PT + 8, 1 << 40 | P, 0x1000),
        ("in a non-leaf entry", PD, PT | P | 1 << 45, 0x1000),
    ];
    for (what, at, entry, gva) in cases {
        let mut ram = guest();
        ram.set(at, entry);
        assert_eq!(walk(&ram, paging(), gva, R), rsvd, "{what}");
    }
    // PAT (bit 12) in a large page is not reserved.
    let mut ram = guest();
    ram.set(PD + 8, 0x60_0000 | P | PS | 1 << 12);
    assert_eq!(walk(&ram, paging(), 0x20_0000, R), Ok((0x60_0000, Size2M)));
    // Without EFER.NXE, bit 63 is reserved, and fetches do not set I/D.
    let mut no_nx = paging();
    no_nx.no_execute = false;
    assert_eq!(walk(&guest(), no_nx, 0x2000, X), rsvd);
    assert_eq!(walk(&guest(), no_nx, 0x1000, X), Ok((0x75000, Size4K)));
}

#[test]
fn unreadable_tables_and_bad_addresses_are_not_page_faults() {
    let mut ram = guest();
    ram.set(PD + 16, 0x9_9000 | P);
    let cases = [
        (0x40_0000, R, Err(WalkError::Unreadable(Gpa(0x9_9000)))),
        (0x8000_0000_0000, R, Err(WalkError::NonCanonical)),
        (0xfff0_0000_0000_0000, R, Err(WalkError::NonCanonical)),
    ];
    check(&ram, paging(), &cases);
    let mut bad_cr3 = paging();
    bad_cr3.cr3 = 0x5_0000;
    assert_eq!(
        walk(&ram, bad_cr3, 0x1000, R),
        Err(WalkError::Unreadable(Gpa(0x5_0000)))
    );
}

#[test]
fn paging_off_is_identity() {
    let off = GuestPaging::from_registers(1, PML4, 0, 0, 40);
    assert_eq!(off.mode, PagingMode::Disabled);
    assert_eq!(
        walk(&guest(), off, 0x1234_5678, W),
        Ok((0x1234_5678, Size4K))
    );
}

#[test]
fn modes_follow_the_control_registers() {
    let modes = [
        (0, 0, PagingMode::Bits32),
        (1 << 4, 1 << 11, PagingMode::Bits32),
        (1 << 5, 0, PagingMode::Pae),
        (1 << 5, 1 << 8, PagingMode::Pae),
        (1 << 5, 1 << 10, PagingMode::Level4),
        (1 << 5 | 1 << 12, 1 << 10, PagingMode::Level5),
    ];
    for (cr4, efer, mode) in modes {
        let paging = GuestPaging::from_registers(1 << 31 | 1, PML4, cr4, efer, 40);
        assert_eq!(paging.mode, mode, "CR4 {cr4:#x} EFER {efer:#x}");
        assert_eq!(paging.large_pages, cr4 & 1 << 4 != 0);
    }
}

// 32-bit paging: a page directory at 0x1000 with
// - PDE 0 -> page table at 0x2000: PTE 1 user RW 0x75000, PTE 2 user
//   read-only 0x76000, PTE 3 not present
// - PDE 1 (0x40_0000): 4 MiB supervisor RW at 0x0080_0000 with PSE-36
//   bits 20:13 = 0x12, i.e. physical 0x12_0080_0000
// - PDE 2 (0x80_0000) not present
const PD32: u64 = 0x1000;
const PT32: u64 = 0x2000;

fn guest_32bit() -> GuestRam {
    let mut ram = GuestRam::default();
    ram.set(PD32, (0x4000_0000_u64 | P) << 32 | PT32 | P | RW | US);
    ram.set(PT32, (0x75000 | P | RW | US) << 32);
    ram.set(PT32 + 8, 0x76000 | P | US);
    ram
}

fn set_32(ram: &mut GuestRam, gpa: u64, value: u32) {
    let old = ram.read_u64(Gpa(gpa & !7)).unwrap_or(0);
    let shift = 8 * (gpa & 4);
    ram.set(
        gpa & !7,
        old & !(0xffff_ffff << shift) | u64::from(value) << shift,
    );
}

/// 32-bit paging with CR0.WP and CR4.PSE.
fn paging_32bit() -> GuestPaging {
    GuestPaging::from_registers(1 << 31 | 1 << 16 | 1, PD32, 1 << 4, 1 << 11, 40)
}

#[test]
fn bits32_translates_4k_and_4m_pages() {
    let mut ram = guest_32bit();
    set_32(
        &mut ram,
        PD32 + 4,
        0x0080_0000 | 0x12 << 13 | (P | RW | PS) as u32,
    );
    let fetch_rsvd = fault(PF_P | PF_RSVD);
    let cases = [
        (0x1abc, W.by_user(), Ok((0x75abc, Size4K))),
        // No execute-disable in 32-bit paging, and no I/D bit in its faults.
        (0x2abc, X.by_user(), Ok((0x76abc, Size4K))),
        (0x2abc, W.by_user(), fault(PF_P | PF_W | PF_U)),
        (0x2abc, W, fault(PF_P | PF_W)),
        (0x3000, X, fault(0)),
        (0x80_0000, R, fault(0)),
        (0x7f_fffc, W, Ok((0x12_00bf_fffc, Size4M))),
        (0x40_0000, R.by_user(), fault(PF_P | PF_U)),
        // Above 4 GiB is no 32-bit linear address.
        (1 << 32 | 0x1000, R, Err(WalkError::NonCanonical)),
    ];
    check(&ram, paging_32bit(), &cases);
    // Bit 21 is reserved; with MAXPHYADDR 36 so are bits 21:17.
    set_32(&mut ram, PD32 + 4, 0x0080_0000 | 1 << 21 | (P | PS) as u32);
    assert_eq!(walk(&ram, paging_32bit(), 0x40_0000, X), fetch_rsvd);
    set_32(
        &mut ram,
        PD32 + 4,
        0x0080_0000 | 0x8 << 13 | (P | PS) as u32,
    );
    let mut narrow = paging_32bit();
    narrow.max_phys_bits = 36;
    assert_eq!(
        walk(&ram, narrow, 0x40_0000, R),
        Ok((0x8_0080_0000, Size4M))
    );
    set_32(
        &mut ram,
        PD32 + 4,
        0x0080_0000 | 0x10 << 13 | (P | PS) as u32,
    );
    assert_eq!(walk(&ram, narrow, 0x40_0000, R), fetch_rsvd);
    // Without CR4.PSE, PS is ignored: the PDE points at a page table.
    set_32(&mut ram, PD32 + 4, (PT32 | P | PS) as u32);
    let mut no_pse = paging_32bit();
    no_pse.large_pages = false;
    assert_eq!(walk(&ram, no_pse, 0x40_1abc, R), Ok((0x75abc, Size4K)));
    // A page table outside guest RAM.
    set_32(&mut ram, PD32 + 8, 0x9_9000 | P as u32);
    assert_eq!(
        walk(&ram, paging_32bit(), 0x80_0000, R),
        Err(WalkError::Unreadable(Gpa(0x9_9000)))
    );
}

// PAE paging: the PDPT at 0x1020 (CR3 is 32-byte aligned), whose PDPTE 0
// points at the page directory at 0x3000 (the long-mode `guest()` one:
// 0x1000 user RW, 0x2000 user read-only NX, 0x3000 not present,
// 0x20_0000 2 MiB user read-only); PDPTE 1 not present; PDPTE 3 (the top
// GiB) -> the same page directory.
const PDPT_PAE: u64 = 0x1020;

fn guest_pae() -> GuestRam {
    let mut ram = guest();
    ram.set(PDPT_PAE, PD | P);
    ram.set(PDPT_PAE + 24, PD | P);
    ram
}

/// PAE paging with CR0.WP and EFER.NXE.
fn paging_pae() -> GuestPaging {
    GuestPaging::from_registers(1 << 31 | 1 << 16 | 1, PDPT_PAE, 1 << 5, 1 << 11, 40)
}

#[test]
fn pae_translates_and_faults() {
    let ram = guest_pae();
    let cases = [
        (0x1abc, W.by_user(), Ok((0x75abc, Size4K))),
        (0xc000_1abc, W.by_user(), Ok((0x75abc, Size4K))),
        (0x2f_edcb, R.by_user(), Ok((0x6f_edcb, Size2M))),
        (0x2000, X, fault(PF_P | PF_I)),
        (0x20_0000, W, fault(PF_P | PF_W)),
        (0x3000, W.by_user(), fault(PF_W | PF_U)),
        (0x4000_0000, R, fault(0)),
        (1 << 32, R, Err(WalkError::NonCanonical)),
    ];
    check(&ram, paging_pae(), &cases);
    // Without NXE bit 63 is reserved, and fetches do not report I/D.
    let mut no_nx = paging_pae();
    no_nx.no_execute = false;
    assert_eq!(walk(&ram, no_nx, 0x2000, X), fault(PF_P | PF_RSVD));
    assert_eq!(walk(&ram, no_nx, 0x3000, X), fault(0));
}

#[test]
fn pae_pdptes_have_their_own_reserved_bits() {
    let rsvd = fault(PF_P | PF_RSVD);
    // R/W, U/S (bits 2:1), bits 8:6 (PS among them), XD even with NXE,
    // and address bits from MAXPHYADDR.
    for bit in [1, 2, 6, 7, 8, 63, 40, 51] {
        let mut ram = guest_pae();
        ram.set(PDPT_PAE, PD | P | 1 << bit);
        assert_eq!(walk(&ram, paging_pae(), 0x1000, R), rsvd, "bit {bit}");
    }
    // PWT, PCD, the ignored bits 11:9 and the accessed bit QEMU sets are
    // not reserved.
    let mut ram = guest_pae();
    ram.set(PDPT_PAE, PD | P | 1 << 3 | 1 << 4 | 1 << 5 | 0xe00);
    assert_eq!(walk(&ram, paging_pae(), 0x1000, R), Ok((0x75000, Size4K)));
    // A not-present PDPTE with reserved bits is just not present.
    ram.set(PDPT_PAE, PD | 0x1e6);
    assert_eq!(walk(&ram, paging_pae(), 0x1000, W), fault(PF_W));
}

#[test]
fn level5_walks_one_more_level() {
    // PML5 at 0x5000: entry 0 -> the `guest()` PML4, entry 1 -> not present.
    let mut ram = guest();
    ram.set(0x5000, PML4 | P | RW | US);
    let mut paging = paging();
    paging.mode = PagingMode::Level5;
    paging.cr3 = 0x5000;
    let cases = [
        (0x1abc, W.by_user(), Ok((0x75abc, Size4K))),
        (0x4123_4567, X, Ok((0x8123_4567, Size1G))),
        // Canonical at 57 bits: bit 48 is an index bit, not a sign bit.
        (1 << 48, R, fault(0)),
        (0x00ff_0000_0000_0000, R, fault(0)),
        (0xff00_0000_0000_0000, R, fault(0)),
        (0x0100_0000_0000_0000, R, Err(WalkError::NonCanonical)),
        (0xfe00_0000_0000_0000, R, Err(WalkError::NonCanonical)),
    ];
    check(&ram, paging, &cases);
    ram.set(0x5000, PML4 | P | RW | US | PS);
    assert_eq!(walk(&ram, paging, 0x1000, R), fault(PF_P | PF_RSVD));
}
