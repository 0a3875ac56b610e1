//! This guest's hypercalls: the call itself from `xen_abi::call`, and the few wrappers it uses.

use core::arch::asm;
use xen_abi::hypercall::*;

pub use xen_abi::call::{call, init};

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
