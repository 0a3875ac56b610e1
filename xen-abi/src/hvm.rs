//! `hvm_op` sub-operations, their arguments and the HVM parameters (public/hvm/hvm_op.h, public/hvm/params.h).

use crate::event_channel::DomId;
use core::mem::offset_of;
use static_assertions::{assert_eq_size, const_assert_eq};

// HVMOP_* (hvm_op.h); `hvm_op(op, arg)`.
/// Argument: `XenHvmParam`.
pub const HVMOP_SET_PARAM: u64 = 0;
/// Argument: `XenHvmParam`.
pub const HVMOP_GET_PARAM: u64 = 1;
pub const HVMOP_SET_PCI_INTX_LEVEL: u64 = 2;
pub const HVMOP_SET_ISA_IRQ_LEVEL: u64 = 3;
pub const HVMOP_SET_PCI_LINK_ROUTE: u64 = 4;
pub const HVMOP_FLUSH_TLBS: u64 = 5;
/// Argument: `XenHvmPagetableDying`.
pub const HVMOP_PAGETABLE_DYING: u64 = 9;
/// Argument: `XenHvmGetTime`.
pub const HVMOP_GET_TIME: u64 = 10;
pub const HVMOP_XENTRACE: u64 = 11;
/// Argument: `XenHvmGetMemType`.
pub const HVMOP_GET_MEM_TYPE: u64 = 15;
/// Argument: `XenHvmEvtchnUpcallVector`.
pub const HVMOP_SET_EVTCHN_UPCALL_VECTOR: u64 = 23;
pub const HVMOP_GUEST_REQUEST_VM_EVENT: u64 = 24;
pub const HVMOP_ALTP2M: u64 = 25;

// HVM_PARAM_* (params.h): `XenHvmParam::index`.
/// How event-channel upcalls are delivered (`callback_irq_*`).
pub const HVM_PARAM_CALLBACK_IRQ: u32 = 0;
/// GFN of the XenStore ring page.
pub const HVM_PARAM_STORE_PFN: u32 = 1;
/// The guest's XenStore event-channel port.
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
pub const HVM_PARAM_IOREQ_PFN: u32 = 5;
pub const HVM_PARAM_BUFIOREQ_PFN: u32 = 6;
pub const HVM_PARAM_VIRIDIAN: u32 = 9;
pub const HVM_PARAM_TIMER_MODE: u32 = 10;
pub const HVM_PARAM_HPET_ENABLED: u32 = 11;
/// Identity-map page directory used by Intel EPT when CR0.PG = 0.
pub const HVM_PARAM_IDENT_PT: u32 = 12;
pub const HVM_PARAM_ACPI_S_STATE: u32 = 14;
pub const HVM_PARAM_VM86_TSS: u32 = 15;
pub const HVM_PARAM_VPT_ALIGN: u32 = 16;
/// GFN of the console ring page (`crate::console::XenconsInterface`).
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
/// The guest's console event-channel port.
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;
pub const HVM_PARAM_ACPI_IOPORTS_LOCATION: u32 = 19;
pub const HVM_PARAM_PAGING_RING_PFN: u32 = 27;
pub const HVM_PARAM_MONITOR_RING_PFN: u32 = 28;
pub const HVM_PARAM_SHARING_RING_PFN: u32 = 29;
/// `SHUTDOWN_*` reason for a triple fault.
pub const HVM_PARAM_TRIPLE_FAULT_REASON: u32 = 31;
pub const HVM_PARAM_IOREQ_SERVER_PFN: u32 = 32;
pub const HVM_PARAM_NR_IOREQ_SERVER_PAGES: u32 = 33;
pub const HVM_PARAM_VM_GENERATION_ID_ADDR: u32 = 34;
pub const HVM_PARAM_ALTP2M: u32 = 35;
pub const HVM_PARAM_X87_FIP_WIDTH: u32 = 36;
pub const HVM_PARAM_VM86_TSS_SIZED: u32 = 37;
pub const HVM_PARAM_MCA_CAP: u32 = 38;
/// `HVM_NR_PARAMS` (params.h): indices at or above are -EINVAL.
pub const HVM_NR_PARAMS: u32 = 39;

// HVM_PARAM_CALLBACK_IRQ encoding (params.h): value 0 disables delivery;
// otherwise bits 63:56 are the type.
pub const HVM_PARAM_CALLBACK_IRQ_TYPE_MASK: u64 = 0xff00_0000_0000_0000;
const CALLBACK_TYPE_SHIFT: u32 = 56;
/// Bits 55:0 are a GSI (0 cannot be used).
pub const HVM_PARAM_CALLBACK_TYPE_GSI: u8 = 0;
/// Bits 55:0 are a PCI INTx: domain 47:32, bus 31:16, devfn 15:8, INTx 1:0.
pub const HVM_PARAM_CALLBACK_TYPE_PCI_INTX: u8 = 1;
/// Bits 7:0 are a vector (needs `XENFEAT_hvm_callback_vector`).
pub const HVM_PARAM_CALLBACK_TYPE_VECTOR: u8 = 2;

/// Linux's `HYPERVISOR_CALLBACK_VECTOR` (arch/x86/include/asm/irq_vectors.h).
pub const LINUX_CALLBACK_VECTOR: u8 = 0xf3;

/// A decoded `HVM_PARAM_CALLBACK_IRQ` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackVia {
    /// Value 0: no delivery.
    None,
    /// Type 0, GSI (non-zero).
    Gsi(u64),
    /// Type 1, PCI INTx.
    PciIntx {
        domain: u16,
        bus: u16,
        devfn: u8,
        intx: u8,
    },
    /// Type 2, an IDT vector injected directly, without the local APIC.
    Vector(u8),
    /// Any other type byte, with the whole value.
    Unknown(u64),
}

/// Decodes a `HVM_PARAM_CALLBACK_IRQ` value (params.h).
pub const fn callback_irq_decode(value: u64) -> CallbackVia {
    if value == 0 {
        return CallbackVia::None;
    }
    let low = value & !HVM_PARAM_CALLBACK_IRQ_TYPE_MASK;
    match (value >> CALLBACK_TYPE_SHIFT) as u8 {
        HVM_PARAM_CALLBACK_TYPE_GSI => CallbackVia::Gsi(low),
        HVM_PARAM_CALLBACK_TYPE_PCI_INTX => CallbackVia::PciIntx {
            domain: (low >> 32) as u16,
            bus: (low >> 16) as u16,
            devfn: (low >> 8) as u8,
            intx: (low & 3) as u8,
        },
        HVM_PARAM_CALLBACK_TYPE_VECTOR => CallbackVia::Vector(low as u8),
        _ => CallbackVia::Unknown(value),
    }
}

/// The `HVM_PARAM_CALLBACK_IRQ` value selecting delivery by `vector`;
/// Linux writes `callback_irq_vector(0xf3)` = 0x0200_0000_0000_00f3.
pub const fn callback_irq_vector(vector: u8) -> u64 {
    ((HVM_PARAM_CALLBACK_TYPE_VECTOR as u64) << CALLBACK_TYPE_SHIFT) | vector as u64
}

/// The `HVM_PARAM_CALLBACK_IRQ` value selecting delivery through `gsi`.
pub const fn callback_irq_gsi(gsi: u64) -> u64 {
    gsi & !HVM_PARAM_CALLBACK_IRQ_TYPE_MASK
}

/// `struct xen_hvm_param` (hvm_op.h), 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmParam {
    pub domid: DomId,
    pub pad: u16,
    /// `HVM_PARAM_*`.
    pub index: u32,
    /// In for set, out for get.
    pub value: u64,
}

/// `struct xen_hvm_pagetable_dying` (hvm_op.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmPagetableDying {
    pub domid: DomId,
    pub pad: [u16; 3],
    /// Guest-physical address of the top-level page table.
    pub gpa: u64,
}

/// `struct xen_hvm_get_time` (hvm_op.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmGetTime {
    /// Out: system time in ns.
    pub now: u64,
}

/// `struct xen_hvm_get_mem_type` (hvm_op.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmGetMemType {
    pub domid: DomId,
    /// Out: `hvmmem_type_t`.
    pub mem_type: u16,
    pub pad: [u16; 2],
    pub pfn: u64,
}

/// `struct xen_hvm_evtchn_upcall_vector` (hvm_op.h): 8 bytes, the last three
/// being the C struct's tail padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmEvtchnUpcallVector {
    pub vcpu: u32,
    pub vector: u8,
    pub pad: [u8; 3],
}

assert_eq_size!(XenHvmParam, [u8; 16]);
const_assert_eq!(offset_of!(XenHvmParam, pad), 2);
const_assert_eq!(offset_of!(XenHvmParam, index), 4);
const_assert_eq!(offset_of!(XenHvmParam, value), 8);
assert_eq_size!(XenHvmPagetableDying, [u8; 16]);
const_assert_eq!(offset_of!(XenHvmPagetableDying, pad), 2);
const_assert_eq!(offset_of!(XenHvmPagetableDying, gpa), 8);
assert_eq_size!(XenHvmGetTime, [u8; 8]);
assert_eq_size!(XenHvmGetMemType, [u8; 16]);
const_assert_eq!(offset_of!(XenHvmGetMemType, mem_type), 2);
const_assert_eq!(offset_of!(XenHvmGetMemType, pad), 4);
const_assert_eq!(offset_of!(XenHvmGetMemType, pfn), 8);
assert_eq_size!(XenHvmEvtchnUpcallVector, [u8; 8]);
const_assert_eq!(offset_of!(XenHvmEvtchnUpcallVector, vector), 4);
const_assert_eq!(offset_of!(XenHvmEvtchnUpcallVector, pad), 5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_irq() {
        assert_eq!(
            callback_irq_vector(LINUX_CALLBACK_VECTOR),
            0x0200_0000_0000_00f3
        );
        assert_eq!(
            callback_irq_decode(0x0200_0000_0000_00f3),
            CallbackVia::Vector(0xf3)
        );
        assert_eq!(callback_irq_decode(0), CallbackVia::None);
        assert_eq!(callback_irq_decode(1), CallbackVia::Gsi(1));
        assert_eq!(
            callback_irq_decode(callback_irq_gsi(9)),
            CallbackVia::Gsi(9)
        );
        assert_eq!(
            callback_irq_decode(0x0100_0002_0003_2802),
            CallbackVia::PciIntx {
                domain: 2,
                bus: 3,
                devfn: 0x28,
                intx: 2
            }
        );
        assert_eq!(
            callback_irq_decode(0x0300_0000_0000_0001),
            CallbackVia::Unknown(0x0300_0000_0000_0001)
        );
    }
}
