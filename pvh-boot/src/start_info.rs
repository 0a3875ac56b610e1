//! Writing `hvm_start_info` v1, its command line and memory map into guest RAM (xen docs/misc/pvh.pandoc).

use xen_abi::start_info::{HvmMemmapTableEntry, HvmStartInfo, HVM_START_MAGIC};

/// Linux copies at most 128 entries without a bounds check and appends one
/// of its own, so at most 127 (../shared/spec/xen-pvh-abi.md 1.5).
pub const MAX_MEMMAP_ENTRIES: usize = 127;
/// Linux's COMMAND_LINE_SIZE on x86, including the NUL.
pub const MAX_CMDLINE: usize = 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartInfoError {
    TooManyMemmapEntries,
    CommandLineTooLong,
    /// The structures do not fit in guest RAM at the requested address.
    NoRoom,
}

fn put<T: Copy>(ram: &mut [u8], at: usize, value: &T) {
    let size = core::mem::size_of::<T>();
    // SAFETY: `T` is a plain `repr(C)` ABI struct of integers; viewing it as
    // bytes is always valid.
    let bytes = unsafe { core::slice::from_raw_parts((value as *const T).cast::<u8>(), size) };
    ram[at..at + size].copy_from_slice(bytes);
}

/// Lays out, from GPA `at` (8-byte aligned): the start info, the command line
/// (NUL-terminated, padded to 8), then the memory map. Returns the GPA of the
/// start info (for EBX) and the end of what was written.
pub fn place_start_info(
    ram: &mut [u8],
    at: u64,
    cmdline: &str,
    memmap: &[HvmMemmapTableEntry],
) -> Result<(u64, u64), StartInfoError> {
    if memmap.len() > MAX_MEMMAP_ENTRIES {
        return Err(StartInfoError::TooManyMemmapEntries);
    }
    if cmdline.len() + 1 > MAX_CMDLINE {
        return Err(StartInfoError::CommandLineTooLong);
    }
    let info_size = core::mem::size_of::<HvmStartInfo>() as u64;
    let at = (at + 7) & !7;
    let cmdline_gpa = at + info_size;
    let memmap_gpa = (cmdline_gpa + cmdline.len() as u64 + 1 + 7) & !7;
    let end = memmap_gpa + core::mem::size_of_val(memmap) as u64;
    if end > ram.len() as u64 {
        return Err(StartInfoError::NoRoom);
    }
    let info = HvmStartInfo {
        magic: HVM_START_MAGIC,
        version: 1,
        cmdline_paddr: cmdline_gpa,
        memmap_paddr: memmap_gpa,
        memmap_entries: memmap.len() as u32,
        ..HvmStartInfo::default()
    };
    put(ram, at as usize, &info);
    let c = cmdline_gpa as usize;
    ram[c..c + cmdline.len()].copy_from_slice(cmdline.as_bytes());
    ram[c + cmdline.len()] = 0;
    for (i, e) in memmap.iter().enumerate() {
        put(
            ram,
            memmap_gpa as usize + i * core::mem::size_of::<HvmMemmapTableEntry>(),
            e,
        );
    }
    Ok((at, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;

    fn u32_at(ram: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(ram[at..at + 4].try_into().unwrap())
    }
    fn u64_at(ram: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(ram[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn layout_matches_start_info_h() {
        let mut ram = std::vec![0u8; 0x3000];
        let map = [HvmMemmapTableEntry {
            addr: 0,
            size: 0x3000,
            kind: 1,
            reserved: 0,
        }];
        let (info, end) = place_start_info(&mut ram, 0x1001, "abc", &map).unwrap();
        assert_eq!(info, 0x1008);
        let i = info as usize;
        assert_eq!(u32_at(&ram, i), 0x336e_c578); // magic
        assert_eq!(u32_at(&ram, i + 4), 1); // version
        assert_eq!(u32_at(&ram, i + 12), 0); // nr_modules
        assert_eq!(u64_at(&ram, i + 24), 0x1008 + 56); // cmdline_paddr
        assert_eq!(&ram[0x1040..0x1044], b"abc\0");
        assert_eq!(u64_at(&ram, i + 40), 0x1048); // memmap_paddr, 8-aligned
        assert_eq!(u32_at(&ram, i + 48), 1); // memmap_entries
        assert_eq!(u64_at(&ram, 0x1048 + 8), 0x3000); // entry size field
        assert_eq!(u32_at(&ram, 0x1048 + 16), 1); // entry type
        assert_eq!(end, 0x1048 + 24);
    }

    #[test]
    fn limits() {
        let mut ram = std::vec![0u8; 0x1000];
        let map = [HvmMemmapTableEntry::default(); 128];
        assert_eq!(
            place_start_info(&mut ram, 0, "", &map),
            Err(StartInfoError::TooManyMemmapEntries)
        );
        let long = "x".repeat(2048);
        assert_eq!(
            place_start_info(&mut ram, 0, &long, &[]),
            Err(StartInfoError::CommandLineTooLong)
        );
        assert_eq!(
            place_start_info(&mut ram, 0xff0, "", &[]),
            Err(StartInfoError::NoRoom)
        );
    }
}
