//! COM1, which the hypervisor passed through to this domain: guests' console output goes out here, typed input comes in.

use core::arch::asm;
use core::fmt::{self, Write};

const COM1: u16 = 0x3f8;
/// Line status register (16550): data ready, transmit holding register empty.
const LSR: u16 = COM1 + 5;
const LSR_DATA_READY: u8 = 1 << 0;
const LSR_THR_EMPTY: u8 = 1 << 5;

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

fn put(b: u8) {
    while inb(LSR) & LSR_THR_EMPTY == 0 {
        core::hint::spin_loop();
    }
    outb(COM1, b);
}

/// Writes `bytes`, each newline as CR LF (a terminal on the port is raw).
pub fn write(bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            put(b'\r');
        }
        put(b);
    }
}

/// A byte typed on COM1, if one is waiting.
pub fn try_read() -> Option<u8> {
    (inb(LSR) & LSR_DATA_READY != 0).then(|| inb(COM1))
}

struct Line;

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write(s.as_bytes());
        Ok(())
    }
}

/// One line of this domain's own, tagged like the guests' lines.
pub fn log(args: fmt::Arguments) {
    let _ = Line.write_fmt(format_args!("[Domain-0] {args}\n"));
}

#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::serial::log(format_args!($($arg)*))
    };
}
