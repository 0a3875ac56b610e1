//! Making a hypercall from a PVH guest: VMMCALL on AMD, VMCALL on Intel, chosen from the CPU vendor as Linux does.
//!
//! The guests in this tree (the driver domain, the test guest) call the
//! hypervisor directly rather than through a hypercall page: this is the
//! instruction and register convention that page would hold.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};

static AMD: AtomicBool = AtomicBool::new(false);

/// Picks the instruction; call once before the first hypercall.
pub fn init() {
    let leaf0 = core::arch::x86_64::__cpuid(0);
    // "AuthenticAMD": EBX "Auth", EDX "enti", ECX "cAMD".
    AMD.store(leaf0.ebx == 0x6874_7541, Ordering::Relaxed);
}

/// Number in RAX, arguments in RDI, RSI, RDX; result in RAX (Xen x86-64 ABI).
pub fn call(nr: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let ret: i64;
    // SAFETY: the hypervisor preserves every register but RAX; the argument
    // registers are declared clobbered as Linux declares them.
    unsafe {
        if AMD.load(Ordering::Relaxed) {
            asm!("vmmcall", inlateout("rax") nr as i64 => ret, inlateout("rdi") a1 => _,
                 inlateout("rsi") a2 => _, inlateout("rdx") a3 => _, lateout("r10") _, lateout("r8") _);
        } else {
            asm!("vmcall", inlateout("rax") nr as i64 => ret, inlateout("rdi") a1 => _,
                 inlateout("rsi") a2 => _, inlateout("rdx") a3 => _, lateout("r10") _, lateout("r8") _);
        }
    }
    ret
}
