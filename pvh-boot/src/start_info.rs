//! Writing `hvm_start_info` v1, its command line, module list and memory map into guest RAM (xen docs/misc/pvh.pandoc).

use xen_abi::start_info::{HvmMemmapTableEntry, HvmModlistEntry, HvmStartInfo, HVM_START_MAGIC};

/// Linux copies at most 128 entries without a bounds check and appends one
/// of its own, so at most 127 (../shared/spec/xen-pvh-abi.md 1.5).
pub const MAX_MEMMAP_ENTRIES: usize = 127;
/// Linux's COMMAND_LINE_SIZE on x86, including the NUL.
pub const MAX_CMDLINE: usize = 2048;

const INFO_SIZE: u64 = core::mem::size_of::<HvmStartInfo>() as u64;
const MODLIST_ENTRY_SIZE: u64 = core::mem::size_of::<HvmModlistEntry>() as u64;
const MEMMAP_ENTRY_SIZE: u64 = core::mem::size_of::<HvmMemmapTableEntry>() as u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartInfoError {
    TooManyMemmapEntries,
    CommandLineTooLong,
    /// The structures do not fit in guest RAM at the requested address.
    NoRoom,
}

impl core::fmt::Display for StartInfoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartInfoError::TooManyMemmapEntries => write!(
                f,
                "more than {MAX_MEMMAP_ENTRIES} memory map entries (Linux copies them unchecked)"
            ),
            StartInfoError::CommandLineTooLong => {
                write!(f, "command line longer than {} bytes", MAX_CMDLINE - 1)
            }
            StartInfoError::NoRoom => write!(f, "start info does not fit in guest RAM"),
        }
    }
}

/// Everything `hvm_start_info` v1 points to.
#[derive(Clone, Copy, Debug)]
pub struct StartInfo<'a> {
    /// Copied NUL-terminated; at most `MAX_CMDLINE - 1` bytes.
    pub cmdline: &'a str,
    /// `hvm_modlist_entry[]`; for Linux the first one is the initrd and
    /// module command lines are ignored (arch/x86/platform/pvh/enlighten.c).
    pub modules: &'a [HvmModlistEntry],
    /// GPA of the ACPI RSDP, 0 for none.
    pub rsdp: u64,
    pub memmap: &'a [HvmMemmapTableEntry],
}

/// Offsets of the pieces of one start-info block, from its (8-aligned) start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BlockLayout {
    cmdline: u64,
    modlist: u64,
    memmap: u64,
    size: u64,
}

fn round8(v: u64) -> Option<u64> {
    Some(v.checked_add(7)? & !7)
}

/// The block's layout, in the order Xen's `bootlate_hvm` uses
/// (tools/libs/guest/xg_dom_x86.c): the struct, the command line padded to 8
/// bytes, the module list, then the memory map.
fn block_layout(cmdline_len: usize, modules: usize, memmap: usize) -> Option<BlockLayout> {
    let cmdline = INFO_SIZE;
    let modlist = round8(cmdline.checked_add(cmdline_len as u64)?.checked_add(1)?)?;
    let memmap_off = modlist.checked_add(MODLIST_ENTRY_SIZE.checked_mul(modules as u64)?)?;
    let size = memmap_off.checked_add(MEMMAP_ENTRY_SIZE.checked_mul(memmap as u64)?)?;
    Some(BlockLayout {
        cmdline,
        modlist,
        memmap: memmap_off,
        size,
    })
}

/// Bytes [`write_start_info`] writes for these counts (from an 8-aligned
/// address), or `None` if that overflows.
pub fn start_info_size(cmdline_len: usize, modules: usize, memmap_entries: usize) -> Option<u64> {
    block_layout(cmdline_len, modules, memmap_entries).map(|l| l.size)
}

fn put<T: Copy>(ram: &mut [u8], at: usize, value: &T) {
    let size = core::mem::size_of::<T>();
    // SAFETY: `T` is a plain `repr(C)` ABI struct of integers; viewing it as
    // bytes is always valid.
    let bytes = unsafe { core::slice::from_raw_parts((value as *const T).cast::<u8>(), size) };
    ram[at..at + size].copy_from_slice(bytes);
}

/// Lays out, from GPA `at` rounded up to 8: the start info, the command line
/// (NUL-terminated, padded to 8), the module list, then the memory map; the
/// block is zeroed first. Returns the GPA of the start info (for EBX) and the
/// end of the block. Nothing is written unless all of it fits in `ram`.
pub fn write_start_info(
    ram: &mut [u8],
    at: u64,
    info: &StartInfo,
) -> Result<(u64, u64), StartInfoError> {
    if info.memmap.len() > MAX_MEMMAP_ENTRIES {
        return Err(StartInfoError::TooManyMemmapEntries);
    }
    if info.cmdline.len() >= MAX_CMDLINE {
        return Err(StartInfoError::CommandLineTooLong);
    }
    let layout = block_layout(info.cmdline.len(), info.modules.len(), info.memmap.len())
        .ok_or(StartInfoError::NoRoom)?;
    let at = round8(at).ok_or(StartInfoError::NoRoom)?;
    let end = at.checked_add(layout.size).ok_or(StartInfoError::NoRoom)?;
    if end > ram.len() as u64 {
        return Err(StartInfoError::NoRoom);
    }
    let base = at as usize;
    ram[base..end as usize].fill(0);
    let header = HvmStartInfo {
        magic: HVM_START_MAGIC,
        version: 1,
        flags: 0,
        nr_modules: info.modules.len() as u32,
        // Xen leaves the list address 0 when there are no modules.
        modlist_paddr: if info.modules.is_empty() {
            0
        } else {
            at + layout.modlist
        },
        cmdline_paddr: at + layout.cmdline,
        rsdp_paddr: info.rsdp,
        memmap_paddr: at + layout.memmap,
        memmap_entries: info.memmap.len() as u32,
        reserved: 0,
    };
    put(ram, base, &header);
    let c = base + layout.cmdline as usize;
    ram[c..c + info.cmdline.len()].copy_from_slice(info.cmdline.as_bytes());
    // The NUL is already there: the block was zeroed.
    for (i, m) in info.modules.iter().enumerate() {
        put(
            ram,
            base + layout.modlist as usize + i * MODLIST_ENTRY_SIZE as usize,
            m,
        );
    }
    for (i, e) in info.memmap.iter().enumerate() {
        put(
            ram,
            base + layout.memmap as usize + i * MEMMAP_ENTRY_SIZE as usize,
            e,
        );
    }
    Ok((at, end))
}

/// [`write_start_info`] with no modules and no RSDP: the start info, the
/// command line, then the memory map. Returns the GPA of the start info (for
/// EBX) and the end of what was written.
pub fn place_start_info(
    ram: &mut [u8],
    at: u64,
    cmdline: &str,
    memmap: &[HvmMemmapTableEntry],
) -> Result<(u64, u64), StartInfoError> {
    write_start_info(
        ram,
        at,
        &StartInfo {
            cmdline,
            modules: &[],
            rsdp: 0,
            memmap,
        },
    )
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
        assert_eq!(u64_at(&ram, i + 16), 0); // modlist_paddr: none
        assert_eq!(u64_at(&ram, i + 24), 0x1008 + 56); // cmdline_paddr
        assert_eq!(u64_at(&ram, i + 32), 0); // rsdp_paddr
        assert_eq!(&ram[0x1040..0x1044], b"abc\0");
        assert_eq!(u64_at(&ram, i + 40), 0x1048); // memmap_paddr, 8-aligned
        assert_eq!(u32_at(&ram, i + 48), 1); // memmap_entries
        assert_eq!(u64_at(&ram, 0x1048 + 8), 0x3000); // entry size field
        assert_eq!(u32_at(&ram, 0x1048 + 16), 1); // entry type
        assert_eq!(end, 0x1048 + 24);
    }

    #[test]
    fn modules_and_rsdp() {
        let mut ram = std::vec![0xeeu8; 0x2000];
        let map = [HvmMemmapTableEntry::default(); 2];
        let mods = [HvmModlistEntry {
            paddr: 0x40_0000,
            size: 0x1234,
            cmdline_paddr: 0,
            reserved: 0,
        }];
        let si = StartInfo {
            cmdline: "console=hvc0",
            modules: &mods,
            rsdp: 0xf_f000,
            memmap: &map,
        };
        let (info, end) = write_start_info(&mut ram, 0x1000, &si).unwrap();
        let i = info as usize;
        assert_eq!(u32_at(&ram, i + 8), 0); // flags
        assert_eq!(u32_at(&ram, i + 12), 1); // nr_modules
        assert_eq!(u64_at(&ram, i + 24), 0x1038); // cmdline_paddr
        assert_eq!(&ram[0x1038..0x1045], b"console=hvc0\0");
        // 12 bytes + NUL = 13, padded to 16: the list follows at 0x1048.
        assert_eq!(u64_at(&ram, i + 16), 0x1048);
        assert_eq!(u64_at(&ram, 0x1048), 0x40_0000);
        assert_eq!(u64_at(&ram, 0x1048 + 8), 0x1234);
        assert_eq!(u64_at(&ram, 0x1048 + 16), 0); // module cmdline_paddr
        assert_eq!(u64_at(&ram, i + 32), 0xf_f000); // rsdp_paddr
        assert_eq!(u64_at(&ram, i + 40), 0x1068); // memmap after the list
        assert_eq!(u32_at(&ram, i + 52), 0); // reserved
        assert_eq!(end, 0x1068 + 48);
        assert_eq!(start_info_size(12, 1, 2), Some(end - 0x1000));
        // Padding inside the block is zero, bytes after it untouched.
        assert!(ram[0x1045..0x1048].iter().all(|&b| b == 0));
        assert_eq!(ram[end as usize], 0xee);
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
        let longest = "x".repeat(2047);
        assert!(place_start_info(&mut ram, 0, &longest, &[]).is_ok());
        assert_eq!(
            place_start_info(&mut ram, 0xff0, "", &[]),
            Err(StartInfoError::NoRoom)
        );
        assert_eq!(
            place_start_info(&mut ram, u64::MAX - 3, "", &[]),
            Err(StartInfoError::NoRoom)
        );
    }
}
