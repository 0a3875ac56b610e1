//! The AMD NPT entry format: ordinary long-mode paging entries (AMD APM Vol. 2 15.25.5 and 5.3).

use crate::addr::{Hpa, PageSize};
use crate::format::{Format, MemType, Perms, ADDRESS_MASK};
use static_assertions::const_assert_eq;

/// Bit 0: present. A present NPT entry always allows reads.
pub const PRESENT: u64 = 1 << 0;
/// Bit 1: writable.
pub const WRITABLE: u64 = 1 << 1;
/// Bit 2: user. Every nested-walk access counts as a user access (APM Vol. 2
/// 15.25.5), so every NPT entry must have it or the guest faults on everything.
pub const USER: u64 = 1 << 2;
/// Bits 3 and 4: page-level write-through and cache-disable, the low two bits
/// of the PAT index (APM Vol. 2 7.8.3).
pub const PWT: u64 = 1 << 3;
pub const PCD: u64 = 1 << 4;
/// Bit 7 of a PDPTE or PDE: the entry maps a 1 GiB or 2 MiB page.
pub const PAGE_SIZE: u64 = 1 << 7;
/// Bit 63: no-execute. Honoured because the hypervisor runs with EFER.NXE set.
pub const NO_EXECUTE: u64 = 1 << 63;

const_assert_eq!(PRESENT | WRITABLE | USER | PWT | PCD, 0b1_1111);
const_assert_eq!((PAGE_SIZE | NO_EXECUTE) & ADDRESS_MASK, 0);

/// AMD nested-paging entries.
///
/// Memory types are chosen through the PAT index in PCD/PWT, assuming the
/// VMCB's g_PAT holds the power-on PAT value 0x0007_0406_0007_0406 (APM Vol. 2
/// 7.8.2): index 0 = WB, 1 = WT, 3 = UC. WC and WP have no index there and are
/// refused. The PAT bit itself is never set.
#[derive(Clone, Copy, Debug)]
pub enum Npt {}

impl Format for Npt {
    const NAME: &'static str = "NPT";

    /// A present entry is readable, so every mapping must include read.
    fn supports(perms: Perms) -> bool {
        perms.read
    }

    fn supports_mem_type(mem_type: MemType) -> bool {
        matches!(
            mem_type,
            MemType::WriteBack | MemType::WriteThrough | MemType::Uncacheable
        )
    }

    fn table_entry(table: Hpa) -> u64 {
        table.0 | PRESENT | WRITABLE | USER
    }

    fn leaf_entry(hpa: Hpa, size: PageSize, perms: Perms, mem_type: MemType) -> u64 {
        let mut entry = hpa.0 | PRESENT | USER;
        if perms.write {
            entry |= WRITABLE;
        }
        if !perms.execute {
            entry |= NO_EXECUTE;
        }
        if size != PageSize::Size4K {
            entry |= PAGE_SIZE;
        }
        entry
            | match mem_type {
                MemType::WriteThrough => PWT,
                MemType::Uncacheable => PCD | PWT,
                _ => 0,
            }
    }

    fn is_present(entry: u64) -> bool {
        entry & PRESENT != 0
    }

    fn leaf_size(entry: u64, level: u32) -> Option<PageSize> {
        match level {
            1 => Some(PageSize::Size4K),
            2 | 3 if entry & PAGE_SIZE != 0 => PageSize::at_level(level),
            _ => None,
        }
    }

    fn perms(entry: u64) -> Perms {
        Perms::new(true, entry & WRITABLE != 0, entry & NO_EXECUTE == 0)
    }

    fn mem_type(entry: u64) -> MemType {
        match entry & (PCD | PWT) {
            0 => MemType::WriteBack,
            PWT => MemType::WriteThrough,
            // PCD alone (index 2, UC-) is never written; read it as UC.
            _ => MemType::Uncacheable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemType::*;
    use PageSize::*;

    fn leaf(hpa: u64, size: PageSize, perms: Perms, mem_type: MemType) -> u64 {
        Npt::leaf_entry(Hpa(hpa), size, perms, mem_type)
    }

    #[test]
    fn leaf_bits_follow_long_mode_paging() {
        assert_eq!(
            leaf(0x5000, Size4K, Perms::RW, WriteBack),
            0x5000 | 0b111 | 1 << 63
        );
        let uc_rx = leaf(0x20_0000, Size2M, Perms::RX, Uncacheable);
        assert_eq!(uc_rx, 0x20_0000 | 0b101 | 0b11 << 3 | 1 << 7);
        let wt_r = leaf(0x4000_0000, Size1G, Perms::R, WriteThrough);
        assert_eq!(wt_r, 0x4000_0000 | 0b101 | 1 << 3 | 1 << 7 | 1 << 63);
    }

    #[test]
    fn every_entry_has_the_user_bit() {
        assert_eq!(Npt::table_entry(Hpa(0x9000)), 0x9007);
        for perms in [Perms::R, Perms::RW, Perms::RX, Perms::RWX] {
            let e = leaf(0, Size4K, perms, WriteBack);
            assert_ne!(e & USER, 0);
            assert_eq!(Npt::perms(e), perms);
        }
    }

    #[test]
    fn decode_round_trips_and_refusals() {
        for mem_type in [WriteBack, WriteThrough, Uncacheable] {
            let e = leaf(0x4000_0000, Size1G, Perms::RWX, mem_type);
            assert_eq!(
                (Npt::mem_type(e), Npt::address(e)),
                (mem_type, Hpa(0x4000_0000))
            );
            assert_eq!(Npt::leaf_size(e, 3), Some(Size1G));
        }
        assert_eq!(Npt::leaf_size(Npt::table_entry(Hpa(0)), 3), None);
        assert!(!Npt::supports_mem_type(WriteCombining) && !Npt::supports_mem_type(WriteProtected));
        assert!(!Npt::supports(Perms::X) && !Npt::supports(Perms::NONE));
    }
}
