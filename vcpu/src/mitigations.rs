//! What a backend does at every VM entry and exit against speculative-execution attacks, as the core chose it (xenolith::spec_ctrl).

/// The backends' part of the speculation mitigations (docs/security.md).
///
/// Both backends also fill the return stack buffer after every exit, on
/// every CPU (Xen's default `rsb-hvm`): that needs no choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EntryMitigations {
    /// IA32_SPEC_CTRL while the hypervisor runs, if the CPU has the MSR.
    /// `None`: the MSR does not exist and is never touched. The guest's
    /// value (`Vcpu::set_spec_ctrl`) is loaded before each entry where it
    /// differs and this one written back after the exit.
    pub host_spec_ctrl: Option<u64>,
    /// Write `host_spec_ctrl` after every exit even when the guest's value
    /// is the same: legacy IBRS only acts when IBRS is written with 1 after
    /// the switch to the more privileged mode (Intel "Speculative Execution
    /// Side Channel Mitigations", IBRS; KVM's vmx_spec_ctrl_restore_host
    /// with X86_FEATURE_KERNEL_IBRS). Enhanced IBRS needs no rewrite.
    pub spec_ctrl_every_exit: bool,
    /// VERW (memory operand) as the last thing before VM entry, to overwrite
    /// the store, fill and load-port buffers (Intel MDS guidance, MD_CLEAR).
    /// VMX only: no AMD CPU is affected by MDS or TAA.
    pub verw: bool,
    /// Write L1D_FLUSH to IA32_FLUSH_CMD before every VM entry (Intel L1TF
    /// guidance, "L1D flush on VMENTER"). VMX only: AMD CPUs are not
    /// affected by L1TF.
    pub l1d_flush: bool,
}

impl EntryMitigations {
    /// What to write to IA32_SPEC_CTRL just before entering a guest whose
    /// value is `guest`: nothing if the MSR does not exist or already holds
    /// it (the host's value is in the MSR while the hypervisor runs).
    pub fn spec_ctrl_before_entry(&self, guest: u64) -> Option<u64> {
        self.host_spec_ctrl
            .filter(|&host| host != guest)
            .map(|_| guest)
    }

    /// What to write to IA32_SPEC_CTRL right after the exit: the host's
    /// value where the guest's differed, and always with legacy IBRS.
    pub fn spec_ctrl_after_exit(&self, guest: u64) -> Option<u64> {
        self.host_spec_ctrl
            .filter(|&host| host != guest || self.spec_ctrl_every_exit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_ctrl_writes_only_where_needed() {
        let none = EntryMitigations::default();
        assert_eq!(none.spec_ctrl_before_entry(1), None);
        assert_eq!(none.spec_ctrl_after_exit(1), None);
        // Enhanced IBRS (host value 1, set once): writes only on a change.
        let eibrs = EntryMitigations {
            host_spec_ctrl: Some(1),
            ..EntryMitigations::default()
        };
        assert_eq!(eibrs.spec_ctrl_before_entry(1), None);
        assert_eq!(eibrs.spec_ctrl_after_exit(1), None);
        assert_eq!(eibrs.spec_ctrl_before_entry(5), Some(5));
        assert_eq!(eibrs.spec_ctrl_after_exit(5), Some(1));
        // Legacy IBRS: the host's value after every exit.
        let ibrs = EntryMitigations {
            spec_ctrl_every_exit: true,
            ..eibrs
        };
        assert_eq!(ibrs.spec_ctrl_before_entry(1), None);
        assert_eq!(ibrs.spec_ctrl_after_exit(1), Some(1));
    }
}
