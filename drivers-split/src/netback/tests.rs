//! Frontends, their grants and the switch on the host, against `Vif`.

use super::checksum;
use super::config::Mac;
use super::switch::{Forward, Switch};
use super::tx::Gso;
use super::vif::*;
use super::xenbus::{self, Peer};
use crate::grant_copy::fake::GuestPages;
use crate::ring::tests::{fresh, Heap};
use crate::xenstore::RingMemory;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use proptest::prelude::*;
use xen_abi::netif::*;

const ALL: Peer = Peer {
    sg: true,
    gso_v4: true,
    gso_v6: true,
};

fn mac(n: u8) -> Mac {
    Mac([0x00, 0x16, 0x3e, 0, 0, n])
}

fn vif(domid: u16, peer: Peer) -> Vif<Heap> {
    Vif::new(domid, mac(domid as u8), peer, fresh(4096), fresh(4096))
}

/// The frontend puts transmit requests and publishes them at once.
fn send(v: &mut Vif<Heap>, reqs: &[NetifTxRequest]) {
    let (tx, _) = v.rings();
    let prod = tx.load_u32(0);
    for (i, r) in reqs.iter().enumerate() {
        let at = 64 + ((prod as usize + i) & 255) * TX_SLOT;
        tx.write_bytes(at, &r.to_bytes());
    }
    tx.store_u32(0, prod + reqs.len() as u32);
}

/// Transmit responses `from..rsp_prod`.
fn tx_responses(v: &mut Vif<Heap>, from: u32) -> Vec<NetifTxResponse> {
    let (tx, _) = v.rings();
    let prod = tx.load_u32(8);
    (from..prod)
        .map(|i| {
            let at = 64 + (i as usize & 255) * TX_SLOT;
            let mut b = [0u8; 4];
            tx.read_bytes(at, &mut b);
            NetifTxResponse::from_bytes(&b)
        })
        .collect()
}

/// The frontend posts receive buffers: grefs `first..first + n`, ids = slot.
fn post_rx(v: &mut Vif<Heap>, g: &mut GuestPages, domid: u16, first: u32, n: u32) {
    let (_, rx) = v.rings();
    let prod = rx.load_u32(0);
    for i in 0..n {
        let slot = prod + i;
        let r = NetifRxRequest {
            id: (slot & 255) as u16,
            pad: 0,
            gref: first + i,
        };
        rx.write_bytes(64 + (slot as usize & 255) * RX_SLOT, &r.to_bytes());
        g.grant(domid, first + i, vec![0; 4096], false);
    }
    rx.store_u32(0, prod + n);
}

fn rx_slot(v: &mut Vif<Heap>, i: u32) -> [u8; 8] {
    let (_, rx) = v.rings();
    let mut b = [0u8; 8];
    rx.read_bytes(64 + (i as usize & 255) * RX_SLOT, &mut b);
    b
}

/// A frame from `src` to `dst` of `len` bytes, payload bytes counting up.
fn frame(src: Mac, dst: Mac, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12] = 0x88;
    f[13] = 0xb5;
    for (i, b) in f[14..].iter_mut().enumerate() {
        *b = i as u8;
    }
    f
}

/// Grants `data` page by page as grefs `first..`, read-only, and returns
/// the slots that send it (first slot: total size and `flags`).
fn tx_slots(
    g: &mut GuestPages,
    domid: u16,
    first: u32,
    data: &[u8],
    flags: u16,
) -> Vec<NetifTxRequest> {
    let chunks: Vec<&[u8]> = data.chunks(4096).collect();
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut page = vec![0u8; 4096];
            page[..c.len()].copy_from_slice(c);
            g.grant(domid, first + i as u32, page, true);
            let more = if i + 1 < chunks.len() {
                NETTXF_MORE_DATA
            } else {
                0
            };
            NetifTxRequest {
                gref: first + i as u32,
                offset: 0,
                flags: more | if i == 0 { flags } else { 0 },
                id: 100 + i as u16,
                size: if i == 0 {
                    data.len() as u16
                } else {
                    c.len() as u16
                },
            }
        })
        .collect()
}

#[test]
fn a_frame_goes_from_one_guest_to_another() {
    let mut g = GuestPages::default();
    let mut a = vif(1, ALL);
    let mut b = vif(2, ALL);
    let f = frame(mac(1), mac(2), 1514);
    let slots = tx_slots(&mut g, 1, 10, &f, 0);
    send(&mut a, &slots);
    let got = a.take_tx(&mut g, 64).unwrap();
    assert_eq!(got.len(), 1);
    assert!(a.push());
    assert_eq!(
        tx_responses(&mut a, 0),
        [NetifTxResponse { id: 100, status: 0 }]
    );
    assert_eq!(*got[0].data, f);
    // No buffers yet: it waits, and the backend asks for an event.
    b.enqueue(got[0].clone()).unwrap();
    b.deliver(&mut g).unwrap();
    assert_eq!(b.queued(), 1);
    assert!(!b.idle_check().unwrap());
    post_rx(&mut b, &mut g, 2, 50, 4);
    assert!(b.idle_check().unwrap());
    b.deliver(&mut g).unwrap();
    assert!(b.push());
    let r = NetifRxResponse::from_bytes(&rx_slot(&mut b, 0));
    assert_eq!((r.id, r.offset, r.flags, r.status), (0, 0, 0, 1514));
    assert_eq!(&g.page(2, 50)[..1514], &f[..]);
    assert_eq!(b.counters.rx_packets, 1);
}

#[test]
fn a_gso_packet_keeps_its_extra_and_slots() {
    let mut g = GuestPages::default();
    let mut a = vif(1, ALL);
    let mut b = vif(2, ALL);
    let f = frame(mac(1), mac(2), 9000);
    let mut slots = tx_slots(
        &mut g,
        1,
        10,
        &f,
        NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED | NETTXF_EXTRA_INFO,
    );
    let extra = NetifExtraInfo {
        kind: XEN_NETIF_EXTRA_TYPE_GSO,
        flags: 0,
        gso_size: 1448,
        gso_type: XEN_NETIF_GSO_TYPE_TCPV4,
        gso_pad: 0,
        gso_features: 0,
    };
    let mut raw = [0u8; 12];
    raw[..8].copy_from_slice(&extra.to_bytes());
    slots.insert(1, NetifTxRequest::from_bytes(&raw));
    send(&mut a, &slots);
    let got = a.take_tx(&mut g, 64).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].gso,
        Some(Gso {
            size: 1448,
            kind: XEN_NETIF_GSO_TYPE_TCPV4
        })
    );
    a.push();
    let rsp: Vec<i16> = tx_responses(&mut a, 0).iter().map(|r| r.status).collect();
    assert_eq!(rsp, [0, NETIF_RSP_NULL, 0, 0]);
    post_rx(&mut b, &mut g, 2, 50, 8);
    b.enqueue(got[0].clone()).unwrap();
    b.deliver(&mut g).unwrap();
    b.push();
    // Slot 0: first 4096 bytes, flags; slot 1: the extra; slots 2, 3: the rest.
    let r0 = NetifRxResponse::from_bytes(&rx_slot(&mut b, 0));
    assert_eq!(r0.status, 4096);
    assert_eq!(
        r0.flags,
        NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED | NETRXF_EXTRA_INFO | NETRXF_MORE_DATA
    );
    let e = NetifExtraInfo::from_bytes(&rx_slot(&mut b, 1));
    assert_eq!(
        (e.kind, e.gso_size, e.gso_type),
        (XEN_NETIF_EXTRA_TYPE_GSO, 1448, 1)
    );
    let r2 = NetifRxResponse::from_bytes(&rx_slot(&mut b, 2));
    let r3 = NetifRxResponse::from_bytes(&rx_slot(&mut b, 3));
    assert_eq!((r2.id, r2.status, r2.flags), (2, 4096, NETRXF_MORE_DATA));
    assert_eq!((r3.id, r3.status, r3.flags), (3, 9000 - 8192, 0));
    // Buffers 50, 52, 53 got the data; 51 went to the extra.
    let mut joined = g.page(2, 50).to_vec();
    joined.extend_from_slice(g.page(2, 52));
    joined.extend_from_slice(&g.page(2, 53)[..9000 - 8192]);
    assert_eq!(joined, f);
}

#[test]
fn a_blank_checksum_is_completed() {
    let mut g = GuestPages::default();
    let mut a = vif(1, ALL);
    // UDP over IPv4, 10.0.0.1 → 10.0.0.2, checksum field holding junk.
    let mut f = frame(mac(1), mac(2), 14 + 20 + 8 + 100);
    f[12] = 0x08;
    f[13] = 0x00;
    f[14..34].copy_from_slice(&[
        0x45, 0, 0, 128, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    f[34..42].copy_from_slice(&[0x04, 0xd2, 0x16, 0x2e, 0, 108, 0x12, 0x34]);
    let slots = tx_slots(&mut g, 1, 10, &f, NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED);
    send(&mut a, &slots);
    let got = a.take_tx(&mut g, 64).unwrap();
    assert!(checksum::verifies(&got[0].data).unwrap());
    // The receiver checks it itself.
    assert_eq!(got[0].rx_flags, 0);
    assert_eq!(a.counters.checksums, 1);
}

#[test]
fn malformed_packets_get_errors_and_the_ring_goes_on() {
    let mut g = GuestPages::default();
    let mut a = vif(1, ALL);
    let good = frame(mac(1), Mac::BROADCAST, 60);
    let ok = tx_slots(&mut g, 1, 10, &good, 0)[0];
    let one = |gref, offset, size, flags, id| NetifTxRequest {
        gref,
        offset,
        flags,
        id,
        size,
    };
    // Over its page; a ref not granted; too short.
    send(&mut a, &[one(10, 4000, 200, 0, 1)]);
    send(&mut a, &[one(4000, 0, 60, 0, 2)]);
    send(&mut a, &[one(10, 0, 10, 0, 3)]);
    // 24 fragments of 10 bytes.
    let chain: Vec<NetifTxRequest> = (0..24)
        .map(|i| {
            one(
                10,
                0,
                if i == 0 { 240 } else { 10 },
                if i < 23 { NETTXF_MORE_DATA } else { 0 },
                10 + i,
            )
        })
        .collect();
    send(&mut a, &chain);
    // Continuations bigger than the packet.
    send(
        &mut a,
        &[one(10, 0, 60, NETTXF_MORE_DATA, 40), one(10, 0, 100, 0, 41)],
    );
    // A good one after all that.
    send(&mut a, &[NetifTxRequest { id: 50, ..ok }]);
    // A chain with no end, last.
    send(
        &mut a,
        &[
            one(10, 0, 120, NETTXF_MORE_DATA, 60),
            one(10, 0, 60, NETTXF_MORE_DATA, 61),
        ],
    );
    let got = a.take_tx(&mut g, 64).unwrap();
    assert_eq!(got.len(), 1);
    a.push();
    let r = tx_responses(&mut a, 0);
    assert_eq!(r.len(), 3 + 24 + 2 + 1 + 2);
    for x in &r {
        let want = if x.id == 50 {
            NETIF_RSP_OKAY
        } else {
            NETIF_RSP_ERROR
        };
        assert_eq!(x.status, want, "id {}", x.id);
    }
    let ids: Vec<u16> = r.iter().map(|x| x.id).collect();
    let mut want: Vec<u16> = vec![1, 2, 3];
    want.extend(10..34);
    want.extend([40, 41, 50, 60, 61]);
    assert_eq!(ids, want);
    assert_eq!(a.counters.tx_errors, 6);
}

#[test]
fn another_address_is_not_sent() {
    let mut g = GuestPages::default();
    let mut a = vif(1, ALL);
    let f = frame(mac(9), mac(2), 60);
    send(&mut a, &tx_slots(&mut g, 1, 10, &f, 0));
    assert!(a.take_tx(&mut g, 64).unwrap().is_empty());
    a.push();
    assert_eq!(tx_responses(&mut a, 0)[0].status, 0);
    assert_eq!(a.counters.spoofed, 1);
}

#[test]
fn what_a_receiver_cannot_take_is_refused() {
    let p = |len, gso| Packet {
        data: Rc::new(frame(mac(1), mac(2), len)),
        rx_flags: 0,
        gso,
    };
    let mut plain = vif(2, Peer::default());
    assert_eq!(plain.enqueue(p(5000, None)), Err(Refused::NoSg));
    let gso = Some(Gso {
        size: 1448,
        kind: XEN_NETIF_GSO_TYPE_TCPV6,
    });
    assert_eq!(plain.enqueue(p(1000, gso)), Err(Refused::NoGso));
    let mut b = vif(2, ALL);
    for _ in 0..QUEUE_PACKETS {
        b.enqueue(p(60, None)).unwrap();
    }
    assert_eq!(b.enqueue(p(60, None)), Err(Refused::QueueFull));
    let mut c = vif(3, ALL);
    for _ in 0..(QUEUE_BYTES / 65000) {
        c.enqueue(p(65000, None)).unwrap();
    }
    assert_eq!(c.enqueue(p(65000, None)), Err(Refused::QueueFull));
    assert_eq!(
        plain.counters.dropped + b.counters.dropped + c.counters.dropped,
        4
    );
}

#[test]
fn an_overrun_is_an_error() {
    let mut g = GuestPages::default();
    let mut a = vif(1, ALL);
    a.rings().0.store_u32(0, 1000);
    assert!(a.take_tx(&mut g, 64).is_err());
    a.rings().1.store_u32(0, 1000);
    b_enqueue_one(&mut a);
    assert!(a.deliver(&mut g).is_err());
}

fn b_enqueue_one(v: &mut Vif<Heap>) {
    let data = Rc::new(frame(mac(1), mac(2), 60));
    v.enqueue(Packet {
        data,
        rx_flags: 0,
        gso: None,
    })
    .unwrap();
}

#[test]
fn the_switch_and_two_vifs() {
    let mut g = GuestPages::default();
    let mut vifs = [vif(1, ALL), vif(2, ALL), vif(3, ALL)];
    let mut s = Switch::new();
    for (i, v) in vifs.iter_mut().enumerate() {
        post_rx(v, &mut g, i as u16 + 1, 50, 16);
    }
    // 1 → broadcast reaches 2 and 3; 2 → 1 reaches 1 only.
    let b = frame(mac(1), Mac::BROADCAST, 60);
    send(&mut vifs[0], &tx_slots(&mut g, 1, 10, &b, 0));
    let u = frame(mac(2), mac(1), 70);
    send(&mut vifs[1], &tx_slots(&mut g, 2, 10, &u, 0));
    for port in 0..3 {
        let got = vifs[port].take_tx(&mut g, 64).unwrap();
        for p in got {
            match s.forward(port, p.src(), p.dst()) {
                Forward::Port(to) => vifs[to].enqueue(p).unwrap(),
                Forward::Flood => {
                    for (to, v) in vifs.iter_mut().enumerate() {
                        if to != port {
                            v.enqueue(p.clone()).unwrap();
                        }
                    }
                }
                Forward::Drop => {}
            }
        }
    }
    for v in vifs.iter_mut() {
        v.deliver(&mut g).unwrap();
    }
    let rx: Vec<u64> = vifs.iter().map(|v| v.counters.rx_packets).collect();
    assert_eq!(rx, [1, 1, 1]);
    assert_eq!(&g.page(1, 50)[..70], &u[..]);
    assert_eq!(&g.page(3, 50)[..60], &b[..]);
}

#[test]
fn xenstore_nodes() {
    let spec = super::config::parse_vif("linux1:00:16:3e:0a:0b:0c", 0).unwrap();
    let e = xenbus::entries(&spec, 3);
    let find = |p: &str| e.iter().find(|x| x.path == p).map(|x| x.value.clone());
    assert_eq!(
        find("/local/domain/3/device/vif/0/mac").as_deref(),
        Some("00:16:3e:0a:0b:0c")
    );
    assert_eq!(
        find("/local/domain/3/device/vif/0/backend").as_deref(),
        Some("/local/domain/0/backend/vif/3/0")
    );
    assert_eq!(
        find("/local/domain/0/backend/vif/3/0/feature-rx-copy").as_deref(),
        Some("1")
    );
    assert_eq!(
        find("/local/domain/0/backend/vif/3/0/state").as_deref(),
        Some("2")
    );
    assert_eq!(
        find("/local/domain/3/device/vif/0/state").as_deref(),
        Some("1")
    );
    let nodes = |kv: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            kv.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| alloc::string::String::from(*v))
        }
    };
    let linux = nodes(&[
        ("tx-ring-ref", "8"),
        ("rx-ring-ref", "9"),
        ("event-channel", "5"),
        ("request-rx-copy", "1"),
        ("feature-rx-notify", "1"),
        ("feature-sg", "1"),
        ("feature-gso-tcpv4", "1"),
    ]);
    let r = xenbus::ring_refs(&linux).unwrap();
    assert_eq!((r.tx, r.rx, r.port), (8, 9, 5));
    assert_eq!(
        r.peer,
        Peer {
            sg: true,
            gso_v4: true,
            gso_v6: false
        }
    );
    assert!(matches!(
        xenbus::next_step(
            xenbus_state::INIT_WAIT,
            false,
            Some(xenbus::CONNECTED),
            &linux
        ),
        xenbus::Step::Connect(_)
    ));
    let flip = nodes(&[
        ("tx-ring-ref", "8"),
        ("rx-ring-ref", "9"),
        ("event-channel", "5"),
        ("feature-rx-notify", "1"),
    ]);
    assert!(xenbus::ring_refs(&flip).is_err());
    let split = nodes(&[
        ("tx-ring-ref", "8"),
        ("rx-ring-ref", "9"),
        ("event-channel-tx", "5"),
        ("request-rx-copy", "1"),
        ("feature-rx-notify", "1"),
    ]);
    assert!(xenbus::ring_refs(&split).is_err());
}

use crate::xenbus_state;

proptest! {
    /// Whatever a frontend puts in its transmit slots, every slot taken
    /// gets exactly one response and nothing panics.
    #[test]
    fn any_transmit_slots(slots in proptest::collection::vec(
        (0u32..20, 0u16..4200, 0u16..16, proptest::num::u16::ANY, 0u16..5000), 1..60)) {
        let mut g = GuestPages::default();
        for gref in 0..20 {
            g.grant(1, gref, vec![0x5a; 4096], true);
        }
        let mut a = vif(1, ALL);
        let reqs: Vec<NetifTxRequest> = slots
            .iter()
            .map(|&(gref, offset, flags, id, size)| NetifTxRequest { gref, offset, flags, id, size })
            .collect();
        send(&mut a, &reqs);
        let mut taken = 0;
        for _ in 0..100 {
            taken += a.take_tx(&mut g, 8).unwrap().len();
        }
        a.push();
        let r = tx_responses(&mut a, 0);
        prop_assert_eq!(r.len(), reqs.len());
        prop_assert!(taken <= reqs.len());
    }
}
