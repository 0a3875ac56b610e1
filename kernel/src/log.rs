//! The hypervisor's own log: defmt frames on COM2, decoded on the host by `cargo xtask`.

use crate::uart::{Uart, COM2};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

static PORT: Uart = Uart::new(COM2);
static TAKEN: AtomicBool = AtomicBool::new(false);
static ENCODER: EncoderCell = EncoderCell(UnsafeCell::new(defmt::Encoder::new()));
static INTERRUPTS_WERE_ON: AtomicBool = AtomicBool::new(false);

struct EncoderCell(UnsafeCell<defmt::Encoder>);
// SAFETY: the encoder is only touched between acquire and release, which
// `TAKEN` makes exclusive (and interrupts are off meanwhile).
unsafe impl Sync for EncoderCell {}

pub fn init() {
    PORT.init();
}

/// Waits until every log byte has been sent.
pub fn drain() {
    PORT.drain();
}

fn emit(bytes: &[u8]) {
    for &b in bytes {
        PORT.write_byte(b);
    }
}

#[defmt::global_logger]
struct Logger;

// SAFETY: acquire/release bracket every frame and exclude each other through
// `TAKEN`; a nested acquire (logging from an exception taken while logging)
// panics instead of interleaving frames.
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        let was_on = crate::cpu::interrupts_enabled();
        crate::cpu::disable_interrupts();
        if TAKEN.swap(true, Ordering::Acquire) {
            panic!("defmt logger re-entered");
        }
        INTERRUPTS_WERE_ON.store(was_on, Ordering::Relaxed);
        // SAFETY: exclusive by `TAKEN`.
        unsafe { (*ENCODER.0.get()).start_frame(emit) }
    }

    unsafe fn flush() {}

    unsafe fn release() {
        // SAFETY: exclusive by `TAKEN`, which this frame holds.
        unsafe { (*ENCODER.0.get()).end_frame(emit) };
        let was_on = INTERRUPTS_WERE_ON.load(Ordering::Relaxed);
        TAKEN.store(false, Ordering::Release);
        if was_on {
            crate::cpu::enable_interrupts();
        }
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: exclusive by `TAKEN`, which this frame holds.
        unsafe { (*ENCODER.0.get()).write(bytes, emit) }
    }
}

defmt::timestamp!("{=u64:us}", crate::time::micros());
