//! A vCPU's IA32_SPEC_CTRL, switched around VMRUN by WRMSR with GIF clear (AMD APM Vol. 2 15.17; KVM's svm/vmenter.S without V_SPEC_CTRL).
//!
//! The guest's SPEC_CTRL accesses are intercepted (the core checks them),
//! so its value changes only between runs and never needs reading back.
//! V_SPEC_CTRL (CPUID 8000_000Ah EDX[20], VMCB offset 2E0h) is not used:
//! with it the guest runs with the logical OR of the host's MSR and the
//! VMCB's value (Xen's "x86/svm: VMEntry/Exit logic for MSR_SPEC_CTRL"),
//! so the host's IBRS would still have to be cleared before VMRUN, which is
//! the same WRMSR as loading the guest's value. The VMCB field stays 0.

use vcpu::EntryMitigations;
use x86::msr::wrmsr;

/// IA32_SPEC_CTRL (AMD APM Vol. 2, 3.2.9; Intel SDM Vol. 4, table 2-2).
const IA32_SPEC_CTRL: u32 = 0x48;

pub struct SpecCtrl {
    mitigations: EntryMitigations,
    guest: u64,
}

fn write_spec_ctrl(value: u64) {
    // SAFETY: called only when `EntryMitigations::host_spec_ctrl` is Some,
    // which the core sets only when CPUID enumerates SPEC_CTRL, with a host
    // value or a guest value the core limited to the enumerated bits.
    unsafe { wrmsr(IA32_SPEC_CTRL, value) };
}

impl SpecCtrl {
    pub fn new(mitigations: EntryMitigations) -> SpecCtrl {
        SpecCtrl {
            mitigations,
            guest: 0,
        }
    }

    pub fn guest(&self) -> u64 {
        self.guest
    }

    pub fn set_guest(&mut self, value: u64) {
        self.guest = value;
    }

    /// Loads the guest's value (the MSR holds the host's while the
    /// hypervisor runs). Called with GIF clear.
    pub fn before_entry(&self) {
        if let Some(value) = self.mitigations.spec_ctrl_before_entry(self.guest) {
            write_spec_ctrl(value);
        }
    }

    /// Puts the host's value back, before GIF is set again (so no NMI or
    /// SMI handler runs with the guest's); with legacy IBRS always, since
    /// only a write of IBRS=1 after the guest ran discards what it trained.
    pub fn after_exit(&self) {
        if let Some(value) = self.mitigations.spec_ctrl_after_exit(self.guest) {
            write_spec_ctrl(value);
        }
    }
}
