//! The plain-text console for people, on COM1: banner, capability line, fatal errors, and guests' early consoles through a queue.
//!
//! The hypervisor's own lines go out whole, as before: they are few and
//! not a guest's to multiply. Guests' output (`console_io`, console rings
//! while the hypervisor serves them) goes through a queue that is sent
//! only while the UART has room, a few hundred bytes per look, from the
//! exit loop and the idle loop: a guest never makes the CPU wait for the
//! UART (at 115200 baud a 16 KiB write would hold it 1.4 s). What does not
//! fit in the queue is dropped and counted.

use crate::uart::{Uart, COM1};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Mutex;
use xenolith::byte_queue::ByteQueue;

/// Guest bytes waiting for COM1: about 1.4 s of output at 115200 baud.
const QUEUE_BYTES: usize = 16 * 1024;
/// Bytes sent per `pump`, while the UART has room.
const PUMP_BUDGET: usize = 256;

struct Console {
    uart: Uart,
    queue: ByteQueue<QUEUE_BYTES>,
    /// Guest bytes dropped because the queue was full, not yet reported.
    dropped: u64,
}

impl Console {
    /// Sends queued bytes while the UART takes them without waiting.
    fn pump(&mut self, budget: usize) {
        for _ in 0..budget {
            if !self.uart.ready() {
                return;
            }
            match self.queue.pop() {
                Some(b) => self.uart.write_byte(b),
                None => return,
            }
        }
    }

    /// Sends everything queued, waiting for the UART as needed.
    fn flush(&mut self) {
        while let Some(b) = self.queue.pop() {
            self.uart.write_byte(b);
        }
    }
}

static PORT: Mutex<Console> = Mutex::new(Console {
    uart: Uart::new(COM1),
    queue: ByteQueue::new(),
    dropped: 0,
});

/// The hypervisor's own text: whatever guests queued goes first, so lines
/// keep their order, then this, whole.
struct Lines<'a>(&'a mut Console);

impl Write for Lines<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.flush();
        for byte in s.bytes() {
            if byte == b'\n' {
                self.0.uart.write_byte(b'\r');
            }
            self.0.uart.write_byte(byte);
        }
        Ok(())
    }
}

/// Set once COM1 belongs to the driver domain: from then on guests' early
/// console output goes to the hypervisor's log (defmt on COM2) instead.
static HANDED_OVER: AtomicBool = AtomicBool::new(false);

/// Gives COM1 to the driver domain (its I/O ports pass straight through).
pub fn hand_over() {
    HANDED_OVER.store(true, Ordering::Relaxed);
}

/// The driver domain ended: COM1 is the hypervisor's again.
pub fn take_back() {
    HANDED_OVER.store(false, Ordering::Relaxed);
}

pub fn handed_over() -> bool {
    HANDED_OVER.load(Ordering::Relaxed)
}

pub fn init() {
    PORT.lock().uart.init();
}

pub fn print(args: fmt::Arguments) {
    let mut port = PORT.lock();
    let _ = Lines(&mut port).write_fmt(args);
}

/// A guest's console text (already tagged and made printable): queued,
/// and as much sent as the UART takes now. What does not fit is dropped;
/// the next text that fits says how much.
pub fn print_guest(text: &str) {
    let mut port = PORT.lock();
    let c = &mut *port;
    if c.dropped > 0 {
        let note = alloc::format!("\r\n[console: {} bytes dropped]\r\n", c.dropped);
        if c.queue.free() >= note.len() + text.len() {
            c.queue.push(note.as_bytes());
            c.dropped = 0;
        }
    }
    for byte in text.bytes() {
        let pair: &[u8] = if byte == b'\n' { b"\r\n" } else { &[byte] };
        if c.dropped > 0 || c.queue.free() < pair.len() {
            c.dropped += 1;
            continue;
        }
        c.queue.push(pair);
    }
    c.pump(PUMP_BUDGET);
}

/// Whether the queue surely takes `bytes` of a guest's text, however it is
/// tagged: each byte may start a line (`(dNNNNN) `, up to 8 bytes) and a
/// newline becomes CR LF. Always true while COM1 belongs to the driver
/// domain: guests' early consoles then go to the hypervisor's log.
pub fn guest_room_for(bytes: usize) -> bool {
    handed_over()
        || PORT
            .try_lock()
            .is_some_and(|p| p.queue.free() >= bytes.saturating_mul(10))
}

/// Sends some queued guest output if the UART has room; never waits.
pub fn pump() {
    if let Some(mut port) = PORT.try_lock() {
        if !port.queue.is_empty() {
            port.pump(PUMP_BUDGET);
        }
    }
}

/// Whether guest output is still waiting for the UART.
pub fn pending() -> bool {
    PORT.try_lock().is_some_and(|p| !p.queue.is_empty())
}

/// A byte typed on the console, if any.
pub fn try_read() -> Option<u8> {
    PORT.lock().uart.try_read_byte()
}

/// Waits until everything printed has been sent.
pub fn drain() {
    let mut port = PORT.lock();
    port.flush();
    port.uart.drain();
}

/// For panics and CPU exceptions: the interrupted code may hold the lock and
/// will never run again, so take the port regardless.
pub fn emergency(args: fmt::Arguments) {
    // SAFETY: only called on the way to stopping the machine; a torn line
    // from the interrupted holder is acceptable, a deadlock is not.
    unsafe { PORT.force_unlock() };
    print(args);
}

#[macro_export]
macro_rules! println {
    () => {
        $crate::console::print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::console::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
