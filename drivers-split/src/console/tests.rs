//! Host tests of the console backend: ring indices from a hostile guest, line tagging, buffered output (property test against a model), input switching.

use super::*;
use crate::xenstore::ring::PAGE_SIZE;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
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
    assert_eq!(ring.drain(usize::MAX, |c| got.extend_from_slice(c)), Ok(13));
    assert_eq!(got, b"hello, world\n");
    let p = ring.memory();
    assert_eq!(get(p, 3080), get(p, 3084));
}

#[test]
fn a_partial_drain_leaves_the_rest_in_the_ring() {
    let mut p = page();
    guest_write(&mut p, b"hello, world\n");
    let mut ring = ConsoleRing::new(p);
    let mut got = Vec::new();
    assert_eq!(ring.drain(5, |c| got.extend_from_slice(c)), Ok(5));
    assert_eq!(got, b"hello");
    assert_eq!(get(ring.memory(), 3080), 5);
    assert_eq!(ring.drain(100, |c| got.extend_from_slice(c)), Ok(8));
    assert_eq!(got, b"hello, world\n");
}

proptest! {
    /// Whatever the bytes and the partial line, feeding `max_input(room)`
    /// of them emits at most `room` bytes of tagged lines.
    #[test]
    fn max_input_bounds_the_output(
        held in proptest::collection::vec(any::<u8>(), 0..300),
        bytes in proptest::collection::vec(any::<u8>(), 0..3000),
        room in 0usize..5000,
    ) {
        let mut t = LineTagger::new("linux");
        t.feed(&held, |_| {});
        let n = t.max_input(room).min(bytes.len());
        let mut out = 0;
        t.feed(&bytes[..n], |l| out += l.len());
        prop_assert!(out <= room, "{} > {}", out, room);
    }
}

#[test]
fn a_producer_more_than_a_ring_ahead_is_broken_and_nothing_moves() {
    let mut p = page();
    set(&mut p, 3084, 2049);
    let mut ring = ConsoleRing::new(p);
    assert_eq!(ring.drain(usize::MAX, |_| panic!("no bytes")), Err(Broken));
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
    // Guests 0, 1, 2, then the toolstack, then guest 0 again.
    assert_eq!(s.focus, 3);
    assert!(s.at_toolstack());
    for _ in 0..3 {
        s.key(1);
    }
    assert_eq!(s.focus, 0);
}

/// Everything `out` has, the UART always ready; CR LF back to LF.
fn drain_all(out: &mut Output) -> Vec<u8> {
    let mut got = Vec::new();
    while out.drain(64, || true, |b| got.push(b)) > 0 {}
    lf(&got)
}

fn lf(crlf: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, &b) in crlf.iter().enumerate() {
        if b == b'\r' {
            assert_eq!(crlf.get(i + 1), Some(&b'\n'), "CR only before LF");
            continue;
        }
        if b == b'\n' {
            assert_eq!(i.checked_sub(1).map(|j| crlf[j]), Some(b'\r'));
        }
        v.push(b);
    }
    v
}

#[test]
fn a_busy_uart_is_never_waited_for() {
    let mut out = Output::new();
    let g = out.add_source("g", 1024);
    out.push(g, b"[g] hello\n");
    let mut asked = 0;
    let sent = out.drain(
        100,
        || {
            asked += 1;
            false
        },
        |_| panic!("nothing goes out while the UART is busy"),
    );
    assert_eq!((sent, asked), (0, 1));
    // A budget bounds each turn; newlines go out as CR LF.
    let mut got = Vec::new();
    assert_eq!(out.drain(4, || true, |b| got.push(b)), 4);
    assert_eq!(got, b"[g] ");
    assert_eq!(out.drain(100, || true, |b| got.push(b)), 7);
    assert_eq!(got, b"[g] hello\r\n");
    assert!(!out.pending());
    // Nothing waiting: the UART is not even asked.
    assert_eq!(out.drain(100, || panic!("not asked"), |_| {}), 0);
}

#[test]
fn a_flooding_guest_drops_its_own_lines_only() {
    let mut out = Output::new();
    let chatty = out.add_source("chatty", 256);
    let quiet = out.add_source("quiet", 256);
    let line = |tag: &str, i: usize| {
        format!("[{tag}] line {i:03} xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n")
    };
    for i in 0..100 {
        out.push(chatty, line("chatty", i).as_bytes());
    }
    assert!(out.queued(chatty) <= 256);
    let dropped = out.dropped();
    assert!(dropped > 0);
    // The quiet guest's line still fits, and goes out after at most one
    // more of the chatty guest's.
    out.push(quiet, line("quiet", 0).as_bytes());
    let mut got = Vec::new();
    out.drain(2 * 64, || true, |b| got.push(b));
    let text = lf(&got);
    assert!(String::from_utf8(text)
        .unwrap()
        .contains("[quiet] line 000"));
    // When the chatty guest's output fits again, the marker comes first.
    drain_all(&mut out);
    out.push(chatty, line("chatty", 100).as_bytes());
    let text = String::from_utf8(drain_all(&mut out)).unwrap();
    assert_eq!(
        text,
        format!(
            "[chatty] [{dropped} bytes dropped]\n{}",
            line("chatty", 100)
        )
    );
    assert_eq!(out.dropped(), dropped, "the total is kept");
}

/// The specification, line by line: per source a queue of whole lines
/// within its capacity; drops counted and reported before the next line
/// that fits; sources take turns a line at a time.
#[derive(Default)]
struct Model {
    lines: Vec<VecDeque<Vec<u8>>>,
    caps: Vec<usize>,
    names: Vec<&'static str>,
    dropped: Vec<u64>,
    /// The line going out and how much of it is out.
    current: Option<(usize, usize)>,
    next: usize,
}

impl Model {
    fn used(&self, i: usize) -> usize {
        self.lines[i].iter().map(Vec::len).sum::<usize>()
            - self.current.filter(|c| c.0 == i).map_or(0, |c| c.1)
    }

    fn push(&mut self, i: usize, line: &[u8]) {
        let marker = (self.dropped[i] > 0).then(|| {
            format!("[{}] [{} bytes dropped]\n", self.names[i], self.dropped[i]).into_bytes()
        });
        let need = marker.as_ref().map_or(0, Vec::len) + line.len();
        if need > self.caps[i] - self.used(i) {
            self.dropped[i] += line.len() as u64;
            return;
        }
        if let Some(m) = marker {
            self.lines[i].push_back(m);
            self.dropped[i] = 0;
        }
        self.lines[i].push_back(line.to_vec());
    }

    /// Up to `n` bytes (without CRs).
    fn take(&mut self, n: usize, out: &mut Vec<u8>) {
        for _ in 0..n {
            if self.current.is_none() {
                let k = self.lines.len();
                let Some(i) = (0..k)
                    .map(|j| (self.next + j) % k)
                    .find(|&i| !self.lines[i].is_empty())
                else {
                    return;
                };
                self.current = Some((i, 0));
                self.next = (i + 1) % k;
            }
            let Some((i, at)) = self.current else { return };
            out.push(self.lines[i][0][at]);
            if at + 1 == self.lines[i][0].len() {
                self.lines[i].pop_front();
                self.current = None;
            } else {
                self.current = Some((i, at + 1));
            }
        }
    }
}

#[derive(Clone, Debug)]
enum OutOp {
    /// A line of `len` bytes from source `src`.
    Push(usize, usize),
    /// A turn: up to `budget` UART slots, the UART ready for the first `ready`.
    Drain(usize, usize),
}

proptest! {
    /// The buffer against the model: the same bytes in the same order,
    /// CR before every LF, never more than a budget a turn, never a byte
    /// while the UART is busy, never more than a share held.
    #[test]
    fn output_agrees_with_a_model(
        ops in proptest::collection::vec(
            prop_oneof![
                3 => (0usize..3, 1usize..120).prop_map(|(s, n)| OutOp::Push(s, n)),
                1 => (0usize..80, 0usize..80).prop_map(|(b, r)| OutOp::Drain(b, r)),
            ],
            1..200,
        ),
    ) {
        let names = ["a", "bb", "ccc"];
        let caps = [300usize, 150, 64];
        let mut out = Output::new();
        let mut m = Model { names: names.to_vec(), caps: caps.to_vec(), ..Model::default() };
        for (n, c) in names.iter().zip(caps) {
            out.add_source(n, c);
            m.lines.push(VecDeque::new());
            m.dropped.push(0);
        }
        let (mut got, mut want) = (Vec::new(), Vec::new());
        let mut count = 0u8;
        for op in &ops {
            match *op {
                OutOp::Push(s, len) => {
                    count = count.wrapping_add(1);
                    let mut line = format!("[{}] ", names[s]).into_bytes();
                    line.extend(core::iter::repeat_n(b'a' + count % 26, len));
                    line.push(b'\n');
                    out.push(s, &line);
                    m.push(s, &line);
                    prop_assert!(out.queued(s) <= caps[s]);
                }
                OutOp::Drain(budget, ready) => {
                    let mut slots = 0;
                    let mut bytes = Vec::new();
                    let sent = out.drain(budget, || { slots += 1; slots <= ready }, |b| bytes.push(b));
                    prop_assert!(sent <= budget.min(ready));
                    prop_assert_eq!(sent, bytes.len());
                    // The model moves as many bytes (CRs are the UART's).
                    m.take(bytes.iter().filter(|&&b| b != b'\r').count(), &mut want);
                    got.extend(bytes);
                }
            }
        }
        // Whatever is left, then the model's whole output.
        while out.drain(64, || true, |b| got.push(b)) > 0 {}
        m.take(usize::MAX, &mut want);
        prop_assert_eq!(lf(&got), want);
        let dropped: u64 = m.dropped.iter().sum();
        prop_assert!(out.dropped() >= dropped);
    }
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
        match ring.drain(usize::MAX, |c| total += c.len()) {
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
