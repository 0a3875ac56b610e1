//! Time: the TSC, calibrated once against the 8254 PIT.

use core::sync::atomic::{AtomicU64, Ordering};
use x86::io::{inb, outb};

static TSC_KHZ: AtomicU64 = AtomicU64::new(0);

/// The PIT input clock (Intel 8254 data sheet; PC/AT).
const PIT_HZ: u64 = 1_193_182;
const CALIBRATION_MS: u64 = 10;
/// Port 0x61 (PC/AT system control port B): bit 0 gates PIT channel 2, bit 1
/// drives the speaker, bit 5 reads channel 2's OUT.
const PORT_B: u16 = 0x61;

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC reads a counter; CR4.TSD is clear in ring 0 anyway.
    unsafe { core::arch::x86_64::_rdtsc() }
}

pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed)
}

/// Microseconds since reset, 0 until calibrated.
pub fn micros() -> u64 {
    match tsc_khz() {
        0 => 0,
        khz => (u128::from(rdtsc()) * 1000 / u128::from(khz)) as u64,
    }
}

/// Spins for `ms` milliseconds of TSC time.
pub fn spin_ms(ms: u64) {
    let start = rdtsc();
    let ticks = tsc_khz() * ms;
    while rdtsc().wrapping_sub(start) < ticks {
        core::hint::spin_loop();
    }
}

/// Measures the TSC against a 10 ms one-shot of PIT channel 2 (mode 0:
/// OUT rises at terminal count). Returns kHz; 0 if the PIT never finished.
pub fn calibrate() -> u64 {
    let count = PIT_HZ * CALIBRATION_MS / 1000;
    // SAFETY: the PIT and port B are platform devices the hypervisor owns;
    // the speaker is kept off and port B is restored.
    let (start, end, done) = unsafe {
        let saved = inb(PORT_B);
        outb(PORT_B, (saved & !0x02) | 0x01);
        outb(0x43, 0b1011_0000); // channel 2, lobyte/hibyte, mode 0, binary
        outb(0x42, count as u8);
        outb(0x42, (count >> 8) as u8);
        let start = rdtsc();
        let mut done = false;
        // Bounded so a machine without a PIT cannot hang start of day.
        for _ in 0..50_000_000u32 {
            if inb(PORT_B) & 0x20 != 0 {
                done = true;
                break;
            }
        }
        let end = rdtsc();
        outb(PORT_B, saved);
        (start, end, done)
    };
    let khz = if done {
        (end - start) / CALIBRATION_MS
    } else {
        0
    };
    TSC_KHZ.store(khz, Ordering::Relaxed);
    khz
}
