//! Which MSRs a guest may touch and with which values; everything else gets #GP.

use crate::spec_ctrl::GuestOffer;

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

#[cfg(test)]
mod tests {
    use super::*;

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
