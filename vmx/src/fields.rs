//! VMCS field encodings, named after Intel SDM Vol. 3D appendix B.
//!
//! An encoding (SDM Vol. 3C 25.11.2, table 25-21) packs the access type
//! (bit 0: full or high half of a 64-bit field), an index (bits 9:1), the
//! field type (bits 11:10: control, VM-exit information, guest state, host
//! state) and the width (bits 14:13: 16-bit, 64-bit, 32-bit, natural).

/// The width of a field, from bits 14:13 of its encoding (SDM Vol. 3C 25.11.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    Bits16,
    Bits64,
    Bits32,
    Natural,
}

pub const fn width(encoding: u32) -> Width {
    match (encoding >> 13) & 3 {
        0 => Width::Bits16,
        1 => Width::Bits64,
        2 => Width::Bits32,
        _ => Width::Natural,
    }
}

macro_rules! fields {
    ($( $(#[$doc:meta])* $name:ident = $encoding:literal, )*) => {
        $( $(#[$doc])* pub const $name: u32 = $encoding; )*
        /// Every field above with its name, for error messages.
        pub const ALL: &[(u32, &str)] = &[ $( ($encoding, stringify!($name)), )* ];
    };
}

fields! {
    // B.1.1 16-bit control fields.
    VIRTUAL_PROCESSOR_ID = 0x0000,
    POSTED_INTERRUPT_NOTIFICATION_VECTOR = 0x0002,
    EPTP_INDEX = 0x0004,
    // B.1.2 16-bit guest-state fields.
    GUEST_ES_SELECTOR = 0x0800,
    GUEST_CS_SELECTOR = 0x0802,
    GUEST_SS_SELECTOR = 0x0804,
    GUEST_DS_SELECTOR = 0x0806,
    GUEST_FS_SELECTOR = 0x0808,
    GUEST_GS_SELECTOR = 0x080a,
    GUEST_LDTR_SELECTOR = 0x080c,
    GUEST_TR_SELECTOR = 0x080e,
    GUEST_INTERRUPT_STATUS = 0x0810,
    GUEST_PML_INDEX = 0x0812,
    // B.1.3 16-bit host-state fields.
    HOST_ES_SELECTOR = 0x0c00,
    HOST_CS_SELECTOR = 0x0c02,
    HOST_SS_SELECTOR = 0x0c04,
    HOST_DS_SELECTOR = 0x0c06,
    HOST_FS_SELECTOR = 0x0c08,
    HOST_GS_SELECTOR = 0x0c0a,
    HOST_TR_SELECTOR = 0x0c0c,

    // B.2.1 64-bit control fields (the "full" encodings).
    IO_BITMAP_A = 0x2000,
    IO_BITMAP_B = 0x2002,
    MSR_BITMAP = 0x2004,
    VM_EXIT_MSR_STORE_ADDRESS = 0x2006,
    VM_EXIT_MSR_LOAD_ADDRESS = 0x2008,
    VM_ENTRY_MSR_LOAD_ADDRESS = 0x200a,
    EXECUTIVE_VMCS_POINTER = 0x200c,
    PML_ADDRESS = 0x200e,
    TSC_OFFSET = 0x2010,
    VIRTUAL_APIC_ADDRESS = 0x2012,
    APIC_ACCESS_ADDRESS = 0x2014,
    POSTED_INTERRUPT_DESCRIPTOR_ADDRESS = 0x2016,
    VM_FUNCTION_CONTROLS = 0x2018,
    EPT_POINTER = 0x201a,
    EOI_EXIT_BITMAP_0 = 0x201c,
    EOI_EXIT_BITMAP_1 = 0x201e,
    EOI_EXIT_BITMAP_2 = 0x2020,
    EOI_EXIT_BITMAP_3 = 0x2022,
    EPTP_LIST_ADDRESS = 0x2024,
    VMREAD_BITMAP_ADDRESS = 0x2026,
    VMWRITE_BITMAP_ADDRESS = 0x2028,
    VIRTUALIZATION_EXCEPTION_INFORMATION_ADDRESS = 0x202a,
    XSS_EXITING_BITMAP = 0x202c,
    ENCLS_EXITING_BITMAP = 0x202e,
    TSC_MULTIPLIER = 0x2032,
    // B.2.2 64-bit read-only data fields.
    GUEST_PHYSICAL_ADDRESS = 0x2400,
    // B.2.3 64-bit guest-state fields.
    VMCS_LINK_POINTER = 0x2800,
    GUEST_IA32_DEBUGCTL = 0x2802,
    GUEST_IA32_PAT = 0x2804,
    GUEST_IA32_EFER = 0x2806,
    GUEST_IA32_PERF_GLOBAL_CTRL = 0x2808,
    GUEST_PDPTE0 = 0x280a,
    GUEST_PDPTE1 = 0x280c,
    GUEST_PDPTE2 = 0x280e,
    GUEST_PDPTE3 = 0x2810,
    GUEST_IA32_BNDCFGS = 0x2812,
    // B.2.4 64-bit host-state fields.
    HOST_IA32_PAT = 0x2c00,
    HOST_IA32_EFER = 0x2c02,
    HOST_IA32_PERF_GLOBAL_CTRL = 0x2c04,

    // B.3.1 32-bit control fields.
    PIN_BASED_VM_EXECUTION_CONTROLS = 0x4000,
    PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS = 0x4002,
    EXCEPTION_BITMAP = 0x4004,
    PAGE_FAULT_ERROR_CODE_MASK = 0x4006,
    PAGE_FAULT_ERROR_CODE_MATCH = 0x4008,
    CR3_TARGET_COUNT = 0x400a,
    PRIMARY_VM_EXIT_CONTROLS = 0x400c,
    VM_EXIT_MSR_STORE_COUNT = 0x400e,
    VM_EXIT_MSR_LOAD_COUNT = 0x4010,
    VM_ENTRY_CONTROLS = 0x4012,
    VM_ENTRY_MSR_LOAD_COUNT = 0x4014,
    VM_ENTRY_INTERRUPTION_INFORMATION = 0x4016,
    VM_ENTRY_EXCEPTION_ERROR_CODE = 0x4018,
    VM_ENTRY_INSTRUCTION_LENGTH = 0x401a,
    TPR_THRESHOLD = 0x401c,
    SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS = 0x401e,
    PLE_GAP = 0x4020,
    PLE_WINDOW = 0x4022,
    // B.3.2 32-bit read-only data fields.
    VM_INSTRUCTION_ERROR = 0x4400,
    EXIT_REASON = 0x4402,
    VM_EXIT_INTERRUPTION_INFORMATION = 0x4404,
    VM_EXIT_INTERRUPTION_ERROR_CODE = 0x4406,
    IDT_VECTORING_INFORMATION = 0x4408,
    IDT_VECTORING_ERROR_CODE = 0x440a,
    VM_EXIT_INSTRUCTION_LENGTH = 0x440c,
    VM_EXIT_INSTRUCTION_INFORMATION = 0x440e,
    // B.3.3 32-bit guest-state fields.
    GUEST_ES_LIMIT = 0x4800,
    GUEST_CS_LIMIT = 0x4802,
    GUEST_SS_LIMIT = 0x4804,
    GUEST_DS_LIMIT = 0x4806,
    GUEST_FS_LIMIT = 0x4808,
    GUEST_GS_LIMIT = 0x480a,
    GUEST_LDTR_LIMIT = 0x480c,
    GUEST_TR_LIMIT = 0x480e,
    GUEST_GDTR_LIMIT = 0x4810,
    GUEST_IDTR_LIMIT = 0x4812,
    GUEST_ES_ACCESS_RIGHTS = 0x4814,
    GUEST_CS_ACCESS_RIGHTS = 0x4816,
    GUEST_SS_ACCESS_RIGHTS = 0x4818,
    GUEST_DS_ACCESS_RIGHTS = 0x481a,
    GUEST_FS_ACCESS_RIGHTS = 0x481c,
    GUEST_GS_ACCESS_RIGHTS = 0x481e,
    GUEST_LDTR_ACCESS_RIGHTS = 0x4820,
    GUEST_TR_ACCESS_RIGHTS = 0x4822,
    GUEST_INTERRUPTIBILITY_STATE = 0x4824,
    GUEST_ACTIVITY_STATE = 0x4826,
    GUEST_SMBASE = 0x4828,
    GUEST_IA32_SYSENTER_CS = 0x482a,
    VMX_PREEMPTION_TIMER_VALUE = 0x482e,
    // B.3.4 32-bit host-state field.
    HOST_IA32_SYSENTER_CS = 0x4c00,

    // B.4.1 natural-width control fields.
    CR0_GUEST_HOST_MASK = 0x6000,
    CR4_GUEST_HOST_MASK = 0x6002,
    CR0_READ_SHADOW = 0x6004,
    CR4_READ_SHADOW = 0x6006,
    CR3_TARGET_VALUE_0 = 0x6008,
    CR3_TARGET_VALUE_1 = 0x600a,
    CR3_TARGET_VALUE_2 = 0x600c,
    CR3_TARGET_VALUE_3 = 0x600e,
    // B.4.2 natural-width read-only data fields.
    EXIT_QUALIFICATION = 0x6400,
    IO_RCX = 0x6402,
    IO_RSI = 0x6404,
    IO_RDI = 0x6406,
    IO_RIP = 0x6408,
    GUEST_LINEAR_ADDRESS = 0x640a,
    // B.4.3 natural-width guest-state fields.
    GUEST_CR0 = 0x6800,
    GUEST_CR3 = 0x6802,
    GUEST_CR4 = 0x6804,
    GUEST_ES_BASE = 0x6806,
    GUEST_CS_BASE = 0x6808,
    GUEST_SS_BASE = 0x680a,
    GUEST_DS_BASE = 0x680c,
    GUEST_FS_BASE = 0x680e,
    GUEST_GS_BASE = 0x6810,
    GUEST_LDTR_BASE = 0x6812,
    GUEST_TR_BASE = 0x6814,
    GUEST_GDTR_BASE = 0x6816,
    GUEST_IDTR_BASE = 0x6818,
    GUEST_DR7 = 0x681a,
    GUEST_RSP = 0x681c,
    GUEST_RIP = 0x681e,
    GUEST_RFLAGS = 0x6820,
    GUEST_PENDING_DEBUG_EXCEPTIONS = 0x6822,
    GUEST_IA32_SYSENTER_ESP = 0x6824,
    GUEST_IA32_SYSENTER_EIP = 0x6826,
    // B.4.4 natural-width host-state fields.
    HOST_CR0 = 0x6c00,
    HOST_CR3 = 0x6c02,
    HOST_CR4 = 0x6c04,
    HOST_FS_BASE = 0x6c06,
    HOST_GS_BASE = 0x6c08,
    HOST_TR_BASE = 0x6c0a,
    HOST_GDTR_BASE = 0x6c0c,
    HOST_IDTR_BASE = 0x6c0e,
    HOST_IA32_SYSENTER_ESP = 0x6c10,
    HOST_IA32_SYSENTER_EIP = 0x6c12,
    HOST_RSP = 0x6c14,
    HOST_RIP = 0x6c16,
}

/// The appendix B name of a field, or "unknown field".
pub fn name(encoding: u32) -> &'static str {
    ALL.iter()
        .find(|&&(e, _)| e == encoding)
        .map_or("unknown field", |&(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x86::vmx::vmcs;

    #[test]
    fn encodings_are_unique_full_accesses() {
        for (i, &(a, name_a)) in ALL.iter().enumerate() {
            assert_eq!(a & 1, 0, "{name_a} must be a full access");
            assert_eq!(a >> 15, 0, "{name_a} has reserved bits");
            for &(b, name_b) in &ALL[i + 1..] {
                assert_ne!(a, b, "{name_a} and {name_b}");
            }
        }
    }

    #[test]
    fn prefixes_match_field_type() {
        // Bits 11:10 (SDM Vol. 3C table 25-21): 0 control, 1 read-only, 2 guest, 3 host.
        for &(e, n) in ALL {
            match (e >> 10) & 3 {
                2 => assert!(
                    n.starts_with("GUEST_")
                        || n == "VMCS_LINK_POINTER"
                        || n == "VMX_PREEMPTION_TIMER_VALUE",
                    "{n}"
                ),
                3 => assert!(n.starts_with("HOST_"), "{n}"),
                _ => assert!(!n.starts_with("HOST_"), "{n}"),
            }
        }
    }

    #[test]
    fn widths() {
        assert_eq!(width(VIRTUAL_PROCESSOR_ID), Width::Bits16);
        assert_eq!(width(EPT_POINTER), Width::Bits64);
        assert_eq!(width(EXIT_REASON), Width::Bits32);
        assert_eq!(width(GUEST_RIP), Width::Natural);
    }

    #[test]
    fn names() {
        assert_eq!(name(GUEST_CS_ACCESS_RIGHTS), "GUEST_CS_ACCESS_RIGHTS");
        assert_eq!(name(0x7fff), "unknown field");
    }

    /// A second opinion: the encodings the `x86` crate carries.
    #[test]
    fn agree_with_x86_crate() {
        let pairs = [
            (VIRTUAL_PROCESSOR_ID, vmcs::control::VPID),
            (IO_BITMAP_A, vmcs::control::IO_BITMAP_A_ADDR_FULL),
            (IO_BITMAP_B, vmcs::control::IO_BITMAP_B_ADDR_FULL),
            (MSR_BITMAP, vmcs::control::MSR_BITMAPS_ADDR_FULL),
            (EPT_POINTER, vmcs::control::EPTP_FULL),
            (
                PIN_BASED_VM_EXECUTION_CONTROLS,
                vmcs::control::PINBASED_EXEC_CONTROLS,
            ),
            (
                PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS,
                vmcs::control::PRIMARY_PROCBASED_EXEC_CONTROLS,
            ),
            (
                SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS,
                vmcs::control::SECONDARY_PROCBASED_EXEC_CONTROLS,
            ),
            (EXCEPTION_BITMAP, vmcs::control::EXCEPTION_BITMAP),
            (PRIMARY_VM_EXIT_CONTROLS, vmcs::control::VMEXIT_CONTROLS),
            (VM_ENTRY_CONTROLS, vmcs::control::VMENTRY_CONTROLS),
            (
                VM_ENTRY_INTERRUPTION_INFORMATION,
                vmcs::control::VMENTRY_INTERRUPTION_INFO_FIELD,
            ),
            (
                VM_ENTRY_EXCEPTION_ERROR_CODE,
                vmcs::control::VMENTRY_EXCEPTION_ERR_CODE,
            ),
            (CR0_GUEST_HOST_MASK, vmcs::control::CR0_GUEST_HOST_MASK),
            (CR4_GUEST_HOST_MASK, vmcs::control::CR4_GUEST_HOST_MASK),
            (CR0_READ_SHADOW, vmcs::control::CR0_READ_SHADOW),
            (CR4_READ_SHADOW, vmcs::control::CR4_READ_SHADOW),
            (GUEST_PHYSICAL_ADDRESS, vmcs::ro::GUEST_PHYSICAL_ADDR_FULL),
            (VM_INSTRUCTION_ERROR, vmcs::ro::VM_INSTRUCTION_ERROR),
            (EXIT_REASON, vmcs::ro::EXIT_REASON),
            (
                VM_EXIT_INTERRUPTION_INFORMATION,
                vmcs::ro::VMEXIT_INTERRUPTION_INFO,
            ),
            (
                VM_EXIT_INTERRUPTION_ERROR_CODE,
                vmcs::ro::VMEXIT_INTERRUPTION_ERR_CODE,
            ),
            (IDT_VECTORING_INFORMATION, vmcs::ro::IDT_VECTORING_INFO),
            (IDT_VECTORING_ERROR_CODE, vmcs::ro::IDT_VECTORING_ERR_CODE),
            (VM_EXIT_INSTRUCTION_LENGTH, vmcs::ro::VMEXIT_INSTRUCTION_LEN),
            (EXIT_QUALIFICATION, vmcs::ro::EXIT_QUALIFICATION),
            (GUEST_ES_SELECTOR, vmcs::guest::ES_SELECTOR),
            (GUEST_TR_SELECTOR, vmcs::guest::TR_SELECTOR),
            (VMCS_LINK_POINTER, vmcs::guest::LINK_PTR_FULL),
            (GUEST_IA32_DEBUGCTL, vmcs::guest::IA32_DEBUGCTL_FULL),
            (GUEST_IA32_PAT, vmcs::guest::IA32_PAT_FULL),
            (GUEST_IA32_EFER, vmcs::guest::IA32_EFER_FULL),
            (GUEST_PDPTE3, vmcs::guest::PDPTE3_FULL),
            (GUEST_ES_LIMIT, vmcs::guest::ES_LIMIT),
            (GUEST_IDTR_LIMIT, vmcs::guest::IDTR_LIMIT),
            (GUEST_ES_ACCESS_RIGHTS, vmcs::guest::ES_ACCESS_RIGHTS),
            (GUEST_SS_ACCESS_RIGHTS, vmcs::guest::SS_ACCESS_RIGHTS),
            (GUEST_TR_ACCESS_RIGHTS, vmcs::guest::TR_ACCESS_RIGHTS),
            (
                GUEST_INTERRUPTIBILITY_STATE,
                vmcs::guest::INTERRUPTIBILITY_STATE,
            ),
            (GUEST_ACTIVITY_STATE, vmcs::guest::ACTIVITY_STATE),
            (GUEST_IA32_SYSENTER_CS, vmcs::guest::IA32_SYSENTER_CS),
            (GUEST_CR0, vmcs::guest::CR0),
            (GUEST_CR3, vmcs::guest::CR3),
            (GUEST_CR4, vmcs::guest::CR4),
            (GUEST_ES_BASE, vmcs::guest::ES_BASE),
            (GUEST_IDTR_BASE, vmcs::guest::IDTR_BASE),
            (GUEST_DR7, vmcs::guest::DR7),
            (GUEST_RSP, vmcs::guest::RSP),
            (GUEST_RIP, vmcs::guest::RIP),
            (GUEST_RFLAGS, vmcs::guest::RFLAGS),
            (
                GUEST_PENDING_DEBUG_EXCEPTIONS,
                vmcs::guest::PENDING_DBG_EXCEPTIONS,
            ),
            (GUEST_IA32_SYSENTER_EIP, vmcs::guest::IA32_SYSENTER_EIP),
            (HOST_ES_SELECTOR, vmcs::host::ES_SELECTOR),
            (HOST_TR_SELECTOR, vmcs::host::TR_SELECTOR),
            (HOST_IA32_PAT, vmcs::host::IA32_PAT_FULL),
            (HOST_IA32_EFER, vmcs::host::IA32_EFER_FULL),
            (HOST_IA32_SYSENTER_CS, vmcs::host::IA32_SYSENTER_CS),
            (HOST_CR0, vmcs::host::CR0),
            (HOST_CR3, vmcs::host::CR3),
            (HOST_CR4, vmcs::host::CR4),
            (HOST_FS_BASE, vmcs::host::FS_BASE),
            (HOST_GS_BASE, vmcs::host::GS_BASE),
            (HOST_TR_BASE, vmcs::host::TR_BASE),
            (HOST_GDTR_BASE, vmcs::host::GDTR_BASE),
            (HOST_IDTR_BASE, vmcs::host::IDTR_BASE),
            (HOST_IA32_SYSENTER_ESP, vmcs::host::IA32_SYSENTER_ESP),
            (HOST_IA32_SYSENTER_EIP, vmcs::host::IA32_SYSENTER_EIP),
            (HOST_RSP, vmcs::host::RSP),
            (HOST_RIP, vmcs::host::RIP),
        ];
        for (ours, theirs) in pairs {
            assert_eq!(ours, theirs, "{}", name(ours));
        }
    }
}
