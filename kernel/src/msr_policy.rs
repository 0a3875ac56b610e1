//! Which MSRs a guest may touch and with which values; everything else gets #GP.

/// IA32_EFER (Intel SDM Vol. 4 table 2-2).
pub const IA32_EFER: u32 = 0xc000_0080;
pub const IA32_PAT: u32 = 0x277;
pub const IA32_APIC_BASE: u32 = 0x1b;

/// EFER bits a guest may set: SCE, LME, LMA (ignored on write), NXE, FFXSR.
/// SVME is the host's; LMSLE and TCE are not offered (AMD APM Vol. 2 3.1.7).
const EFER_WRITABLE: u64 = 1 | (1 << 8) | (1 << 10) | (1 << 11) | (1 << 14);
const EFER_LMA: u64 = 1 << 10;

/// The architectural reset value of IA32_PAT (SDM Vol. 3A 13.12.4).
pub const PAT_RESET: u64 = 0x0007_0406_0007_0406;

/// The xAPIC default base, BSP and enable bits (SDM Vol. 3A 12.4.4).
pub const APIC_BASE_BSP: u64 = 0xfee0_0000 | (1 << 8) | (1 << 11);

/// The EFER to load for a guest WRMSR, or `None` for #GP. LMA is not
/// writable: it keeps its current value (the CPU sets it when paging turns on).
pub fn efer_write(current: u64, value: u64) -> Option<u64> {
    if value & !EFER_WRITABLE != 0 {
        return None;
    }
    Some((value & !EFER_LMA) | (current & EFER_LMA))
}

/// A PAT value is valid when every entry is a defined memory type
/// (0 UC, 1 WC, 4 WT, 5 WP, 6 WB, 7 UC-); others raise #GP (SDM 13.12.2).
pub fn pat_valid(value: u64) -> bool {
    value
        .to_le_bytes()
        .iter()
        .all(|t| matches!(t, 0 | 1 | 4 | 5 | 6 | 7))
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
    fn pat() {
        assert!(pat_valid(PAT_RESET));
        assert!(!pat_valid(0x0007_0406_0007_0402));
        assert!(!pat_valid(0x0807_0406_0007_0406));
    }
}
