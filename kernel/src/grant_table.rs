//! Grant tables, version 1: pinning a granter's entries for map, unmap and copy, and a dead domain's mappings released (Xen common/grant_table.c).
//!
//! Pure logic. A granting domain's `grant_entry_v1` array lives in its grant
//! frames, which the guest writes concurrently, so it is reached only through
//! [`GrantEntries`], whose implementation must use atomic accesses on the
//! real page. The granter's physical map is behind [`GuestFrames`].
//!
//! Hypervisor-side state, as in Xen:
//! - per granter, the *active* entries ([`ActiveGrants`], Xen's
//!   `active_grant_entry`): for each pinned ref, the mapping domain, the host
//!   frame fixed at the first pin, and reader/writer pin counts;
//! - per mapper, the maptrack ([`Maptrack`], Xen's `grant_mapping`): one slot
//!   per handle.
//!
//! Invariant kept by every operation: `GTF_reading` is set in the shared
//! entry iff the ref has pins, `GTF_writing` iff it has writable pins
//! (grant_table.h: "GTF_reading/GTF_writing: set by the hypervisor while the
//! frame is in use"). That is what stops a guest revoking a mapped grant:
//! Linux's `gnttab_end_foreign_access_ref_v1` refuses while either is set.
//!
//! Every failure returns its `GNTST_*` status and leaves all state, shared
//! entry flags included, as it was (Xen's `undo_out`/`unlock_out_clear`).
//! Mappers are auto-translated (PVH): `host_addr` is a guest-physical address
//! where the caller maps the returned host frame in its second-level tables.
//!
//! [`map`], [`unmap`] and [`release_mappings`] are the hypercalls and a
//! domain's end over every domain ([`Domains`]): the second-level tables,
//! ended granters, and when an ended domain's RAM may be freed. Beside them,
//! the pure parts of `memory_op` that touch grant frames and guest arrays:
//! [`place_xen_page`], [`memory_map_count`], [`guest_element`].

use arrayvec::ArrayVec;
use xen_abi::event_channel::{DomId, DOMID_SELF};
use xen_abi::grant_table::{
    GnttabCopy, GnttabCopyPtr, GrantEntryV1, GrantHandle, GrantRef, GNTCOPY_DEST_GREF,
    GNTCOPY_SOURCE_GREF, GNTMAP_APPLICATION_MAP, GNTMAP_CONTAINS_PTE, GNTMAP_DEVICE_MAP,
    GNTMAP_HOST_MAP, GNTMAP_READONLY, GNTST_ADDRESS_TOO_BIG, GNTST_BAD_COPY_ARG, GNTST_BAD_DOMAIN,
    GNTST_BAD_GNTREF, GNTST_BAD_HANDLE, GNTST_BAD_PAGE, GNTST_GENERAL_ERROR, GNTST_NO_SPACE,
    GNTST_OKAY, GNTST_PERMISSION_DENIED, GNTTAB_NR_RESERVED_ENTRIES, GNTTAB_RESERVED_CONSOLE,
    GNTTAB_RESERVED_XENSTORE, GTF_PAT, GTF_PCD, GTF_PERMIT_ACCESS, GTF_PWT, GTF_READING,
    GTF_READONLY, GTF_SUB_PAGE, GTF_TYPE_MASK, GTF_WRITING,
};
use xen_abi::hypercall::ENXIO;

/// Bytes in a granted page.
pub const PAGE_SIZE: u64 = 4096;
/// Maptrack handles a mapper may hold (Xen: `max_maptrack_frames` × 512;
/// libxl's default is 1024 frames, far more than a backend needs here).
pub const MAPTRACK_HANDLES: usize = 1024;
/// Refs of one granter that may be pinned at once. Xen has an active entry
/// for every ref; here they are allocated on first pin, and a full table
/// answers `GNTST_no_space` (a limit Xen does not have).
pub const MAX_ACTIVE: usize = 1024;
/// `_set_status_v1` tries its cmpxchg this many times ("retries++ == 4"),
/// then fails with `GNTST_general_error`: the guest is changing the entry
/// faster than we can pin it.
pub const SET_STATUS_TRIES: u32 = 5;
/// A pin counter at or above this refuses more pins (Xen: `act->pin & 0x80808080`).
pub const PIN_LIMIT: u8 = 0x80;

/// A `GNTST_*` status (grant_table.h).
pub type Status = i16;
/// `Err` holds a negative `GNTST_*` status.
pub type GntResult<T> = core::result::Result<T, Status>;

/// The low 32 bits of an entry: `flags | domid << 16` (Xen's `union grant_combo`).
pub const fn header(flags: u16, domid: DomId) -> u32 {
    flags as u32 | (domid as u32) << 16
}

/// `(flags, domid)` of a header word.
pub const fn split_header(h: u32) -> (u16, DomId) {
    (h as u16, (h >> 16) as DomId)
}

/// A domain's v1 grant entries in its grant frames (guest memory).
pub trait GrantEntries {
    /// Entries the table holds: frames × `GRANT_ENTRIES_V1_PER_FRAME`.
    fn nr_entries(&self) -> u32;
    /// One atomic 32-bit read of `flags | domid << 16` of `gref` (< nr_entries).
    fn read_header(&self, gref: GrantRef) -> u32;
    /// `frame` of `gref`: read only after a pin succeeded (the guest writes
    /// `frame` before `flags`).
    fn read_frame(&self, gref: GrantRef) -> u32;
    /// `lock cmpxchg` on the 32-bit header: writes `new` if it holds `old`;
    /// returns the value it held (Xen `guest_cmpxchg`).
    fn cmpxchg_header(&mut self, gref: GrantRef, old: u32, new: u32) -> u32;
    /// Atomically clears `mask` in `flags` (Xen `gnttab_clear_flags`: `lock and`).
    fn clear_flags(&mut self, gref: GrantRef, mask: u16);
    /// Writes a whole entry, `domid` and `frame` before `flags` (toolstack seeding).
    fn write(&mut self, gref: GrantRef, entry: GrantEntryV1);
}

/// A domain's guest-physical map, for grants' frames.
pub trait GuestFrames {
    /// The host physical address of `gfn` if it is this domain's own RAM;
    /// `None` (→ `GNTST_bad_page`, Xen `get_paged_frame`) for anything else:
    /// holes, MMIO, grant-table frames, pages it has grant-mapped from others.
    fn ram_frame(&self, gfn: u64) -> Option<u64>;
}

/// A pinned ref of a granter (Xen's `active_grant_entry`, host pins only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Active {
    pub gref: GrantRef,
    /// The only domain that may pin it until the last pin goes (`act->domid`).
    pub mapper: DomId,
    /// The granted GFN and its host frame, fixed at the first pin.
    pub gfn: u64,
    pub hpa: u64,
    /// Read-only pins (`GNTPIN_hstr`): maps and copy sources.
    pub readers: u8,
    /// Writable pins (`GNTPIN_hstw`): maps and copy destinations.
    pub writers: u8,
}

/// A granter's active entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActiveGrants {
    entries: ArrayVec<Active, MAX_ACTIVE>,
}

impl ActiveGrants {
    pub const fn new() -> Self {
        Self {
            entries: ArrayVec::new_const(),
        }
    }

    /// The active entry of `gref`, if pinned.
    pub fn get(&self, gref: GrantRef) -> Option<&Active> {
        self.entries.iter().find(|a| a.gref == gref)
    }

    /// Every pinned ref.
    pub fn iter(&self) -> impl Iterator<Item = &Active> {
        self.entries.iter()
    }

    /// Whether no ref is pinned: then no other domain maps any frame of
    /// this one (every mapping holds a pin), so its RAM may be freed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn index(&self, gref: GrantRef) -> Option<usize> {
        self.entries.iter().position(|a| a.gref == gref)
    }
}

/// One live mapping (Xen's `grant_mapping`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapEntry {
    pub granter: DomId,
    pub gref: GrantRef,
    /// Guest-physical page in the mapper where it is mapped (`host_addr >> 12`).
    pub gpfn: u64,
    pub hpa: u64,
    pub writable: bool,
}

/// A mapper's handles: handle `h` is slot `h`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Maptrack {
    slots: ArrayVec<Option<MapEntry>, MAPTRACK_HANDLES>,
    limit: usize,
}

impl Default for Maptrack {
    fn default() -> Self {
        Self::new(MAPTRACK_HANDLES)
    }
}

impl Maptrack {
    /// A maptrack of `limit` handles (at most [`MAPTRACK_HANDLES`]).
    pub fn new(limit: usize) -> Self {
        Self {
            slots: ArrayVec::new(),
            limit: limit.min(MAPTRACK_HANDLES),
        }
    }

    /// The live mapping of `handle` (the caller finds its granter here).
    pub fn get(&self, handle: GrantHandle) -> Option<&MapEntry> {
        self.slots.get(handle as usize)?.as_ref()
    }

    /// Live mappings with their handles.
    pub fn iter(&self) -> impl Iterator<Item = (GrantHandle, &MapEntry)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(h, m)| Some((h as GrantHandle, m.as_ref()?)))
    }

    /// The lowest free handle (Xen `get_maptrack_handle`).
    fn free_handle(&self) -> Option<GrantHandle> {
        let h = self
            .slots
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.slots.len());
        (h < self.limit).then_some(h as GrantHandle)
    }

    /// Whether one of this mapper's grant mappings is at guest frame `gpfn`.
    pub fn maps_gpfn(&self, gpfn: u64) -> bool {
        self.iter().any(|(_, m)| m.gpfn == gpfn)
    }

    fn insert(&mut self, handle: GrantHandle, entry: MapEntry) {
        let h = handle as usize;
        if h == self.slots.len() {
            self.slots.push(Some(entry));
        } else {
            self.slots[h] = Some(entry);
        }
    }

    fn remove(&mut self, handle: GrantHandle) {
        self.slots[handle as usize] = None;
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
    }
}

/// A granting domain, as borrowed for one operation.
pub struct Granter<'a, E: ?Sized, F: ?Sized> {
    pub domid: DomId,
    pub entries: &'a mut E,
    pub frames: &'a F,
    pub active: &'a mut ActiveGrants,
}

/// `_set_status_v1`: set `GTF_reading` (and `GTF_writing`) with a cmpxchg on
/// the header, re-checking the entry on every retry. The entry must be
/// `GTF_permit_access` (without `GTF_sub_page` for a map) for `ldom`; a
/// writable pin needs no `GTF_readonly`. Failures: `GNTST_general_error`.
///
/// Called for a ref's first pin and for its first writable pin. Xen skips
/// the type and domid checks on the latter (`!act->pin &&`) and checks only
/// `GTF_readonly`; here the upgrade must still be permitted for `ldom` as a
/// first map would be, so a granter that rewrote its entry while read-pinned
/// (re-granted it elsewhere, or dropped `GTF_permit_access`) never hands out
/// write access it no longer grants. Linux never rewrites a pinned entry.
fn set_status<E: GrantEntries + ?Sized>(
    entries: &mut E,
    gref: GrantRef,
    ldom: DomId,
    writable: bool,
    mapflag: bool,
) -> GntResult<()> {
    let mask = GTF_TYPE_MASK | if mapflag { GTF_SUB_PAGE } else { 0 };
    let mut cur = entries.read_header(gref);
    for _ in 0..SET_STATUS_TRIES {
        let (flags, domid) = split_header(cur);
        if flags & mask != GTF_PERMIT_ACCESS || domid != ldom {
            return Err(GNTST_GENERAL_ERROR);
        }
        if writable && flags & GTF_READONLY != 0 {
            return Err(GNTST_GENERAL_ERROR);
        }
        let new = flags | GTF_READING | if writable { GTF_WRITING } else { 0 };
        let prev = entries.cmpxchg_header(gref, cur, header(new, domid));
        if prev == cur {
            return Ok(());
        }
        cur = prev;
    }
    Err(GNTST_GENERAL_ERROR)
}

/// Pins `gref` of `g` for `ldom` (the common part of Xen's `map_grant_ref`
/// and `acquire_grant_for_copy`); returns the host frame.
fn pin<E: GrantEntries + ?Sized, F: GuestFrames + ?Sized>(
    g: &mut Granter<'_, E, F>,
    gref: GrantRef,
    ldom: DomId,
    writable: bool,
    mapflag: bool,
) -> GntResult<u64> {
    if gref >= g.entries.nr_entries() {
        return Err(GNTST_BAD_GNTREF);
    }
    match g.active.index(gref) {
        Some(i) => pin_again(g, i, ldom, writable, mapflag),
        None => pin_first(g, gref, ldom, writable, mapflag),
    }
}

/// An already pinned ref: only its mapper may pin it again, and the shared
/// entry is touched (and its permit checked again) only to add the first
/// writable pin.
fn pin_again<E: GrantEntries + ?Sized, F: GuestFrames + ?Sized>(
    g: &mut Granter<'_, E, F>,
    i: usize,
    ldom: DomId,
    writable: bool,
    mapflag: bool,
) -> GntResult<u64> {
    let act = g.active.entries[i];
    if act.mapper != ldom || act.readers >= PIN_LIMIT || act.writers >= PIN_LIMIT {
        return Err(GNTST_GENERAL_ERROR);
    }
    if writable && act.writers == 0 {
        set_status(g.entries, act.gref, ldom, true, mapflag)?;
    }
    let a = &mut g.active.entries[i];
    if writable {
        a.writers += 1;
    } else {
        a.readers += 1;
    }
    Ok(a.hpa)
}

/// A ref's first pin: validate and flag the entry, then look up its frame
/// (read after the pin; a frame that is not the granter's RAM undoes it).
fn pin_first<E: GrantEntries + ?Sized, F: GuestFrames + ?Sized>(
    g: &mut Granter<'_, E, F>,
    gref: GrantRef,
    ldom: DomId,
    writable: bool,
    mapflag: bool,
) -> GntResult<u64> {
    if g.active.entries.is_full() {
        return Err(GNTST_NO_SPACE);
    }
    set_status(g.entries, gref, ldom, writable, mapflag)?;
    let gfn = u64::from(g.entries.read_frame(gref));
    let Some(hpa) = g.frames.ram_frame(gfn) else {
        g.entries.clear_flags(gref, pin_flags(writable));
        return Err(GNTST_BAD_PAGE);
    };
    g.active.entries.push(Active {
        gref,
        mapper: ldom,
        gfn,
        hpa,
        readers: u8::from(!writable),
        writers: u8::from(writable),
    });
    Ok(hpa)
}

const fn pin_flags(writable: bool) -> u16 {
    if writable {
        GTF_READING | GTF_WRITING
    } else {
        GTF_READING
    }
}

/// Drops one pin of `gref` (Xen `release_grant_for_copy`, the end of
/// `unmap_common_complete`): `GTF_writing` goes with the last writable pin,
/// `GTF_reading` and the active entry with the last pin.
fn unpin<E: GrantEntries + ?Sized, F: GuestFrames + ?Sized>(
    g: &mut Granter<'_, E, F>,
    gref: GrantRef,
    writable: bool,
) {
    let Some(i) = g.active.index(gref) else {
        return;
    };
    let a = &mut g.active.entries[i];
    let mut clear = 0;
    if writable {
        a.writers -= 1;
        if a.writers == 0 {
            clear |= GTF_WRITING;
        }
    } else {
        a.readers -= 1;
    }
    if a.readers == 0 && a.writers == 0 {
        clear |= GTF_READING;
        g.active.entries.remove(i);
    }
    if clear != 0 {
        g.entries.clear_flags(gref, clear);
    }
}

/// `GNTMAP_*` checks of `map_grant_ref` for an auto-translated mapper.
fn check_map_flags(flags: u32) -> GntResult<()> {
    if flags & (GNTMAP_DEVICE_MAP | GNTMAP_HOST_MAP) == 0 {
        return Err(GNTST_BAD_GNTREF);
    }
    if flags & (GNTMAP_DEVICE_MAP | GNTMAP_APPLICATION_MAP | GNTMAP_CONTAINS_PTE) != 0 {
        return Err(GNTST_GENERAL_ERROR);
    }
    Ok(())
}

/// A `GNTTABOP_map_grant_ref` request (the inputs of `gnttab_map_grant_ref`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRequest {
    pub gref: GrantRef,
    /// `GNTMAP_*`: `host_map`, optionally `readonly`.
    pub flags: u32,
    /// Guest-physical address in the mapper (its page is used).
    pub host_addr: u64,
}

/// A successful map: the caller maps `hpa` at `gpa` in the mapper's
/// second-level tables (read-only unless `writable`) and returns `handle`.
/// If that mapping fails, it must call [`unmap_grant_ref`] to undo the pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapped {
    pub handle: GrantHandle,
    pub gpa: u64,
    pub hpa: u64,
    pub writable: bool,
}

/// `GNTTABOP_map_grant_ref` for one op (Xen `map_grant_ref`), by `mapper`
/// (holding `maptrack`) of `req.gref` of `granter`. The caller resolved
/// `op->dom` (an unknown domain is its `GNTST_bad_domain`).
///
/// Statuses, in Xen's order: no `host_map` → bad_gntref; `device_map`,
/// `application_map` or `contains_pte` → general_error (HVM mapper); no free
/// handle → no_space; ref ≥ nr_entries → bad_gntref; entry pinned by another
/// domain, pin overflow, not `permit_access` for `mapper`, or `GTF_readonly`
/// for a writable map (both checked again for the first writable pin of a
/// read-pinned ref), or unstable → general_error; frame not the granter's
/// RAM → bad_page; cache attributes in the entry (`create_grant_p2m_mapping`)
/// or `host_addr` already holding one of its grant mappings (`p2m_add_page`
/// refuses to replace a grant mapping) → general_error.
pub fn map_grant_ref<E: GrantEntries + ?Sized, F: GuestFrames + ?Sized>(
    maptrack: &mut Maptrack,
    mapper: DomId,
    granter: &mut Granter<'_, E, F>,
    req: MapRequest,
) -> GntResult<Mapped> {
    check_map_flags(req.flags)?;
    let handle = maptrack.free_handle().ok_or(GNTST_NO_SPACE)?;
    let writable = req.flags & GNTMAP_READONLY == 0;
    let hpa = pin(granter, req.gref, mapper, writable, true)?;
    let gpfn = req.host_addr / PAGE_SIZE;
    let cache =
        split_header(granter.entries.read_header(req.gref)).0 & (GTF_PAT | GTF_PWT | GTF_PCD);
    if cache != 0 || maptrack.maps_gpfn(gpfn) {
        unpin(granter, req.gref, writable);
        return Err(GNTST_GENERAL_ERROR);
    }
    maptrack.insert(
        handle,
        MapEntry {
            granter: granter.domid,
            gref: req.gref,
            gpfn,
            hpa,
            writable,
        },
    );
    Ok(Mapped {
        handle,
        gpa: gpfn * PAGE_SIZE,
        hpa,
        writable,
    })
}

/// A `GNTTABOP_unmap_grant_ref` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnmapRequest {
    pub handle: GrantHandle,
    pub host_addr: u64,
    /// 0, or the `dev_bus_addr` the map returned.
    pub dev_bus_addr: u64,
}

/// A removed mapping: the caller unmaps `gpa` (which held `hpa`) from the
/// mapper's second-level tables and flushes its TLBs (Xen
/// `gnttab_flush_tlb`) before the hypercall returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unmapped {
    pub granter: DomId,
    pub gref: GrantRef,
    pub gpa: u64,
    pub hpa: u64,
    pub writable: bool,
    /// Always true: the mapping was live, so the TLBs must be flushed.
    pub flush_tlb: bool,
}

/// `GNTTABOP_unmap_grant_ref` for one op (Xen `unmap_common` and
/// `unmap_common_complete`). The caller finds the granter with
/// [`Maptrack::get`]; a granter that is not the handle's → bad_handle.
///
/// Statuses: unknown handle → bad_handle; `dev_bus_addr` neither 0 nor the
/// frame → general_error; `host_addr` not the page it was mapped at
/// (`replace_grant_p2m_mapping`) → general_error. `host_addr` 0 does nothing
/// and succeeds, as in Xen (`Ok(None)`).
pub fn unmap_grant_ref<E: GrantEntries + ?Sized, F: GuestFrames + ?Sized>(
    maptrack: &mut Maptrack,
    granter: &mut Granter<'_, E, F>,
    req: UnmapRequest,
) -> GntResult<Option<Unmapped>> {
    let m = *maptrack.get(req.handle).ok_or(GNTST_BAD_HANDLE)?;
    if m.granter != granter.domid {
        return Err(GNTST_BAD_HANDLE);
    }
    if req.dev_bus_addr != 0 && req.dev_bus_addr != m.hpa {
        return Err(GNTST_GENERAL_ERROR);
    }
    if req.host_addr == 0 {
        return Ok(None);
    }
    if req.host_addr / PAGE_SIZE != m.gpfn {
        return Err(GNTST_GENERAL_ERROR);
    }
    maptrack.remove(req.handle);
    unpin(granter, m.gref, m.writable);
    Ok(Some(Unmapped {
        granter: m.granter,
        gref: m.gref,
        gpa: m.gpfn * PAGE_SIZE,
        hpa: m.hpa,
        writable: m.writable,
        flush_tlb: true,
    }))
}

/// The domains a `GNTTABOP_copy` batch may touch, and the byte mover.
pub trait CopyDomains {
    /// Calls `f` with domain `domid` (never `DOMID_SELF`: already resolved)
    /// as a granter; false if there is no such domain (→ `GNTST_bad_domain`).
    /// A closure rather than a returned borrow: the granter borrows several
    /// parts of the domain (its grant frames, its tables, its pins) at once.
    fn with_granter(&mut self, domid: DomId, f: &mut dyn FnMut(&mut DynGranter<'_>)) -> bool;
    /// Copies `len` bytes from `src_hpa + src_off` to `dst_hpa + dst_off`
    /// (both ranges lie within their page; the frames may be the same).
    fn copy_bytes(&mut self, src_hpa: u64, src_off: u16, dst_hpa: u64, dst_off: u16, len: u16);
}

/// A granter seen through trait objects, as `CopyDomains` lends it.
pub type DynGranter<'a> = Granter<'a, dyn GrantEntries + 'a, dyn GuestFrames + 'a>;

/// One side of a copy, claimed (Xen `gnttab_copy_buf`).
#[derive(Clone, Copy)]
struct Buf {
    domid: DomId,
    hpa: u64,
    /// The pinned ref, for a grant side.
    gref: Option<GrantRef>,
    writable: bool,
}

/// `gnttab_copy_lock_domain`: a frame side must name `DOMID_SELF`
/// (permission_denied); the domain must exist (bad_domain).
fn lock_domain<D: CopyDomains>(
    d: &mut D,
    caller: DomId,
    domid: DomId,
    is_gref: bool,
) -> GntResult<DomId> {
    if domid != DOMID_SELF && !is_gref {
        return Err(GNTST_PERMISSION_DENIED);
    }
    let id = if domid == DOMID_SELF { caller } else { domid };
    if d.with_granter(id, &mut |_| {}) {
        Ok(id)
    } else {
        Err(GNTST_BAD_DOMAIN)
    }
}

/// `gnttab_copy_claim_buf`: pin a grant side for the copy (transient
/// `GTF_reading`/`GTF_writing`), or resolve a frame side (a GFN of the caller).
fn claim<D: CopyDomains>(
    d: &mut D,
    caller: DomId,
    domid: DomId,
    ptr: &GnttabCopyPtr,
    is_gref: bool,
    writable: bool,
) -> GntResult<Buf> {
    let mut claimed = Err(GNTST_BAD_DOMAIN);
    d.with_granter(domid, &mut |g| {
        claimed = if is_gref {
            pin(g, ptr.gref(), caller, writable, false).map(|hpa| (hpa, Some(ptr.gref())))
        } else {
            g.frames
                .ram_frame(ptr.u)
                .map(|hpa| (hpa, None))
                .ok_or(GNTST_BAD_PAGE)
        };
    });
    let (hpa, gref) = claimed?;
    Ok(Buf {
        domid,
        hpa,
        gref,
        writable,
    })
}

fn release<D: CopyDomains>(d: &mut D, b: Buf) {
    if let Some(gref) = b.gref {
        d.with_granter(b.domid, &mut |g| unpin(g, gref, b.writable));
    }
}

/// One `gnttab_copy` op (Xen `gnttab_copy_one` without its buffer caching):
/// lock source then destination domain, claim source (read) then
/// destination (write), check the ranges, move the bytes, release both.
fn copy_one<D: CopyDomains>(d: &mut D, caller: DomId, op: &GnttabCopy) -> GntResult<()> {
    let src_gref = op.flags & GNTCOPY_SOURCE_GREF != 0;
    let dst_gref = op.flags & GNTCOPY_DEST_GREF != 0;
    let src_dom = lock_domain(d, caller, op.source.domid, src_gref)?;
    let dst_dom = lock_domain(d, caller, op.dest.domid, dst_gref)?;
    let src = claim(d, caller, src_dom, &op.source, src_gref, false)?;
    let dst = match claim(d, caller, dst_dom, &op.dest, dst_gref, true) {
        Ok(b) => b,
        Err(e) => {
            release(d, src);
            return Err(e);
        }
    };
    let len = u64::from(op.len);
    let fits = |off: u16| u64::from(off) + len <= PAGE_SIZE;
    let rc = if fits(op.source.offset) && fits(op.dest.offset) {
        d.copy_bytes(src.hpa, op.source.offset, dst.hpa, op.dest.offset, op.len);
        Ok(())
    } else {
        Err(GNTST_BAD_COPY_ARG)
    };
    release(d, dst);
    release(d, src);
    rc
}

/// `GNTTABOP_copy` by `caller` (Xen `gnttab_copy`): every op gets its own
/// status; a failed op does not stop the batch.
///
/// Per op: a frame side whose domid is not `DOMID_SELF` → permission_denied;
/// unknown domain → bad_domain; a grant side fails as a map would (bad_gntref,
/// general_error for a wrong domid/type, `GTF_readonly` destination or a ref
/// pinned by another domain, bad_page), but `GTF_sub_page` is allowed; a frame
/// side that is not the caller's RAM → bad_page; `offset + len` > 4096 on
/// either side → bad_copy_arg (checked after both sides are claimed, as Xen).
pub fn copy<D: CopyDomains>(d: &mut D, caller: DomId, ops: &mut [GnttabCopy]) {
    for op in ops {
        op.status = match copy_one(d, caller, op) {
            Ok(()) => GNTST_OKAY,
            Err(e) => e,
        };
    }
}

/// The toolstack's seeding of a domU's reserved refs (libxenguest
/// `xc_dom_gnttab_seed`): refs 0–7 cleared, then ref 0
/// (`GNTTAB_RESERVED_CONSOLE`) grants the console ring and ref 1
/// (`GNTTAB_RESERVED_XENSTORE`) the XenStore ring to their backends, each
/// `GTF_permit_access` with `frame` = the ring's GFN. A GFN beyond 32 bits
/// → address_too_big, a table under 8 entries → bad_gntref; nothing is
/// written then.
pub fn seed_reserved<E: GrantEntries + ?Sized>(
    entries: &mut E,
    console: Option<(DomId, u64)>,
    xenstore: Option<(DomId, u64)>,
) -> GntResult<()> {
    if entries.nr_entries() < GNTTAB_NR_RESERVED_ENTRIES {
        return Err(GNTST_BAD_GNTREF);
    }
    let frame = |s: Option<(DomId, u64)>| s.map_or(Ok(0), |(_, gfn)| u32::try_from(gfn));
    let (Ok(console_frame), Ok(xenstore_frame)) = (frame(console), frame(xenstore)) else {
        return Err(GNTST_ADDRESS_TOO_BIG);
    };
    for gref in 0..GNTTAB_NR_RESERVED_ENTRIES {
        entries.write(gref, GrantEntryV1::default());
    }
    let seeds = [
        (GNTTAB_RESERVED_CONSOLE, console, console_frame),
        (GNTTAB_RESERVED_XENSTORE, xenstore, xenstore_frame),
    ];
    for (gref, side, frame) in seeds {
        if let Some((domid, _)) = side {
            let entry = GrantEntryV1 {
                flags: GTF_PERMIT_ACCESS,
                domid,
                frame,
            };
            entries.write(gref, entry);
        }
    }
    Ok(())
}

// ---- The operations over domains: map, unmap, and a mapper's death ----

/// Whether a domain still runs or has ended (crashed, shut down, halted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    Running,
    Ended,
}

/// Every domain as one caller's grant operations reach it: the kernel's
/// calling domain and the others, or a test's model world. Ended domains
/// stay reachable until the run ends (a zombie, as Xen keeps a dying domain
/// while anything holds a reference to it).
pub trait Domains {
    /// The calling domain's id.
    fn caller(&self) -> DomId;
    /// Whether `domid` runs or has ended; `None` if no domain has that id.
    fn life(&mut self, domid: DomId) -> Option<Life>;
    /// The caller's maptrack.
    fn maptrack(&mut self) -> &mut Maptrack;
    /// Calls `f` with the caller's maptrack and domain `granter` (the caller
    /// itself or another, running or ended) as a granter; false if there is
    /// no such domain.
    fn with_granter(
        &mut self,
        granter: DomId,
        f: &mut dyn FnMut(&mut Maptrack, &mut DynGranter<'_>),
    ) -> bool;
    /// Maps host frame `hpa` at `gpa` in the caller's second-level tables
    /// (read-only unless `writable`); false if it could not.
    fn map_page(&mut self, gpa: u64, hpa: u64, writable: bool) -> bool;
    /// Removes `gpa` from the caller's second-level tables and flushes them.
    fn unmap_page(&mut self, gpa: u64);
    /// Ended domain `domid` has no frame mapped or pinned by anyone any more:
    /// its RAM may go back to the allocator.
    fn free_memory(&mut self, domid: DomId);
}

/// `GNTTABOP_map_grant_ref` for one op by [`Domains::caller`] of `req.gref`
/// of domain `dom` (Xen `map_grant_ref`): the flag checks first, then `dom`
/// looked up by id as `rcu_lock_domain_by_id` does, so the caller's own id
/// maps its own grant and `DOMID_SELF` (no domain's id) is bad_domain, as is
/// an ended domain; then [`map_grant_ref`] and the frame mapped in the
/// caller's second-level tables. If that map fails, the pin is undone
/// (general_error).
pub fn map<D: Domains + ?Sized>(d: &mut D, dom: DomId, req: MapRequest) -> GntResult<Mapped> {
    check_map_flags(req.flags)?;
    if d.life(dom) != Some(Life::Running) {
        return Err(GNTST_BAD_DOMAIN);
    }
    let caller = d.caller();
    let mut mapped = Err(GNTST_BAD_DOMAIN);
    d.with_granter(dom, &mut |mt, g| mapped = map_grant_ref(mt, caller, g, req));
    let m = mapped?;
    if !d.map_page(m.gpa, m.hpa, m.writable) {
        let undo = UnmapRequest {
            handle: m.handle,
            host_addr: m.gpa,
            dev_bus_addr: 0,
        };
        d.with_granter(dom, &mut |mt, g| {
            let _ = unmap_grant_ref(mt, g, undo);
        });
        return Err(GNTST_GENERAL_ERROR);
    }
    Ok(m)
}

/// `GNTTABOP_unmap_grant_ref` for one op by [`Domains::caller`] (Xen
/// `unmap_common`): the checks of [`unmap_grant_ref`], then the page removed
/// from the caller's second-level tables. A handle stays valid after its
/// granter ended (Xen finds a dying domain until its last reference goes):
/// the unmap succeeds, and the last one of an ended granter's frames frees
/// its RAM.
pub fn unmap<D: Domains + ?Sized>(d: &mut D, req: UnmapRequest) -> GntResult<Option<Unmapped>> {
    let granter = d
        .maptrack()
        .get(req.handle)
        .ok_or(GNTST_BAD_HANDLE)?
        .granter;
    let mut unmapped = Err(GNTST_BAD_HANDLE);
    let mut unpinned = false;
    d.with_granter(granter, &mut |mt, g| {
        unmapped = unmap_grant_ref(mt, g, req);
        unpinned = g.active.is_empty();
    });
    if let Ok(Some(u)) = unmapped {
        d.unmap_page(u.gpa);
        if unpinned && d.life(granter) == Some(Life::Ended) {
            d.free_memory(granter);
        }
    }
    unmapped
}

/// The caller has ended (Xen `gnttab_release_mappings`, at domain
/// destruction): every mapping it holds goes, whatever its address, with
/// its pin (`GTF_reading`/`GTF_writing` cleared with a ref's last pin, so
/// the granter can end foreign access) and its second-level entry. Each
/// ended domain this leaves with no pin, the caller included, has its RAM
/// freed; one still mapped by others keeps it until their last unmap (or
/// their own end). A mapping whose granter no longer exists is just dropped
/// ("Nothing to clear up").
pub fn release_mappings<D: Domains + ?Sized>(d: &mut D) {
    let caller = d.caller();
    let handles: ArrayVec<GrantHandle, MAPTRACK_HANDLES> =
        d.maptrack().iter().map(|(h, _)| h).collect();
    for handle in handles {
        let Some(m) = d.maptrack().get(handle).copied() else {
            continue;
        };
        let mut unpinned = false;
        let found = d.with_granter(m.granter, &mut |mt, g| {
            mt.remove(handle);
            unpin(g, m.gref, m.writable);
            unpinned = g.active.is_empty();
        });
        if !found {
            d.maptrack().remove(handle);
        }
        d.unmap_page(m.gpfn * PAGE_SIZE);
        // The caller's own memory is dealt with once, below.
        if unpinned && m.granter != caller && d.life(m.granter) == Some(Life::Ended) {
            d.free_memory(m.granter);
        }
    }
    let mut unpinned = false;
    d.with_granter(caller, &mut |_, g| unpinned = g.active.is_empty());
    if unpinned && d.life(caller) == Some(Life::Ended) {
        d.free_memory(caller);
    }
}

/// The guest-virtual address of element `index` of an array of `size`-byte
/// elements at `base`, if the whole element lies below 2^64: a guest buffer
/// that would wrap past the top of the address space is refused (the caller
/// answers -EFAULT, or `GNTST_bad_virt_addr` where Xen reports a bad
/// `frame_list` so) rather than wrapped round to address 0.
pub fn guest_element(base: u64, index: u64, size: u64) -> Option<u64> {
    let at = index.checked_mul(size)?.checked_add(base)?;
    at.checked_add(size.checked_sub(1)?)?;
    Some(at)
}

/// How many entries `XENMEM_memory_map` writes into a buffer of `capacity`
/// entries when the map has `len`: as many as fit (Xen `arch_memory_op`:
/// `map.nr_entries = min(map.nr_entries, d->arch.nr_e820)`); the guest
/// learns the count from `nr_entries`.
pub fn memory_map_count(capacity: u32, len: usize) -> u32 {
    u32::try_from(len).map_or(capacity, |len| len.min(capacity))
}

/// A hypervisor-owned page a guest places in its physical map with
/// `XENMEM_add_to_physmap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XenPage {
    SharedInfo,
    /// Grant-table frame `idx`.
    GrantFrame(usize),
}

/// What one `XENMEM_add_to_physmap` does besides mapping the page at its
/// new GFN, worked out before anything changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// The page's old GFN, to unmap (left a hole, as in Xen).
    pub unmap_old: Option<u64>,
    /// Another hypervisor page that was at the new GFN: the new mapping
    /// replaces it, so it is mapped nowhere now.
    pub displaced: Option<XenPage>,
}

/// `XENMEM_add_to_physmap` of `page` at `gfn` (Xen
/// `xenmem_add_to_physmap_one`), where `placed` says where each hypervisor
/// page of the domain is and `grant_mapped` whether the caller has a grant
/// mapped at `gfn`.
///
/// A page is at one GFN at most: moving it unmaps the old one ("Unmap from
/// old location"). Another hypervisor page at `gfn` is unhooked ("Special
/// pages are simply unhooked"); RAM there is replaced. A grant mapping at
/// `gfn` is not replaced: Xen's `guest_remove_page` fails `get_page` on the
/// granter's page and the call returns -ENXIO, with nothing changed.
pub fn place_xen_page(
    placed: impl IntoIterator<Item = (XenPage, Option<u64>)>,
    page: XenPage,
    gfn: u64,
    grant_mapped: bool,
) -> Result<Placement, i64> {
    if grant_mapped {
        return Err(-ENXIO);
    }
    let mut plan = Placement::default();
    for (p, at) in placed {
        match at {
            Some(old) if p == page && old != gfn => plan.unmap_old = Some(old),
            Some(old) if p != page && old == gfn => plan.displaced = Some(p),
            _ => {}
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests;
