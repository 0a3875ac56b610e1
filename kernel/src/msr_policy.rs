//! Which MSRs a guest may touch and with which values; everything else gets #GP.

use crate::spec_ctrl::{GuestOffer, Vendor};

/// IA32_EFER (Intel SDM Vol. 4 table 2-2).
pub const IA32_EFER: u32 = 0xc000_0080;
pub const IA32_APIC_BASE: u32 = 0x1b;
pub const IA32_TSC: u32 = 0x10;
pub const IA32_MTRRCAP: u32 = 0xfe;
pub const IA32_MISC_ENABLE: u32 = 0x1a0;
pub const IA32_MTRR_DEF_TYPE: u32 = 0x2ff;
/// IA32_BIOS_SIGN_ID: Linux on Intel writes 0 and reads back the microcode
/// revision without a fault handler; it reads as 0 and writes are ignored.
pub const IA32_BIOS_SIGN_ID: u32 = 0x8b;
/// AMD HWCR (APM Vol. 2 A.8): Linux reads it without a fault handler when
/// the TSC is invariant, to check TscFreqSel (bit 24): the TSC counts at the
/// P0 frequency. Read-only here.
pub const AMD_HWCR: u32 = 0xc001_0015;
pub const AMD_HWCR_VALUE: u64 = 1 << 24;
/// AMD NB_CFG (BKDG for family 10h, MSRC001_001F). Linux's amd_bus code
/// reads and writes it without a fault handler on AMD CPUs; as in Xen it
/// reads as 0 and writes are ignored.
pub const AMD_NB_CFG: u32 = 0xc001_001f;
/// Speculation control (Intel SDM Vol. 4 table 2-2; AMD APM Vol. 2 3.2.9):
/// offered as `xenolith::spec_ctrl::GuestOffer` says, else #GP.
pub const IA32_SPEC_CTRL: u32 = 0x48;
pub const IA32_PRED_CMD: u32 = 0x49;
pub const IA32_ARCH_CAPABILITIES: u32 = 0x10a;
pub const IA32_FLUSH_CMD: u32 = 0x10b;
/// IA32_DEBUGCTL (SDM Vol. 4 table 2-2; APM Vol. 2 13.1.1.1): LBR is bit 0.
pub const IA32_DEBUGCTL: u32 = 0x1d9;
const DEBUGCTL_LBR: u64 = 1;
/// MSRs with a fixed value for every guest, each as Xen's guest_rdmsr and
/// guest_wrmsr (xen/arch/x86/msr.c) answer a domain without the features
/// behind them: IA32_FEATURE_CONTROL (locked, nothing enabled),
/// PLATFORM_INFO and MISC_FEATURES_ENABLES (no CPUID faulting),
/// PERF_STATUS/PERF_CTL and THERM_STATUS (no cpufreq or thermal control),
/// AMD's DE_CFG (LFENCE serialising, which Linux sets and checks), AMD's
/// SYSCFG and TOP_MEM/TOP_MEM2 (0: no memory-type extensions).
pub const IA32_FEATURE_CONTROL: u32 = 0x3a;
pub const INTEL_PLATFORM_INFO: u32 = 0xce;
pub const INTEL_MISC_FEATURES_ENABLES: u32 = 0x140;
pub const IA32_PERF_STATUS: u32 = 0x198;
pub const IA32_PERF_CTL: u32 = 0x199;
pub const IA32_THERM_STATUS: u32 = 0x19c;
pub const AMD64_DE_CFG: u32 = 0xc001_1029;
/// AMD SYSCFG, TOP_MEM, TOP_MEM2 (APM Vol. 2 A.7, 7.9): a domU reads 0
/// (Xen's svm_msr_read_intercept); writes #GP. Linux reads SYSCFG at boot.
pub const AMD_SYSCFG: u32 = 0xc001_0010;
pub const AMD_TOP_MEM: u32 = 0xc001_001a;
pub const AMD_TOP_MEM2: u32 = 0xc001_001d;
const FEATURE_CONTROL_LOCK: u64 = 1;
const DE_CFG_LFENCE_SERIALISE: u64 = 1 << 1;
/// The x2APIC register MSRs (SDM Vol. 3A 12.12.1.2).
pub const X2APIC_FIRST: u32 = 0x800;
pub const X2APIC_LAST: u32 = 0x8ff;

/// MTRRs as a Xen PVH guest sees them: WC supported, no fixed or variable
/// ranges (VCNT 0), default type WB with MTRRs enabled (SDM 13.11.1, 13.11.2.1).
pub const MTRRCAP_VALUE: u64 = 1 << 10;
pub const MTRR_DEF_TYPE_RESET: u64 = (1 << 11) | 6;
/// MISC_ENABLE: fast strings on, nothing else (Linux reads it on Intel
/// without a fault handler; SDM Vol. 4 table 2-2).
pub const MISC_ENABLE_VALUE: u64 = 1;

/// EFER bits a guest may set: SCE, LME, LMA (ignored on write), NXE, FFXSR.
/// SVME is the host's; LMSLE and TCE are not offered (AMD APM Vol. 2 3.1.7).
const EFER_WRITABLE: u64 = 1 | (1 << 8) | (1 << 10) | (1 << 11) | (1 << 14);
const EFER_LMA: u64 = 1 << 10;

/// The EFER to load for a guest WRMSR, or `None` for #GP. LMA is not
/// writable: it keeps its current value (the CPU sets it when paging turns on).
pub fn efer_write(current: u64, value: u64) -> Option<u64> {
    if value & !EFER_WRITABLE != 0 {
        return None;
    }
    Some((value & !EFER_LMA) | (current & EFER_LMA))
}

/// A write to MTRR_DEF_TYPE is accepted when it keeps the MTRRs enabled
/// with a defined default type and touches no reserved bit; it changes
/// nothing (guest memory types come from the second-level tables and PAT).
pub fn mtrr_def_type_valid(value: u64) -> bool {
    value & !0xcff == 0 && matches!(value & 0xff, 0 | 1 | 4 | 5 | 6)
}

/// The SPEC_CTRL value to keep for a guest WRMSR, or `None` for #GP: the
/// MSR must be offered and the value use only offered bits (a reserved bit
/// faults on hardware too; Xen's guest_wrmsr, KVM's kvm_spec_ctrl_test_value).
pub fn spec_ctrl_write(offer: &GuestOffer, value: u64) -> Option<u64> {
    (offer.spec_ctrl != 0 && value & !offer.spec_ctrl == 0).then_some(value)
}

/// A WRMSR to a command MSR (PRED_CMD, FLUSH_CMD), whose only command is
/// bit 0 (IBPB, L1D_FLUSH): `Some(true)` to carry it out on the host,
/// `Some(false)` for a write of 0 (no command), `None` for #GP (not
/// offered, or a reserved bit). Reads always #GP: both are write-only.
pub fn command_write(offered: bool, value: u64) -> Option<bool> {
    (offered && value & !1 == 0).then_some(value == 1)
}

/// The value of a fixed-value MSR (see IA32_FEATURE_CONTROL above) on a
/// CPU of `vendor`, or `None` if it is not one (or not this vendor's:
/// #GP). DEBUGCTL reads 0: no bit of it is kept (`debugctl_write`).
pub fn constant_read(msr: u32, vendor: Vendor) -> Option<u64> {
    let intel = vendor == Vendor::Intel;
    let amd = vendor == Vendor::Amd;
    match msr {
        IA32_DEBUGCTL | INTEL_PLATFORM_INFO | INTEL_MISC_FEATURES_ENABLES => Some(0),
        IA32_FEATURE_CONTROL if intel => Some(FEATURE_CONTROL_LOCK),
        IA32_PERF_STATUS | IA32_PERF_CTL | IA32_THERM_STATUS if intel => Some(0),
        AMD64_DE_CFG if amd => Some(DE_CFG_LFENCE_SERIALISE),
        AMD_SYSCFG | AMD_TOP_MEM | AMD_TOP_MEM2 if amd => Some(0),
        _ => None,
    }
}

/// Whether a WRMSR to a fixed-value MSR is accepted (and dropped) rather
/// than #GP: MISC_FEATURES_ENABLES takes 0 (CPUID faulting is not
/// offered), PERF_CTL and DE_CFG drop anything (Xen's write-discard;
/// OpenBSD panics on a #GP from DE_CFG). The others are read-only
/// (FEATURE_CONTROL is locked). DEBUGCTL: `debugctl_write`.
pub fn constant_write(msr: u32, vendor: Vendor, value: u64) -> bool {
    match msr {
        INTEL_MISC_FEATURES_ENABLES => value == 0,
        IA32_PERF_CTL => vendor == Vendor::Intel,
        AMD64_DE_CFG => vendor == Vendor::Amd,
        IA32_DEBUGCTL => debugctl_write(value),
        _ => false,
    }
}

/// A WRMSR to DEBUGCTL: accepted (true) when it sets no bit but LBR, and
/// LBR is dropped: the architectural-LBR rule for CPUs without
/// model-specific LBRs, which Xen's vmx_msr_write_intercept applies
/// wherever it knows no LBR layout. BTF, BTS, FREEZE_* and the rest are
/// not virtualized: #GP, as Xen gives for bits it does not offer.
pub fn debugctl_write(value: u64) -> bool {
    value & !DEBUGCTL_LBR == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_value_msrs() {
        use Vendor::*;
        assert_eq!(constant_read(IA32_DEBUGCTL, Amd), Some(0));
        assert_eq!(constant_read(IA32_DEBUGCTL, Intel), Some(0));
        assert_eq!(constant_read(IA32_FEATURE_CONTROL, Intel), Some(1));
        assert_eq!(constant_read(IA32_FEATURE_CONTROL, Amd), None);
        assert_eq!(constant_read(AMD64_DE_CFG, Amd), Some(2));
        assert_eq!(constant_read(AMD64_DE_CFG, Intel), None);
        assert_eq!(constant_read(IA32_PERF_CTL, Other), None);
        assert_eq!(constant_read(AMD_SYSCFG, Amd), Some(0));
        assert_eq!(constant_read(AMD_SYSCFG, Intel), None);
        assert!(!constant_write(AMD_SYSCFG, Amd, 0));
        assert_eq!(constant_read(0x1da, Intel), None);
        assert!(constant_write(IA32_DEBUGCTL, Amd, 0));
        assert!(constant_write(IA32_DEBUGCTL, Amd, DEBUGCTL_LBR));
        assert!(!constant_write(IA32_DEBUGCTL, Intel, 1 << 1)); // BTF
        assert!(!constant_write(IA32_DEBUGCTL, Intel, 1 << 63));
        assert!(!constant_write(IA32_FEATURE_CONTROL, Intel, 1));
        assert!(constant_write(INTEL_MISC_FEATURES_ENABLES, Amd, 0));
        assert!(!constant_write(INTEL_MISC_FEATURES_ENABLES, Intel, 1));
        assert!(constant_write(IA32_PERF_CTL, Intel, 0xffff));
        assert!(!constant_write(IA32_PERF_CTL, Amd, 0));
        assert!(constant_write(AMD64_DE_CFG, Amd, 0));
        assert!(!constant_write(IA32_THERM_STATUS, Intel, 0));
        // A write is never accepted for an MSR that does not read.
        for msr in [
            0x3a,
            0xce,
            0x140,
            0x198,
            0x199,
            0x19c,
            0x1d9,
            0xc001_0010,
            0xc001_001a,
            0xc001_001d,
            0xc001_1029,
        ] {
            for vendor in [Intel, Amd, Other] {
                if constant_write(msr, vendor, 0) {
                    assert!(constant_read(msr, vendor).is_some(), "{msr:#x}");
                }
            }
        }
    }

    #[test]
    fn efer() {
        assert_eq!(efer_write(0, 0x100), Some(0x100));
        assert_eq!(efer_write(0x500, 0x901), Some(0xd01)); // LMA kept
        assert_eq!(efer_write(0x500, 0x100), Some(0x500));
        assert_eq!(efer_write(0, 1 << 12), None); // SVME
        assert_eq!(efer_write(0, 1 << 63), None);
    }

    #[test]
    fn speculation_controls() {
        let none = GuestOffer::default();
        assert_eq!(spec_ctrl_write(&none, 0), None);
        assert_eq!(command_write(none.ibpb, 1), None);
        let offer = GuestOffer {
            spec_ctrl: 0b101, // IBRS and SSBD, no STIBP
            ibpb: true,
            flush_cmd: false,
            arch_caps: None,
        };
        assert_eq!(spec_ctrl_write(&offer, 0), Some(0));
        assert_eq!(spec_ctrl_write(&offer, 0b101), Some(0b101));
        assert_eq!(spec_ctrl_write(&offer, 0b010), None);
        assert_eq!(spec_ctrl_write(&offer, 1 << 40), None);
        assert_eq!(command_write(offer.ibpb, 1), Some(true));
        assert_eq!(command_write(offer.ibpb, 0), Some(false));
        assert_eq!(command_write(offer.ibpb, 0x80), None); // AMD SBPB: not offered
        assert_eq!(command_write(offer.flush_cmd, 1), None);
    }

    #[test]
    fn mtrr_def_type() {
        assert!(mtrr_def_type_valid(MTRR_DEF_TYPE_RESET));
        assert!(mtrr_def_type_valid(0));
        assert!(!mtrr_def_type_valid(0x802));
        assert!(!mtrr_def_type_valid(1 << 12));
    }
}
