//! The guest's interrupt stubs: #GP and #UD counted and skipped, #DB counted with its DR6, vector 0xF3 counted; pvh-guest-rt sends anything else to `guest_unexpected`.

use core::sync::atomic::AtomicU64;

/// Interrupt vector the checks ask the hypervisor to raise (Linux's Xen callback vector).
pub const TEST_VECTOR: u8 = 0xf3;

#[no_mangle]
pub static GP_COUNT: AtomicU64 = AtomicU64::new(0);
#[no_mangle]
pub static IRQ_COUNT: AtomicU64 = AtomicU64::new(0);
#[no_mangle]
pub static UD_COUNT: AtomicU64 = AtomicU64::new(0);
#[no_mangle]
pub static DB_COUNT: AtomicU64 = AtomicU64::new(0);
/// DR6 as the last #DB handler found it.
#[no_mangle]
pub static DB_DR6: AtomicU64 = AtomicU64::new(0);
/// How many bytes the #GP and #UD stubs skip: the faulting instruction's
/// length (2 for RDMSR/WRMSR; a check that expects a longer one sets it
/// and puts it back).
#[no_mangle]
pub static FAULT_SKIP: AtomicU64 = AtomicU64::new(2);

// #GP: count it and skip the faulting instruction (the error code is
// popped first); #UD likewise, without an error code. #DB: count it, keep
// DR6, clear DR6 and the trap flag in the saved RFLAGS (SDM Vol. 3B 18.2.3:
// the handler clears DR6). The test vector: count it.
core::arch::global_asm!(
    ".global gp_stub",
    "gp_stub:",
    "lock incq GP_COUNT(%rip)",
    "add $8, %rsp",
    "push %rax",
    "mov FAULT_SKIP(%rip), %rax",
    "add %rax, 8(%rsp)",
    "pop %rax",
    "iretq",
    ".global ud_stub",
    "ud_stub:",
    "lock incq UD_COUNT(%rip)",
    "push %rax",
    "mov FAULT_SKIP(%rip), %rax",
    "add %rax, 8(%rsp)",
    "pop %rax",
    "iretq",
    ".global db_stub",
    "db_stub:",
    "push %rax",
    "lock incq DB_COUNT(%rip)",
    "mov %dr6, %rax",
    "mov %rax, DB_DR6(%rip)",
    "mov $0xffff0ff0, %eax",
    "mov %rax, %dr6",
    "andq $~0x100, 24(%rsp)",
    "pop %rax",
    "iretq",
    ".global irq_stub",
    "irq_stub:",
    "lock incq IRQ_COUNT(%rip)",
    "iretq",
    options(att_syntax)
);

extern "C" {
    fn gp_stub();
    fn ud_stub();
    fn db_stub();
    fn irq_stub();
}

pub fn init() {
    pvh_guest_rt::idt::install(&[
        (1, db_stub),
        (6, ud_stub),
        (13, gp_stub),
        (17, crate::checks::ac_stub_entry()),
        (TEST_VECTOR, irq_stub),
    ]);
}
