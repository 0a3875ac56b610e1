//! A vCPU's IA32_SPEC_CTRL, switched around VM entry by WRMSR, and the L1D flush before entry (Intel SDM Vol. 4 table 2-2; KVM's vmx_spec_ctrl_restore_host and vmx_l1d_flush).
//!
//! The guest's SPEC_CTRL accesses are intercepted (the core checks them),
//! so its value changes only between runs and never needs reading back.
//! The VM-entry MSR-load and VM-exit MSR-load lists could switch it too
//! (Xen uses the entry list), but they need a list page per vCPU and load
//! on every entry and exit; two WRMSRs, skipped when both sides hold the
//! same value, are what KVM does and are simpler. VERW must come after
//! every host memory access, so entry.rs does it in the entry asm.

use vcpu::EntryMitigations;
use x86::msr::wrmsr;

/// IA32_SPEC_CTRL and IA32_FLUSH_CMD (Intel SDM Vol. 4, table 2-2).
const IA32_SPEC_CTRL: u32 = 0x48;
const IA32_FLUSH_CMD: u32 = 0x10b;
const L1D_FLUSH: u64 = 1;

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

fn flush_l1d() {
    // SAFETY: the core sets `l1d_flush` only when CPUID.7.0:EDX[28]
    // enumerates IA32_FLUSH_CMD; the flush writes back and invalidates L1D.
    unsafe { wrmsr(IA32_FLUSH_CMD, L1D_FLUSH) };
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

    /// Whether the entry asm executes VERW.
    pub fn verw(&self) -> bool {
        self.mitigations.verw
    }

    /// Loads the guest's value (the MSR holds the host's while the
    /// hypervisor runs), then flushes L1D where chosen: the flush is the
    /// last memory-touching step before the entry asm (SDM Vol. 4
    /// IA32_FLUSH_CMD; Intel "L1 Terminal Fault" guidance for VMMs).
    pub fn before_entry(&self) {
        if let Some(value) = self.mitigations.spec_ctrl_before_entry(self.guest) {
            write_spec_ctrl(value);
        }
        if self.mitigations.l1d_flush {
            flush_l1d();
        }
    }

    /// Puts the host's value back right after the exit; with legacy IBRS
    /// always, since only a write of IBRS=1 after the guest ran discards
    /// what it trained.
    pub fn after_exit(&self) {
        if let Some(value) = self.mitigations.spec_ctrl_after_exit(self.guest) {
            write_spec_ctrl(value);
        }
    }
}
