//! Xenolith, the hypervisor binary: start of day on bare metal (see docs/architecture.md).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "xenolith runs on bare metal (x86_64-unknown-none): use `cargo xtask build` or `cargo xtask run`"
    );
    std::process::exit(2);
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod apic;
#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod cpu;
#[cfg(target_os = "none")]
mod debug_regs;
#[cfg(target_os = "none")]
mod domain;
#[cfg(target_os = "none")]
#[path = "emulate/guest.rs"]
mod emulate_guest;
#[cfg(target_os = "none")]
mod fpu;
#[cfg(target_os = "none")]
mod gdt;
#[cfg(target_os = "none")]
mod guest_memory;
#[cfg(target_os = "none")]
mod hypercall;
#[cfg(target_os = "none")]
mod idt;
#[cfg(target_os = "none")]
mod log;
#[cfg(target_os = "none")]
mod memory;
#[cfg(target_os = "none")]
mod paging;
#[cfg(target_os = "none")]
mod panic;
#[cfg(target_os = "none")]
mod pci;
#[cfg(target_os = "none")]
mod pic;
#[cfg(target_os = "none")]
mod power;
#[cfg(target_os = "none")]
mod rtc;
#[cfg(target_os = "none")]
mod sched;
#[cfg(target_os = "none")]
mod selftest;
#[cfg(target_os = "none")]
mod speculation;
#[cfg(target_os = "none")]
mod start;
#[cfg(target_os = "none")]
mod time;
#[cfg(target_os = "none")]
mod timer;
#[cfg(target_os = "none")]
mod uart;
#[cfg(target_os = "none")]
mod vmexit;
#[cfg(target_os = "none")]
mod xen;
