//! The MSRs a guest writes directly that the VMCS does not switch: kept per vCPU and swapped when another vCPU enters.
//!
//! STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE and TSC_AUX are passed through
//! (the core's pass-through list), so a guest writes the CPU's own registers.
//! VM entry and exit do not load them (SDM Vol. 3C 25.4, 25.5), and the
//! hypervisor never uses them, so they only need switching between vCPUs.

use core::sync::atomic::{AtomicPtr, Ordering};
use x86::msr::{rdmsr, wrmsr};

/// STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE, TSC_AUX.
const MSRS: [u32; 6] = [
    0xc000_0081,
    0xc000_0082,
    0xc000_0083,
    0xc000_0084,
    0xc000_0102,
    0xc000_0103,
];

/// One vCPU's values. Lives in the boxed vCPU, so its address is stable.
#[derive(Default)]
pub struct SyscallMsrs([u64; MSRS.len()]);

/// Whose values the CPU holds now (one CPU: the hypervisor runs on the BSP).
static OWNER: AtomicPtr<SyscallMsrs> = AtomicPtr::new(core::ptr::null_mut());

impl SyscallMsrs {
    /// Makes the CPU hold `self`'s values, saving the previous owner's.
    pub fn switch_to(&mut self) {
        let me: *mut SyscallMsrs = self;
        let previous = OWNER.swap(me, Ordering::AcqRel);
        if previous == me {
            return;
        }
        // SAFETY: these MSRs exist on every 64-bit CPU; the previous owner is
        // a live vCPU (owners clear themselves in `release`), and nothing
        // else references its save area while the hypervisor runs here.
        unsafe {
            if let Some(prev) = previous.as_mut() {
                for (slot, msr) in prev.0.iter_mut().zip(MSRS) {
                    *slot = rdmsr(msr);
                }
            }
            for (value, msr) in self.0.iter().zip(MSRS) {
                wrmsr(msr, *value);
            }
        }
    }

    /// Forgets `self` as the owner (the vCPU is going away).
    pub fn release(&mut self) {
        let me: *mut SyscallMsrs = self;
        let _ = OWNER.compare_exchange(
            me,
            core::ptr::null_mut(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}
