//! Ending the guest on purpose from inside, for tests of a domain's death: an access beyond its RAM by an instruction the hypervisor does not emulate.

/// A guest-physical address above any guest's RAM here, identity-mapped by
/// entry.S (the low 4 GiB).
pub const BEYOND_RAM: u64 = 0x4000_0000;

/// What the hypervisor names as the end of a domain that called
/// [`access_unemulated`], after "read access at GPA 0x40000000 (not RAM)
/// at rip <rip>".
pub const UNEMULATED_REASON: &str = ": instruction not emulated: Push [ff, 30]";

/// `push qword [0x40000000]`: a read of space that is not RAM by an
/// instruction the hypervisor's MMIO emulator does not carry out, which
/// ends the domain (docs/security.md, "Guest-physical space that is not
/// RAM"). A plain load would read all ones and go on, as on Xen; a jump
/// there gets #GP, and the triple fault an empty IDT would turn it into
/// panics Bochs' SVM instead of ending the guest.
pub fn access_unemulated() -> ! {
    // SAFETY: the read faults to the hypervisor, which ends this domain;
    // nothing after it runs (UD2 stops it should the read ever complete).
    unsafe {
        core::arch::asm!(
            "push qword ptr [rax]",
            "ud2",
            in("rax") BEYOND_RAM,
            options(noreturn),
        )
    }
}
