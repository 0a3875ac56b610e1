//! Tests of grant-table v1 pinning: every status code, guest races, revocation, domain death, physmap placement, guest arrays, and a model-based property test.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use xen_abi::grant_table::{
    GNTST_OKAY, GTF_ACCEPT_TRANSFER, GTF_INVALID, GTF_PCD, GTF_PWT, GTF_READONLY,
};

const BACKEND: DomId = 0;
const FRONT: DomId = 1;
const OTHER: DomId = 2;
const NR: u32 = 16;
const RAM_PAGES: u64 = 8;
const RO: u32 = GNTMAP_HOST_MAP | GNTMAP_READONLY;
const RW: u32 = GNTMAP_HOST_MAP;

/// A fake grant frame: plain entries, and guest writes queued to land just
/// before the hypervisor's next cmpxchg (a racing vCPU).
#[derive(Clone, Debug, Default)]
struct Table {
    entries: Vec<GrantEntryV1>,
    races: VecDeque<u32>,
}

impl PartialEq for Table {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl GrantEntries for Table {
    fn nr_entries(&self) -> u32 {
        self.entries.len() as u32
    }
    fn read_header(&self, gref: GrantRef) -> u32 {
        let e = self.entries[gref as usize];
        header(e.flags, e.domid)
    }
    fn read_frame(&self, gref: GrantRef) -> u32 {
        self.entries[gref as usize].frame
    }
    fn cmpxchg_header(&mut self, gref: GrantRef, old: u32, new: u32) -> u32 {
        if let Some(h) = self.races.pop_front() {
            self.set_header(gref, h);
        }
        let cur = self.read_header(gref);
        if cur == old {
            self.set_header(gref, new);
        }
        cur
    }
    fn clear_flags(&mut self, gref: GrantRef, mask: u16) {
        self.entries[gref as usize].flags &= !mask;
    }
    fn write(&mut self, gref: GrantRef, entry: GrantEntryV1) {
        self.entries[gref as usize] = entry;
    }
}

impl Table {
    fn new(nr: u32) -> Self {
        Self {
            entries: vec![GrantEntryV1::default(); nr as usize],
            races: VecDeque::new(),
        }
    }
    fn set_header(&mut self, gref: GrantRef, h: u32) {
        let (flags, domid) = split_header(h);
        let e = &mut self.entries[gref as usize];
        e.flags = flags;
        e.domid = domid;
    }
    fn flags(&self, gref: GrantRef) -> u16 {
        self.entries[gref as usize].flags
    }
}

/// Linux `gnttab_grant_foreign_access_ref`: domid and frame, then flags.
fn grant(t: &mut Table, gref: GrantRef, to: DomId, gfn: u32, readonly: bool) {
    let e = &mut t.entries[gref as usize];
    e.domid = to;
    e.frame = gfn;
    e.flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
}

/// Linux `gnttab_end_foreign_access_ref_v1`, through the same trait: clear
/// the flags with a cmpxchg, refusing while the hypervisor has it in use.
fn end_access(t: &mut Table, gref: GrantRef) -> bool {
    let mut cur = t.read_header(gref);
    loop {
        let (flags, domid) = split_header(cur);
        if flags & (GTF_READING | GTF_WRITING) != 0 {
            return false;
        }
        let prev = t.cmpxchg_header(gref, cur, header(0, domid));
        if prev == cur {
            return true;
        }
        cur = prev;
    }
}

/// RAM gfn 0..pages at `base`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ram {
    base: u64,
    pages: u64,
}

impl GuestFrames for Ram {
    fn ram_frame(&self, gfn: u64) -> Option<u64> {
        (gfn < self.pages).then(|| self.base + gfn * PAGE_SIZE)
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Dom {
    id: DomId,
    table: Table,
    ram: Ram,
    active: ActiveGrants,
    maptrack: Maptrack,
    life: Life,
    /// Its RAM went back to the allocator.
    freed: bool,
    /// Its second-level grant mappings: gpfn → (host frame, writable).
    p2m: BTreeMap<u64, (u64, bool)>,
}

impl Dom {
    fn new(id: DomId, handles: usize) -> Self {
        Self {
            id,
            table: Table::new(NR),
            ram: Ram {
                base: 0x1000_0000 * (u64::from(id) + 1),
                pages: RAM_PAGES,
            },
            active: ActiveGrants::new(),
            maptrack: Maptrack::new(handles),
            life: Life::Running,
            freed: false,
            p2m: BTreeMap::new(),
        }
    }
    fn granter(&mut self) -> Granter<'_, Table, Ram> {
        Granter {
            domid: self.id,
            entries: &mut self.table,
            frames: &self.ram,
            active: &mut self.active,
        }
    }
    fn hpa(&self, gfn: u64) -> u64 {
        self.ram.ram_frame(gfn).unwrap()
    }
}

#[derive(Clone, Debug, PartialEq)]
struct World {
    doms: Vec<Dom>,
    moves: Vec<(u64, u16, u64, u16, u16)>,
    /// Second-level maps fail (no frame for a table).
    fail_map_page: bool,
}

impl World {
    fn new(handles: usize) -> Self {
        Self {
            doms: (0..3).map(|id| Dom::new(id, handles)).collect(),
            moves: Vec::new(),
            fail_map_page: false,
        }
    }

    /// The world as domain `me`'s hypercalls see it.
    fn at(&mut self, me: DomId) -> As<'_> {
        As { w: self, me }
    }

    /// `GNTTABOP_map_grant_ref` by `m` of `gref` of `g`, second-level map included.
    fn map_op(
        &mut self,
        m: DomId,
        g: DomId,
        gref: GrantRef,
        flags: u32,
        addr: u64,
    ) -> GntResult<Mapped> {
        let req = MapRequest {
            gref,
            flags,
            host_addr: addr,
        };
        map(&mut self.at(m), g, req)
    }

    /// `GNTTABOP_unmap_grant_ref` by `m`.
    fn unmap_op(
        &mut self,
        m: DomId,
        handle: GrantHandle,
        addr: u64,
    ) -> GntResult<Option<Unmapped>> {
        let req = UnmapRequest {
            handle,
            host_addr: addr,
            dev_bus_addr: 0,
        };
        unmap(&mut self.at(m), req)
    }

    /// Domain `d` ends (crash or shutdown) and its grant mappings are released.
    fn die(&mut self, d: DomId) {
        self.doms[d as usize].life = Life::Ended;
        release_mappings(&mut self.at(d));
    }

    /// The mapper's maptrack and the granter, which may be the same domain.
    fn parts(&mut self, m: DomId, g: DomId) -> (&mut Maptrack, Granter<'_, Table, Ram>) {
        let (m, g) = (m as usize, g as usize);
        if m == g {
            let d = &mut self.doms[m];
            let granter = Granter {
                domid: d.id,
                entries: &mut d.table,
                frames: &d.ram,
                active: &mut d.active,
            };
            return (&mut d.maptrack, granter);
        }
        let (md, gd) = if m < g {
            let (l, r) = self.doms.split_at_mut(g);
            (&mut l[m], &mut r[0])
        } else {
            let (l, r) = self.doms.split_at_mut(m);
            (&mut r[0], &mut l[g])
        };
        (&mut md.maptrack, gd.granter())
    }

    fn map(
        &mut self,
        m: DomId,
        g: DomId,
        gref: GrantRef,
        flags: u32,
        addr: u64,
    ) -> GntResult<Mapped> {
        let (mt, mut granter) = self.parts(m, g);
        let req = MapRequest {
            gref,
            flags,
            host_addr: addr,
        };
        map_grant_ref(mt, m, &mut granter, req)
    }

    fn unmap_full(
        &mut self,
        m: DomId,
        g: DomId,
        handle: GrantHandle,
        addr: u64,
        bus: u64,
    ) -> GntResult<Option<Unmapped>> {
        let (mt, mut granter) = self.parts(m, g);
        let req = UnmapRequest {
            handle,
            host_addr: addr,
            dev_bus_addr: bus,
        };
        unmap_grant_ref(mt, &mut granter, req)
    }

    fn unmap(
        &mut self,
        m: DomId,
        g: DomId,
        handle: GrantHandle,
        addr: u64,
    ) -> GntResult<Option<Unmapped>> {
        self.unmap_full(m, g, handle, addr, 0)
    }

    fn table(&mut self, d: DomId) -> &mut Table {
        &mut self.doms[d as usize].table
    }

    fn flags(&self, d: DomId, gref: GrantRef) -> u16 {
        self.doms[d as usize].table.flags(gref)
    }
}

/// Lends granter `g` (and mapper `m`'s maptrack) as the kernel does: as trait objects.
fn lend(w: &mut World, m: DomId, g: DomId, f: &mut dyn FnMut(&mut Maptrack, &mut DynGranter<'_>)) {
    let (mt, g) = w.parts(m, g);
    let mut g: DynGranter<'_> = Granter {
        domid: g.domid,
        entries: g.entries,
        frames: g.frames,
        active: g.active,
    };
    f(mt, &mut g);
}

/// The world seen by domain `me`, as `Domains`.
struct As<'a> {
    w: &'a mut World,
    me: DomId,
}

impl Domains for As<'_> {
    fn caller(&self) -> DomId {
        self.me
    }
    fn life(&mut self, domid: DomId) -> Option<Life> {
        self.w.doms.get(domid as usize).map(|d| d.life)
    }
    fn maptrack(&mut self) -> &mut Maptrack {
        &mut self.w.doms[self.me as usize].maptrack
    }
    fn with_granter(
        &mut self,
        granter: DomId,
        f: &mut dyn FnMut(&mut Maptrack, &mut DynGranter<'_>),
    ) -> bool {
        if usize::from(granter) >= self.w.doms.len() {
            return false;
        }
        lend(self.w, self.me, granter, f);
        true
    }
    fn map_page(&mut self, gpa: u64, hpa: u64, writable: bool) -> bool {
        if self.w.fail_map_page {
            return false;
        }
        let p2m = &mut self.w.doms[self.me as usize].p2m;
        assert!(
            p2m.insert(gpa / PAGE_SIZE, (hpa, writable)).is_none(),
            "a grant mapping replaced"
        );
        true
    }
    fn unmap_page(&mut self, gpa: u64) {
        let p2m = &mut self.w.doms[self.me as usize].p2m;
        assert!(
            p2m.remove(&(gpa / PAGE_SIZE)).is_some(),
            "unmapped a page not mapped"
        );
    }
    fn free_memory(&mut self, domid: DomId) {
        let d = &mut self.w.doms[domid as usize];
        assert_eq!(d.life, Life::Ended, "d{domid} freed while running");
        assert!(!d.freed, "d{domid} freed twice");
        assert!(d.active.is_empty(), "d{domid} freed while pinned");
        d.freed = true;
    }
}

impl CopyDomains for World {
    fn with_granter(&mut self, domid: DomId, f: &mut dyn FnMut(&mut DynGranter<'_>)) -> bool {
        // Ended domains are out of reach of copies, as in the kernel.
        match self
            .doms
            .iter_mut()
            .find(|d| d.id == domid && d.life == Life::Running)
        {
            Some(d) => {
                let g = d.granter();
                let mut g: DynGranter<'_> = Granter {
                    domid: g.domid,
                    entries: g.entries,
                    frames: g.frames,
                    active: g.active,
                };
                f(&mut g);
                true
            }
            None => false,
        }
    }
    fn copy_bytes(&mut self, src_hpa: u64, src_off: u16, dst_hpa: u64, dst_off: u16, len: u16) {
        self.moves.push((src_hpa, src_off, dst_hpa, dst_off, len));
    }
}

const PAGE: u64 = 0x8000_0000;

/// The front end grants `gref` (gfn 3) to the backend; returns the world.
fn granted(readonly: bool) -> World {
    let mut w = World::new(8);
    grant(w.table(FRONT), 8, BACKEND, 3, readonly);
    w
}

fn both() -> u16 {
    GTF_READING | GTF_WRITING
}

// ---- map_grant_ref ----

#[test]
fn writable_map_sets_reading_and_writing_and_returns_the_frame() {
    let mut w = granted(false);
    let m = w.map(BACKEND, FRONT, 8, RW, PAGE).unwrap();
    assert_eq!(m.handle, 0);
    assert_eq!(m.hpa, w.doms[1].hpa(3));
    assert_eq!(m.gpa, PAGE);
    assert!(m.writable);
    assert_eq!(w.flags(FRONT, 8), GTF_PERMIT_ACCESS | both());
    let a = *w.doms[1].active.get(8).unwrap();
    assert_eq!((a.mapper, a.gfn, a.readers, a.writers), (BACKEND, 3, 0, 1));
}

#[test]
fn readonly_map_sets_only_reading() {
    let mut w = granted(false);
    let m = w.map(BACKEND, FRONT, 8, RO, PAGE + 0x123).unwrap();
    assert!(!m.writable);
    assert_eq!(m.gpa, PAGE, "host_addr's page is used");
    assert_eq!(w.flags(FRONT, 8), GTF_PERMIT_ACCESS | GTF_READING);
}

/// Asserts `f` fails with `status` and changes nothing.
fn fails_unchanged(w: &mut World, status: Status, f: impl FnOnce(&mut World) -> Status) {
    let before = w.clone();
    assert_eq!(f(w), status);
    assert_eq!(*w, before);
}

fn map_status(w: &mut World, m: DomId, g: DomId, gref: GrantRef, flags: u32, addr: u64) -> Status {
    w.map(m, g, gref, flags, addr)
        .map_or_else(|e| e, |_| GNTST_OKAY)
}

#[test]
fn map_without_host_map_is_bad_gntref() {
    let mut w = granted(false);
    for flags in [0, GNTMAP_READONLY, 1 << 16] {
        fails_unchanged(&mut w, GNTST_BAD_GNTREF, |w| {
            map_status(w, BACKEND, FRONT, 8, flags, PAGE)
        });
    }
}

#[test]
fn device_application_and_pte_maps_are_general_errors_for_a_pvh_mapper() {
    let mut w = granted(false);
    for extra in [
        GNTMAP_DEVICE_MAP,
        GNTMAP_APPLICATION_MAP,
        GNTMAP_CONTAINS_PTE,
    ] {
        fails_unchanged(&mut w, GNTST_GENERAL_ERROR, |w| {
            map_status(w, BACKEND, FRONT, 8, RW | extra, PAGE)
        });
    }
    fails_unchanged(&mut w, GNTST_GENERAL_ERROR, |w| {
        map_status(w, BACKEND, FRONT, 8, GNTMAP_DEVICE_MAP, PAGE)
    });
}

#[test]
fn ref_beyond_the_table_is_bad_gntref() {
    let mut w = granted(false);
    for gref in [NR, NR + 1, u32::MAX] {
        fails_unchanged(&mut w, GNTST_BAD_GNTREF, |w| {
            map_status(w, BACKEND, FRONT, gref, RW, PAGE)
        });
    }
}

#[test]
fn entry_not_permit_access_is_general_error() {
    let mut w = granted(false);
    for ty in [
        GTF_INVALID,
        GTF_ACCEPT_TRANSFER,
        3,
        GTF_PERMIT_ACCESS | GTF_SUB_PAGE,
    ] {
        w.table(FRONT).entries[8].flags = ty;
        fails_unchanged(&mut w, GNTST_GENERAL_ERROR, |w| {
            map_status(w, BACKEND, FRONT, 8, RO, PAGE)
        });
    }
}

#[test]
fn entry_for_another_domain_is_general_error() {
    let mut w = granted(false);
    fails_unchanged(&mut w, GNTST_GENERAL_ERROR, |w| {
        map_status(w, OTHER, FRONT, 8, RO, PAGE)
    });
    // Not even the granter itself may map a grant meant for the backend.
    fails_unchanged(&mut w, GNTST_GENERAL_ERROR, |w| {
        map_status(w, FRONT, FRONT, 8, RO, PAGE)
    });
}

#[test]
fn readonly_grant_is_never_mapped_writable() {
    let mut w = granted(true);
    fails_unchanged(&mut w, GNTST_GENERAL_ERROR, |w| {
        map_status(w, BACKEND, FRONT, 8, RW, PAGE)
    });
    let m = w.map(BACKEND, FRONT, 8, RO, PAGE).unwrap();
    assert!(!m.writable);
    // Pinned read-only now: a writable map still re-checks GTF_readonly.
    fails_unchanged(&mut w, GNTST_GENERAL_ERROR, |w| {
        map_status(w, BACKEND, FRONT, 8, RW, PAGE + PAGE_SIZE)
    });
}

#[test]
fn frame_outside_the_granters_ram_is_bad_page() {
    let mut w = World::new(8);
    grant(w.table(FRONT), 8, BACKEND, RAM_PAGES as u32, false);
    fails_unchanged(&mut w, GNTST_BAD_PAGE, |w| {
        map_status(w, BACKEND, FRONT, 8, RW, PAGE)
    });
    fails_unchanged(&mut w, GNTST_BAD_PAGE, |w| {
        map_status(w, BACKEND, FRONT, 8, RO, PAGE)
    });
}

#[test]
fn full_maptrack_is_no_space_and_an_unmap_frees_a_handle() {
    let mut w = World::new(3);
    for gref in 8..12 {
        grant(w.table(FRONT), gref, BACKEND, gref - 8, false);
    }
    let handles: Vec<_> = (0..3)
        .map(|i| {
            w.map(BACKEND, FRONT, 8 + i, RW, PAGE + u64::from(i) * PAGE_SIZE)
                .unwrap()
                .handle
        })
        .collect();
    assert_eq!(handles, [0, 1, 2]);
    fails_unchanged(&mut w, GNTST_NO_SPACE, |w| {
        map_status(w, BACKEND, FRONT, 11, RW, PAGE + 3 * PAGE_SIZE)
    });
    w.unmap(BACKEND, FRONT, 1, PAGE + PAGE_SIZE).unwrap();
    let m = w.map(BACKEND, FRONT, 11, RW, PAGE + 3 * PAGE_SIZE).unwrap();
    assert_eq!(m.handle, 1);
}

#[test]
fn no_space_comes_before_the_ref_checks() {
    let mut w = World::new(0);
    fails_unchanged(&mut w, GNTST_NO_SPACE, |w| {
        map_status(w, BACKEND, FRONT, NR, RW, PAGE)
    });
}

#[test]
fn cache_attributes_are_general_error() {
    for attr in [GTF_PWT, GTF_PCD, GTF_PAT] {
        let mut w = granted(false);
        w.table(FRONT).entries[8].flags |= attr;
        fails_unchanged(&mut w, GNTST_GENERAL_ERROR, |w| {
            map_status(w, BACKEND, FRONT, 8, RW, PAGE)
        });
    }
}

#[test]
fn host_addr_already_holding_a_grant_is_general_error() {
    let mut w = granted(false);
    grant(w.table(FRONT), 9, BACKEND, 4, false);
    w.map(BACKEND, FRONT, 8, RO, PAGE).unwrap();
    fails_unchanged(&mut w, GNTST_GENERAL_ERROR, |w| {
        map_status(w, BACKEND, FRONT, 9, RW, PAGE + 8)
    });
    // The same ref again at the same page: also refused, pins unchanged.
    fails_unchanged(&mut w, GNTST_GENERAL_ERROR, |w| {
        map_status(w, BACKEND, FRONT, 8, RO, PAGE)
    });
}

#[test]
fn a_pinned_ref_belongs_to_its_mapper_until_the_last_pin_goes() {
    let mut w = granted(false);
    w.map(BACKEND, FRONT, 8, RO, PAGE).unwrap();
    // The guest re-grants the entry to another domain, keeping the hypervisor's bits.
    let e = &mut w.table(FRONT).entries[8];
    e.domid = OTHER;
    fails_unchanged(&mut w, GNTST_GENERAL_ERROR, |w| {
        map_status(w, OTHER, FRONT, 8, RO, PAGE)
    });
    // Its mapper can still add pins: Xen checks the active entry, not the shared one.
    w.map(BACKEND, FRONT, 8, RO, PAGE + PAGE_SIZE).unwrap();
    assert_eq!(w.doms[1].active.get(8).unwrap().readers, 2);
}

#[test]
fn the_frame_is_fixed_at_the_first_pin() {
    let mut w = granted(false);
    let first = w.map(BACKEND, FRONT, 8, RW, PAGE).unwrap();
    w.table(FRONT).entries[8].frame = 5;
    let second = w.map(BACKEND, FRONT, 8, RW, PAGE + PAGE_SIZE).unwrap();
    assert_eq!(second.hpa, first.hpa);
    assert_ne!(second.hpa, w.doms[1].hpa(5));
}

#[test]
fn writable_pin_on_a_read_pinned_ref_sets_writing_and_its_unmap_clears_only_writing() {
    let mut w = granted(false);
    let r = w.map(BACKEND, FRONT, 8, RO, PAGE).unwrap();
    let rw = w.map(BACKEND, FRONT, 8, RW, PAGE + PAGE_SIZE).unwrap();
    assert_eq!(w.flags(FRONT, 8), GTF_PERMIT_ACCESS | both());
    w.unmap(BACKEND, FRONT, rw.handle, rw.gpa).unwrap();
    assert_eq!(w.flags(FRONT, 8), GTF_PERMIT_ACCESS | GTF_READING);
    w.unmap(BACKEND, FRONT, r.handle, r.gpa).unwrap();
    assert_eq!(w.flags(FRONT, 8), GTF_PERMIT_ACCESS);
    assert!(w.doms[1].active.get(8).is_none());
}

#[test]
fn flags_stay_until_the_last_of_several_pins() {
    let mut w = granted(false);
    let maps: Vec<_> = (0..3)
        .map(|i| w.map(BACKEND, FRONT, 8, RW, PAGE + i * PAGE_SIZE).unwrap())
        .collect();
    for (i, m) in maps.iter().enumerate() {
        assert_eq!(w.flags(FRONT, 8) & both(), both());
        let u = w.unmap(BACKEND, FRONT, m.handle, m.gpa).unwrap().unwrap();
        assert!(u.flush_tlb);
        let left = maps.len() - 1 - i;
        assert_eq!(
            w.flags(FRONT, 8) & both(),
            if left > 0 { both() } else { 0 }
        );
    }
}

#[test]
fn pin_counts_stop_at_the_limit() {
    let mut w = World::new(200);
    grant(w.table(FRONT), 8, BACKEND, 3, false);
    for i in 0..u64::from(PIN_LIMIT) {
        w.map(BACKEND, FRONT, 8, RO, PAGE + i * PAGE_SIZE).unwrap();
    }
    fails_unchanged(&mut w, GNTST_GENERAL_ERROR, |w| {
        map_status(w, BACKEND, FRONT, 8, RO, 0x1_0000_0000)
    });
    // Readers at the limit also stop writers (Xen checks all counters).
    fails_unchanged(&mut w, GNTST_GENERAL_ERROR, |w| {
        map_status(w, BACKEND, FRONT, 8, RW, 0x1_0000_0000)
    });
}

#[test]
fn full_active_table_is_no_space() {
    let mut w = World::new(8);
    w.doms[1].table = Table::new(MAX_ACTIVE as u32 + 1);
    for gref in 0..=MAX_ACTIVE as u32 {
        grant(w.table(FRONT), gref, BACKEND, 0, true);
    }
    for gref in 0..MAX_ACTIVE as u32 {
        let mut g = w.doms[1].granter();
        pin(&mut g, gref, BACKEND, false, true).unwrap();
    }
    fails_unchanged(&mut w, GNTST_NO_SPACE, |w| {
        map_status(w, BACKEND, FRONT, MAX_ACTIVE as u32, RO, PAGE)
    });
}

// ---- the cmpxchg loop against a racing guest ----

#[test]
fn a_harmless_race_is_retried() {
    let mut w = granted(false);
    // The guest sets GTF_readonly just before our cmpxchg: still fine for a read-only map.
    let raced = header(GTF_PERMIT_ACCESS | GTF_READONLY, BACKEND);
    w.table(FRONT).races.push_back(raced);
    w.map(BACKEND, FRONT, 8, RO, PAGE).unwrap();
    assert_eq!(
        w.flags(FRONT, 8),
        GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING
    );
}

#[test]
fn a_race_making_the_entry_readonly_fails_a_writable_map() {
    let mut w = granted(false);
    let raced = header(GTF_PERMIT_ACCESS | GTF_READONLY, BACKEND);
    w.table(FRONT).races.push_back(raced);
    assert_eq!(
        map_status(&mut w, BACKEND, FRONT, 8, RW, PAGE),
        GNTST_GENERAL_ERROR
    );
    assert_eq!(w.flags(FRONT, 8), GTF_PERMIT_ACCESS | GTF_READONLY);
    assert!(w.doms[1].active.get(8).is_none());
}

#[test]
fn a_race_revoking_or_regranting_the_entry_fails_the_map() {
    for raced in [header(0, BACKEND), header(GTF_PERMIT_ACCESS, OTHER)] {
        let mut w = granted(false);
        w.table(FRONT).races.push_back(raced);
        assert_eq!(
            map_status(&mut w, BACKEND, FRONT, 8, RW, PAGE),
            GNTST_GENERAL_ERROR
        );
        assert_eq!(
            w.table(FRONT).read_header(8),
            raced,
            "the guest's write stands"
        );
        assert!(w.doms[0].maptrack.get(0).is_none());
    }
}

#[test]
fn an_entry_changing_on_every_try_is_unstable() {
    let flip = |i: u16| {
        header(
            GTF_PERMIT_ACCESS | if i.is_multiple_of(2) { GTF_READONLY } else { 0 },
            BACKEND,
        )
    };
    let mut w = granted(false);
    w.table(FRONT)
        .races
        .extend((0..SET_STATUS_TRIES as u16).map(flip));
    assert_eq!(
        map_status(&mut w, BACKEND, FRONT, 8, RO, PAGE),
        GNTST_GENERAL_ERROR
    );
    assert_eq!(w.flags(FRONT, 8) & both(), 0);
    // One race fewer and the last try succeeds.
    let mut w = granted(false);
    w.table(FRONT)
        .races
        .extend((0..SET_STATUS_TRIES as u16 - 1).map(flip));
    w.map(BACKEND, FRONT, 8, RO, PAGE).unwrap();
}

// ---- unmap_grant_ref ----

#[test]
fn unmap_reports_what_to_unmap() {
    let mut w = granted(false);
    let m = w.map(BACKEND, FRONT, 8, RW, PAGE).unwrap();
    let u = w
        .unmap_full(BACKEND, FRONT, m.handle, PAGE + 7, m.hpa)
        .unwrap()
        .unwrap();
    let want = Unmapped {
        granter: FRONT,
        gref: 8,
        gpa: PAGE,
        hpa: m.hpa,
        writable: true,
        flush_tlb: true,
    };
    assert_eq!(u, want);
    assert!(w.doms[0].maptrack.get(m.handle).is_none());
    assert_eq!(w.flags(FRONT, 8), GTF_PERMIT_ACCESS);
}

fn unmap_status(w: &mut World, g: DomId, handle: GrantHandle, addr: u64, bus: u64) -> Status {
    w.unmap_full(BACKEND, g, handle, addr, bus)
        .map_or_else(|e| e, |_| GNTST_OKAY)
}

#[test]
fn unknown_handles_are_bad_handle() {
    let mut w = granted(false);
    let m = w.map(BACKEND, FRONT, 8, RW, PAGE).unwrap();
    for h in [1, 7, MAPTRACK_HANDLES as u32, u32::MAX] {
        fails_unchanged(&mut w, GNTST_BAD_HANDLE, |w| {
            unmap_status(w, FRONT, h, PAGE, 0)
        });
    }
    // A live handle named with the wrong granter.
    fails_unchanged(&mut w, GNTST_BAD_HANDLE, |w| {
        unmap_status(w, OTHER, m.handle, PAGE, 0)
    });
    w.unmap(BACKEND, FRONT, m.handle, PAGE).unwrap();
    // A freed handle.
    fails_unchanged(&mut w, GNTST_BAD_HANDLE, |w| {
        unmap_status(w, FRONT, m.handle, PAGE, 0)
    });
}

#[test]
fn wrong_addresses_are_general_errors() {
    let mut w = granted(false);
    let m = w.map(BACKEND, FRONT, 8, RW, PAGE).unwrap();
    fails_unchanged(&mut w, GNTST_GENERAL_ERROR, |w| {
        unmap_status(w, FRONT, m.handle, PAGE + PAGE_SIZE, 0)
    });
    fails_unchanged(&mut w, GNTST_GENERAL_ERROR, |w| {
        unmap_status(w, FRONT, m.handle, PAGE, m.hpa + PAGE_SIZE)
    });
}

#[test]
fn unmap_at_host_addr_zero_does_nothing_and_succeeds() {
    let mut w = granted(false);
    let m = w.map(BACKEND, FRONT, 8, RW, PAGE).unwrap();
    let before = w.clone();
    assert_eq!(w.unmap(BACKEND, FRONT, m.handle, 0), Ok(None));
    assert_eq!(w, before);
}

#[test]
fn mapper_may_map_its_own_grant() {
    let mut w = World::new(4);
    grant(w.table(FRONT), 8, FRONT, 2, false);
    let m = w.map(FRONT, FRONT, 8, RW, PAGE).unwrap();
    assert_eq!(m.hpa, w.doms[1].hpa(2));
    w.unmap(FRONT, FRONT, m.handle, PAGE).unwrap();
    assert_eq!(w.flags(FRONT, 8), GTF_PERMIT_ACCESS);
}

// ---- revocation from the granter's side ----

#[test]
fn granter_cannot_revoke_while_mapped() {
    let mut w = granted(false);
    let m = w.map(BACKEND, FRONT, 8, RO, PAGE).unwrap();
    assert!(!end_access(w.table(FRONT), 8));
    assert_eq!(w.flags(FRONT, 8), GTF_PERMIT_ACCESS | GTF_READING);
    w.unmap(BACKEND, FRONT, m.handle, PAGE).unwrap();
    assert!(end_access(w.table(FRONT), 8));
    assert_eq!(w.flags(FRONT, 8), 0);
    fails_unchanged(&mut w, GNTST_GENERAL_ERROR, |w| {
        map_status(w, BACKEND, FRONT, 8, RO, PAGE)
    });
}

#[test]
fn a_revoke_racing_a_map_loses_to_the_pin_or_wins_before_it() {
    let mut w = granted(false);
    // Revoked first: the map fails.
    assert!(end_access(w.table(FRONT), 8));
    assert_eq!(
        map_status(&mut w, BACKEND, FRONT, 8, RW, PAGE),
        GNTST_GENERAL_ERROR
    );
    // Pinned first: the revoke's cmpxchg sees GTF_reading and gives up.
    grant(w.table(FRONT), 8, BACKEND, 3, false);
    w.map(BACKEND, FRONT, 8, RW, PAGE).unwrap();
    assert!(!end_access(w.table(FRONT), 8));
}

// ---- copy ----

fn gref_ptr(domid: DomId, gref: GrantRef, offset: u16) -> GnttabCopyPtr {
    GnttabCopyPtr {
        u: u64::from(gref),
        domid,
        offset,
        pad: 0,
    }
}

fn gmfn_ptr(gmfn: u64, offset: u16) -> GnttabCopyPtr {
    GnttabCopyPtr {
        u: gmfn,
        domid: DOMID_SELF,
        offset,
        pad: 0,
    }
}

fn copy_op(source: GnttabCopyPtr, dest: GnttabCopyPtr, len: u16, flags: u16) -> GnttabCopy {
    GnttabCopy {
        source,
        dest,
        len,
        flags,
        status: 1,
        pad: 0,
    }
}

/// Runs one copy by the backend; asserts it leaves no pins behind.
fn copy1(w: &mut World, op: GnttabCopy) -> Status {
    let doms = w.doms.clone();
    let mut ops = [op];
    copy(w, BACKEND, &mut ops);
    assert_eq!(w.doms, doms, "a copy leaves no state behind");
    ops[0].status
}

#[test]
fn copy_from_a_grant_to_a_local_frame() {
    let mut w = granted(true);
    let op = copy_op(
        gref_ptr(FRONT, 8, 100),
        gmfn_ptr(2, 200),
        300,
        GNTCOPY_SOURCE_GREF,
    );
    assert_eq!(copy1(&mut w, op), GNTST_OKAY);
    assert_eq!(
        w.moves,
        [(w.doms[1].hpa(3), 100, w.doms[0].hpa(2), 200, 300)]
    );
}

#[test]
fn copy_to_a_grant_needs_a_writable_grant() {
    let mut w = granted(true);
    let op = copy_op(
        gmfn_ptr(2, 0),
        gref_ptr(FRONT, 8, 0),
        4096,
        GNTCOPY_DEST_GREF,
    );
    assert_eq!(copy1(&mut w, op), GNTST_GENERAL_ERROR);
    assert!(w.moves.is_empty());
    let mut w = granted(false);
    assert_eq!(copy1(&mut w, op), GNTST_OKAY);
    assert_eq!(w.moves, [(w.doms[0].hpa(2), 0, w.doms[1].hpa(3), 0, 4096)]);
}

#[test]
fn copy_pins_transiently() {
    struct Spy<'a>(&'a mut World, Vec<u16>);
    impl CopyDomains for Spy<'_> {
        fn with_granter(&mut self, domid: DomId, f: &mut dyn FnMut(&mut DynGranter<'_>)) -> bool {
            self.0.with_granter(domid, f)
        }
        fn copy_bytes(&mut self, _: u64, _: u16, _: u64, _: u16, _: u16) {
            self.1.push(self.0.flags(FRONT, 8));
        }
    }
    let mut w = granted(false);
    let mut spy = Spy(&mut w, Vec::new());
    let mut ops = [copy_op(
        gmfn_ptr(1, 0),
        gref_ptr(FRONT, 8, 0),
        8,
        GNTCOPY_DEST_GREF,
    )];
    copy(&mut spy, BACKEND, &mut ops);
    assert_eq!(spy.1, [GTF_PERMIT_ACCESS | both()]);
    assert_eq!(w.flags(FRONT, 8), GTF_PERMIT_ACCESS);
}

#[test]
fn local_frame_must_be_named_domid_self() {
    let mut w = granted(false);
    let mut src = gmfn_ptr(1, 0);
    src.domid = BACKEND; // the caller's own numeric id is not DOMID_SELF
    let op = copy_op(src, gref_ptr(FRONT, 8, 0), 8, GNTCOPY_DEST_GREF);
    assert_eq!(copy1(&mut w, op), GNTST_PERMISSION_DENIED);
    let mut dst = gmfn_ptr(1, 0);
    dst.domid = FRONT;
    let op = copy_op(gref_ptr(FRONT, 8, 0), dst, 8, GNTCOPY_SOURCE_GREF);
    assert_eq!(copy1(&mut w, op), GNTST_PERMISSION_DENIED);
}

#[test]
fn copy_statuses() {
    let mut w = granted(false);
    w.table(FRONT).entries[9] = GrantEntryV1 {
        flags: GTF_PERMIT_ACCESS,
        domid: BACKEND,
        frame: 99,
    };
    let src = GNTCOPY_SOURCE_GREF;
    let cases = [
        (
            copy_op(gref_ptr(7, 8, 0), gmfn_ptr(1, 0), 8, src),
            GNTST_BAD_DOMAIN,
        ),
        (
            copy_op(gref_ptr(FRONT, NR, 0), gmfn_ptr(1, 0), 8, src),
            GNTST_BAD_GNTREF,
        ),
        (
            copy_op(gref_ptr(FRONT, 9, 0), gmfn_ptr(1, 0), 8, src),
            GNTST_BAD_PAGE,
        ),
        (
            copy_op(gref_ptr(FRONT, 8, 0), gmfn_ptr(RAM_PAGES, 0), 8, src),
            GNTST_BAD_PAGE,
        ),
        (
            copy_op(gref_ptr(OTHER, 8, 0), gmfn_ptr(1, 0), 8, src),
            GNTST_GENERAL_ERROR,
        ),
        (
            copy_op(gref_ptr(FRONT, 8, 4000), gmfn_ptr(1, 0), 97, src),
            GNTST_BAD_COPY_ARG,
        ),
        (
            copy_op(gref_ptr(FRONT, 8, 0), gmfn_ptr(1, 4095), 2, src),
            GNTST_BAD_COPY_ARG,
        ),
        (
            copy_op(gref_ptr(FRONT, 8, 4000), gmfn_ptr(1, 0), 96, src),
            GNTST_OKAY,
        ),
        (copy_op(gmfn_ptr(1, 0), gmfn_ptr(2, 0), 4096, 0), GNTST_OKAY),
        (
            copy_op(
                gref_ptr(FRONT, 8, 0),
                gref_ptr(FRONT, 8, 8),
                8,
                src | GNTCOPY_DEST_GREF,
            ),
            GNTST_OKAY,
        ),
    ];
    for (op, want) in cases {
        assert_eq!(copy1(&mut w, op), want, "{op:?}");
    }
}

#[test]
fn copy_may_use_a_sub_page_entry_but_map_may_not() {
    let mut w = granted(false);
    w.table(FRONT).entries[8].flags |= GTF_SUB_PAGE;
    let op = copy_op(
        gref_ptr(FRONT, 8, 0),
        gmfn_ptr(1, 0),
        8,
        GNTCOPY_SOURCE_GREF,
    );
    assert_eq!(copy1(&mut w, op), GNTST_OKAY);
    assert_eq!(
        map_status(&mut w, BACKEND, FRONT, 8, RO, PAGE),
        GNTST_GENERAL_ERROR
    );
}

#[test]
fn copy_of_a_mapped_ref_keeps_the_mapping_pins() {
    let mut w = granted(false);
    w.map(BACKEND, FRONT, 8, RO, PAGE).unwrap();
    let op = copy_op(gmfn_ptr(1, 0), gref_ptr(FRONT, 8, 0), 8, GNTCOPY_DEST_GREF);
    assert_eq!(copy1(&mut w, op), GNTST_OKAY);
    assert_eq!(w.flags(FRONT, 8), GTF_PERMIT_ACCESS | GTF_READING);
    // A ref pinned by the backend cannot be copied by anyone else.
    let mut ops = [op];
    copy(&mut w, OTHER, &mut ops);
    assert_eq!(ops[0].status, GNTST_GENERAL_ERROR);
}

#[test]
fn a_failed_destination_releases_the_source() {
    let mut w = granted(false);
    grant(w.table(FRONT), 9, BACKEND, 4, true);
    let flags = GNTCOPY_SOURCE_GREF | GNTCOPY_DEST_GREF;
    let op = copy_op(gref_ptr(FRONT, 8, 0), gref_ptr(FRONT, 9, 0), 8, flags);
    assert_eq!(copy1(&mut w, op), GNTST_GENERAL_ERROR);
}

#[test]
fn a_batch_reports_each_op_and_goes_on_after_failures() {
    let mut w = granted(false);
    let good = copy_op(
        gref_ptr(FRONT, 8, 0),
        gmfn_ptr(1, 0),
        8,
        GNTCOPY_SOURCE_GREF,
    );
    let bad = copy_op(
        gref_ptr(FRONT, 3, 0),
        gmfn_ptr(1, 0),
        8,
        GNTCOPY_SOURCE_GREF,
    );
    let mut ops = [bad, good, bad, good];
    copy(&mut w, BACKEND, &mut ops);
    let statuses: Vec<_> = ops.iter().map(|o| o.status).collect();
    assert_eq!(
        statuses,
        [
            GNTST_GENERAL_ERROR,
            GNTST_OKAY,
            GNTST_GENERAL_ERROR,
            GNTST_OKAY
        ]
    );
    assert_eq!(w.moves.len(), 2);
}

// ---- map and unmap over domains (the hypercalls) ----

#[test]
fn map_op_maps_the_frame_in_the_mappers_second_level_tables() {
    let mut w = granted(false);
    let m = w.map_op(BACKEND, FRONT, 8, RW, PAGE).unwrap();
    assert_eq!(w.doms[0].p2m[&(PAGE / PAGE_SIZE)], (w.doms[1].hpa(3), true));
    w.unmap_op(BACKEND, m.handle, PAGE).unwrap().unwrap();
    assert!(w.doms[0].p2m.is_empty());
    assert_eq!(w.flags(FRONT, 8), GTF_PERMIT_ACCESS);
}

#[test]
fn map_op_checks_flags_before_the_domain() {
    // Xen map_grant_ref: a bad flag word is bad_gntref even for no domain.
    let mut w = granted(false);
    fails_unchanged(&mut w, GNTST_BAD_GNTREF, |w| {
        w.map_op(BACKEND, 9, 8, 0, PAGE).unwrap_err()
    });
    fails_unchanged(&mut w, GNTST_BAD_DOMAIN, |w| {
        w.map_op(BACKEND, 9, 8, RW, PAGE).unwrap_err()
    });
}

#[test]
fn a_failed_second_level_map_undoes_the_pin() {
    let mut w = granted(false);
    w.fail_map_page = true;
    fails_unchanged(&mut w, GNTST_GENERAL_ERROR, |w| {
        w.map_op(BACKEND, FRONT, 8, RW, PAGE).unwrap_err()
    });
}

#[test]
fn a_domain_maps_its_own_grant_by_its_id_but_not_by_domid_self() {
    // Xen map_grant_ref looks op->dom up with rcu_lock_domain_by_id, which
    // finds the caller by its id and nothing for DOMID_SELF.
    let mut w = World::new(4);
    grant(w.table(FRONT), 8, FRONT, 2, false);
    fails_unchanged(&mut w, GNTST_BAD_DOMAIN, |w| {
        w.map_op(FRONT, DOMID_SELF, 8, RW, PAGE).unwrap_err()
    });
    let m = w.map_op(FRONT, FRONT, 8, RW, PAGE).unwrap();
    assert_eq!(m.hpa, w.doms[1].hpa(2));
    assert_eq!(w.doms[1].p2m[&(PAGE / PAGE_SIZE)], (m.hpa, true));
    assert_eq!(w.flags(FRONT, 8), GTF_PERMIT_ACCESS | both());
    assert!(!end_access(w.table(FRONT), 8));
    w.unmap_op(FRONT, m.handle, PAGE).unwrap().unwrap();
    assert_eq!(w.flags(FRONT, 8), GTF_PERMIT_ACCESS);
    assert!(w.doms[1].p2m.is_empty());
}

#[test]
fn upgrading_a_read_pin_to_writable_rechecks_the_permit() {
    // Re-granted to another domain, or no longer permit_access, while the
    // backend holds a read pin: the writable map is refused as a first map
    // would be; read-only maps by the pin's holder still go on.
    for (flags, domid) in [
        (GTF_PERMIT_ACCESS | GTF_READING, OTHER),
        (GTF_INVALID | GTF_READING, BACKEND),
        (GTF_ACCEPT_TRANSFER | GTF_READING, BACKEND),
        (GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING, BACKEND),
    ] {
        let mut w = granted(false);
        w.map_op(BACKEND, FRONT, 8, RO, PAGE).unwrap();
        let e = &mut w.table(FRONT).entries[8];
        (e.flags, e.domid) = (flags, domid);
        fails_unchanged(&mut w, GNTST_GENERAL_ERROR, |w| {
            w.map_op(BACKEND, FRONT, 8, RW, PAGE + PAGE_SIZE)
                .unwrap_err()
        });
        let copy_in = copy_op(gmfn_ptr(1, 0), gref_ptr(FRONT, 8, 0), 8, GNTCOPY_DEST_GREF);
        assert_eq!(
            copy1(&mut w, copy_in),
            GNTST_GENERAL_ERROR,
            "{flags:#x} d{domid}"
        );
        w.map_op(BACKEND, FRONT, 8, RO, PAGE + PAGE_SIZE).unwrap();
    }
    // Still granted as it was: the upgrade goes through.
    let mut w = granted(false);
    w.map_op(BACKEND, FRONT, 8, RO, PAGE).unwrap();
    w.map_op(BACKEND, FRONT, 8, RW, PAGE + PAGE_SIZE).unwrap();
    assert_eq!(w.flags(FRONT, 8), GTF_PERMIT_ACCESS | both());
}

// ---- domain death ----

#[test]
fn a_dead_mappers_pins_flags_and_mappings_are_released() {
    let mut w = granted(false);
    grant(w.table(FRONT), 9, BACKEND, 4, true);
    grant(w.table(OTHER), 8, BACKEND, 1, false);
    w.map_op(BACKEND, FRONT, 8, RW, PAGE).unwrap();
    w.map_op(BACKEND, FRONT, 8, RO, PAGE + PAGE_SIZE).unwrap();
    w.map_op(BACKEND, FRONT, 9, RO, PAGE + 2 * PAGE_SIZE)
        .unwrap();
    w.map_op(BACKEND, OTHER, 8, RW, PAGE + 3 * PAGE_SIZE)
        .unwrap();
    w.die(BACKEND);
    assert_eq!(w.flags(FRONT, 8), GTF_PERMIT_ACCESS);
    assert_eq!(w.flags(FRONT, 9), GTF_PERMIT_ACCESS | GTF_READONLY);
    assert_eq!(w.flags(OTHER, 8), GTF_PERMIT_ACCESS);
    assert!(w.doms[1].active.is_empty() && w.doms[2].active.is_empty());
    assert_eq!(w.doms[0].maptrack.iter().count(), 0);
    assert!(w.doms[0].p2m.is_empty());
    // Nobody maps the backend's frames: its RAM goes; the granters' stays.
    assert!(w.doms[0].freed);
    assert!(!w.doms[1].freed && !w.doms[2].freed);
    // The front ends can take their pages back.
    assert!(end_access(w.table(FRONT), 8));
    assert!(end_access(w.table(OTHER), 8));
}

#[test]
fn a_dead_granters_mappings_stay_and_unmap_frees_its_ram_with_the_last() {
    let mut w = granted(false);
    grant(w.table(FRONT), 9, BACKEND, 4, false);
    let a = w.map_op(BACKEND, FRONT, 8, RW, PAGE).unwrap();
    let b = w.map_op(BACKEND, FRONT, 9, RO, PAGE + PAGE_SIZE).unwrap();
    w.die(FRONT);
    assert!(!w.doms[1].freed, "freed while the backend maps its frames");
    assert_eq!(w.doms[0].p2m.len(), 2);
    // No new pins on a dead domain.
    grant(w.table(FRONT), 10, BACKEND, 5, false);
    fails_unchanged(&mut w, GNTST_BAD_DOMAIN, |w| {
        w.map_op(BACKEND, FRONT, 10, RW, PAGE + 2 * PAGE_SIZE)
            .unwrap_err()
    });
    // The handles stay valid; the last unmap frees the dead domain's RAM.
    let u = w.unmap_op(BACKEND, a.handle, PAGE).unwrap().unwrap();
    assert_eq!((u.granter, u.gref, u.hpa), (FRONT, 8, w.doms[1].hpa(3)));
    assert!(!w.doms[1].freed);
    w.unmap_op(BACKEND, b.handle, PAGE + PAGE_SIZE)
        .unwrap()
        .unwrap();
    assert!(w.doms[1].freed);
    assert!(w.doms[0].p2m.is_empty());
    assert_eq!(w.flags(FRONT, 8), GTF_PERMIT_ACCESS);
}

#[test]
fn a_dead_granter_mapped_by_a_mapper_that_dies_is_freed_then() {
    let mut w = granted(false);
    w.map_op(BACKEND, FRONT, 8, RW, PAGE).unwrap();
    w.die(FRONT);
    assert!(!w.doms[1].freed);
    w.die(BACKEND);
    assert!(w.doms[0].freed && w.doms[1].freed);
    assert_eq!(w.flags(FRONT, 8), GTF_PERMIT_ACCESS);
}

#[test]
fn a_domain_that_mapped_its_own_grant_dies_cleanly() {
    let mut w = World::new(4);
    grant(w.table(FRONT), 8, FRONT, 2, false);
    w.map_op(FRONT, FRONT, 8, RW, PAGE).unwrap();
    w.die(FRONT);
    assert_eq!(w.flags(FRONT, 8), GTF_PERMIT_ACCESS);
    assert!(w.doms[1].active.is_empty() && w.doms[1].p2m.is_empty());
    assert!(w.doms[1].freed);
}

// ---- XENMEM_add_to_physmap of hypervisor pages ----

/// shared_info at GFN 1, grant frames 0 and 1 at 0x100 and 0x101, frame 2 nowhere.
fn placed() -> [(XenPage, Option<u64>); 4] {
    [
        (XenPage::SharedInfo, Some(1)),
        (XenPage::GrantFrame(0), Some(0x100)),
        (XenPage::GrantFrame(1), Some(0x101)),
        (XenPage::GrantFrame(2), None),
    ]
}

#[test]
fn moving_a_xen_page_unmaps_its_old_gfn() {
    let p = place_xen_page(placed(), XenPage::GrantFrame(0), 0x200, false).unwrap();
    assert_eq!(
        p,
        Placement {
            unmap_old: Some(0x100),
            displaced: None
        }
    );
    let p = place_xen_page(placed(), XenPage::SharedInfo, 7, false).unwrap();
    assert_eq!(p.unmap_old, Some(1));
}

#[test]
fn placing_a_xen_page_first_or_at_its_own_gfn_unmaps_nothing() {
    let p = place_xen_page(placed(), XenPage::GrantFrame(2), 0x102, false).unwrap();
    assert_eq!(p, Placement::default());
    let p = place_xen_page(placed(), XenPage::GrantFrame(1), 0x101, false).unwrap();
    assert_eq!(p, Placement::default());
}

#[test]
fn placing_over_another_xen_page_unhooks_it() {
    // Xen xenmem_add_to_physmap_one: "Special pages are simply unhooked".
    let p = place_xen_page(placed(), XenPage::GrantFrame(1), 1, false).unwrap();
    assert_eq!(
        p,
        Placement {
            unmap_old: Some(0x101),
            displaced: Some(XenPage::SharedInfo)
        }
    );
    let p = place_xen_page(placed(), XenPage::GrantFrame(2), 0x100, false).unwrap();
    assert_eq!(p.displaced, Some(XenPage::GrantFrame(0)));
}

#[test]
fn placing_over_a_grant_mapping_is_enxio() {
    // Xen: guest_remove_page's get_page(page, d) fails for the granter's page.
    for page in [
        XenPage::SharedInfo,
        XenPage::GrantFrame(0),
        XenPage::GrantFrame(2),
    ] {
        assert_eq!(place_xen_page(placed(), page, 0x300, true), Err(-ENXIO));
    }
}

// ---- guest arrays and XENMEM_memory_map ----

#[test]
fn memory_map_truncates_to_the_buffer() {
    // Xen arch_memory_op: nr_entries = min(nr_entries, nr_e820).
    assert_eq!(memory_map_count(2, 5), 2);
    assert_eq!(memory_map_count(0, 5), 0);
    assert_eq!(memory_map_count(5, 5), 5);
    assert_eq!(memory_map_count(u32::MAX, 5), 5);
}

#[test]
fn guest_arrays_ending_past_the_top_are_refused() {
    let top = u64::MAX;
    assert_eq!(guest_element(top - 19, 0, 20), Some(top - 19));
    assert_eq!(guest_element(top - 18, 0, 20), None);
    assert_eq!(guest_element(top - 39, 1, 20), Some(top - 19));
    assert_eq!(guest_element(top - 38, 1, 20), None);
    assert_eq!(guest_element(top - 7, 0, 8), Some(top - 7));
    assert_eq!(guest_element(top - 7, 1, 8), None);
    assert_eq!(guest_element(0, top, 8), None);
    assert_eq!(guest_element(8, top / 8, 8), None);
    assert_eq!(guest_element(0x1000, 31, 8), Some(0x1000 + 31 * 8));
    assert_eq!(guest_element(5, 0, 0), None, "no element has no size");
}

proptest! {
    #[test]
    fn guest_element_is_exact_arithmetic(
        base in prop_oneof![any::<u64>(), (u64::MAX - 4096..=u64::MAX)],
        index in prop_oneof![0..64u64, any::<u64>()],
        size in 1..64u64,
    ) {
        let at = u128::from(base) + u128::from(index) * u128::from(size);
        let fits = at + u128::from(size) - 1 <= u128::from(u64::MAX);
        prop_assert_eq!(guest_element(base, index, size), fits.then_some(at as u64));
    }
}

// ---- reserved refs ----

#[test]
fn seeding_grants_console_and_xenstore_to_their_backends() {
    let mut w = World::new(4);
    w.table(FRONT).entries[5] = GrantEntryV1 {
        flags: 1,
        domid: 9,
        frame: 9,
    };
    seed_reserved(w.table(FRONT), Some((BACKEND, 6)), Some((OTHER, 7))).unwrap();
    let e = &w.doms[1].table.entries;
    let want = |domid, frame| GrantEntryV1 {
        flags: GTF_PERMIT_ACCESS,
        domid,
        frame,
    };
    assert_eq!(e[GNTTAB_RESERVED_CONSOLE as usize], want(BACKEND, 6));
    assert_eq!(e[GNTTAB_RESERVED_XENSTORE as usize], want(OTHER, 7));
    assert!(e[2..8].iter().all(|e| *e == GrantEntryV1::default()));
    let m = w
        .map(OTHER, FRONT, GNTTAB_RESERVED_XENSTORE, RW, PAGE)
        .unwrap();
    assert_eq!(m.hpa, w.doms[1].hpa(7));
    fails_unchanged(&mut w, GNTST_GENERAL_ERROR, |w| {
        map_status(
            w,
            OTHER,
            FRONT,
            GNTTAB_RESERVED_CONSOLE,
            RW,
            PAGE + PAGE_SIZE,
        )
    });
}

#[test]
fn seeding_without_a_console_leaves_ref_0_invalid() {
    let mut t = Table::new(NR);
    seed_reserved(&mut t, None, Some((BACKEND, 1))).unwrap();
    assert_eq!(t.flags(0), GTF_INVALID);
    assert_eq!(t.flags(1), GTF_PERMIT_ACCESS);
}

#[test]
fn seeding_errors_write_nothing() {
    let mut t = Table::new(NR);
    t.entries[3].flags = GTF_PERMIT_ACCESS;
    let before = t.clone();
    let too_big = Some((BACKEND, 1u64 << 32));
    assert_eq!(
        seed_reserved(&mut t, too_big, None),
        Err(GNTST_ADDRESS_TOO_BIG)
    );
    assert_eq!(
        seed_reserved(&mut t, None, too_big),
        Err(GNTST_ADDRESS_TOO_BIG)
    );
    assert_eq!(t, before);
    let mut small = Table::new(7);
    assert_eq!(seed_reserved(&mut small, None, None), Err(GNTST_BAD_GNTREF));
}

#[test]
fn header_round_trips() {
    assert_eq!(split_header(header(0x1234, 0x7ff0)), (0x1234, 0x7ff0));
}

// ---- property test against a model ----

const DOMS: u16 = 3;
const HANDLES: usize = 3;

#[derive(Clone, Copy, Debug)]
enum Side {
    Gref { dom: DomId, gref: GrantRef },
    Frame { gmfn: u64 },
}

#[derive(Clone, Debug)]
enum Op {
    /// Linux grants a free ref.
    Grant {
        g: DomId,
        gref: GrantRef,
        to: DomId,
        gfn: u32,
        ro: bool,
    },
    /// A racing guest rewrites the entry, keeping GTF_reading/writing.
    Scribble {
        g: DomId,
        gref: GrantRef,
        to: DomId,
        gfn: u32,
        flags: u16,
    },
    /// Linux ends foreign access.
    Revoke { g: DomId, gref: GrantRef },
    Map {
        m: DomId,
        g: DomId,
        gref: GrantRef,
        ro: bool,
        page: u64,
    },
    Unmap {
        m: DomId,
        pick: usize,
        bad_addr: bool,
    },
    Copy {
        c: DomId,
        src: Side,
        dst: Side,
        offs: (u16, u16),
        len: u16,
    },
    /// The domain crashes or shuts down.
    Die { d: DomId },
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![
        (0..DOMS + 1, prop_oneof![9 => 6..10u32, 1 => 10..NR + 1])
            .prop_map(|(dom, gref)| Side::Gref { dom, gref }),
        (0..RAM_PAGES + 1).prop_map(|gmfn| Side::Frame { gmfn }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let d = || 0..DOMS;
    let gref = || prop_oneof![9 => 6..10u32, 1 => 10..NR + 1];
    let guest_ref = || 6..10u32;
    let gfn = || 0..RAM_PAGES as u32 + 1;
    // Mostly real domains; now and then DOMID_SELF or one that never existed.
    let granter = || prop_oneof![20 => 0..DOMS, 1 => Just(DOMID_SELF), 1 => Just(9)];
    prop_oneof![
        8 => (d(), guest_ref(), d(), gfn(), any::<bool>())
            .prop_map(|(g, gref, to, gfn, ro)| Op::Grant { g, gref, to, gfn, ro }),
        1 => (d(), guest_ref(), d(), gfn(), 0u16..0x200)
            .prop_map(|(g, gref, to, gfn, flags)| Op::Scribble { g, gref, to, gfn, flags }),
        1 => (d(), guest_ref()).prop_map(|(g, gref)| Op::Revoke { g, gref }),
        10 => (d(), granter(), gref(), any::<bool>(), 0..7u64)
            .prop_map(|(m, g, gref, ro, page)| Op::Map { m, g, gref, ro, page }),
        3 => (d(), 0..7usize, prop::bool::weighted(0.15))
            .prop_map(|(m, pick, bad_addr)| Op::Unmap { m, pick, bad_addr }),
        3 => (d(), side(), side(), (0..2048u16, 0..2048u16), prop_oneof![0..64u16, 2040..4097u16])
            .prop_map(|(c, src, dst, offs, len)| Op::Copy { c, src, dst, offs, len }),
        1 => d().prop_map(|d| Op::Die { d }),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pin {
    mapper: DomId,
    hpa: u64,
    readers: u8,
    writers: u8,
}

#[derive(Clone, Debug, Default)]
struct Model {
    pins: BTreeMap<(DomId, GrantRef), Pin>,
    maps: BTreeMap<(DomId, GrantHandle), MapEntry>,
    dead: BTreeSet<DomId>,
    freed: BTreeSet<DomId>,
}

impl Model {
    /// What pinning `gref` of `g` for `l` should give, from the entry the
    /// guest wrote and the model's pins.
    fn pin(
        &self,
        w: &World,
        g: DomId,
        gref: GrantRef,
        l: DomId,
        writable: bool,
        map: bool,
    ) -> GntResult<u64> {
        if g >= DOMS || self.dead.contains(&g) {
            return Err(GNTST_BAD_DOMAIN);
        }
        if gref >= NR {
            return Err(GNTST_BAD_GNTREF);
        }
        let e = w.doms[g as usize].table.entries[gref as usize];
        let ro = e.flags & GTF_READONLY != 0;
        let ty = e.flags & (GTF_TYPE_MASK | if map { GTF_SUB_PAGE } else { 0 });
        // What a first pin checks; the first writable pin checks it again.
        let permits = ty == GTF_PERMIT_ACCESS && e.domid == l && !(writable && ro);
        if let Some(p) = self.pins.get(&(g, gref)) {
            let ok = p.mapper == l && (permits || !(writable && p.writers == 0));
            return ok.then_some(p.hpa).ok_or(GNTST_GENERAL_ERROR);
        }
        if !permits {
            return Err(GNTST_GENERAL_ERROR);
        }
        w.doms[g as usize]
            .ram
            .ram_frame(e.frame.into())
            .ok_or(GNTST_BAD_PAGE)
    }

    fn add_pin(&mut self, g: DomId, gref: GrantRef, l: DomId, hpa: u64, writable: bool) {
        let p = self.pins.entry((g, gref)).or_insert(Pin {
            mapper: l,
            hpa,
            readers: 0,
            writers: 0,
        });
        if writable {
            p.writers += 1;
        } else {
            p.readers += 1;
        }
    }

    fn drop_pin(&mut self, g: DomId, gref: GrantRef, writable: bool) {
        let p = self.pins.get_mut(&(g, gref)).unwrap();
        if writable {
            p.writers -= 1;
        } else {
            p.readers -= 1;
        }
        if p.readers + p.writers == 0 {
            self.pins.remove(&(g, gref));
        }
    }

    fn pinned(&self, g: DomId) -> bool {
        self.pins.keys().any(|(d, _)| *d == g)
    }

    /// Every dead domain nobody maps any more has had its RAM freed.
    fn reap(&mut self) {
        let free: Vec<_> = self
            .dead
            .iter()
            .filter(|d| !self.pinned(**d))
            .copied()
            .collect();
        self.freed.extend(free);
    }

    /// Domain `d` dies: its mappings go, then whatever that left unmapped.
    fn die(&mut self, d: DomId) {
        for (h, e) in self.maps_of(d) {
            self.maps.remove(&(d, h));
            self.drop_pin(e.granter, e.gref, e.writable);
        }
        self.dead.insert(d);
        self.reap();
    }

    fn maps_of(&self, m: DomId) -> Vec<(GrantHandle, MapEntry)> {
        self.maps
            .iter()
            .filter(|((d, _), _)| *d == m)
            .map(|((_, h), e)| (*h, *e))
            .collect()
    }

    fn expect_map(
        &self,
        w: &World,
        m: DomId,
        g: DomId,
        gref: GrantRef,
        ro: bool,
        page: u64,
    ) -> GntResult<u64> {
        if g >= DOMS || self.dead.contains(&g) {
            return Err(GNTST_BAD_DOMAIN);
        }
        if self.maps_of(m).len() == HANDLES {
            return Err(GNTST_NO_SPACE);
        }
        let hpa = self.pin(w, g, gref, m, !ro, true)?;
        let e = w.doms[g as usize].table.entries[gref as usize];
        let cache = e.flags & (GTF_PAT | GTF_PWT | GTF_PCD) != 0;
        let busy = self.maps_of(m).iter().any(|(_, e)| e.gpfn == page);
        if cache || busy {
            return Err(GNTST_GENERAL_ERROR);
        }
        Ok(hpa)
    }

    fn expect_copy(
        &self,
        w: &World,
        c: DomId,
        src: Side,
        dst: Side,
        offs: (u16, u16),
        len: u16,
    ) -> Status {
        let lock = |s: Side| match s {
            Side::Frame { .. } => Ok(()),
            Side::Gref { dom, .. } if dom < DOMS && !self.dead.contains(&dom) => Ok(()),
            Side::Gref { .. } => Err(GNTST_BAD_DOMAIN),
        };
        let claim = |m: &Model, s: Side, writable: bool| match s {
            Side::Gref { dom, gref } => m.pin(w, dom, gref, c, writable, false),
            Side::Frame { gmfn } => w.doms[c as usize].ram.ram_frame(gmfn).ok_or(GNTST_BAD_PAGE),
        };
        let run = || -> GntResult<()> {
            lock(src)?;
            lock(dst)?;
            let hpa = claim(self, src, false)?;
            let mut after = self.clone();
            if let Side::Gref { dom, gref } = src {
                after.add_pin(dom, gref, c, hpa, false);
            }
            claim(&after, dst, true)?;
            let fits = |o: u16| u32::from(o) + u32::from(len) <= 4096;
            (fits(offs.0) && fits(offs.1))
                .then_some(())
                .ok_or(GNTST_BAD_COPY_ARG)
        };
        run().err().unwrap_or(GNTST_OKAY)
    }
}

fn ptr(s: Side, offset: u16) -> GnttabCopyPtr {
    match s {
        Side::Gref { dom, gref } => gref_ptr(if dom < DOMS { dom } else { 9 }, gref, offset),
        Side::Frame { gmfn } => gmfn_ptr(gmfn, offset),
    }
}

fn step(w: &mut World, model: &mut Model, op: &Op) {
    // A dead domain does nothing any more: no hypercalls, no entry writes.
    let actor = match *op {
        Op::Grant { g, .. } | Op::Scribble { g, .. } | Op::Revoke { g, .. } => g,
        Op::Map { m, .. } | Op::Unmap { m, .. } => m,
        Op::Copy { c, .. } => c,
        Op::Die { d } => d,
    };
    if model.dead.contains(&actor) {
        return;
    }
    match *op {
        Op::Grant {
            g,
            gref,
            to,
            gfn,
            ro,
        } => {
            let t = w.table(g);
            if t.flags(gref) & (GTF_TYPE_MASK | both()) == 0 {
                grant(t, gref, to, gfn, ro);
            }
        }
        Op::Scribble {
            g,
            gref,
            to,
            gfn,
            flags,
        } => {
            let e = &mut w.table(g).entries[gref as usize];
            e.flags = (flags & !both()) | (e.flags & both());
            e.domid = to;
            e.frame = gfn;
        }
        Op::Revoke { g, gref } => {
            let busy = model.pins.contains_key(&(g, gref));
            assert_eq!(end_access(w.table(g), gref), !busy);
            if !busy {
                assert_eq!(w.flags(g, gref), 0);
            }
        }
        Op::Map {
            m,
            g,
            gref,
            ro,
            page,
        } => step_map(w, model, m, g, gref, ro, page),
        Op::Unmap { m, pick, bad_addr } => step_unmap(w, model, m, pick, bad_addr),
        Op::Copy {
            c,
            src,
            dst,
            offs,
            len,
        } => {
            let want = model.expect_copy(w, c, src, dst, offs, len);
            let is_gref = |s: Side, flag: u16| {
                if matches!(s, Side::Gref { .. }) {
                    flag
                } else {
                    0
                }
            };
            let flags = is_gref(src, GNTCOPY_SOURCE_GREF) | is_gref(dst, GNTCOPY_DEST_GREF);
            let mut ops = [copy_op(ptr(src, offs.0), ptr(dst, offs.1), len, flags)];
            let (doms, moves) = (w.doms.clone(), w.moves.len());
            copy(w, c, &mut ops);
            assert_eq!(ops[0].status, want, "{op:?}");
            assert_eq!(w.doms, doms, "copy left state behind");
            assert_eq!(w.moves.len(), moves + usize::from(want == GNTST_OKAY));
        }
        Op::Die { d } => {
            w.die(d);
            model.die(d);
        }
    }
}

fn step_map(
    w: &mut World,
    model: &mut Model,
    m: DomId,
    g: DomId,
    gref: GrantRef,
    ro: bool,
    page: u64,
) {
    let want = model.expect_map(w, m, g, gref, ro, page);
    let before = w.clone();
    let e = before
        .doms
        .get(g as usize)
        .and_then(|d| d.table.entries.get(gref as usize))
        .copied();
    match (
        w.map_op(m, g, gref, if ro { RO } else { RW }, page * PAGE_SIZE),
        want,
    ) {
        (Ok(got), Ok(hpa)) => {
            assert_eq!(got.hpa, hpa);
            assert_eq!(got.writable, !ro);
            if !ro {
                let first_writer = model.pins.get(&(g, gref)).is_none_or(|p| p.writers == 0);
                let e = e.unwrap();
                assert!(
                    !first_writer || (e.flags & GTF_READONLY == 0 && e.domid == m),
                    "a grant not permitted writable for d{m} mapped writable"
                );
            }
            assert!(
                !model.maps.contains_key(&(m, got.handle)),
                "handle reused while live"
            );
            model.add_pin(g, gref, m, hpa, !ro);
            let entry = MapEntry {
                granter: g,
                gref,
                gpfn: page,
                hpa,
                writable: !ro,
            };
            model.maps.insert((m, got.handle), entry);
        }
        (Err(got), Err(want)) => {
            assert_eq!(got, want);
            assert_eq!(*w, before, "a failed map changed state");
        }
        (got, want) => panic!("map {m}->{g}:{gref} ro={ro}: got {got:?}, want {want:?}"),
    }
}

fn step_unmap(w: &mut World, model: &mut Model, m: DomId, pick: usize, bad_addr: bool) {
    let live = model.maps_of(m);
    let (handle, entry) = match live.get(pick) {
        Some((h, e)) => (*h, Some(*e)),
        None => {
            let free = (pick as GrantHandle..).find(|h| !model.maps.contains_key(&(m, *h)));
            (free.unwrap(), None)
        }
    };
    let gpfn = entry.map_or(1, |e| e.gpfn);
    let addr = (gpfn + u64::from(bad_addr)) * PAGE_SIZE + 0x10;
    let before = w.clone();
    let got = w.unmap_op(m, handle, addr);
    match entry {
        None => assert_eq!(got, Err(GNTST_BAD_HANDLE)),
        Some(_) if bad_addr => assert_eq!(got, Err(GNTST_GENERAL_ERROR)),
        Some(e) => {
            let u = got.unwrap().unwrap();
            assert_eq!(
                (u.granter, u.gref, u.gpa, u.hpa),
                (e.granter, e.gref, e.gpfn * PAGE_SIZE, e.hpa)
            );
            model.maps.remove(&(m, handle));
            model.drop_pin(e.granter, e.gref, e.writable);
            model.reap();
            return;
        }
    }
    assert_eq!(*w, before, "a failed unmap changed state");
}

fn check_invariants(w: &World, model: &Model) {
    for d in &w.doms {
        for gref in 0..NR {
            let pin = model.pins.get(&(d.id, gref));
            let f = d.table.flags(gref);
            assert_eq!(
                f & GTF_READING != 0,
                pin.is_some(),
                "d{} ref {gref} reading",
                d.id
            );
            assert_eq!(
                f & GTF_WRITING != 0,
                pin.is_some_and(|p| p.writers > 0),
                "d{} ref {gref} writing",
                d.id
            );
        }
        let active: BTreeMap<_, _> = d
            .active
            .iter()
            .map(|a| {
                (
                    a.gref,
                    Pin {
                        mapper: a.mapper,
                        hpa: a.hpa,
                        readers: a.readers,
                        writers: a.writers,
                    },
                )
            })
            .collect();
        let want: BTreeMap<_, _> = model
            .pins
            .iter()
            .filter(|((g, _), _)| *g == d.id)
            .map(|((_, r), p)| (*r, *p))
            .collect();
        assert_eq!(active, want);
        let maps: Vec<_> = d.maptrack.iter().map(|(h, e)| (h, *e)).collect();
        assert_eq!(maps, model.maps_of(d.id));
        for (_, e) in &maps {
            let p = model.pins[&(e.granter, e.gref)];
            assert_eq!(
                p.mapper, d.id,
                "a mapping of a ref pinned for another domain"
            );
        }
        // The second-level tables hold exactly the maptrack's mappings.
        let p2m: BTreeMap<_, _> = maps
            .iter()
            .map(|(_, e)| (e.gpfn, (e.hpa, e.writable)))
            .collect();
        assert_eq!(d.p2m, p2m, "d{} second-level grant mappings", d.id);
        assert_eq!(d.life == Life::Ended, model.dead.contains(&d.id));
        assert_eq!(d.freed, model.freed.contains(&d.id), "d{} freed", d.id);
        if d.freed {
            let ram = d.ram.base..d.ram.base + d.ram.pages * PAGE_SIZE;
            for other in &w.doms {
                assert!(
                    other.p2m.values().all(|(hpa, _)| !ram.contains(hpa)),
                    "d{} maps a frame of freed d{}",
                    other.id,
                    d.id
                );
            }
        }
    }
    // Dead domains hold nothing, and one nobody maps is freed (no leak).
    for d in &model.dead {
        assert!(model.maps_of(*d).is_empty());
        assert_eq!(model.freed.contains(d), !model.pinned(*d));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn ops_match_the_model(ops in proptest::collection::vec(op(), 1..200)) {
        let mut w = World::new(HANDLES);
        let mut model = Model::default();
        for op in &ops {
            step(&mut w, &mut model, op);
            check_invariants(&w, &model);
        }
    }
}
