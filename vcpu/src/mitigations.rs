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
