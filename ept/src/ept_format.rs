//! The Intel EPT entry format (SDM Vol. 3C 29.3.2, tables 29-1 to 29-6).

use crate::addr::{Hpa, PageSize};
use crate::format::{Format, MemType, Perms, ADDRESS_MASK};
use static_assertions::const_assert_eq;

/// Bit 0: reads allowed.
pub const READ: u64 = 1 << 0;
/// Bit 1: writes allowed. Write without read is an EPT misconfiguration (SDM Vol. 3C 29.3.3.1).
pub const WRITE: u64 = 1 << 1;
/// Bit 2: instruction fetches allowed (supervisor fetches under mode-based execute control).
pub const EXECUTE: u64 = 1 << 2;
/// Bits 5:3 of a leaf: the EPT memory type (SDM Vol. 3C 29.3.7).
pub const MEM_TYPE_SHIFT: u32 = 3;
pub const MEM_TYPE_MASK: u64 = 0b111 << MEM_TYPE_SHIFT;
/// Bit 6 of a leaf: ignore the guest PAT. Left clear, so that the guest's PAT
/// still combines with the EPT type as on bare metal (SDM Vol. 3C 29.3.7.2).
pub const IGNORE_PAT: u64 = 1 << 6;
/// Bit 7 of a PDPTE or PDE: the entry maps a 1 GiB or 2 MiB page.
pub const LARGE: u64 = 1 << 7;

// The three access bits are the low three, and the memory type sits right above them.
const_assert_eq!(READ | WRITE | EXECUTE, 0b111);
const_assert_eq!(MEM_TYPE_MASK, 0b11_1000);
const_assert_eq!(MEM_TYPE_MASK & (IGNORE_PAT | LARGE | ADDRESS_MASK), 0);

/// Intel EPT entries.
#[derive(Clone, Copy, Debug)]
pub enum Ept {}

impl Format for Ept {
    const NAME: &'static str = "EPT";

    /// Anything but nothing (that would be a not-present entry) and write
    /// without read (a misconfiguration). Execute-only also needs the CPU's
    /// support (IA32_VMX_EPT_VPID_CAP bit 0), which the backend checks.
    fn supports(perms: Perms) -> bool {
        perms.read || (perms.execute && !perms.write)
    }

    fn supports_mem_type(_: MemType) -> bool {
        true
    }

    fn table_entry(table: Hpa) -> u64 {
        table.0 | READ | WRITE | EXECUTE
    }

    fn leaf_entry(hpa: Hpa, size: PageSize, perms: Perms, mem_type: MemType) -> u64 {
        let large = if size == PageSize::Size4K { 0 } else { LARGE };
        let access = bit(perms.read, READ) | bit(perms.write, WRITE) | bit(perms.execute, EXECUTE);
        hpa.0 | access | (mem_type as u64) << MEM_TYPE_SHIFT | large
    }

    /// An EPT entry is present when any of R, W, X is set (SDM Vol. 3C 29.3.2).
    fn is_present(entry: u64) -> bool {
        entry & (READ | WRITE | EXECUTE) != 0
    }

    fn leaf_size(entry: u64, level: u32) -> Option<PageSize> {
        match level {
            1 => Some(PageSize::Size4K),
            2 | 3 if entry & LARGE != 0 => PageSize::at_level(level),
            _ => None,
        }
    }

    fn perms(entry: u64) -> Perms {
        Perms::new(entry & READ != 0, entry & WRITE != 0, entry & EXECUTE != 0)
    }

    fn mem_type(entry: u64) -> MemType {
        match (entry & MEM_TYPE_MASK) >> MEM_TYPE_SHIFT {
            1 => MemType::WriteCombining,
            4 => MemType::WriteThrough,
            5 => MemType::WriteProtected,
            6 => MemType::WriteBack,
            // 0 is UC; the builder never writes the reserved 2, 3 and 7.
            _ => MemType::Uncacheable,
        }
    }
}

fn bit(set: bool, mask: u64) -> u64 {
    if set {
        mask
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemType::*;
    use PageSize::*;

    fn leaf(hpa: u64, size: PageSize, perms: Perms, mem_type: MemType) -> u64 {
        Ept::leaf_entry(Hpa(hpa), size, perms, mem_type)
    }

    #[test]
    fn leaf_bits_follow_tables_29_3_to_29_6() {
        let wb_rwx = leaf(0x1234_5000, Size4K, Perms::RWX, WriteBack);
        assert_eq!(wb_rwx, 0x1234_5000 | 0b111 | 6 << 3);
        assert_eq!(wb_rwx & IGNORE_PAT, 0, "the guest PAT keeps its say");
        assert_eq!(
            leaf(0x4020_0000, Size2M, Perms::R, Uncacheable),
            0x4020_0000 | 1 | 1 << 7
        );
        let wc_x = leaf(0x8000_0000, Size1G, Perms::X, WriteCombining);
        assert_eq!(wc_x, 0x8000_0000 | 0b100 | 1 << 3 | 1 << 7);
        assert_eq!(Ept::table_entry(Hpa(0x7000)), 0x7007, "non-leaf: R, W, X");
    }

    #[test]
    fn decode_round_trips() {
        for mem_type in MemType::ALL {
            let e = leaf(0x20_0000, Size2M, Perms::RX, mem_type);
            assert_eq!((Ept::mem_type(e), Ept::perms(e)), (mem_type, Perms::RX));
            assert_eq!(Ept::address(e), Hpa(0x20_0000));
            assert!(Ept::is_present(e));
            assert_eq!(Ept::leaf_size(e, 2), Some(Size2M));
            assert_eq!(Ept::leaf_size(e, 4), None, "the PML4 has no leaves");
        }
        assert_eq!(Ept::leaf_size(Ept::table_entry(Hpa(0x1000)), 2), None);
    }

    #[test]
    fn write_without_read_and_nothing_are_refused() {
        assert!(!Ept::supports(Perms::new(false, true, false)));
        assert!(!Ept::supports(Perms::new(false, true, true)));
        assert!(!Ept::supports(Perms::NONE));
        assert!(Ept::supports(Perms::X) && Ept::supports(Perms::RWX));
    }
}
