//! The legacy 8259 PICs: masked, so that no BIOS-programmed IRQ (vectors 8-15) can pose as a CPU exception.

use x86::io::outb;

/// Masks every line of both PICs (OCW1, Intel 8259A data sheet). The
/// hypervisor takes interrupts only through the local APIC.
pub fn mask_all() {
    // SAFETY: writing the interrupt mask registers has no memory effects.
    unsafe {
        outb(0x21, 0xff);
        outb(0xa1, 0xff);
    }
}
