//! The host timer: APIC timer interrupts (TSC-deadline mode, else one-shot) that end a guest's run at a deadline, and waiting for interrupts.

use crate::apic::{self, TIMER_VECTOR};
use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};

/// Set by the timer interrupt; cleared by whoever consumes the expiry.
static FIRED: AtomicBool = AtomicBool::new(false);

/// Arms a one-shot interrupt at TSC value `deadline` (at once if it has passed).
/// A deadline further away than the timer's range fires early; callers compare
/// the TSC with their deadline and re-arm.
pub fn arm(deadline: u64) {
    // At least 1: a TSC deadline of 0 means "disarmed".
    if apic::set_tsc_deadline(deadline.max(1)) {
        return;
    }
    let now = crate::time::rdtsc();
    let ticks = deadline.saturating_sub(now);
    let (tsc_khz, apic_khz) = (crate::time::tsc_khz().max(1), apic::timer_khz().max(1));
    let count = (u128::from(ticks) * u128::from(apic_khz) / u128::from(tsc_khz))
        .clamp(1, u128::from(u32::MAX));
    apic::start_one_shot(count as u32);
}

pub fn disarm() {
    if !apic::set_tsc_deadline(0) {
        apic::start_one_shot(0);
    }
}

/// Whether the timer fired since the last call.
pub fn take_fired() -> bool {
    FIRED.swap(false, Ordering::AcqRel)
}

/// Lets pending host interrupts run (they end a guest's run but stay pending
/// until the host takes them), then masks interrupts again.
pub fn take_pending_interrupts() {
    // SAFETY: the host IDT has handlers for every vector the local APIC can
    // deliver (timer, error, spurious); the PICs are masked.
    unsafe { asm!("sti", "nop", "cli", options(nomem, nostack)) };
}

/// Sleeps until the next host interrupt. STI's one-instruction shadow makes
/// the STI;HLT pair atomic: an interrupt pending before it still wakes the HLT.
pub fn wait_for_interrupt() {
    // SAFETY: as above.
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}

/// Called from the interrupt stubs (kernel/src/irq.S) with interrupts off.
#[no_mangle]
extern "C" fn host_interrupt(vector: u64) {
    match vector as usize {
        TIMER_VECTOR => {
            FIRED.store(true, Ordering::Release);
            apic::end_of_interrupt();
        }
        apic::ERROR_VECTOR => apic::end_of_interrupt(),
        // Spurious interrupts are not acknowledged (SDM Vol. 3A 12.9).
        _ => {}
    }
}
