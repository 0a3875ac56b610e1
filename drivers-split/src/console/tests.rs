//! Host tests of the console backend: ring indices from a hostile guest, line tagging, input switching.

use super::*;
use crate::xenstore::ring::PAGE_SIZE;
use alloc::boxed::Box;
use alloc::vec::Vec;
use proptest::prelude::*;

fn page() -> Box<[u8; PAGE_SIZE]> {
    Box::new([0u8; PAGE_SIZE])
}

fn set(p: &mut [u8; PAGE_SIZE], off: usize, v: u32) {
    p[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn get(p: &[u8; PAGE_SIZE], off: usize) -> u32 {
    u32::from_le_bytes(p[off..off + 4].try_into().unwrap())
}

/// The guest side of console.h: write into `out` and publish out_prod.
fn guest_write(p: &mut [u8; PAGE_SIZE], bytes: &[u8]) {
    let mut prod = get(p, 3084);
    for &b in bytes {
        p[1024 + (prod & 2047) as usize] = b;
        prod = prod.wrapping_add(1);
    }
    set(p, 3084, prod);
}

#[test]
fn drains_across_the_wrap_and_frees_the_space() {
    let mut p = page();
    // Indices near u32::MAX: they run freely and wrap.
    set(&mut p, 3080, u32::MAX - 5);
    set(&mut p, 3084, u32::MAX - 5);
    guest_write(&mut p, b"hello, world\n");
    let mut ring = ConsoleRing::new(p);
    let mut got = Vec::new();
    assert_eq!(ring.drain(|c| got.extend_from_slice(c)), Ok(13));
    assert_eq!(got, b"hello, world\n");
    let p = ring.memory();
    assert_eq!(get(p, 3080), get(p, 3084));
}

#[test]
fn a_producer_more_than_a_ring_ahead_is_broken_and_nothing_moves() {
    let mut p = page();
    set(&mut p, 3084, 2049);
    let mut ring = ConsoleRing::new(p);
    assert_eq!(ring.drain(|_| panic!("no bytes")), Err(Broken));
    assert_eq!(get(ring.memory(), 3080), 0);
}

#[test]
fn input_stops_at_a_full_ring_and_refuses_broken_indices() {
    let mut ring = ConsoleRing::new(page());
    assert_eq!(ring.push_input(&[b'x'; 1000]), Ok(1000));
    assert_eq!(ring.push_input(&[b'y'; 100]), Ok(24));
    assert_eq!(ring.push_input(b"z"), Ok(0));
    let mut p = page();
    set(&mut p, 3076, 5000);
    let mut ring = ConsoleRing::new(p);
    assert_eq!(ring.push_input(b"z"), Err(Broken));
}

#[test]
fn lines_are_tagged_and_control_bytes_dropped() {
    let mut t = LineTagger::new("linux");
    let mut out = Vec::new();
    t.feed(b"one\r\ntw", |l| out.push(l.to_vec()));
    assert_eq!(out, [b"[linux] one\n".to_vec()]);
    assert!(t.has_partial());
    t.feed(b"o\x1b\n", |l| out.push(l.to_vec()));
    assert_eq!(out[1], b"[linux] two\n");
    t.feed(b"# ", |_| panic!("not a line yet"));
    t.flush(|l| out.push(l.to_vec()));
    assert_eq!(out[2], b"[linux] # \n");
}

#[test]
fn escape_sequences_are_dropped_whole() {
    let mut t = LineTagger::new("g");
    let mut out = Vec::new();
    t.feed(b"/ # \x1b[6n\x1b[1;32mok\x1b[0m\x1bc!\n", |l| {
        out.push(l.to_vec())
    });
    assert_eq!(out, [b"[g] / # ok!\n".to_vec()]);
}

#[test]
fn an_endless_line_is_cut() {
    let mut t = LineTagger::new("g");
    let mut n = 0;
    t.feed(&[b'a'; 1000], |l| {
        assert_eq!(l.len(), lines::MAX_LINE + 5);
        n += 1;
    });
    assert_eq!(n, 1000 / lines::MAX_LINE);
}

#[test]
fn three_ctrl_a_switch_and_fewer_are_delivered() {
    let mut s = InputSwitch::new(3);
    assert_eq!(s.key(b'x'), Key::Deliver([b'x', 1, 1], 1));
    assert_eq!(s.key(1), Key::Held);
    assert_eq!(s.key(b'y'), Key::Deliver([1, b'y', 1], 2));
    for k in [1, 1] {
        assert_eq!(s.key(k), Key::Held);
    }
    assert_eq!(s.key(1), Key::Switched(1));
    for _ in 0..6 {
        s.key(1);
    }
    assert_eq!(s.focus, 0);
}

proptest! {
    /// Whatever the guest puts in its indices and ring, draining never
    /// panics, never moves more than a ring, and leaves cons = prod or
    /// reports the ring broken untouched.
    #[test]
    fn drain_survives_any_indices(cons: u32, prod: u32, fill: u8) {
        let mut p = page();
        p[1024..3072].fill(fill);
        set(&mut p, 3080, cons);
        set(&mut p, 3084, prod);
        let mut ring = ConsoleRing::new(p);
        let mut total = 0;
        match ring.drain(|c| total += c.len()) {
            Ok(n) => {
                prop_assert_eq!(n, total);
                prop_assert!(n <= 2048);
                prop_assert_eq!(get(ring.memory(), 3080), prod);
            }
            Err(Broken) => prop_assert_eq!(get(ring.memory(), 3080), cons),
        }
    }

    /// Tagged lines never contain control bytes but the final newline.
    #[test]
    fn tagged_lines_are_clean(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut t = LineTagger::new("d");
        t.feed(&bytes, |l| {
            assert!(l.starts_with(b"[d] "));
            assert_eq!(l.last(), Some(&b'\n'));
            assert!(l[..l.len() - 1].iter().all(|&b| b == b'\t' || b >= 0x20 && b != 0x7f));
        });
    }
}
