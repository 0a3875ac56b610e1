//! What this CPU's AMD-V can do: read from CPUID 8000_0001h/8000_000Ah and VM_CR.

use raw_cpuid::CpuId;
use vcpu::{VirtCaps, VirtKind};
use x86::msr::rdmsr;

/// VM_CR (AMD APM Vol. 2 15.30.1); bit 4 SVMDIS set means EFER.SVME cannot be set.
const MSR_VM_CR: u32 = 0xc001_0114;
const VM_CR_SVMDIS: u64 = 1 << 4;

/// `None` when the CPU has no SVM (CPUID 8000_0001h ECX bit 2, APM Vol. 2 15.4).
pub fn probe() -> Option<VirtCaps> {
    let cpuid = CpuId::new();
    if !cpuid
        .get_extended_processor_and_feature_identifiers()?
        .has_svm()
    {
        return None;
    }
    // SAFETY: VM_CR exists on every CPU that reports SVM.
    let vm_cr = unsafe { rdmsr(MSR_VM_CR) };
    let svm = cpuid.get_svm_info();
    let npt = svm.as_ref().is_some_and(|s| s.has_nested_paging());
    Some(VirtCaps {
        kind: VirtKind::Svm,
        usable: vm_cr & VM_CR_SVMDIS == 0,
        second_level: npt,
        tags: svm.as_ref().map_or(0, |s| s.supported_asids()),
        // With nested paging a guest may run with its own paging off (APM 15.25).
        unrestricted_guest: npt,
        exit_length: svm.as_ref().is_some_and(|s| s.has_nrip()),
    })
}
