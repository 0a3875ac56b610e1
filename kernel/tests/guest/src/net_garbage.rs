//! A hostile netfront: connects to its vif like Linux does, then puts garbage on the TX ring and checks that netback answers errors, sends a good frame, and closes the vif when its ring is overrun.

use crate::frontend::{
    alloc_path, alloc_unbound, fmt_u32, grant, map_grant_frame, send, set32, vol32, wait_word,
    yield_cpu, Page, Store,
};
use crate::println;

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

pub fn run() -> Result<&'static str, &'static str> {
    let mut xs = Store::new();
    let mut out = [0u8; 256];
    let n = xs.read(alloc_path(VIF, "backend"), &mut out)?;
    let mut backend = [0u8; 128];
    backend
        .get_mut(..n)
        .ok_or("backend path too long")?
        .copy_from_slice(&out[..n]);
    let backend = core::str::from_utf8(&backend[..n]).map_err(|_| "backend path not UTF-8")?;
    let n = xs.read(alloc_path(VIF, "mac"), &mut out)?;
    let mac = parse_mac(&out[..n]).ok_or("device/vif/0/mac is not a MAC address")?;
    xs.wait_for(alloc_path(backend, "state"), b"2")?;
    xs.wait_node(
        alloc_path(backend, "feature-rx-copy"),
        b"1",
        "the backend does not offer feature-rx-copy",
    )?;

    // Grant table frame 0, both rings (SHARED_RING_INIT), the frame and the
    // RX buffers.
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
    // Posted before Connected, as netfront fills its RX ring before
    // switching state; no notification is due until the backend connects.
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
    let mut num = [0u8; 12];
    xs.write(
        alloc_path(VIF, "tx-ring-ref"),
        fmt_u32(TX_RING_REF, &mut num),
    )?;
    xs.write(
        alloc_path(VIF, "rx-ring-ref"),
        fmt_u32(RX_RING_REF, &mut num),
    )?;
    xs.write(alloc_path(VIF, "event-channel"), fmt_u32(port, &mut num))?;
    xs.write(alloc_path(VIF, "request-rx-copy"), b"1")?;
    xs.write(alloc_path(VIF, "feature-rx-notify"), b"1")?;
    xs.write(alloc_path(VIF, "state"), b"4")?;
    xs.wait_for(alloc_path(backend, "state"), b"4")?;

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
