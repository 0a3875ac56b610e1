//! A hostile blkfront: connects to its vbd like Linux does, then puts garbage on the ring (a fixed set, or `fuzz-blkif=N:SEED` seeded random requests) and checks every answer, and that the ring is dropped when overrun.

use crate::frontend::{
    alloc_path, alloc_unbound, decimal, grant, map_grant_frame, send, set32, vol32, wait_word,
    Page, Store,
};
use crate::fuzz::{self, Cell, Events, Params, Progress, Rng};
use crate::println;
use xen_abi::blkif::*;

static mut RING: Page = Page([0; 4096]);
static mut DATA: Page = Page([0; 4096]);

/// The grant refs this frontend uses (0-7 are reserved).
const RING_REF: u32 = 10;
const DATA_REF: u32 = 11;
/// A ref this guest never granted.
const BAD_REF: u32 = 400;
const VBD: &str = "device/vbd/51712";

/// A READ of one segment into `gref`, sectors `first..=last` of the page.
fn read_request(id: u64, nr_segments: u8, sector: u64, gref: u32) -> [u8; 112] {
    let mut r = [0u8; 112];
    r[0] = 0; // BLKIF_OP_READ
    r[1] = nr_segments;
    r[8..16].copy_from_slice(&id.to_le_bytes());
    r[16..24].copy_from_slice(&sector.to_le_bytes());
    r[24..28].copy_from_slice(&gref.to_le_bytes());
    r[28] = 0;
    r[29] = 0;
    r
}

/// The backend's directory, kept for the whole run (paths are built
/// from it with `alloc_path`).
static mut BACKEND: [u8; 128] = [0; 128];

/// A connected vbd.
struct Vbd {
    xs: Store,
    backend: &'static str,
    ring: u64,
    port: u32,
}

/// Connects to device/vbd/51712 as Linux's blkfront does: waits for
/// InitWait, maps grant frame 0, grants the ring (SHARED_RING_INIT) and a
/// data page, allocates the channel, writes ring-ref, event-channel and
/// protocol, says Initialised and waits for Connected.
fn connect() -> Result<Vbd, &'static str> {
    let mut xs = Store::new();
    let mut out = [0u8; 256];
    let n = xs.read(alloc_path(VBD, "backend"), &mut out)?;
    // SAFETY: single-threaded; BACKEND is written once, here, and only
    // read after.
    let backend = unsafe {
        let buf = &mut *core::ptr::addr_of_mut!(BACKEND);
        buf.get_mut(..n)
            .ok_or("backend path too long")?
            .copy_from_slice(&out[..n]);
        core::str::from_utf8(&buf[..n]).map_err(|_| "backend path not UTF-8")?
    };
    xs.wait_for(alloc_path(backend, "state"), b"2")?;

    map_grant_frame();
    let ring = core::ptr::addr_of_mut!(RING) as u64;
    let data = core::ptr::addr_of_mut!(DATA) as u64;
    set32(ring + 4, 1);
    set32(ring + 12, 1);
    grant(RING_REF, ring, false);
    grant(DATA_REF, data, false);
    let port = alloc_unbound()?;
    let mut num = [0u8; 20];
    xs.write(
        alloc_path(VBD, "ring-ref"),
        decimal(u64::from(RING_REF), &mut num),
    )?;
    xs.write(
        alloc_path(VBD, "event-channel"),
        decimal(u64::from(port), &mut num),
    )?;
    xs.write(alloc_path(VBD, "protocol"), b"x86_64-abi")?;
    xs.write(alloc_path(VBD, "state"), b"3")?;
    xs.wait_for(alloc_path(backend, "state"), b"4")?;
    Ok(Vbd {
        xs,
        backend,
        ring,
        port,
    })
}

pub fn run() -> Result<&'static str, &'static str> {
    let Vbd {
        mut xs,
        backend,
        ring,
        port,
    } = connect()?;
    let data = core::ptr::addr_of_mut!(DATA) as u64;

    // Garbage, then one good read of the superblock's sector (ext4 magic
    // 0xEF53 at byte 56 of the superblock at byte 1024).
    let requests = [
        read_request(1, 12, 0, DATA_REF),
        read_request(2, 1, 0, BAD_REF),
        read_request(3, 1, u64::MAX / 1024, DATA_REF),
        read_request(4, 1, 2, DATA_REF),
    ];
    for (i, r) in requests.iter().enumerate() {
        // SAFETY: slot i of the ring page (64-byte header, 112-byte slots).
        unsafe {
            core::ptr::copy_nonoverlapping(r.as_ptr(), (ring + 64 + i as u64 * 112) as *mut u8, 112)
        };
    }
    set32(ring, requests.len() as u32);
    send(port);
    wait_word(ring + 8, requests.len() as u32, "blkback never answered")?;
    for (i, want) in [(0u64, -1i16), (1, -1), (2, -1), (3, 0)] {
        let at = ring + 64 + i * 112;
        // SAFETY: response i's id and status in its slot.
        let (id, status) = unsafe {
            (
                core::ptr::read_volatile(at as *const u64),
                core::ptr::read_volatile((at + 10) as *const i16),
            )
        };
        if id != i + 1 || status != want {
            return Err(match i {
                0 => "a bad segment count was not refused",
                1 => "a grant this guest does not own was not refused",
                2 => "a sector beyond the end was not refused",
                _ => "a good read after the garbage failed",
            });
        }
    }
    // SAFETY: the data page, just written by the backend.
    let magic = unsafe { core::ptr::read_volatile((data + 56) as *const u16) };
    if magic != 0xef53 {
        return Err("the good read did not return the ext4 superblock");
    }
    // A producer index a thousand ahead of the consumer: the backend must
    // stop serving this ring and say so with Closing (5).
    set32(ring, 1004);
    send(port);
    xs.wait_for(alloc_path(backend, "state"), b"5")?;
    Ok("bad segment count, foreign grant, sector beyond the end refused; a good read served; an overrun ring closed")
}

// ---------------------------------------------------------------------------
// `fuzz-blkif=N:SEED`: N random requests in random batches.

/// Pages the requests point at: four granted writable, one read-only, and
/// two read-only indirect pages holding segment lists.
static mut RW_PAGES: [Page; 4] = [const { Page([0; 4096]) }; 4];
static mut RO_PAGE: Page = Page([0x5a; 4096]);
static mut INDIRECT: [Page; 2] = [const { Page([0; 4096]) }; 2];
const RW_REFS: [u32; 5] = [DATA_REF, 20, 21, 22, 23];
const RO_REF: u32 = 24;
const INDIRECT_REFS: [u32; 2] = [25, 26];
/// Refs never granted: the reserved ones left empty, the rest of frame 0
/// and past it. (Refs 0 and 1 grant its console and XenStore pages to
/// domain 0, and RING_REF its ring: requests never name them, a read into
/// them would wreck the guest's own console, store or ring.)
const BAD_REFS: [u32; 6] = [2, 7, 27, 400, 511, 4000];
/// Ring slots of a one-page ring (ring.h `__RING_SIZE`).
const SLOTS: u32 = ring_slots(1) as u32;
/// An answer not seen in this long means the backend hangs.
const TIMEOUT_NS: u64 = 30_000_000_000;

/// The status a request must get.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Okay,
    Error,
    NotSupported,
    /// Any status blkif.h defines.
    Any,
}

/// What a gref names, for a transfer's direction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grant {
    Rw,
    Ro,
    Bad,
}

/// What the disk offers, from the backend's nodes.
struct Disk {
    sectors: u64,
    flush: bool,
    discard: bool,
    max_indirect: u64,
}

/// Rows of the histogram: operations 0..=6, then any other.
const OPS: usize = 8;
static mut HIST: [[u64; 4]; OPS] = [[0; 4]; OPS];

fn classify(gref: u32) -> Grant {
    if RW_REFS.contains(&gref) {
        Grant::Rw
    } else if gref == RO_REF || INDIRECT_REFS.contains(&gref) {
        Grant::Ro
    } else {
        Grant::Bad
    }
}

struct Gen<'a> {
    rng: Rng,
    disk: &'a Disk,
    /// This request aims to be served: valid segments of writable grants,
    /// on the disk (half of them; the rest break rules at random).
    good: bool,
    /// An indirect request of this batch already has the indirect pages:
    /// another would overwrite its segment list before the backend reads it.
    indirect_taken: bool,
}

impl Gen<'_> {
    fn gref(&mut self) -> u32 {
        match self.rng.below(20) {
            0..=11 => self.rng.pick(&RW_REFS),
            12..=13 => RO_REF,
            14 => self.rng.pick(&INDIRECT_REFS),
            15..=17 => self.rng.pick(&BAD_REFS),
            _ => loop {
                let g = self.rng.next() as u32;
                if g > 1 && g != RING_REF {
                    break g;
                }
            },
        }
    }

    /// A page an indirect request may name for its segment list: its own
    /// indirect pages, the read-only page, or none. Never a writable page:
    /// what a disk read left there could name refs 0 and 1 (its console and
    /// XenStore pages) as places to read into.
    fn indirect_gref(&mut self) -> u32 {
        match self.rng.below(3) {
            0 => self.rng.pick(&INDIRECT_REFS),
            1 => RO_REF,
            _ => self.rng.pick(&BAD_REFS),
        }
    }

    /// A segment: its bytes, whether its sectors are valid, its grant,
    /// and how many sectors it carries.
    fn segment(&mut self) -> ([u8; 8], bool, Grant, u64) {
        let gref = if self.good {
            self.rng.pick(&RW_REFS)
        } else {
            self.gref()
        };
        let roll = if self.good { 0 } else { self.rng.below(10) };
        let (first, last) = match roll {
            0..=7 => {
                let a = self.rng.below(8) as u8;
                (a, self.rng.range(u64::from(a), 7) as u8)
            }
            8 => (self.rng.range(1, 7) as u8, 0),
            _ => (self.rng.next() as u8, self.rng.next() as u8),
        };
        let valid = first <= last && last <= 7;
        let mut b = [0u8; 8];
        b[0..4].copy_from_slice(&gref.to_le_bytes());
        b[4] = first;
        b[5] = last;
        b[6..8].copy_from_slice(&(self.rng.next() as u16).to_le_bytes());
        (
            b,
            valid,
            classify(gref),
            u64::from(last.wrapping_sub(first)) + 1,
        )
    }

    fn sector(&mut self, count: u64) -> u64 {
        let end = self.disk.sectors;
        let roll = if self.good { 0 } else { self.rng.below(10) };
        match roll {
            0..=6 => self.rng.below(end.saturating_sub(count) + 1),
            7 => end.saturating_sub(self.rng.below(16)),
            8 => end + self.rng.below(1 << 20),
            _ => self.rng.edgy(),
        }
    }

    /// The status a transfer of these segments gets: segment count,
    /// sectors, range, then grants (blkif.h; blkback checks them in that
    /// order, and a failed grant copy fails the request).
    fn transfer_want(
        &self,
        read: bool,
        n: u64,
        segs: &[(bool, Grant, u64)],
        sector: u64,
        max: u64,
    ) -> Want {
        if n == 0 || n > max {
            return Want::Error;
        }
        if segs.iter().any(|s| !s.0) {
            return Want::Error;
        }
        let total: u64 = segs.iter().map(|s| s.2).sum();
        if sector
            .checked_add(total)
            .is_none_or(|e| e > self.disk.sectors)
        {
            return Want::Error;
        }
        if segs
            .iter()
            .any(|s| s.1 == Grant::Bad || (read && s.1 == Grant::Ro))
        {
            return Want::Error;
        }
        Want::Okay
    }

    /// One request slot (its id set by the caller) and the status it must get.
    fn request(&mut self) -> ([u8; 112], Want) {
        let mut r = [0u8; 112];
        self.good = self.rng.one_in(2);
        let op = match self.rng.below(100) {
            0..=29 => BLKIF_OP_READ,
            30..=54 => BLKIF_OP_WRITE,
            55..=59 => BLKIF_OP_FLUSH_DISKCACHE,
            60..=63 => BLKIF_OP_WRITE_BARRIER,
            64..=71 => BLKIF_OP_DISCARD,
            72..=81 => BLKIF_OP_INDIRECT,
            82..=89 => self.rng.pick(&[4, 7, 8, 100, 255]),
            _ => {
                // A slot of random bytes: blkif.h statuses only. Its grefs
                // never name the pages a read must not land in, and an
                // indirect one reads its segment list only from pages
                // whose contents are known.
                self.rng.fill(&mut r);
                if r[0] == BLKIF_OP_INDIRECT {
                    for k in 0..8 {
                        let g = self.indirect_gref();
                        r[28 + 4 * k..32 + 4 * k].copy_from_slice(&g.to_le_bytes());
                    }
                } else {
                    for k in 0..11 {
                        let g = u32::from_le_bytes(
                            r[24 + 8 * k..28 + 8 * k].try_into().unwrap_or([0; 4]),
                        );
                        if g <= 1 || g == RING_REF {
                            r[24 + 8 * k..28 + 8 * k].copy_from_slice(&400u32.to_le_bytes());
                        }
                    }
                }
                let want = if matches!(r[0], 0..=3 | 5 | 6) {
                    Want::Any
                } else {
                    Want::NotSupported
                };
                return (r, want);
            }
        };
        r[0] = op;
        r[2..4].copy_from_slice(&(self.rng.next() as u16).to_le_bytes());
        let want = match op {
            BLKIF_OP_READ | BLKIF_OP_WRITE | BLKIF_OP_WRITE_BARRIER | BLKIF_OP_FLUSH_DISKCACHE => {
                let roll = if self.good { 1 } else { self.rng.below(20) };
                let n = match roll {
                    0 => 0,
                    1..=16 => self.rng.range(1, 11),
                    17..=18 => self.rng.range(12, 255),
                    _ => self.rng.pick(&[11, 12]),
                };
                // A FLUSH without data is a flush; with data, a write.
                let n = if op == BLKIF_OP_FLUSH_DISKCACHE && self.rng.one_in(2) {
                    0
                } else {
                    n
                };
                r[1] = n as u8;
                let mut segs = [(false, Grant::Bad, 0u64); 11];
                for (k, seg) in segs.iter_mut().enumerate().take((n as usize).min(11)) {
                    let (b, valid, g, count) = self.segment();
                    r[24 + 8 * k..32 + 8 * k].copy_from_slice(&b);
                    *seg = (valid, g, count);
                }
                let total: u64 = segs.iter().take(n as usize).map(|s| s.2).sum();
                let sector = self.sector(total);
                r[16..24].copy_from_slice(&sector.to_le_bytes());
                let segs = &segs[..(n as usize).min(11)];
                match op {
                    BLKIF_OP_FLUSH_DISKCACHE if n == 0 => {
                        if self.disk.flush {
                            Want::Okay
                        } else {
                            Want::NotSupported
                        }
                    }
                    BLKIF_OP_READ | BLKIF_OP_WRITE => {
                        self.transfer_want(op == BLKIF_OP_READ, n, segs, sector, 11)
                    }
                    _ if n == 0 || n > 11 => Want::Error,
                    _ if !self.disk.flush => Want::NotSupported,
                    _ => self.transfer_want(false, n, segs, sector, 11),
                }
            }
            BLKIF_OP_DISCARD => {
                r[1] = self.rng.below(3) as u8;
                let count = match self.rng.below(4) {
                    0..=2 => self.rng.range(1, 4096),
                    _ => self.rng.edgy(),
                };
                let sector = self.sector(count.min(1 << 20));
                r[16..24].copy_from_slice(&sector.to_le_bytes());
                r[24..32].copy_from_slice(&count.to_le_bytes());
                let in_range = sector
                    .checked_add(count)
                    .is_some_and(|e| e <= self.disk.sectors);
                if !self.disk.discard {
                    Want::NotSupported
                } else if !in_range {
                    Want::Error
                } else {
                    Want::Okay
                }
            }
            BLKIF_OP_INDIRECT => self.indirect(&mut r),
            _ => Want::NotSupported,
        };
        (r, want)
    }

    /// An indirect request; its segment list written into the indirect
    /// pages (read-only to the backend), which it names in order most
    /// of the time.
    fn indirect(&mut self, r: &mut [u8; 112]) -> Want {
        let op = match self.rng.below(8) {
            0..=3 => BLKIF_OP_READ,
            4..=6 => BLKIF_OP_WRITE,
            _ => self.rng.next() as u8,
        };
        r[1] = op;
        let max = self.disk.max_indirect;
        let n = match self.rng.below(10) {
            0 => 0,
            1..=7 => self.rng.range(1, max.clamp(1, 1024)),
            8 => max + self.rng.range(1, 10),
            _ => self.rng.next() & 0xffff,
        };
        r[2..4].copy_from_slice(&(n as u16).to_le_bytes());
        let ours = !self.indirect_taken && self.rng.below(4) != 0;
        self.indirect_taken |= ours;
        for k in 0..8 {
            let g = if ours && k < 2 {
                INDIRECT_REFS[k]
            } else {
                self.indirect_gref()
            };
            r[28 + 4 * k..32 + 4 * k].copy_from_slice(&g.to_le_bytes());
        }
        let known = ours && n <= 1024;
        let mut segs_ok = true;
        let mut grants_ok = true;
        let mut total = 0u64;
        // SAFETY: single-threaded; the backend reads these pages only while
        // a batch is out, and they are rewritten between batches.
        let pages = unsafe { &mut *core::ptr::addr_of_mut!(INDIRECT) };
        for k in 0..if ours { n.min(1024) as usize } else { 0 } {
            let (b, valid, g, count) = self.segment();
            pages[k / 512].0[(k % 512) * 8..(k % 512) * 8 + 8].copy_from_slice(&b);
            segs_ok &= valid;
            grants_ok &= g == Grant::Rw || (g == Grant::Ro && op == BLKIF_OP_WRITE);
            total += count;
        }
        let sector = self.sector(total);
        r[16..24].copy_from_slice(&sector.to_le_bytes());
        if max == 0 {
            return Want::NotSupported;
        }
        if op != BLKIF_OP_READ && op != BLKIF_OP_WRITE {
            return Want::Error;
        }
        if n == 0 || n > max {
            return Want::Error;
        }
        if !known {
            return Want::Any;
        }
        let in_range = sector
            .checked_add(total)
            .is_some_and(|e| e <= self.disk.sectors);
        if !segs_ok || !in_range || !grants_ok {
            Want::Error
        } else {
            Want::Okay
        }
    }
}

/// Request `i` of the batch just answered, in hex, 32 bytes a line.
fn print_slot(i: u64) {
    // SAFETY: single-threaded; the last batch's requests are kept in SENT.
    let sent = unsafe { &*core::ptr::addr_of!(SENT) };
    let slot = &sent[(i % u64::from(SLOTS)) as usize];
    for (k, chunk) in slot.chunks(32).enumerate() {
        let w = |o: usize| u64::from_le_bytes(chunk[o..o + 8].try_into().unwrap_or([0; 8]));
        let n = chunk.len();
        println!(
            "fuzz: blkif #{i} +{}: {:016x} {:016x} {:016x} {:016x}",
            k * 32,
            w(0),
            if n >= 16 { w(8) } else { 0 },
            if n >= 24 { w(16) } else { 0 },
            if n >= 32 { w(24) } else { 0 }
        );
    }
}

/// The requests of the batch in flight, by index modulo the ring size,
/// for reports (the ring slots hold the responses by then).
static mut SENT: [[u8; 112]; SLOTS as usize] = [[0; 112]; SLOTS as usize];

/// A number from a backend node.
fn node_number(xs: &mut Store, dir: &str, key: &str) -> u64 {
    let mut out = [0u8; 256];
    match xs.read(alloc_path(dir, key), &mut out) {
        Ok(n) => core::str::from_utf8(&out[..n])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// `fuzz-blkif=N:SEED`.
pub fn fuzz(p: Params) -> Result<(), &'static str> {
    let Vbd {
        mut xs,
        backend,
        ring,
        port,
    } = connect()?;
    let disk = Disk {
        sectors: node_number(&mut xs, backend, "sectors"),
        flush: node_number(&mut xs, backend, "feature-flush-cache") == 1,
        discard: node_number(&mut xs, backend, "feature-discard") == 1,
        max_indirect: node_number(&mut xs, backend, "feature-max-indirect-segments"),
    };
    if disk.sectors == 0 {
        return Err("the backend names no disk size");
    }
    for (k, gref) in RW_REFS[1..].iter().enumerate() {
        grant(
            *gref,
            core::ptr::addr_of!(RW_PAGES) as u64 + k as u64 * 4096,
            false,
        );
    }
    grant(RO_REF, core::ptr::addr_of!(RO_PAGE) as u64, true);
    for (k, gref) in INDIRECT_REFS.iter().enumerate() {
        grant(
            *gref,
            core::ptr::addr_of!(INDIRECT) as u64 + k as u64 * 4096,
            true,
        );
    }
    let events = Events::new(fuzz::above_ram_gfn()? + 4)?;
    println!("fuzz: blkif: {} requests, seed {}", p.count, p.seed);
    println!(
        "fuzz: blkif disk: {} sectors, flush {}, discard {}, {} indirect segments",
        disk.sectors, disk.flush, disk.discard, disk.max_indirect
    );
    let mut gen = Gen {
        rng: Rng::new(p.seed),
        disk: &disk,
        good: false,
        indirect_taken: false,
    };
    let mut progress = Progress::new("blkif", p.count);
    let mut prod = vol32(ring + 8);
    let mut done = 0u64;
    while done < p.count {
        let batch = gen.rng.range(1, u64::from(SLOTS)).min(p.count - done) as u32;
        gen.indirect_taken = false;
        let mut wants = [(0u64, 0u8, Want::Any); SLOTS as usize];
        for k in 0..batch {
            let (mut slot, want) = gen.request();
            // Ids unique within the batch, so each answer names its request.
            let id = loop {
                let id = gen.rng.next();
                if !wants[..k as usize].iter().any(|w| w.0 == id) {
                    break id;
                }
            };
            slot[8..16].copy_from_slice(&id.to_le_bytes());
            let op = if slot[0] == BLKIF_OP_INDIRECT {
                slot[1]
            } else {
                slot[0]
            };
            wants[k as usize] = (id, op, want);
            // SAFETY: single-threaded; SENT is only touched here and in print_slot.
            unsafe {
                (*core::ptr::addr_of_mut!(SENT))
                    [((done + u64::from(k)) % u64::from(SLOTS)) as usize] = slot
            };
            let i = done + u64::from(k);
            let word =
                |at: usize| u64::from_le_bytes(slot[at..at + 8].try_into().unwrap_or([0; 8]));
            fuzz::record(
                i,
                u64::from(slot[0]),
                [
                    id,
                    u64::from(slot[1]),
                    word(16),
                    word(24),
                    u64::from(prod.wrapping_add(k)),
                ],
            );
            if i >= p.trace_from {
                fuzz::trace(
                    i,
                    u64::from(slot[0]),
                    [id, u64::from(slot[1]), word(16), word(24), word(32)],
                );
            }
            let at = ring + 64 + u64::from(prod.wrapping_add(k) % SLOTS) * 112;
            // SAFETY: a free request slot of the ring page (the previous
            // batch was answered in full).
            unsafe { core::ptr::copy_nonoverlapping(slot.as_ptr(), at as *mut u8, 112) };
        }
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        let want_prod = prod.wrapping_add(batch);
        set32(ring, want_prod);
        send(port);
        let answered = events.wait(port, TIMEOUT_NS, || {
            // Ask to be told of the next answer before looking again.
            set32(ring + 12, vol32(ring + 8).wrapping_add(1));
            core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
            vol32(ring + 8) == want_prod
        });
        if !answered {
            fuzz::fail(done, "blkback did not answer a batch within 30 s");
            return Err("blkback stopped answering");
        }
        let mut seen = [false; SLOTS as usize];
        for k in 0..batch {
            let at = ring + 64 + u64::from(prod.wrapping_add(k) % SLOTS) * 112;
            // SAFETY: response k of the batch (id u64 @0, operation u8 @8,
            // status i16 @10), written before rsp_prod passed it.
            let (id, op, status) = unsafe {
                (
                    (at as *const u64).read_volatile(),
                    ((at + 8) as *const u8).read_volatile(),
                    ((at + 10) as *const i16).read_volatile(),
                )
            };
            let Some(j) = wants[..batch as usize].iter().position(|w| w.0 == id) else {
                fuzz::fail(done + u64::from(k), "a response whose id names no request");
                continue;
            };
            let i = done + j as u64;
            if core::mem::replace(&mut seen[j], true) {
                fuzz::fail(i, "two responses for one request");
            }
            let (_, want_op, want) = wants[j];
            if op != want_op {
                fuzz::fail(i, "a response with another operation than its request's");
            }
            let ok = match want {
                Want::Okay => status == BLKIF_RSP_OKAY,
                Want::Error => status == BLKIF_RSP_ERROR,
                Want::NotSupported => status == BLKIF_RSP_EOPNOTSUPP,
                Want::Any => matches!(
                    status,
                    BLKIF_RSP_OKAY | BLKIF_RSP_ERROR | BLKIF_RSP_EOPNOTSUPP
                ),
            };
            if !ok {
                println!(
                    "fuzz: blkif #{i}: status {status}, expected {}",
                    match want {
                        Want::Okay => "OKAY",
                        Want::Error => "ERROR",
                        Want::NotSupported => "EOPNOTSUPP",
                        Want::Any => "a blkif.h status",
                    }
                );
                fuzz::fail(i, "a response with the wrong status");
                print_slot(i);
            }
            let row = usize::from(want_op).min(OPS - 1);
            let col = match status {
                BLKIF_RSP_OKAY => 0,
                BLKIF_RSP_ERROR => 1,
                BLKIF_RSP_EOPNOTSUPP => 2,
                _ => 3,
            };
            // SAFETY: single-threaded; HIST is only touched here and at the end.
            unsafe { (*core::ptr::addr_of_mut!(HIST))[row][col] += 1 };
        }
        prod = want_prod;
        done += u64::from(batch);
        progress.tick(done);
    }
    // SAFETY: single-threaded; the fuzzing is over.
    let hist = unsafe { &*core::ptr::addr_of!(HIST) };
    for (op, row) in hist.iter().enumerate() {
        let total: u64 = row.iter().sum();
        if total == 0 {
            continue;
        }
        let names = ["OKAY", "ERROR", "EOPNOTSUPP", "other"];
        let mut cells = row
            .iter()
            .zip(names)
            .filter(|(&n, _)| n > 0)
            .map(|(&n, name)| Cell::Label(name, n));
        if op == OPS - 1 {
            fuzz::print_row(format_args!("blkif op other"), total, &mut cells);
        } else {
            fuzz::print_row(format_args!("blkif op {op}"), total, &mut cells);
        }
    }
    // A producer index a thousand ahead: the backend drops the ring and
    // says Closing (5).
    fuzz::record(p.count, 0, [0, 0, 0, 0, u64::from(prod.wrapping_add(1000))]);
    set32(ring, prod.wrapping_add(1000));
    send(port);
    if xs.wait_for(alloc_path(backend, "state"), b"5").is_err() {
        fuzz::fail(p.count, "an overrun ring did not close the vbd");
    }
    fuzz::done("blkif", &p);
    Ok(())
}
