//! The start-up Xenolith's own PVH guests (the driver domain, the test guest) share: entry into long mode, guarded stacks, the IDT and TSS, start_info.
//!
//! A guest names its main function and its fault handler with [`entry!`],
//! links with this crate's `guest.ld` (its build script calls
//! `build::link_bins`, with this crate as a build-dependency with the
//! `build` feature), and installs its interrupt stubs with [`idt::install`].
//!
//! Its 64 KiB stack has a not-present page below it (entry.S), and every
//! vector it does not claim runs the fault handler on a stack of its own
//! (IST 1, [`idt::install`]): a stack overflow reaches the handler instead
//! of overwriting the page tables below the stack and triple-faulting.
#![no_std]

#[cfg(feature = "build")]
extern crate std;

#[cfg(feature = "build")]
pub mod build;
pub mod fatal;
pub mod idt;
pub mod start_info;

// The PVH note, the 32-bit entry, long mode, the 4 GiB identity map with
// its guard pages, the GDT, the stacks and the catch-all fault stub.
#[cfg(target_os = "none")]
core::arch::global_asm!(include_str!("entry.S"), options(att_syntax));

/// Defines the two symbols entry.S calls: `pvh_rt_main(start_info)`,
/// which runs `$main` with the `hvm_start_info` address, and
/// `pvh_rt_fault()`, which runs `$fault` for any vector the guest did not
/// claim, on the 16 KiB fault stack. Neither returns.
#[macro_export]
macro_rules! entry {
    (main = $main:path, fault = $fault:path $(,)?) => {
        #[no_mangle]
        extern "C" fn pvh_rt_main(start_info: u64) -> ! {
            $main(start_info)
        }

        #[no_mangle]
        extern "C" fn pvh_rt_fault() -> ! {
            $fault()
        }
    };
}
