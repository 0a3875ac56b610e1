//! Hypercalls: VMMCALL on AMD, VMCALL on Intel, chosen from the CPU vendor as Linux does.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};
use xen_abi::hypercall::*;

static AMD: AtomicBool = AtomicBool::new(false);

pub fn init() {
    let leaf0 = core::arch::x86_64::__cpuid(0);
    // "AuthenticAMD": EBX "Auth".
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

/// A hypercall whose argument is one structure the hypervisor may write back.
pub fn call_with<T>(nr: u64, cmd: u64, arg: &mut T) -> i64 {
    call(nr, cmd, arg as *mut T as u64, 0)
}

pub fn shutdown(reason: u32) -> ! {
    let mut arg = reason;
    call_with(SCHED_OP, SCHEDOP_SHUTDOWN, &mut arg);
    loop {
        // SAFETY: nothing left to do; the hypervisor should have ended the domain.
        unsafe { asm!("cli; hlt") };
    }
}
