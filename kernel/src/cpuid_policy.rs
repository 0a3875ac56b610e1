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

// Leaf 1 ECX (Intel SDM Vol. 2A, CPUID table 3-10).
const L1_ECX_MONITOR: u32 = 1 << 3;
const L1_ECX_VMX: u32 = 1 << 5;
const L1_ECX_HYPERVISOR: u32 = 1 << 31;
// Leaf 8000_0001h ECX (AMD APM Vol. 3 E.4.2).
const E1_ECX_SVM: u32 = 1 << 2;

/// Xen leaf base+4 EAX: vCPU id present (bit 3) and domain id present (bit 4).
const XEN_HVM_VCPU_ID_PRESENT: u32 = 1 << 3;
const XEN_HVM_DOMID_PRESENT: u32 = 1 << 4;

/// The guest's view of `leaf`/`subleaf`, given the host's answer `host`.
///
/// Passed through: everything that describes the CPU the guest really runs
/// on (vendor, families, ISA extensions), so a guest picks VMCALL or VMMCALL
/// to match the hardware. Hidden: VMX, SVM and its leaf (no nested
/// virtualization), MONITOR/MWAIT (the guest idles with HLT). Added: the
/// hypervisor bit and the Xen leaves.
pub fn guest_view(leaf: u32, subleaf: u32, host: Regs, vcpu_id: u32, domid: u32) -> Regs {
    let _ = subleaf;
    match leaf {
        1 => {
            let [eax, ebx, ecx, edx] = host;
            // EBX[31:24] is the initial APIC ID: the vCPU's.
            let ebx = (ebx & 0x00ff_ffff) | (vcpu_id << 24);
            let ecx = (ecx & !(L1_ECX_VMX | L1_ECX_MONITOR)) | L1_ECX_HYPERVISOR;
            [eax, ebx, ecx, edx]
        }
        // MONITOR/MWAIT parameters: meaningless without MONITOR.
        5 => [0; 4],
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
            [eax, ebx, ecx & !E1_ECX_SVM, edx]
        }
        // SVM features: no SVM.
        0x8000_000a => [0; 4],
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
        let [_, ebx, ecx, edx] = guest_view(1, 0, host, 3, 7);
        assert_eq!(ebx >> 24, 3);
        assert_eq!(ecx & L1_ECX_VMX, 0);
        assert_eq!(ecx & L1_ECX_MONITOR, 0);
        assert_ne!(ecx & L1_ECX_HYPERVISOR, 0);
        assert_eq!(edx, 0x178b_fbff);
        let [_, _, ecx, _] = guest_view(0x8000_0001, 0, [0, 0, 0xffff_ffff, 0], 0, 0);
        assert_eq!(ecx & E1_ECX_SVM, 0);
        assert_eq!(guest_view(0x8000_000a, 0, [1, 16, 0, 0xf], 0, 0), [0; 4]);
    }

    #[test]
    fn xen_leaves() {
        let base = guest_view(XEN_BASE, 0, [0; 4], 0, 1);
        assert_eq!(base[0], XEN_BASE + 5);
        let sig: Vec<u8> = base[1..].iter().flat_map(|r| r.to_le_bytes()).collect();
        assert_eq!(&sig, b"XenVMMXenVMM");
        assert_eq!(guest_view(XEN_BASE + 1, 0, [0; 4], 0, 1)[0], 0x0004_0011);
        assert_eq!(
            guest_view(XEN_BASE + 2, 0, [0; 4], 0, 1),
            [1, 0x4000_0000, 0, 0]
        );
        assert_eq!(guest_view(XEN_BASE + 4, 0, [0; 4], 2, 5), [0x18, 2, 5, 0]);
        assert_eq!(guest_view(0x4000_0100, 0, [9; 4], 0, 1), [0; 4]);
        assert_eq!(guest_view(0, 0, [0xd, 1, 2, 3], 0, 1), [0xd, 1, 2, 3]);
    }
}
