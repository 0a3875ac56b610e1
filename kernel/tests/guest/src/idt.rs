//! The guest's interrupt stubs: #GP counted and skipped, vector 0xF3 counted; pvh-guest-rt sends anything else to `guest_unexpected`.

use core::sync::atomic::AtomicU64;

/// Interrupt vector the checks ask the hypervisor to raise (Linux's Xen callback vector).
pub const TEST_VECTOR: u8 = 0xf3;

#[no_mangle]
pub static GP_COUNT: AtomicU64 = AtomicU64::new(0);
#[no_mangle]
pub static IRQ_COUNT: AtomicU64 = AtomicU64::new(0);

// #GP: count it and skip the faulting 2-byte RDMSR/WRMSR (the error code
// is popped first). The test vector: count it.
core::arch::global_asm!(
    ".global gp_stub",
    "gp_stub:",
    "lock incq GP_COUNT(%rip)",
    "add $8, %rsp",
    "addq $2, (%rsp)",
    "iretq",
    ".global irq_stub",
    "irq_stub:",
    "lock incq IRQ_COUNT(%rip)",
    "iretq",
    options(att_syntax)
);

extern "C" {
    fn gp_stub();
    fn irq_stub();
}

pub fn init() {
    pvh_guest_rt::idt::install(&[(13, gp_stub), (TEST_VECTOR, irq_stub)]);
}
