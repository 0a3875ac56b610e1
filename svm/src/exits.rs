//! Decoding #VMEXIT codes into the core's vendor-neutral `Exit` (AMD APM Vol. 2 appendix C, 15.10-15.13, 15.25.6).

use vcpu::{Access, Exit, IoAccess};

// Exit codes, APM table C-1.
pub const WRITE_CR4: u64 = 0x14;
pub const EXCEPTION_BASE: u64 = 0x40;
pub const INTR: u64 = 0x60;
pub const NMI: u64 = 0x61;
pub const INIT: u64 = 0x63;
pub const VINTR: u64 = 0x64;
pub const CPUID: u64 = 0x72;
pub const INVD: u64 = 0x76;
pub const HLT: u64 = 0x78;
pub const INVLPGA: u64 = 0x7a;
pub const IOIO: u64 = 0x7b;
pub const MSR: u64 = 0x7c;
pub const SHUTDOWN: u64 = 0x7f;
pub const VMRUN: u64 = 0x80;
pub const VMMCALL: u64 = 0x81;
pub const VMLOAD: u64 = 0x82;
pub const VMSAVE: u64 = 0x83;
pub const STGI: u64 = 0x84;
pub const CLGI: u64 = 0x85;
pub const SKINIT: u64 = 0x86;
pub const WBINVD: u64 = 0x89;
pub const MONITOR: u64 = 0x8a;
pub const MWAIT: u64 = 0x8b;
pub const MWAIT_CONDITIONAL: u64 = 0x8c;
pub const NPF: u64 = 0x400;
pub const INVALID: u64 = u64::MAX;
/// VMEXIT_INVALID as QEMU stores it: its cpu_vmexit takes a 32-bit code,
/// so -1 reaches the VMCB zero-extended.
pub const INVALID_32: u64 = u32::MAX as u64;

/// The name of an exit code in APM Vol. 2 table C-1, for the reason a
/// domain ends on one this backend does not handle.
pub fn name(code: u64) -> &'static str {
    const FROM_0X60: [&str; 0x45] = [
        "INTR",
        "NMI",
        "SMI",
        "INIT",
        "VINTR",
        "CR0_SEL_WRITE",
        "IDTR_READ",
        "GDTR_READ",
        "LDTR_READ",
        "TR_READ",
        "IDTR_WRITE",
        "GDTR_WRITE",
        "LDTR_WRITE",
        "TR_WRITE",
        "RDTSC",
        "RDPMC",
        "PUSHF",
        "POPF",
        "CPUID",
        "RSM",
        "IRET",
        "SWINT",
        "INVD",
        "PAUSE",
        "HLT",
        "INVLPG",
        "INVLPGA",
        "IOIO",
        "MSR",
        "TASK_SWITCH",
        "FERR_FREEZE",
        "SHUTDOWN",
        "VMRUN",
        "VMMCALL",
        "VMLOAD",
        "VMSAVE",
        "STGI",
        "CLGI",
        "SKINIT",
        "RDTSCP",
        "ICEBP",
        "WBINVD",
        "MONITOR",
        "MWAIT",
        "MWAIT_CONDITIONAL",
        "XSETBV",
        "RDPRU",
        "EFER_WRITE_TRAP",
        "CR0_WRITE_TRAP",
        "CR1_WRITE_TRAP",
        "CR2_WRITE_TRAP",
        "CR3_WRITE_TRAP",
        "CR4_WRITE_TRAP",
        "CR5_WRITE_TRAP",
        "CR6_WRITE_TRAP",
        "CR7_WRITE_TRAP",
        "CR8_WRITE_TRAP",
        "CR9_WRITE_TRAP",
        "CR10_WRITE_TRAP",
        "CR11_WRITE_TRAP",
        "CR12_WRITE_TRAP",
        "CR13_WRITE_TRAP",
        "CR14_WRITE_TRAP",
        "CR15_WRITE_TRAP",
        "INVLPGB",
        "INVLPGB_ILLEGAL",
        "INVPCID",
        "MCOMMIT",
        "TLBSYNC",
    ];
    match code {
        0x00..=0x0f => "CRx_READ",
        0x10..=0x1f => "CRx_WRITE",
        0x20..=0x2f => "DRx_READ",
        0x30..=0x3f => "DRx_WRITE",
        0x40..=0x5f => "EXCPx",
        0x60..=0xa4 => FROM_0X60[(code - 0x60) as usize],
        0x400 => "NPF",
        0x401 => "AVIC_INCOMPLETE_IPI",
        0x402 => "AVIC_NOACCEL",
        0x403 => "VMGEXIT",
        _ => "unknown",
    }
}

/// Exceptions that push an error code (APM Vol. 2 8.2).
pub fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// IOIO EXITINFO1 (APM 15.10.2, figure 15-2).
fn io(info1: u64) -> IoAccess {
    let size = if info1 & (1 << 4) != 0 {
        1
    } else if info1 & (1 << 5) != 0 {
        2
    } else {
        4
    };
    IoAccess {
        port: (info1 >> 16) as u16,
        size,
        write: info1 & 1 == 0,
        string: info1 & (1 << 2) != 0,
        rep: info1 & (1 << 3) != 0,
    }
}

/// Nested page fault EXITINFO1 is a page-fault error code (APM 15.25.6):
/// bit 0 present, bit 1 write, bit 4 instruction fetch.
fn npf(info1: u64, gpa: u64) -> Exit {
    let access = if info1 & (1 << 4) != 0 {
        Access::Execute
    } else if info1 & (1 << 1) != 0 {
        Access::Write
    } else {
        Access::Read
    };
    Exit::NestedPageFault {
        gpa,
        access,
        present: info1 & 1 != 0,
    }
}

/// `rax`/`rdx`/`rcx` are the guest's, needed for WRMSR's value and the MSR number.
pub fn decode(code: u64, info1: u64, info2: u64, rcx: u64, rdx: u64, rax: u64) -> Exit {
    match code {
        CPUID => Exit::Cpuid,
        HLT => Exit::Hlt,
        VMMCALL => Exit::Hypercall,
        IOIO => Exit::Io(io(info1)),
        MSR if info1 == 0 => Exit::MsrRead { msr: rcx as u32 },
        MSR => Exit::MsrWrite {
            msr: rcx as u32,
            value: (rdx << 32) | (rax & 0xffff_ffff),
        },
        NPF => npf(info1, info2),
        INTR | NMI => Exit::ExternalInterrupt,
        VINTR => Exit::InterruptWindow,
        SHUTDOWN => Exit::Shutdown,
        INIT => Exit::Init,
        c if (EXCEPTION_BASE..EXCEPTION_BASE + 32).contains(&c) => {
            let vector = (c - EXCEPTION_BASE) as u8;
            Exit::Exception {
                vector,
                error_code: has_error_code(vector).then_some(info1 as u32),
            }
        }
        // SVM itself (no nested virtualization), and MONITOR/MWAIT (hidden from CPUID).
        VMRUN | VMLOAD | VMSAVE | STGI | CLGI | SKINIT | INVLPGA | MONITOR | MWAIT
        | MWAIT_CONDITIONAL => Exit::Undefined,
        INVD | WBINVD => Exit::CacheFlush,
        WRITE_CR4 => Exit::Cr4Write,
        INVALID | INVALID_32 => {
            Exit::Invalid("VMEXIT_INVALID: VMRUN consistency checks failed (APM 15.5.1)")
        }
        code => Exit::Unhandled {
            code,
            name: name(code),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_exit() {
        // OUT DX, AL to port 0x3f8: type 0 (out), SZ8.
        let e = decode(IOIO, (0x3f8 << 16) | (1 << 4), 0, 0, 0, 0);
        assert_eq!(
            e,
            Exit::Io(IoAccess {
                port: 0x3f8,
                size: 1,
                write: true,
                string: false,
                rep: false
            })
        );
        // REP INSW from port 0x1f0.
        let e = decode(
            IOIO,
            (0x1f0 << 16) | (1 << 5) | (1 << 3) | (1 << 2) | 1,
            0,
            0,
            0,
            0,
        );
        assert_eq!(
            e,
            Exit::Io(IoAccess {
                port: 0x1f0,
                size: 2,
                write: false,
                string: true,
                rep: true
            })
        );
    }

    #[test]
    fn msr_exits() {
        assert_eq!(
            decode(MSR, 0, 0, 0xc000_0080, 0, 0),
            Exit::MsrRead { msr: 0xc000_0080 }
        );
        assert_eq!(
            decode(MSR, 1, 0, 0x1b, 0x1, 0xffff_ffff_fee0_0900),
            Exit::MsrWrite {
                msr: 0x1b,
                value: 0x1_fee0_0900
            }
        );
    }

    #[test]
    fn npf_and_exceptions() {
        assert_eq!(
            decode(NPF, 0b10, 0x1234_5000, 0, 0, 0),
            Exit::NestedPageFault {
                gpa: 0x1234_5000,
                access: Access::Write,
                present: false
            }
        );
        assert_eq!(
            decode(NPF, 0b10001, 0x1000, 0, 0, 0),
            Exit::NestedPageFault {
                gpa: 0x1000,
                access: Access::Execute,
                present: true
            }
        );
        assert_eq!(
            decode(EXCEPTION_BASE + 14, 0x2, 0, 0, 0, 0),
            Exit::Exception {
                vector: 14,
                error_code: Some(2)
            }
        );
        assert_eq!(
            decode(EXCEPTION_BASE + 6, 0x2, 0, 0, 0, 0),
            Exit::Exception {
                vector: 6,
                error_code: None
            }
        );
        assert!(matches!(decode(INVALID, 0, 0, 0, 0, 0), Exit::Invalid(_)));
        for code in [
            VMRUN, VMLOAD, VMSAVE, STGI, CLGI, SKINIT, INVLPGA, MONITOR, MWAIT,
        ] {
            assert_eq!(decode(code, 0, 0, 0, 0, 0), Exit::Undefined);
        }
        assert_eq!(decode(INVD, 0, 0, 0, 0, 0), Exit::CacheFlush);
        assert_eq!(decode(WRITE_CR4, 0, 0, 0, 0, 0), Exit::Cr4Write);
        assert!(matches!(
            decode(INVALID_32, 0, 0, 0, 0, 0),
            Exit::Invalid(_)
        ));
        assert_eq!(
            decode(0x7d, 0, 0, 0, 0, 0),
            Exit::Unhandled {
                code: 0x7d,
                name: "TASK_SWITCH"
            }
        );
        assert_eq!(name(CPUID), "CPUID");
        assert_eq!(name(SKINIT), "SKINIT");
        assert_eq!(name(0xa4), "TLBSYNC");
        assert_eq!(name(MWAIT_CONDITIONAL), "MWAIT_CONDITIONAL");
        assert_eq!(
            decode(0x1234, 0, 0, 0, 0, 0),
            Exit::Unhandled {
                code: 0x1234,
                name: "unknown"
            }
        );
        assert_eq!(decode(WBINVD, 0, 0, 0, 0, 0), Exit::CacheFlush);
    }
}
