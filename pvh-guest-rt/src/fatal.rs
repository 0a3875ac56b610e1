//! Ending the guest on purpose from inside, for tests of a domain's death: a fetch from beyond its RAM with no IDT.

/// A guest-physical address above any guest's RAM here, identity-mapped by
/// entry.S (the low 4 GiB).
pub const BEYOND_RAM: u64 = 0x4000_0000;

/// Loads an empty IDT and jumps to `BEYOND_RAM`. The fetch finds no RAM;
/// as on Xen, the hypervisor answers it with #GP(0) (docs/xen-abi.md,
/// "Guest-physical space that is not RAM"), which cannot be delivered
/// without an IDT: a double fault, then a triple fault, which ends the
/// domain ("triple fault at rip 0x40000000").
pub fn execute_beyond_ram() -> ! {
    // Limit 0: every vector lies outside the IDT (SDM Vol. 3A 6.10).
    let idtr = [0u8; 10];
    // SAFETY: nothing runs after the jump; the vCPU dies at the fetch.
    unsafe {
        core::arch::asm!(
            "lidt [{idtr}]",
            "jmp {target}",
            idtr = in(reg) idtr.as_ptr(),
            target = in(reg) BEYOND_RAM,
            options(noreturn),
        )
    }
}
