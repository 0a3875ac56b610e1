//! This guest's hypercalls: the call itself from `xen_abi::call`, and the few wrappers it uses.

use core::arch::asm;
use xen_abi::hypercall::*;

pub use xen_abi::call::{call, init};

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
