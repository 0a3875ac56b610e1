//! COM1, which the hypervisor passed through to this domain: guests' console output goes out here through a bounded buffer the main loop drains, typed input comes in.

use core::arch::asm;
use core::cell::RefCell;
use core::fmt::{self, Write};
use drivers_split::console::Output;

const COM1: u16 = 0x3f8;
/// Line status register (16550): data ready, transmit holding register empty.
const LSR: u16 = COM1 + 5;
const LSR_DATA_READY: u8 = 1 << 0;
const LSR_THR_EMPTY: u8 = 1 << 5;

/// Bytes one main-loop turn may move to the UART: under an emulator the
/// UART is always ready, and the rings of every guest wait for the turn.
pub const DRAIN_BUDGET: usize = 256;
/// Each guest's share of the buffer: some 20 full lines.
const GUEST_SHARE: usize = 4096;
/// This domain's own log lines' share.
const OWN_SHARE: usize = 16384;
/// A log line longer than this is cut.
const LOG_LINE_MAX: usize = 512;

fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port I/O on COM1, which this domain owns (its I/O bitmap lets
    // it through); no memory is touched.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack)) };
    v
}

fn outb(port: u16, v: u8) {
    // SAFETY: as `inb`.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack)) };
}

fn thr_empty() -> bool {
    inb(LSR) & LSR_THR_EMPTY != 0
}

/// Waits for the UART: only before the loop starts and on the way down.
fn put(b: u8) {
    while !thr_empty() {
        core::hint::spin_loop();
    }
    outb(COM1, b);
}

/// Writes `bytes` now, each newline as CR LF (a terminal on the port is raw).
fn write_now(bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            put(b'\r');
        }
        put(b);
    }
}

/// The buffer, once the main loop drains it (`None` before: writes wait).
struct Shared(RefCell<Option<Output>>);

// SAFETY: this domain has one vCPU, and its only interrupt handler (the
// upcall stub) never touches the buffer, so it is never used from two
// contexts at once; re-entry (a panic while it is borrowed) is caught by
// the RefCell and writes directly instead.
unsafe impl Sync for Shared {}

static OUTPUT: Shared = Shared(RefCell::new(None));

/// Source index of this domain's own log lines.
const OWN: usize = 0;

/// From now on output is buffered and goes out in [`drain`]: this
/// domain's log lines as source 0, guest `i`'s lines (of `guests`) as
/// source `i + 1` (see [`guest_line`]).
pub fn buffer<'a>(guests: impl Iterator<Item = &'a str>) {
    let mut out = Output::new();
    out.add_source("Domain-0", OWN_SHARE);
    for name in guests {
        out.add_source(name, GUEST_SHARE);
    }
    if let Ok(mut o) = OUTPUT.0.try_borrow_mut() {
        *o = Some(out);
    }
}

/// Back to writing at once, after what is buffered: for a panic or a
/// fault, when this domain is about to end.
pub fn unbuffer() {
    let Ok(mut o) = OUTPUT.0.try_borrow_mut() else {
        return;
    };
    if let Some(mut out) = o.take() {
        while out.drain(usize::MAX, thr_empty, |b| outb(COM1, b)) > 0 || out.pending() {
            core::hint::spin_loop();
        }
    }
}

/// Queues `line` (a whole line, tag and newline included), or writes it
/// at once while output is not buffered. A line over its source's share
/// is dropped and counted.
fn line(source: usize, bytes: &[u8]) {
    match OUTPUT.0.try_borrow_mut() {
        Ok(mut o) => match o.as_mut() {
            Some(out) => out.push(source, bytes),
            None => write_now(bytes),
        },
        Err(_) => write_now(bytes),
    }
}

/// Room left in guest number `i`'s share of the buffer (all of it while
/// output is not buffered, when lines go out at once).
pub fn guest_room(i: usize) -> usize {
    OUTPUT.0.try_borrow().map_or(0, |o| {
        o.as_ref().map_or(usize::MAX, |out| {
            GUEST_SHARE.saturating_sub(out.queued(i + 1))
        })
    })
}

/// One line of guest number `i`'s console.
pub fn guest_line(i: usize, bytes: &[u8]) {
    line(i + 1, bytes);
}

/// Moves at most [`DRAIN_BUDGET`] bytes to the UART, each only while its
/// transmit holding register is empty: never waits for it. Returns whether
/// bytes still wait.
pub fn drain() -> bool {
    let Ok(mut o) = OUTPUT.0.try_borrow_mut() else {
        return false;
    };
    let Some(out) = o.as_mut() else {
        return false;
    };
    out.drain(DRAIN_BUDGET, thr_empty, |b| outb(COM1, b));
    out.pending()
}

/// Whether buffered output waits.
pub fn pending() -> bool {
    OUTPUT
        .0
        .try_borrow()
        .is_ok_and(|o| o.as_ref().is_some_and(Output::pending))
}

/// A byte typed on COM1, if one is waiting.
pub fn try_read() -> Option<u8> {
    (inb(LSR) & LSR_DATA_READY != 0).then(|| inb(COM1))
}

/// A log line being formatted, cut at `LOG_LINE_MAX` bytes.
struct LineBuf {
    buf: [u8; LOG_LINE_MAX],
    len: usize,
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // One byte is kept for the newline.
        let room = LOG_LINE_MAX - 1 - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// One line of this domain's own, tagged like the guests' lines.
pub fn log(args: fmt::Arguments) {
    let mut l = LineBuf {
        buf: [0; LOG_LINE_MAX],
        len: 0,
    };
    let _ = l.write_fmt(format_args!("[Domain-0] {args}"));
    l.buf[l.len] = b'\n';
    line(OWN, &l.buf[..=l.len]);
}

#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::serial::log(format_args!($($arg)*))
    };
}
