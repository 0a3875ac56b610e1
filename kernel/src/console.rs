//! The plain-text console for people, on COM1: banner, capability line, fatal errors.

use crate::uart::{Uart, COM1};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Mutex;

static PORT: Mutex<Uart> = Mutex::new(Uart::new(COM1));

struct Lines<'a>(&'a Uart);

impl Write for Lines<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.0.write_byte(b'\r');
            }
            self.0.write_byte(byte);
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
    PORT.lock().init();
}

pub fn print(args: fmt::Arguments) {
    let port = PORT.lock();
    let _ = Lines(&port).write_fmt(args);
}

/// A byte typed on the console, if any.
pub fn try_read() -> Option<u8> {
    PORT.lock().try_read_byte()
}

/// Waits until everything printed has been sent.
pub fn drain() {
    PORT.lock().drain();
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
