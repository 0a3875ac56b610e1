//! What this CPU's VT-x can do: read from CPUID and the VMX capability MSRs.

use raw_cpuid::CpuId;
use vcpu::{VirtCaps, VirtKind};
use x86::msr::rdmsr;

// MSR numbers: Intel SDM Vol. 4, table 2-2; bit meanings: Vol. 3D appendix A.
const IA32_FEATURE_CONTROL: u32 = 0x3a;
const FEATURE_CONTROL_LOCKED: u64 = 1 << 0;
const FEATURE_CONTROL_VMX_OUTSIDE_SMX: u64 = 1 << 2;
const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48b;
/// Allowed-1 bits live in the high half of a capability MSR (appendix A.3).
const ACTIVATE_SECONDARY_CONTROLS: u64 = 1 << (32 + 31);
const ENABLE_EPT: u64 = 1 << (32 + 1);
const ENABLE_VPID: u64 = 1 << (32 + 5);
const UNRESTRICTED_GUEST: u64 = 1 << (32 + 7);

/// `None` when the CPU has no VMX (CPUID.1:ECX.VMX, SDM Vol. 3C 24.6).
pub fn probe() -> Option<VirtCaps> {
    if !CpuId::new().get_feature_info()?.has_vmx() {
        return None;
    }
    // SAFETY: these MSRs exist on every CPU that reports VMX.
    let (control, procbased) =
        unsafe { (rdmsr(IA32_FEATURE_CONTROL), rdmsr(IA32_VMX_PROCBASED_CTLS)) };
    // Firmware may lock VMXON off (SDM Vol. 3C 24.7); unlocked, we may set it.
    let usable =
        control & FEATURE_CONTROL_LOCKED == 0 || control & FEATURE_CONTROL_VMX_OUTSIDE_SMX != 0;
    let secondary = if procbased & ACTIVATE_SECONDARY_CONTROLS != 0 {
        // SAFETY: present whenever secondary controls may be activated.
        unsafe { rdmsr(IA32_VMX_PROCBASED_CTLS2) }
    } else {
        0
    };
    let vpid = secondary & ENABLE_VPID != 0;
    Some(VirtCaps {
        kind: VirtKind::Vmx,
        usable,
        second_level: secondary & ENABLE_EPT != 0,
        // A VPID is 16 bits and 0 belongs to the host (SDM Vol. 3C 29.1).
        tags: if vpid { 0xffff } else { 0 },
        unrestricted_guest: secondary & UNRESTRICTED_GUEST != 0,
        // VM exits report the instruction length (SDM Vol. 3C 28.2.5).
        exit_length: true,
    })
}
