//! This guest's hypercalls: the call itself from `xen_abi::call`, the few wrappers it uses, and a five-argument call for the fuzzer.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};
use xen_abi::hypercall::*;

pub use xen_abi::call::call;

/// VMMCALL (AMD) rather than VMCALL: `call5` picks as `xen_abi::call` does.
static AMD: AtomicBool = AtomicBool::new(false);

/// Picks the hypercall instruction for both `call` and `call5`.
pub fn init() {
    xen_abi::call::init();
    // "AuthenticAMD": EBX "Auth".
    AMD.store(
        core::arch::x86_64::__cpuid(0).ebx == 0x6874_7541,
        Ordering::Relaxed,
    );
}

/// A hypercall with all five argument registers set (RDI, RSI, RDX, R10,
/// R8: the Xen x86-64 ABI), which `xen_abi::call` leaves undefined past
/// the third: the fuzzer controls every register the hypervisor may read.
pub fn call5(nr: u64, a: [u64; 5]) -> i64 {
    let ret: i64;
    // SAFETY: the hypervisor preserves every register but RAX; the argument
    // registers are declared clobbered, as Linux declares them.
    unsafe {
        if AMD.load(Ordering::Relaxed) {
            asm!("vmmcall", inlateout("rax") nr as i64 => ret, inlateout("rdi") a[0] => _,
                 inlateout("rsi") a[1] => _, inlateout("rdx") a[2] => _,
                 inlateout("r10") a[3] => _, inlateout("r8") a[4] => _);
        } else {
            asm!("vmcall", inlateout("rax") nr as i64 => ret, inlateout("rdi") a[0] => _,
                 inlateout("rsi") a[1] => _, inlateout("rdx") a[2] => _,
                 inlateout("r10") a[3] => _, inlateout("r8") a[4] => _);
        }
    }
    ret
}

pub fn console_write(bytes: &[u8]) {
    call(
        CONSOLE_IO,
        CONSOLEIO_WRITE,
        bytes.len() as u64,
        bytes.as_ptr() as u64,
    );
}

pub fn shutdown(reason: u32) -> ! {
    let arg = reason;
    call(SCHED_OP, SCHEDOP_SHUTDOWN, &arg as *const u32 as u64, 0);
    loop {
        // SAFETY: nothing left to do; the hypervisor should have ended the domain.
        unsafe { asm!("cli; hlt") };
    }
}
