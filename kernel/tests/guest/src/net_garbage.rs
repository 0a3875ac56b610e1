//! A hostile netfront: connects to its vif like Linux does, then puts garbage on the TX ring (a fixed set, or `fuzz-netif=N:SEED` seeded random packets and RX postings) and checks every answer, and that the vif closes when its ring is overrun.

use crate::frontend::{
    alloc_path, alloc_unbound, decimal, grant, map_grant_frame, send, set32, vol32, wait_word,
    yield_cpu, Page, Store,
};
use crate::fuzz::{self, Cell, Events, Params, Progress, Rng};
use crate::println;
use xen_abi::netif::{
    NETIF_RSP_DROPPED, NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY, NETTXF_CSUM_BLANK,
    NETTXF_DATA_VALIDATED, NETTXF_EXTRA_INFO,
};

static mut TX_RING: Page = Page([0; 4096]);
static mut RX_RING: Page = Page([0; 4096]);
/// Read-only to the backend: the one frame every TX case points into.
static mut DATA: Page = Page([0; 4096]);
static mut RX_BUFS: [Page; RX_POSTED] = [const { Page([0; 4096]) }; RX_POSTED];

/// The grant refs this frontend uses: above the reserved 0-7 and above
/// blkfront's 10-11, so one guest can run both.
const TX_RING_REF: u32 = 12;
const RX_RING_REF: u32 = 13;
const DATA_REF: u32 = 14;
const RX_BUF_REF: u32 = 16;
/// A ref this guest never granted (beyond grant frame 0, the only one it has).
const BAD_REF: u32 = 4000;
const VIF: &str = "device/vif/0";

/// RX buffers posted so broadcasts from other guests have somewhere to go.
const RX_POSTED: usize = 16;

// Shared rings (io/ring.h): a 64-byte header (req_prod, req_event, rsp_prod,
// rsp_event), then 256 slots of the larger of request and response.
const REQ_PROD: u64 = 0;
const REQ_EVENT: u64 = 4;
const RSP_PROD: u64 = 8;
const RSP_EVENT: u64 = 12;
const SLOTS: u64 = 64;
const RING_SIZE: u32 = 256;
const TX_SLOT: u64 = 12;
const RX_SLOT: u64 = 8;

// netif.h: NETTXF_more_data, XEN_NETIF_RSP_*.
const MORE_DATA: u16 = 4;
const RSP_ERROR: i16 = -1;
const RSP_OKAY: i16 = 0;

/// Response ids start here, away from the grant refs that share the bytes
/// of a slot's request, so a response never written cannot pass for one.
const ID_BASE: u32 = 100;
/// Rounds of every case sent while the other guests' traffic runs.
const ROUNDS: u32 = 200;

/// Ethernet broadcast, an IEEE local experimental ethertype, no payload.
const FRAME_LEN: u16 = 60;
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

/// One `netif_tx_request` (its id comes from its place on the ring).
#[derive(Clone, Copy)]
struct Tx {
    gref: u32,
    offset: u16,
    flags: u16,
    size: u16,
}

/// A case: its name, its slots, the status every slot must get and the
/// failure to report otherwise.
struct Case<'a> {
    name: &'static str,
    slots: &'a [Tx],
    want: i16,
    wrong: &'static str,
}

/// The backend's directory, kept for the whole run.
static mut BACKEND: [u8; 128] = [0; 128];

/// A connected vif.
struct Vif {
    xs: Store,
    backend: &'static str,
    mac: [u8; 6],
    tx: u64,
    rx: u64,
    port: u32,
}

/// Connects to device/vif/0 as Linux's netfront does: waits for InitWait
/// and feature-rx-copy, grants both rings, a read-only frame and the RX
/// buffers (posted before Connected, as netfront fills its RX ring before
/// switching state), allocates the channel, writes the ring refs, channel
/// and request-rx-copy, says Connected and waits for the backend's.
fn connect() -> Result<Vif, &'static str> {
    let mut xs = Store::new();
    let mut out = [0u8; 256];
    let n = xs.read(alloc_path(VIF, "backend"), &mut out)?;
    // SAFETY: single-threaded; BACKEND is written once, here, and only
    // read after.
    let backend = unsafe {
        let buf = &mut *core::ptr::addr_of_mut!(BACKEND);
        buf.get_mut(..n)
            .ok_or("backend path too long")?
            .copy_from_slice(&out[..n]);
        core::str::from_utf8(&buf[..n]).map_err(|_| "backend path not UTF-8")?
    };
    let n = xs.read(alloc_path(VIF, "mac"), &mut out)?;
    let mac = parse_mac(&out[..n]).ok_or("device/vif/0/mac is not a MAC address")?;
    xs.wait_for(alloc_path(backend, "state"), b"2")?;
    xs.wait_node(
        alloc_path(backend, "feature-rx-copy"),
        b"1",
        "the backend does not offer feature-rx-copy",
    )?;

    map_grant_frame();
    let tx = core::ptr::addr_of_mut!(TX_RING) as u64;
    let rx = core::ptr::addr_of_mut!(RX_RING) as u64;
    let data = core::ptr::addr_of_mut!(DATA) as u64;
    for ring in [tx, rx] {
        set32(ring + REQ_EVENT, 1);
        set32(ring + RSP_EVENT, 1);
    }
    grant(TX_RING_REF, tx, false);
    grant(RX_RING_REF, rx, false);
    let mut frame = [0u8; FRAME_LEN as usize];
    frame[0..6].fill(0xff);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETHERTYPE);
    // SAFETY: the start of the data page, not yet granted to anyone.
    unsafe { core::ptr::copy_nonoverlapping(frame.as_ptr(), data as *mut u8, frame.len()) };
    grant(DATA_REF, data, true);
    for i in 0..RX_POSTED as u64 {
        let page = core::ptr::addr_of_mut!(RX_BUFS) as u64 + i * 4096;
        let gref = RX_BUF_REF + i as u32;
        grant(gref, page, false);
        let at = rx + SLOTS + i * RX_SLOT;
        // SAFETY: RX request slot i (id u16 @0, gref u32 @4) of the RX ring.
        unsafe {
            core::ptr::write_volatile(at as *mut u16, i as u16);
            core::ptr::write_volatile((at + 4) as *mut u32, gref);
        }
    }
    set32(rx + REQ_PROD, RX_POSTED as u32);
    let port = alloc_unbound()?;
    let mut num = [0u8; 20];
    xs.write(
        alloc_path(VIF, "tx-ring-ref"),
        decimal(u64::from(TX_RING_REF), &mut num),
    )?;
    xs.write(
        alloc_path(VIF, "rx-ring-ref"),
        decimal(u64::from(RX_RING_REF), &mut num),
    )?;
    xs.write(
        alloc_path(VIF, "event-channel"),
        decimal(u64::from(port), &mut num),
    )?;
    xs.write(alloc_path(VIF, "request-rx-copy"), b"1")?;
    xs.write(alloc_path(VIF, "feature-rx-notify"), b"1")?;
    xs.write(alloc_path(VIF, "state"), b"4")?;
    xs.wait_for(alloc_path(backend, "state"), b"4")?;
    Ok(Vif {
        xs,
        backend,
        mac,
        tx,
        rx,
        port,
    })
}

pub fn run() -> Result<&'static str, &'static str> {
    let Vif {
        mut xs,
        backend,
        tx,
        rx,
        port,
        ..
    } = connect()?;

    let one = |gref, offset, size| Tx {
        gref,
        offset,
        flags: 0,
        size,
    };
    // A chain: the first slot's size is the whole packet's, every slot
    // carries 10 bytes, all but the last say more data follows.
    let mut chain = [Tx {
        gref: DATA_REF,
        offset: 0,
        flags: MORE_DATA,
        size: 10,
    }; 24];
    chain[0].size = 10 * chain.len() as u16;
    chain[chain.len() - 1].flags = 0;
    let no_end = [
        Tx {
            gref: DATA_REF,
            offset: 0,
            flags: MORE_DATA,
            size: 120,
        },
        Tx {
            gref: DATA_REF,
            offset: 0,
            flags: MORE_DATA,
            size: 60,
        },
    ];
    let cases = [
        Case {
            name: "oversized",
            slots: &[one(DATA_REF, 4000, 200)],
            want: RSP_ERROR,
            wrong: "a frame crossing its page was not refused",
        },
        Case {
            name: "bad-gref",
            slots: &[one(BAD_REF, 0, FRAME_LEN)],
            want: RSP_ERROR,
            wrong: "a grant this guest never gave was not refused",
        },
        Case {
            name: "no-end",
            slots: &no_end,
            want: RSP_ERROR,
            wrong: "a chain with no last slot was not refused",
        },
        Case {
            name: "too-many-slots",
            slots: &chain,
            want: RSP_ERROR,
            wrong: "a chain of 24 slots was not refused",
        },
        Case {
            name: "good",
            slots: &[one(DATA_REF, 0, FRAME_LEN)],
            want: RSP_OKAY,
            wrong: "a good frame after the garbage was not sent",
        },
    ];
    // Attack while the other guests talk: their first broadcast (an ARP
    // request of a ping) flooded into this vif's receive ring says they
    // are up; then the garbage goes on for ROUNDS rounds, among their pings
    // and their TCP stream, whose checks are the other half of this test.
    wait_word_nonzero(rx + RSP_PROD, "no frame from another guest ever arrived")?;
    println!("net-garbage: another guest's frame arrived; attacking");
    let mut prod = 0u32;
    for round in 0..ROUNDS {
        for case in &cases {
            prod = send_case(tx, port, prod, case, round > 0)?;
        }
    }
    println!("net-garbage: {ROUNDS} rounds answered");

    // A producer index a thousand ahead of the consumer: the backend must
    // stop serving this vif and say so with Closing (5).
    set32(tx + REQ_PROD, vol32(tx + RSP_PROD).wrapping_add(1000));
    send(port);
    xs.wait_node(
        alloc_path(backend, "state"),
        b"5",
        "an overrun TX ring did not close the vif",
    )?;
    println!("net-garbage: overrun -> closed");
    Ok("oversized, bad-gref, no-end, too-many-slots refused; good sent; overrun closed the vif")
}

/// Puts `case` on the TX ring from `prod`, notifies, waits for one response
/// per slot and checks their ids and statuses; returns the new producer.
fn send_case(tx: u64, port: u32, prod: u32, case: &Case, quiet: bool) -> Result<u32, &'static str> {
    let slot = |i: u32| tx + SLOTS + u64::from(i % RING_SIZE) * TX_SLOT;
    let n = case.slots.len() as u32;
    for (i, r) in (prod..).zip(case.slots) {
        let at = slot(i);
        // SAFETY: TX request slot i of the TX ring (gref u32 @0, offset u16
        // @4, flags u16 @6, id u16 @8, size u16 @10), ours until req_prod
        // passes it.
        unsafe {
            core::ptr::write_volatile(at as *mut u32, r.gref);
            core::ptr::write_volatile((at + 4) as *mut u16, r.offset);
            core::ptr::write_volatile((at + 6) as *mut u16, r.flags);
            core::ptr::write_volatile((at + 8) as *mut u16, (ID_BASE + i) as u16);
            core::ptr::write_volatile((at + 10) as *mut u16, r.size);
        }
    }
    // The slots must be visible before the producer index that covers them.
    core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
    set32(tx + REQ_PROD, prod + n);
    send(port);
    if let Err(why) = wait_word(tx + RSP_PROD, prod + n, "netback never answered a TX case") {
        println!("net-garbage: {} -> no answer", case.name);
        return Err(why);
    }
    // Each slot's response, in any order: an id from this case, once each.
    let mut seen = [false; 32];
    for i in prod..prod + n {
        let at = slot(i);
        // SAFETY: TX response slot i (id u16 @0, status i16 @2), written by
        // the backend before rsp_prod passed it.
        let (id, status) = unsafe {
            (
                core::ptr::read_volatile(at as *const u16),
                core::ptr::read_volatile((at + 2) as *const i16),
            )
        };
        let k = u32::from(id).wrapping_sub(ID_BASE + prod) as usize;
        if k >= n as usize || seen[k] {
            println!(
                "net-garbage: {} -> response id {id} echoes no request",
                case.name
            );
            return Err("a TX response's id does not echo its request's");
        }
        seen[k] = true;
        if status != case.want {
            println!(
                "net-garbage: {} -> {status} for id {id}, want {}",
                case.name, case.want
            );
            return Err(case.wrong);
        }
    }
    if !quiet && n == 1 {
        println!("net-garbage: {} -> {}", case.name, case.want);
    } else if !quiet {
        println!("net-garbage: {} -> {} on {n} slots", case.name, case.want);
    }
    Ok(prod + n)
}

/// Waits, yielding, until the word at `addr` is not zero.
fn wait_word_nonzero(addr: u64, err: &'static str) -> Result<(), &'static str> {
    for _ in 0..20_000_000u32 {
        if vol32(addr) != 0 {
            return Ok(());
        }
        yield_cpu();
    }
    Err(err)
}

/// "00:16:3e:01:02:03" as six bytes.
fn parse_mac(s: &[u8]) -> Option<[u8; 6]> {
    if s.len() != 17 {
        return None;
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut mac = [0u8; 6];
    for (i, b) in mac.iter_mut().enumerate() {
        let at = i * 3;
        if i > 0 && s[at - 1] != b':' {
            return None;
        }
        *b = hex(s[at])? << 4 | hex(s[at + 1])?;
    }
    Some(mac)
}

// ---------------------------------------------------------------------------
// `fuzz-netif=N:SEED`: N random TX slots in random packets and batches,
// with random RX buffers posted and every answer checked.

/// Two more writable pages for TX data (frames written between batches).
static mut TX_PAGES: [Page; 2] = [const { Page([0; 4096]) }; 2];
const TX_PAGE_REFS: [u32; 2] = [40, 41];
/// Refs never granted (0 and 1 are its console and XenStore pages, and
/// RX_BUF_REF.. its receive buffers: RX postings name those only on purpose).
const NET_BAD_REFS: [u32; 5] = [2, 7, 400, 511, BAD_REF];
/// TX slots in one batch at most (of the ring's 256).
const BATCH_SLOTS: u64 = 64;
/// RX requests kept posted; ids come from 0..RX_IDS.
const RX_OUTSTANDING: u32 = 64;
const RX_IDS: usize = 1024;
/// The Linux guest's address in `cargo xtask fuzz netif` (its ARP target).
const LINUX_IP: [u8; 4] = [10, 0, 0, 1];
const FUZZ_IP: [u8; 4] = [10, 0, 0, 99];
const NET_TIMEOUT_NS: u64 = 30_000_000_000;
/// How long the Linux guest's NIC is waited for before the run.
const ARP_WAIT_NS: u64 = 60_000_000_000;

/// What a packet's slots must be answered with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NetWant {
    Okay,
    Error,
    /// Any netif.h status (extra-info slots get NULL).
    Any,
}

/// Histogram rows: the kinds of packet; columns: OKAY, ERROR, DROPPED,
/// NULL, other. The last row counts RX answers: data, ERROR, DROPPED, other.
const KINDS: [&str; 7] = [
    "good",
    "bad-gref",
    "bad-offset",
    "short",
    "chain",
    "random",
    "rx",
];
static mut NET_HIST: [[u64; 5]; 7] = [[0; 5]; 7];

fn tally(kind: usize, status: i16) {
    let col = match status {
        NETIF_RSP_OKAY => 0,
        NETIF_RSP_ERROR => 1,
        NETIF_RSP_DROPPED => 2,
        NETIF_RSP_NULL => 3,
        _ => 4,
    };
    // SAFETY: single-threaded; NET_HIST is only touched here and at the end.
    unsafe { (*core::ptr::addr_of_mut!(NET_HIST))[kind][col] += 1 };
}

struct NetGen {
    rng: Rng,
    mac: [u8; 6],
}

impl NetGen {
    /// A granted page with data for TX: the read-only frame or the two
    /// writable pages.
    fn data_ref(&mut self) -> u32 {
        match self.rng.below(3) {
            0 => DATA_REF,
            _ => self.rng.pick(&TX_PAGE_REFS),
        }
    }

    /// Writes fresh frames into the TX pages: broadcasts of an unknown
    /// type, ARP requests for the Linux guest, frames to random unicast
    /// addresses, now and then one with a borrowed source address, and
    /// random bytes.
    /// An ARP request for the Linux guest at the start of TX page `k`.
    fn arp(&mut self, k: usize) {
        // SAFETY: single-threaded; the backend reads the page only while
        // a batch is out, and this runs between batches.
        let b = unsafe { &mut (*core::ptr::addr_of_mut!(TX_PAGES))[k].0 };
        b[..60].fill(0);
        b[0..6].fill(0xff);
        b[6..12].copy_from_slice(&self.mac);
        b[12..14].copy_from_slice(&[0x08, 0x06]);
        b[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        b[22..28].copy_from_slice(&self.mac);
        b[28..32].copy_from_slice(&FUZZ_IP);
        b[38..42].copy_from_slice(&LINUX_IP);
    }

    fn frames(&mut self) {
        // SAFETY: single-threaded; the backend reads these pages only while
        // a batch is out, and this runs between batches.
        let pages = unsafe { &mut *core::ptr::addr_of_mut!(TX_PAGES) };
        for page in pages.iter_mut() {
            let b = &mut page.0;
            self.rng.fill(&mut b[..]);
            match self.rng.below(4) {
                0 => {
                    b[0..6].fill(0xff);
                    b[6..12].copy_from_slice(&self.mac);
                    b[12..14].copy_from_slice(&ETHERTYPE);
                }
                1 => {
                    // ARP who-has LINUX_IP tell FUZZ_IP, then random bytes.
                    b[0..6].fill(0xff);
                    b[6..12].copy_from_slice(&self.mac);
                    b[12..14].copy_from_slice(&[0x08, 0x06]);
                    b[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
                    b[22..28].copy_from_slice(&self.mac);
                    b[28..32].copy_from_slice(&FUZZ_IP);
                    b[32..38].fill(0);
                    b[38..42].copy_from_slice(&LINUX_IP);
                }
                2 => {
                    b[0] &= 0xfe;
                    b[6..12].copy_from_slice(&self.mac);
                }
                _ => {}
            }
        }
    }

    /// One packet's slots into `out` (gref, offset, flags, size; the id
    /// is set by the caller); its kind, what its slots must get, and
    /// whether its chain may run on into the next packet's slots (random
    /// flags, or a chain cut short by the batch's end).
    fn packet(&mut self, out: &mut [[u8; 12]], room: usize) -> (usize, usize, NetWant, bool) {
        let roll = self.rng.below(100);
        match roll {
            // One slot, flags 0, a frame inside its page: sent.
            // Half of them whole frames from the start of a TX page (the
            // ARP requests among them get the Linux guest to answer).
            0..=44 => {
                let size = self.rng.range(14, 1514) as u16;
                let gref = self.data_ref();
                let offset = if gref == DATA_REF || self.rng.one_in(2) {
                    0
                } else {
                    self.rng.below(4097 - u64::from(size)) as u16
                };
                tx_slot(&mut out[0], gref, offset, 0, size);
                (1, 0, NetWant::Okay, false)
            }
            45..=54 => {
                let gref = self.rng.pick(&NET_BAD_REFS);
                tx_slot(&mut out[0], gref, 0, 0, FRAME_LEN);
                (1, 1, NetWant::Error, false)
            }
            55..=61 => {
                let offset = self.rng.range(1, 4095) as u16;
                let size = self.rng.range(4097 - u64::from(offset), 0xffff) as u16;
                tx_slot(&mut out[0], self.data_ref(), offset, 0, size);
                (1, 2, NetWant::Error, false)
            }
            62..=66 => {
                tx_slot(
                    &mut out[0],
                    self.data_ref(),
                    0,
                    0,
                    self.rng.below(14) as u16,
                );
                (1, 3, NetWant::Error, false)
            }
            // Chains: more_data slots, now and then extra-info slots,
            // checksum flags, sizes that add up or do not.
            67..=86 => {
                let extras = if self.rng.one_in(4) {
                    self.rng.range(1, 6) as usize
                } else {
                    0
                };
                let data = self.rng.range(1, 24) as usize;
                let n = (extras + data).min(room);
                let mut flags0 = if self.rng.one_in(3) {
                    self.rng.pick(&[
                        NETTXF_CSUM_BLANK,
                        NETTXF_DATA_VALIDATED,
                        NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED,
                    ])
                } else {
                    0
                };
                if extras > 0 {
                    flags0 |= NETTXF_EXTRA_INFO;
                }
                let mut total = 0u32;
                for (k, s) in out.iter_mut().enumerate().take(n) {
                    if k >= 1 && k <= extras {
                        // struct netif_extra_info { type; flags; ... }
                        self.rng.fill(s);
                        s[0] = self.rng.range(0, 7) as u8;
                        s[1] = u8::from(k < extras);
                        continue;
                    }
                    let size = self.rng.range(1, 1600) as u16;
                    total += u32::from(size);
                    // More data follows if a data slot comes after this one
                    // (the extra-info slots sit between the first and the rest).
                    let more = if (k == 0 && n > extras + 1) || (k > extras && k + 1 < n) {
                        MORE_DATA
                    } else {
                        0
                    };
                    let offset = self.rng.below(4096 - u64::from(size.min(4095))) as u16;
                    let flags = more | if k == 0 { flags0 } else { 0 };
                    tx_slot(s, self.data_ref(), offset, flags, size);
                }
                if !self.rng.one_in(4) {
                    out[0][10..12].copy_from_slice(&(total.min(0xffff) as u16).to_le_bytes());
                }
                (n, 4, NetWant::Any, n < extras + data)
            }
            // Random slots; the grefs never name its console or XenStore page.
            _ => {
                let n = (self.rng.range(1, 4) as usize).min(room);
                for s in out.iter_mut().take(n) {
                    self.rng.fill(s);
                    let g = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                    if g <= 1 {
                        s[0..4].copy_from_slice(&BAD_REF.to_le_bytes());
                    }
                }
                (n, 5, NetWant::Any, true)
            }
        }
    }
}

/// The RX postings' own random stream.
struct RxGen {
    rng: Rng,
}

impl RxGen {
    /// A gref for an RX request: its receive buffers mostly, else the
    /// read-only frame (a copy into it must fail) or none.
    fn rx_ref(&mut self) -> u32 {
        match self.rng.below(10) {
            0..=7 => RX_BUF_REF + self.rng.below(RX_POSTED as u64) as u32,
            8 => DATA_REF,
            _ => self.rng.pick(&NET_BAD_REFS),
        }
    }
}

/// A TX request's fields but its id (netif.h `netif_tx_request`: gref
/// u32, offset u16, flags u16, id u16, size u16).
fn tx_slot(s: &mut [u8; 12], gref: u32, offset: u16, flags: u16, size: u16) {
    s[0..4].copy_from_slice(&gref.to_le_bytes());
    s[4..6].copy_from_slice(&offset.to_le_bytes());
    s[6..8].copy_from_slice(&flags.to_le_bytes());
    s[10..12].copy_from_slice(&size.to_le_bytes());
}

/// The RX side: requests posted, with the ids outstanding.
struct Rx {
    ring: u64,
    prod: u32,
    cons: u32,
    outstanding: [u8; RX_IDS],
    answered: u64,
}

impl Rx {
    /// Takes every RX answer (its id must name an outstanding request),
    /// then posts requests up to RX_OUTSTANDING.
    fn service(&mut self, gen: &mut RxGen, index: u64) {
        let rsp_prod = vol32(self.ring + RSP_PROD);
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        while self.cons != rsp_prod {
            let at = self.ring + SLOTS + u64::from(self.cons % RING_SIZE) * RX_SLOT;
            // SAFETY: RX response slot (id u16 @0, offset @2, flags @4,
            // status i16 @6), written before rsp_prod passed it.
            let (id, status) = unsafe {
                (
                    (at as *const u16).read_volatile(),
                    ((at + 6) as *const i16).read_volatile(),
                )
            };
            let slot = self.outstanding.get_mut(usize::from(id));
            match slot {
                Some(n) if *n > 0 => *n -= 1,
                _ => fuzz::fail(index, "an RX answer whose id names no posted request"),
            }
            tally(6, if status >= 0 { 0 } else { status });
            self.cons = self.cons.wrapping_add(1);
            self.answered += 1;
        }
        // The backend may hold posted requests it has not answered yet:
        // post only as many as keep RX_OUTSTANDING in flight.
        while self.prod.wrapping_sub(self.cons) < RX_OUTSTANDING {
            let id = gen.rng.below(RX_IDS as u64) as u16;
            let gref = gen.rx_ref();
            let at = self.ring + SLOTS + u64::from(self.prod % RING_SIZE) * RX_SLOT;
            // SAFETY: a free RX request slot (id u16 @0, gref u32 @4).
            unsafe {
                (at as *mut u16).write_volatile(id);
                ((at + 4) as *mut u32).write_volatile(gref);
            }
            self.outstanding[usize::from(id)] += 1;
            self.prod = self.prod.wrapping_add(1);
        }
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        set32(self.ring + REQ_PROD, self.prod);
    }
}

/// `fuzz-netif=N:SEED`.
pub fn fuzz(p: Params) -> Result<(), &'static str> {
    let Vif {
        mut xs,
        backend,
        mac,
        tx,
        rx,
        port,
    } = connect()?;
    for (k, gref) in TX_PAGE_REFS.iter().enumerate() {
        grant(
            *gref,
            core::ptr::addr_of!(TX_PAGES) as u64 + k as u64 * 4096,
            false,
        );
    }
    let events = Events::new(fuzz::above_ram_gfn()? + 4)?;
    println!("fuzz: netif: {} slots, seed {}", p.count, p.seed);
    let mut gen = NetGen {
        rng: Rng::new(p.seed),
        mac,
    };
    // RX postings from a stream of their own: how many there are depends
    // on timing, and the TX stream must replay from the seed alone.
    let mut rx_gen = RxGen {
        rng: Rng::new(p.seed ^ 0x5258_5258_5258_5258),
    };
    let mut rxs = Rx {
        ring: rx,
        prod: RX_POSTED as u32,
        cons: 0,
        outstanding: [0; RX_IDS],
        answered: 0,
    };
    for i in 0..RX_POSTED {
        rxs.outstanding[i] += 1;
    }
    let mut prod = vol32(tx + RSP_PROD);
    // The Linux guest's NIC first (an ARP request for it every 200 ms, for
    // a minute at most): then the run also crosses its traffic, and the
    // receive ring gets frames to answer.
    let start = events.clock.now();
    let mut asked = 0u32;
    while rxs.answered == 0 && events.clock.now() - start < ARP_WAIT_NS {
        gen.arp(0);
        let mut s = [0u8; 12];
        tx_slot(&mut s, TX_PAGE_REFS[0], 0, 0, 60);
        s[8..10].copy_from_slice(&(asked as u16).to_le_bytes());
        let at = tx + SLOTS + u64::from(prod % RING_SIZE) * TX_SLOT;
        // SAFETY: a free TX request slot (every earlier one was answered).
        unsafe { core::ptr::copy_nonoverlapping(s.as_ptr(), at as *mut u8, 12) };
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        prod = prod.wrapping_add(1);
        set32(tx + REQ_PROD, prod);
        send(port);
        asked += 1;
        let sent = events.wait(port, NET_TIMEOUT_NS, || {
            set32(tx + RSP_EVENT, vol32(tx + RSP_PROD).wrapping_add(1));
            core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
            vol32(tx + RSP_PROD) == prod
        });
        if !sent {
            return Err("netback did not answer an ARP request");
        }
        events.wait(port, 200_000_000, || {
            rxs.service(&mut rx_gen, 0);
            rxs.answered > 0
        });
    }
    println!(
        "fuzz: netif: {} after {asked} ARP requests",
        if rxs.answered > 0 {
            "a frame came back"
        } else {
            "nothing came back"
        }
    );
    let mut progress = Progress::new("netif", p.count);
    let mut done = 0u64;
    while done < p.count {
        gen.frames();
        let want_slots = gen.rng.range(1, BATCH_SLOTS).min(p.count - done) as usize;
        let mut slots = [[0u8; 12]; BATCH_SLOTS as usize];
        let mut wants = [(0usize, NetWant::Any); BATCH_SLOTS as usize];
        let mut n = 0;
        // After a packet whose chain may run on, the backend may read the
        // next packets' slots as part of it: they can get any status.
        let mut open = false;
        while n < want_slots {
            let (used, kind, want, leaks) = gen.packet(&mut slots[n..], want_slots - n);
            let want = if open { NetWant::Any } else { want };
            for w in wants.iter_mut().skip(n).take(used) {
                *w = (kind, want);
            }
            open |= leaks;
            n += used;
        }
        // Ids unique within the batch: a random base, then in order.
        let base = gen.rng.next() as u16;
        for (k, s) in slots.iter_mut().take(n).enumerate() {
            s[8..10].copy_from_slice(&base.wrapping_add(k as u16).to_le_bytes());
            let i = done + k as u64;
            let w = |a: usize| u64::from(u16::from_le_bytes([s[a], s[a + 1]]));
            let args = [
                w(8),
                u64::from(u32::from_le_bytes([s[0], s[1], s[2], s[3]])),
                w(4),
                w(10),
                u64::from(prod.wrapping_add(k as u32)),
            ];
            fuzz::record(i, w(6), args);
            if i >= p.trace_from {
                fuzz::trace(i, w(6), args);
            }
            let at = tx + SLOTS + u64::from(prod.wrapping_add(k as u32) % RING_SIZE) * TX_SLOT;
            // SAFETY: a free TX request slot (the previous batch was
            // answered in full).
            unsafe { core::ptr::copy_nonoverlapping(s.as_ptr(), at as *mut u8, 12) };
        }
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        let want_prod = prod.wrapping_add(n as u32);
        set32(tx + REQ_PROD, want_prod);
        send(port);
        let answered = events.wait(port, NET_TIMEOUT_NS, || {
            rxs.service(&mut rx_gen, done);
            set32(tx + RSP_EVENT, vol32(tx + RSP_PROD).wrapping_add(1));
            core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
            vol32(tx + RSP_PROD) == want_prod
        });
        if !answered {
            fuzz::fail(done, "netback did not answer a batch within 30 s");
            return Err("netback stopped answering");
        }
        let mut seen = [false; BATCH_SLOTS as usize];
        for k in 0..n {
            let at = tx + SLOTS + u64::from(prod.wrapping_add(k as u32) % RING_SIZE) * TX_SLOT;
            // SAFETY: TX response slot (id u16 @0, status i16 @2), written
            // before rsp_prod passed it.
            let (id, status) = unsafe {
                (
                    (at as *const u16).read_volatile(),
                    ((at + 2) as *const i16).read_volatile(),
                )
            };
            let j = usize::from(id.wrapping_sub(base));
            if j >= n || core::mem::replace(&mut seen[j], true) {
                fuzz::fail(
                    done + k as u64,
                    "a TX answer whose id names no slot, or a slot answered twice",
                );
                continue;
            }
            let i = done + j as u64;
            let (kind, want) = wants[j];
            tally(kind, status);
            let ok = match want {
                NetWant::Okay => status == NETIF_RSP_OKAY,
                NetWant::Error => status == NETIF_RSP_ERROR,
                NetWant::Any => matches!(
                    status,
                    NETIF_RSP_OKAY | NETIF_RSP_ERROR | NETIF_RSP_DROPPED | NETIF_RSP_NULL
                ),
            };
            if !ok {
                println!("fuzz: netif #{i} ({}): status {status}", KINDS[kind]);
                fuzz::fail(i, "a TX answer with the wrong status");
                // The slot and the two before it in the batch.
                for (q, s) in slots
                    .iter()
                    .enumerate()
                    .take(j + 1)
                    .skip(j.saturating_sub(2))
                {
                    let w = |a: usize| u16::from_le_bytes([s[a], s[a + 1]]);
                    println!(
                        "fuzz: netif #{}: {} gref {:#x} offset {} flags {:#x} size {}",
                        done + q as u64,
                        KINDS[wants[q].0],
                        u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
                        w(4),
                        w(6),
                        w(10)
                    );
                }
            }
        }
        prod = want_prod;
        done += n as u64;
        progress.tick(done);
    }
    rxs.service(&mut rx_gen, done);
    // SAFETY: single-threaded; the fuzzing is over.
    let hist = unsafe { &*core::ptr::addr_of!(NET_HIST) };
    for (kind, row) in hist.iter().enumerate() {
        let total: u64 = row.iter().sum();
        if total == 0 {
            continue;
        }
        let names = if kind == 6 {
            ["data", "ERROR", "DROPPED", "NULL", "other"]
        } else {
            ["OKAY", "ERROR", "DROPPED", "NULL", "other"]
        };
        let mut cells = row
            .iter()
            .zip(names)
            .filter(|(&n, _)| n > 0)
            .map(|(&n, name)| Cell::Label(name, n));
        fuzz::print_row(format_args!("netif {}", KINDS[kind]), total, &mut cells);
    }
    // A producer index a thousand ahead: the backend closes the vif (5).
    fuzz::record(p.count, 0, [0, 0, 0, 0, u64::from(prod.wrapping_add(1000))]);
    set32(tx + REQ_PROD, prod.wrapping_add(1000));
    send(port);
    if xs
        .wait_node(alloc_path(backend, "state"), b"5", "no Closing")
        .is_err()
    {
        fuzz::fail(p.count, "an overrun TX ring did not close the vif");
    }
    fuzz::done("netif", &p);
    Ok(())
}
