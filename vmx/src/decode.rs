//! Pure decoders: exit reasons, exit qualifications, interruption information and VM-instruction errors.

use vcpu::{Access, Event, IoAccess};

/// Basic exit reasons (SDM Vol. 3D appendix C, table C-1).
pub mod reason {
    pub const EXCEPTION_OR_NMI: u16 = 0;
    pub const EXTERNAL_INTERRUPT: u16 = 1;
    pub const TRIPLE_FAULT: u16 = 2;
    pub const INIT_SIGNAL: u16 = 3;
    pub const SIPI: u16 = 4;
    pub const INTERRUPT_WINDOW: u16 = 7;
    pub const CPUID: u16 = 10;
    pub const GETSEC: u16 = 11;
    pub const HLT: u16 = 12;
    pub const INVD: u16 = 13;
    pub const CR_ACCESS: u16 = 28;
    pub const VMCALL: u16 = 18;
    /// VMCLEAR through VMXON: 19-27 (VMCALL is 18).
    pub const VMCLEAR: u16 = 19;
    pub const VMXON: u16 = 27;
    pub const MWAIT: u16 = 36;
    pub const MONITOR: u16 = 39;
    pub const INVEPT: u16 = 50;
    pub const INVVPID: u16 = 53;
    pub const WBINVD: u16 = 54;
    pub const IO_INSTRUCTION: u16 = 30;
    pub const RDMSR: u16 = 31;
    pub const WRMSR: u16 = 32;
    pub const XSETBV: u16 = 55;
    pub const INVALID_GUEST_STATE: u16 = 33;
    pub const MSR_LOADING: u16 = 34;
    pub const MACHINE_CHECK_DURING_ENTRY: u16 = 41;
    pub const EPT_VIOLATION: u16 = 48;
    pub const EPT_MISCONFIGURATION: u16 = 49;
}

/// Bit 31 of the exit-reason field: the VM entry failed (SDM Vol. 3C 25.9.1, 27.8).
pub const EXIT_REASON_ENTRY_FAILURE: u32 = 1 << 31;

/// The name of a basic exit reason, as in SDM Vol. 3D table C-1.
pub fn exit_reason_name(basic: u16) -> &'static str {
    match basic {
        0 => "exception or non-maskable interrupt (NMI)",
        1 => "external interrupt",
        2 => "triple fault",
        3 => "INIT signal",
        4 => "start-up IPI (SIPI)",
        5 => "I/O system-management interrupt (SMI)",
        6 => "other SMI",
        7 => "interrupt window",
        8 => "NMI window",
        9 => "task switch",
        10 => "CPUID",
        11 => "GETSEC",
        12 => "HLT",
        13 => "INVD",
        14 => "INVLPG",
        15 => "RDPMC",
        16 => "RDTSC",
        17 => "RSM",
        18 => "VMCALL",
        19 => "VMCLEAR",
        20 => "VMLAUNCH",
        21 => "VMPTRLD",
        22 => "VMPTRST",
        23 => "VMREAD",
        24 => "VMRESUME",
        25 => "VMWRITE",
        26 => "VMXOFF",
        27 => "VMXON",
        28 => "control-register access",
        29 => "MOV DR",
        30 => "I/O instruction",
        31 => "RDMSR",
        32 => "WRMSR",
        33 => "VM-entry failure due to invalid guest state",
        34 => "VM-entry failure due to MSR loading",
        36 => "MWAIT",
        37 => "monitor trap flag",
        39 => "MONITOR",
        40 => "PAUSE",
        41 => "VM-entry failure due to machine-check event",
        43 => "TPR below threshold",
        44 => "APIC access",
        45 => "virtualized EOI",
        46 => "access to GDTR or IDTR",
        47 => "access to LDTR or TR",
        48 => "EPT violation",
        49 => "EPT misconfiguration",
        50 => "INVEPT",
        51 => "RDTSCP",
        52 => "VMX-preemption timer expired",
        53 => "INVVPID",
        54 => "WBINVD or WBNOINVD",
        55 => "XSETBV",
        56 => "APIC write",
        57 => "RDRAND",
        58 => "INVPCID",
        59 => "VMFUNC",
        60 => "ENCLS",
        61 => "RDSEED",
        62 => "page-modification log full",
        63 => "XSAVES",
        64 => "XRSTORS",
        65 => "PCONFIG",
        66 => "SPP-related event",
        67 => "UMWAIT",
        68 => "TPAUSE",
        69 => "LOADIWKEY",
        70 => "ENCLV",
        72 => "ENQCMD PASID translation failure",
        73 => "ENQCMDS PASID translation failure",
        74 => "bus lock",
        75 => "instruction timeout",
        76 => "SEAMCALL",
        77 => "TDCALL",
        _ => "unknown exit reason",
    }
}

/// The exit qualification of a #DB exit (SDM Vol. 3C 28.2.1, table 28-1)
/// as the DR6 the guest would have seen had #DB not exited: B0-B3 (bits
/// 0-3), BD (13), BS (14) set as reported, the reserved bits at their fixed
/// values, and RTM (16) active-low (SDM Vol. 3B 18.2.3). A #DB exit leaves
/// DR6 itself unchanged.
pub fn debug_exit_dr6(qualification: u64) -> u64 {
    const DR6_FIXED_ONES: u64 = 0xffff_0ff0;
    const RTM: u64 = 1 << 16;
    (DR6_FIXED_ONES | (qualification & 0x600f)) & !(qualification & RTM)
}

/// Whether the VM-exit instruction-length field is defined for an exit
/// (SDM Vol. 3C 28.2.5): exits caused by executing an instruction.
pub fn reports_instruction_length(basic: u16) -> bool {
    matches!(
        basic,
        10..=32 | 36 | 39 | 40 | 46 | 47 | 50 | 51 | 53..=55 | 57..=61 | 63..=65 | 67 | 68
    ) && basic != 17
}

/// The VM-instruction error numbers (SDM Vol. 3C 31.4, table 31-1).
pub fn instruction_error_name(number: u32) -> &'static str {
    match number {
        1 => "VMCALL executed in VMX root operation",
        2 => "VMCLEAR with invalid physical address",
        3 => "VMCLEAR with VMXON pointer",
        4 => "VMLAUNCH with non-clear VMCS",
        5 => "VMRESUME with non-launched VMCS",
        6 => "VMRESUME after VMXOFF (VMXOFF and VMXON between VMLAUNCH and VMRESUME)",
        7 => "VM entry with invalid control field(s)",
        8 => "VM entry with invalid host-state field(s)",
        9 => "VMPTRLD with invalid physical address",
        10 => "VMPTRLD with VMXON pointer",
        11 => "VMPTRLD with incorrect VMCS revision identifier",
        12 => "VMREAD/VMWRITE from/to unsupported VMCS component",
        13 => "VMWRITE to read-only VMCS component",
        15 => "VMXON executed in VMX root operation",
        16 => "VM entry with invalid executive-VMCS pointer",
        17 => "VM entry with non-launched executive VMCS",
        18 => "VM entry with executive-VMCS pointer not VMXON pointer",
        19 => "VMCALL with non-clear VMCS",
        20 => "VMCALL with invalid VM-exit control fields",
        22 => "VMCALL with incorrect MSEG revision identifier",
        23 => "VMXOFF under dual-monitor treatment of SMIs and SMM",
        24 => "VMCALL with invalid SMM-monitor features",
        25 => "VM entry with invalid VM-execution control fields in executive VMCS",
        26 => "VM entry with events blocked by MOV SS",
        28 => "invalid operand to INVEPT/INVVPID",
        _ => "unknown VM-instruction error",
    }
}

/// The exit qualification of an I/O instruction (SDM Vol. 3C 28.2.1, table 28-5).
pub fn io_qualification(q: u64) -> IoAccess {
    IoAccess {
        // Bits 2:0: size minus one (0, 1 or 3).
        size: (q & 7) as u8 + 1,
        // Bit 3: direction, 0 = OUT, 1 = IN.
        write: q & (1 << 3) == 0,
        string: q & (1 << 4) != 0,
        rep: q & (1 << 5) != 0,
        // Bits 31:16: the port.
        port: (q >> 16) as u16,
    }
}

/// The exit qualification of an EPT violation (SDM Vol. 3C 28.2.1, table
/// 28-7): the access (bits 0-2; a read-modify-write reports both read and
/// write and counts as a write), and whether the translation was present
/// (bits 3-5, the permissions it granted, not all zero).
pub fn ept_violation_qualification(q: u64) -> (Access, bool) {
    let access = if q & (1 << 1) != 0 {
        Access::Write
    } else if q & (1 << 2) != 0 {
        Access::Execute
    } else {
        Access::Read
    };
    (access, q & (0b111 << 3) != 0)
}

// Interruption-information fields (SDM Vol. 3C 25.8.3 for entry, 25.9.2 for
// exit, 25.9.3 for IDT vectoring): vector 7:0, type 10:8, error code 11, valid 31.
pub const INTR_INFO_VALID: u32 = 1 << 31;
pub const INTR_INFO_DELIVER_ERROR_CODE: u32 = 1 << 11;
pub const INTR_TYPE_EXTERNAL_INTERRUPT: u32 = 0;
pub const INTR_TYPE_NMI: u32 = 2;
pub const INTR_TYPE_HARDWARE_EXCEPTION: u32 = 3;
pub const INTR_TYPE_SOFTWARE_INTERRUPT: u32 = 4;
pub const INTR_TYPE_PRIVILEGED_SOFTWARE_EXCEPTION: u32 = 5;
pub const INTR_TYPE_SOFTWARE_EXCEPTION: u32 = 6;

pub fn intr_type(info: u32) -> u32 {
    (info >> 8) & 7
}

/// The exceptions that push an error code: #DF, #TS, #NP, #SS, #GP, #PF,
/// #AC, #CP (SDM Vol. 3A 6.15; VM-entry check in Vol. 3C 27.2.1.3).
pub fn exception_has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21)
}

/// The VM-entry interruption-information field and exception error code for
/// an event (SDM Vol. 3C 25.8.3, 27.6). `protected_mode` is the guest's
/// CR0.PE: with unrestricted guest, real mode delivers no error code
/// (SDM Vol. 3C 27.2.1.3).
pub fn entry_interruption(event: Event, protected_mode: bool) -> (u32, Option<u32>) {
    match event {
        Event::Interrupt(vector) => (
            INTR_INFO_VALID | INTR_TYPE_EXTERNAL_INTERRUPT << 8 | u32::from(vector),
            None,
        ),
        Event::Nmi => (INTR_INFO_VALID | INTR_TYPE_NMI << 8 | 2, None),
        Event::Exception { vector, error_code } => {
            let info = INTR_INFO_VALID | INTR_TYPE_HARDWARE_EXCEPTION << 8 | u32::from(vector);
            if protected_mode && exception_has_error_code(vector) {
                (
                    info | INTR_INFO_DELIVER_ERROR_CODE,
                    Some(error_code.unwrap_or(0)),
                )
            } else {
                (info, None)
            }
        }
    }
}

/// What the VM-exit interruption-information field says about an exit for
/// an exception or NMI: its vector, and the error code if it has one.
pub fn exit_exception(info: u32, error_code: u32) -> (u8, Option<u32>) {
    let vector = info as u8;
    let code = (info & INTR_INFO_DELIVER_ERROR_CODE != 0).then_some(error_code);
    (vector, code)
}

/// Whether an event interrupted by the exit must be re-injected with a
/// VM-entry instruction length (software interrupts and exceptions; SDM
/// Vol. 3C 27.6.1.1).
pub fn needs_instruction_length(info: u32) -> bool {
    matches!(
        intr_type(info),
        INTR_TYPE_SOFTWARE_INTERRUPT
            | INTR_TYPE_PRIVILEGED_SOFTWARE_EXCEPTION
            | INTR_TYPE_SOFTWARE_EXCEPTION
    )
}

/// The entry interruption information that re-delivers an event whose
/// delivery the exit interrupted, from the IDT-vectoring information field
/// (SDM Vol. 3C 28.2.4): the same bits, with the undefined bit 12 and the
/// reserved bits 30:13 cleared, as VM entry checks them (SDM Vol. 3C 27.2.1.3).
pub fn reinjection(idt_vectoring: u32) -> Option<u32> {
    (idt_vectoring & INTR_INFO_VALID != 0).then_some(idt_vectoring & (INTR_INFO_VALID | 0xfff))
}

/// Guest interruptibility state (SDM Vol. 3C 25.4.2, table 25-3).
pub const BLOCKING_BY_STI: u32 = 1 << 0;
pub const BLOCKING_BY_MOV_SS: u32 = 1 << 1;

/// The DPL field of segment access rights (SDM Vol. 3C 25.4.1, table 25-2),
/// which for SS is the CPL (SDM Vol. 3C 27.3.1.2).
pub fn access_rights_dpl(ar: u32) -> u8 {
    ((ar >> 5) & 3) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_exit_qualification_to_dr6() {
        // Single step (BS), and a DR1 hit inside a transaction.
        assert_eq!(debug_exit_dr6(1 << 14), 0xffff_4ff0);
        assert_eq!(debug_exit_dr6((1 << 16) | 0b10), 0xfffe_0ff2);
        // Undefined qualification bits are not copied.
        assert_eq!(debug_exit_dr6(0xffff_0000_0000_0000), 0xffff_0ff0);
    }

    #[test]
    fn io_out_byte_to_com1() {
        // OUT DX, AL with DX = 3F8h.
        let io = io_qualification(0x03f8_0000);
        assert_eq!(
            io,
            IoAccess {
                port: 0x3f8,
                size: 1,
                write: true,
                string: false,
                rep: false
            }
        );
    }

    #[test]
    fn io_rep_insd() {
        // REP INSD from port CF8h: size 4, IN, string, REP.
        let io = io_qualification(0x0cf8_0000 | 0b11_1011);
        assert_eq!(
            io,
            IoAccess {
                port: 0xcf8,
                size: 4,
                write: false,
                string: true,
                rep: true
            }
        );
    }

    #[test]
    fn io_immediate_word() {
        // IN AX, 71h: bit 6 (immediate operand) does not matter.
        let io = io_qualification(0x0071_0000 | 1 << 6 | 1 << 3 | 1);
        assert_eq!((io.port, io.size, io.write), (0x71, 2, false));
    }

    #[test]
    fn ept_violation_kinds() {
        assert_eq!(ept_violation_qualification(0b001), (Access::Read, false));
        assert_eq!(ept_violation_qualification(0b011), (Access::Write, false));
        assert_eq!(ept_violation_qualification(0b100), (Access::Execute, false));
        // A write to a read-only page: present.
        assert_eq!(
            ept_violation_qualification(0b001_010),
            (Access::Write, true)
        );
        // Execute from a read/write page, linear-address bits set.
        assert_eq!(
            ept_violation_qualification(0b1_1000_1100 | 0b011_000),
            (Access::Execute, true)
        );
    }

    #[test]
    fn instruction_errors_by_name() {
        assert_eq!(
            instruction_error_name(7),
            "VM entry with invalid control field(s)"
        );
        assert_eq!(
            instruction_error_name(8),
            "VM entry with invalid host-state field(s)"
        );
        assert_eq!(
            instruction_error_name(12),
            "VMREAD/VMWRITE from/to unsupported VMCS component"
        );
        assert_eq!(instruction_error_name(14), "unknown VM-instruction error");
        assert_eq!(instruction_error_name(0), "unknown VM-instruction error");
    }

    #[test]
    fn exit_reason_names() {
        assert_eq!(exit_reason_name(reason::CPUID), "CPUID");
        assert_eq!(
            exit_reason_name(reason::INVALID_GUEST_STATE),
            "VM-entry failure due to invalid guest state"
        );
        assert_eq!(
            exit_reason_name(reason::EPT_MISCONFIGURATION),
            "EPT misconfiguration"
        );
        assert_eq!(exit_reason_name(35), "unknown exit reason");
    }

    #[test]
    fn instruction_length_only_for_instructions() {
        for r in [10, 12, 18, 30, 31, 32, 55] {
            assert!(reports_instruction_length(r), "{r}");
        }
        for r in [0, 1, 2, 7, 17, 33, 48, 49] {
            assert!(!reports_instruction_length(r), "{r}");
        }
    }

    #[test]
    fn inject_interrupt_and_nmi() {
        assert_eq!(
            entry_interruption(Event::Interrupt(0x20), true),
            (0x8000_0020, None)
        );
        assert_eq!(entry_interruption(Event::Nmi, true), (0x8000_0202, None));
    }

    #[test]
    fn inject_exceptions() {
        // #GP(0x18) in protected mode: hardware exception with error code.
        let gp = Event::Exception {
            vector: 13,
            error_code: Some(0x18),
        };
        assert_eq!(entry_interruption(gp, true), (0x8000_0b0d, Some(0x18)));
        // The same in real mode (unrestricted guest): no error code.
        assert_eq!(entry_interruption(gp, false), (0x8000_030d, None));
        // #UD never has one, even if asked.
        let ud = Event::Exception {
            vector: 6,
            error_code: Some(1),
        };
        assert_eq!(entry_interruption(ud, true), (0x8000_0306, None));
        // #DF always has one (zero).
        let df = Event::Exception {
            vector: 8,
            error_code: None,
        };
        assert_eq!(entry_interruption(df, true), (0x8000_0b08, Some(0)));
    }

    #[test]
    fn error_code_vectors() {
        let with: [u8; 8] = [8, 10, 11, 12, 13, 14, 17, 21];
        for v in 0..32u8 {
            assert_eq!(exception_has_error_code(v), with.contains(&v), "{v}");
        }
    }

    #[test]
    fn exit_exception_info() {
        assert_eq!(exit_exception(0x8000_0b0e, 2), (14, Some(2)));
        assert_eq!(exit_exception(0x8000_0306, 7), (6, None));
    }

    #[test]
    fn reinjection_keeps_event_drops_undefined_bits() {
        assert_eq!(reinjection(0), None);
        assert_eq!(reinjection(0x0000_0b0e), None);
        assert_eq!(reinjection(0x8000_1b0e), Some(0x8000_0b0e));
        assert!(needs_instruction_length(0x8000_0403));
        assert!(!needs_instruction_length(0x8000_0020));
    }

    #[test]
    fn dpl() {
        assert_eq!(access_rights_dpl(0xc093), 0);
        assert_eq!(access_rights_dpl(0xc0f3), 3);
    }
}
