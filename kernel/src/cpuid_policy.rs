//! What CPUID tells a guest: the host's answers, filtered, plus the Xen leaves (public/arch-x86/cpuid.h).

use xen_abi::hypercall::{VERSION_MAJOR, VERSION_MINOR};

/// EAX, EBX, ECX, EDX.
pub type Regs = [u32; 4];

/// The Xen leaves start here (Linux scans from 0x40000000 in steps of 0x100).
pub const XEN_BASE: u32 = 0x4000_0000;
/// Highest Xen leaf offered (Xen returns base + 5).
const XEN_LAST: u32 = XEN_BASE + 5;
/// The hypercall-page MSR Xen advertises in leaf base+2 EBX.
pub const HYPERCALL_PAGE_MSR: u32 = 0x4000_0000;

// Leaf 1 ECX (Intel SDM Vol. 2A, CPUID tables 3-10 and 3-11).
const L1_ECX_MONITOR: u32 = 1 << 3;
const L1_ECX_DS_CPL: u32 = 1 << 4;
const L1_ECX_VMX: u32 = 1 << 5;
const L1_ECX_SMX: u32 = 1 << 6;
const L1_ECX_EST: u32 = 1 << 7;
const L1_ECX_TM2: u32 = 1 << 8;
const L1_ECX_PDCM: u32 = 1 << 15;
const L1_ECX_X2APIC: u32 = 1 << 21;
const L1_ECX_TSC_DEADLINE: u32 = 1 << 24;
const L1_ECX_OSXSAVE: u32 = 1 << 27;
const L1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 7.0 ECX OSPKE: mirrors CR4.PKE.
const L7_ECX_OSPKE: u32 = 1 << 4;
/// Leaf 0xD.1 EAX: XSAVEC (1) and XSAVES (3). XSAVES needs IA32_XSS, which
/// is not emulated, and the compacted size Bochs reports for AVX-512 does not
/// match its own component sizes; guests use the standard XSAVE format.
const LD1_EAX_HIDDEN: u32 = (1 << 1) | (1 << 3);
/// CR4.OSXSAVE and CR4.PKE (SDM Vol. 3A 2.5).
const CR4_OSXSAVE: u64 = 1 << 18;
const CR4_PKE: u64 = 1 << 22;
/// Leaf 1 ECX features with host MSRs or devices behind them that the guest does not get.
const L1_ECX_HIDDEN: u32 = L1_ECX_MONITOR
    | L1_ECX_DS_CPL
    | L1_ECX_VMX
    | L1_ECX_SMX
    | L1_ECX_EST
    | L1_ECX_TM2
    | L1_ECX_PDCM
    | L1_ECX_TSC_DEADLINE;
/// Leaf 1 EDX: MCE (7), MCA (14), DS (21), ACPI thermal (22), TM (29), PBE (31):
/// their MSRs are not emulated.
const L1_EDX_HIDDEN: u32 = (1 << 7) | (1 << 14) | (1 << 21) | (1 << 22) | (1 << 29) | (1 << 31);
/// Leaf 7.0 ECX: WAITPKG (5), CET_SS (7).
const L7_ECX_HIDDEN: u32 = (1 << 5) | (1 << 7);
/// Leaf 7.0 EDX: SRBDS_CTRL (9), TSX_FORCE_ABORT (13), PCONFIG (18), CET_IBT
/// (20), CORE_CAPABILITIES (30): MSR-backed features not emulated. The
/// speculation controls, IBRS/IBPB (26), STIBP (27), L1D_FLUSH (28),
/// ARCH_CAPABILITIES (29) and SSBD (31), pass as the host has them: each is
/// virtualized whenever the host has it (xenolith::spec_ctrl::guest_offer);
/// MD_CLEAR (10) passes too, VERW is not intercepted.
const L7_EDX_HIDDEN: u32 = (1 << 9) | (1 << 13) | (1 << 18) | (1 << 20) | (1 << 30);
/// Leaf 7.0 EBX: TSC_ADJUST (1; its MSR is read without a fault handler),
/// SGX (2), Intel PT (25).
const L7_EBX_HIDDEN: u32 = (1 << 1) | (1 << 2) | (1 << 25);
// Leaf 8000_0001h ECX (AMD APM Vol. 3 E.4.2).
const E1_ECX_SVM: u32 = 1 << 2;
/// SVM (2), OSVW (9; its MSRs are read without a fault handler), IBS (10),
/// SKINIT (12), WDT (13), LWP (15), the performance counter extensions
/// (23, 24, 28), DataBreakpointExtension (26; the DR0-3 address mask MSRs
/// are not emulated, XTF's debug-regs reads them when it is offered): host
/// facilities the guest does not get.
const E1_ECX_HIDDEN: u32 = E1_ECX_SVM
    | (1 << 9)
    | (1 << 10)
    | (1 << 12)
    | (1 << 13)
    | (1 << 15)
    | (1 << 23)
    | (1 << 24)
    | (1 << 26)
    | (1 << 28);
/// Leaf 8000_0008h EBX: VIRT_SSBD (25; VIRT_SPEC_CTRL is not emulated) and
/// PSFD (28; SPEC_CTRL bit 7 is not offered). IBPB (12), IBRS (14), STIBP
/// (15) and SSBD (24) pass as the host has them (xenolith::spec_ctrl).
const E8_EBX_HIDDEN: u32 = (1 << 25) | (1 << 28);
/// Leaf 8000_0021h EAX: AutoIBRS (8; EFER.AIBRSE is not writable) and SBPB
/// (27; PRED_CMD bit 7 is not offered).
const E21_EAX_HIDDEN: u32 = (1 << 8) | (1 << 27);
/// Leaf 8000_0007h EDX: only the invariant TSC (bit 8) is meaningful to a guest.
const E7_EDX_KEPT: u32 = 1 << 8;

/// Xen leaf base+4 EAX: vCPU id present (bit 3) and domain id present (bit 4).
const XEN_HVM_VCPU_ID_PRESENT: u32 = 1 << 3;
const XEN_HVM_DOMID_PRESENT: u32 = 1 << 4;

/// The guest's view of `leaf`/`subleaf`, given the host's answer `host`.
///
/// Passed through: everything that describes the CPU the guest really runs
/// on (vendor, families, ISA extensions), so a guest picks VMCALL or VMMCALL
/// to match the hardware. Hidden: VMX, SVM and its leaf (no nested
/// virtualization), MONITOR/MWAIT (the guest idles with HLT), the TSC-deadline
/// timer, and every feature whose MSRs are not emulated (machine check,
/// performance monitoring, CET, SME/SEV, PT, SGX, the SPEC_CTRL bits of
/// leaf 7.2 EDX, PSFD, VIRT_SSBD, SBPB):
/// Linux accesses several of those MSRs without a fault handler. Added: the
/// hypervisor bit, x2APIC (emulated, ../shared/spec/xen-pvh-abi.md 4.6) and
/// the Xen leaves.
/// `guest_cr4` is the guest's own CR4: CPUID reports the OS-enable bits
/// (OSXSAVE, OSPKE) of the CR4 of the software asking, not the host's.
pub fn guest_view(
    leaf: u32,
    subleaf: u32,
    host: Regs,
    vcpu_id: u32,
    domid: u32,
    guest_cr4: u64,
) -> Regs {
    let os_bit = |cr4_bit: u64, bit: u32| if guest_cr4 & cr4_bit != 0 { bit } else { 0 };
    match leaf {
        1 => {
            let [eax, ebx, ecx, edx] = host;
            // EBX[31:24] is the initial APIC ID: the vCPU's.
            let ebx = (ebx & 0x00ff_ffff) | (vcpu_id << 24);
            let ecx = (ecx & !(L1_ECX_HIDDEN | L1_ECX_OSXSAVE))
                | L1_ECX_HYPERVISOR
                | L1_ECX_X2APIC
                | os_bit(CR4_OSXSAVE, L1_ECX_OSXSAVE);
            [eax, ebx, ecx, edx & !L1_EDX_HIDDEN]
        }
        // MONITOR/MWAIT, thermal and power, PMU, SGX, PT: not offered.
        5 | 6 | 0xa | 0x12 | 0x14 => [0; 4],
        7 if subleaf == 0 => {
            let [eax, ebx, ecx, edx] = host;
            let ecx = (ecx & !(L7_ECX_HIDDEN | L7_ECX_OSPKE)) | os_bit(CR4_PKE, L7_ECX_OSPKE);
            [eax, ebx & !L7_EBX_HIDDEN, ecx, edx & !L7_EDX_HIDDEN]
        }
        // PSFD, IPRED_CTRL, RRSBA_CTRL, DDPD_U, BHI_CTRL (SPEC_CTRL bits 3-8,
        // 10, not offered) and the MSR-backed UC_LOCK_DISABLE.
        7 if subleaf == 2 => [0; 4],
        0xd if subleaf == 1 => {
            let [eax, ebx, ecx, edx] = host;
            [eax & !LD1_EAX_HIDDEN, ebx, ecx, edx]
        }
        // x2APIC topology: EDX is the x2APIC ID.
        0xb | 0x1f => {
            let [eax, ebx, ecx, _] = host;
            [eax, ebx, ecx, vcpu_id]
        }
        XEN_BASE => [XEN_LAST, 0x566e_6558, 0x6558_4d4d, 0x4d4d_566e], // "XenVMMXenVMM"
        0x4000_0001 => [(VERSION_MAJOR << 16) | VERSION_MINOR, 0, 0, 0],
        0x4000_0002 => [1, HYPERCALL_PAGE_MSR, 0, 0],
        0x4000_0004 => [
            XEN_HVM_VCPU_ID_PRESENT | XEN_HVM_DOMID_PRESENT,
            vcpu_id,
            domid,
            0,
        ],
        0x4000_0003 | 0x4000_0005..=0x4fff_ffff => [0; 4],
        0x8000_0001 => {
            let [eax, ebx, ecx, edx] = host;
            [eax, ebx, ecx & !E1_ECX_HIDDEN, edx]
        }
        0x8000_0007 => [0, 0, 0, host[3] & E7_EDX_KEPT],
        0x8000_0008 => {
            let [eax, ebx, ecx, edx] = host;
            [eax, ebx & !E8_EBX_HIDDEN, ecx, edx]
        }
        0x8000_0021 => {
            let [eax, ebx, ecx, edx] = host;
            [eax & !E21_EAX_HIDDEN, ebx, ecx, edx]
        }
        // SVM features (no SVM), SME/SEV, AMD PMU v2: not offered.
        0x8000_000a | 0x8000_001f | 0x8000_0022 => [0; 4],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_virtualization_and_adds_xen() {
        let host = [
            0x00a2_0f10,
            0x0102_0800,
            0x7ed8_320b | L1_ECX_VMX,
            0x178b_fbff,
        ];
        let [_, ebx, ecx, edx] = guest_view(1, 0, host, 3, 7, 0);
        assert_eq!(ebx >> 24, 3);
        assert_eq!(ecx & L1_ECX_VMX, 0);
        assert_eq!(ecx & L1_ECX_MONITOR, 0);
        assert_ne!(ecx & L1_ECX_HYPERVISOR, 0);
        assert_ne!(ecx & L1_ECX_X2APIC, 0);
        assert_eq!(ecx & L1_ECX_TSC_DEADLINE, 0);
        assert_eq!(edx, 0x178b_fbff & !L1_EDX_HIDDEN);
        let [_, _, _, edx7] = guest_view(7, 0, [0, 0, 0, u32::MAX], 0, 0, 0);
        assert_eq!(edx7 & (1 << 30), 0, "CORE_CAPABILITIES must be hidden");
        // The speculation controls pass exactly as the host has them.
        assert_eq!(edx7 >> 26, 0b10_1111);
        assert_eq!(guest_view(7, 0, [0; 4], 0, 0, 0)[3], 0);
        assert_eq!(guest_view(7, 2, [0, 0, 0, 0x1f], 0, 0, 0), [0; 4]);
        assert_eq!(guest_view(7, 1, [1, 2, 3, 4], 0, 0, 0), [1, 2, 3, 4]);
        // OS-enable bits follow the guest's CR4, not the host's.
        let host1 = [0, 0, L1_ECX_OSXSAVE, 0];
        assert_eq!(guest_view(1, 0, host1, 0, 0, 0)[2] & L1_ECX_OSXSAVE, 0);
        assert_ne!(
            guest_view(1, 0, [0; 4], 0, 0, CR4_OSXSAVE)[2] & L1_ECX_OSXSAVE,
            0
        );
        assert_eq!(guest_view(0xd, 1, [0xf, 0, 0, 0], 0, 0, 0)[0], 0b0101);
        assert_eq!(guest_view(0xb, 0, [1, 2, 3, 0], 5, 0, 0), [1, 2, 3, 5]);
        let [_, ebx8, _, _] = guest_view(0x8000_0008, 0, [0, u32::MAX, 0, 0], 0, 0, 0);
        assert_eq!(ebx8 & (1 << 25), 0, "VIRT_SSBD must be hidden");
        let spec = (1 << 12) | (1 << 14) | (1 << 15) | (1 << 24);
        assert_eq!(ebx8 & spec, spec);
        assert_eq!(guest_view(0x8000_0008, 0, [0; 4], 0, 0, 0)[1], 0);
        let [eax21, ..] = guest_view(0x8000_0021, 0, [u32::MAX, 0, 0, 0], 0, 0, 0);
        assert_eq!(eax21 & ((1 << 8) | (1 << 27)), 0);
        let [_, _, ecx, _] = guest_view(0x8000_0001, 0, [0, 0, 0xffff_ffff, 0], 0, 0, 0);
        assert_eq!(ecx & E1_ECX_SVM, 0);
        assert_eq!(ecx & (1 << 26), 0, "DataBreakpointExtension must be hidden");
        assert_eq!(guest_view(0x8000_000a, 0, [1, 16, 0, 0xf], 0, 0, 0), [0; 4]);
    }

    #[test]
    fn xen_leaves() {
        let base = guest_view(XEN_BASE, 0, [0; 4], 0, 1, 0);
        assert_eq!(base[0], XEN_BASE + 5);
        let sig: Vec<u8> = base[1..].iter().flat_map(|r| r.to_le_bytes()).collect();
        assert_eq!(&sig, b"XenVMMXenVMM");
        assert_eq!(guest_view(XEN_BASE + 1, 0, [0; 4], 0, 1, 0)[0], 0x0004_0011);
        assert_eq!(
            guest_view(XEN_BASE + 2, 0, [0; 4], 0, 1, 0),
            [1, 0x4000_0000, 0, 0]
        );
        assert_eq!(
            guest_view(XEN_BASE + 4, 0, [0; 4], 2, 5, 0),
            [0x18, 2, 5, 0]
        );
        assert_eq!(guest_view(0x4000_0100, 0, [9; 4], 0, 1, 0), [0; 4]);
        assert_eq!(guest_view(0, 0, [0xd, 1, 2, 3], 0, 1, 0), [0xd, 1, 2, 3]);
    }
}
