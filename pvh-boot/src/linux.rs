//! The whole PVH start of day for a Linux guest in one contiguous RAM block: kernel, initrd, start info, E820, ACPI and the console/XenStore pages.
//!
//! The guest's RAM is one block at GPA 0..`ram.len()`. [`prepare`] lays it out
//! as follows (GPAs; `top` = RAM size rounded down to a page; the 256 MiB
//! column is for Debian 6.1's vmlinux, a 200-byte command line, an initrd and
//! 1–352 vCPUs, whose tables fit one page):
//!
//! | Range | 256 MiB guest | E820 | Contents |
//! |---|---|---|---|
//! | 0 .. 0xA0000 | same | RAM | zeroed: BDA, real-mode trampoline area |
//! | 0xA0000 .. 0x100000 | same | (absent) | zeroed; Linux adds it as RESERVED itself |
//! | 0x100000 .. `ram_top_usable` | .. 0xFFFD000 | RAM | kernel, start info, initrd, free |
//! | kernel segments (p_paddr) | 0x1000000 .. 0x4A00000 | RAM | the ELF's PT_LOADs |
//! | page after the kernel | 0x4A00000 .. 0x4A00188 | RAM | `hvm_start_info`, cmdline, modlist, memmap |
//! | initrd, page-aligned, ending at or just below `ram_top_usable` | .. 0xFFFD000 | RAM | module 0 |
//! | `ram_top_usable` .. top − 8 KiB | 0xFFFD000 .. 0xFFFE000 | ACPI | RSDP, XSDT, FADT, DSDT, MADT |
//! | top − 8 KiB .. top − 4 KiB | 0xFFFE000 .. 0xFFFF000 | RESERVED | XenStore ring page (zeroed) |
//! | top − 4 KiB .. top | 0xFFFF000 .. 0x10000000 | RESERVED | console ring page (zeroed) |
//!
//! Constraints behind it (../shared/spec/xen-pvh-abi.md 1.4–1.6, 10.4–10.5):
//! - RAM below 640 KiB must be in the map: Linux allocates its AP real-mode
//!   trampoline there and panics without it (arch/x86/realmode/init.c).
//! - Linux copies `memmap_entries` entries into a 128-entry array unchecked,
//!   then appends RESERVED 0xA0000–0x100000 itself when fewer than 127
//!   (arch/x86/platform/pvh/enlighten.c `init_pvh_bootparams`), so the hole is
//!   left out of the map here.
//! - The memory map and module list are read through `__va` while only the
//!   first 1 GiB is mapped, so the start-info block must end below 1 GiB; the
//!   command line and initrd go into 32-bit boot_params fields (below 4 GiB).
//! - Linux copies the start info, memory map and command line and reads the
//!   module list before it allocates anything, so the block may sit in RAM
//!   right after the image, where Xen's `bootlate_hvm` also puts it
//!   (tools/libs/guest/xg_dom_x86.c).
//! - The initrd is module 0 (module command lines ignored); Linux memblock-
//!   reserves it and copies it only if it lies beyond the mapped RAM. It goes
//!   at the top of usable RAM, far from the image, at least
//!   [`MIN_GAP_AFTER_KERNEL`] above the start-info block.
//! - The special pages and the ACPI tables are kept out of E820 RAM so Linux
//!   never allocates them (Xen: RESERVED special pages at 0xFEFF8000, NVS
//!   tables at 0xFC000000; here both sit at the top of the one RAM block).

use crate::acpi::{self, AcpiError};
use crate::image::{KernelImage, LoadError};
use crate::start_info::{self, StartInfo, StartInfoError, MAX_CMDLINE};
use arrayvec::ArrayVec;
use core::ops::Range;
use xen_abi::start_info::{
    HvmMemmapTableEntry, HvmModlistEntry, MEMMAP_TYPE_ACPI, MEMMAP_TYPE_RAM, MEMMAP_TYPE_RESERVED,
};

pub const PAGE_SIZE: u64 = 4096;
/// End of conventional memory (640 KiB): RAM [0, this) is in the map.
pub const LOW_RAM_END: u64 = 0xA_0000;
/// Start of the RAM above the legacy hole.
pub const HIGH_RAM_START: u64 = 0x10_0000;
/// The start-info block, its module list and memory map must end below this
/// (Linux's early direct map covers the first 1 GiB).
pub const START_INFO_LIMIT: u64 = 1 << 30;
/// RAM may not reach the local APIC page (no I/O APIC below it either).
pub const MAX_RAM: u64 = acpi::LAPIC_BASE as u64;
/// Free RAM left at least between the start-info block (after the kernel) and
/// the initrd: early allocations (page tables, memblock arrays) land there.
pub const MIN_GAP_AFTER_KERNEL: u64 = 16 << 20;
/// Pages at the top of RAM: the XenStore ring, then the console ring.
const SPECIAL_PAGES: u64 = 2;
/// Capacity of [`BootPlan::memmap`].
pub const PLAN_MEMMAP_CAPACITY: usize = 8;

/// What to boot.
pub struct LinuxBoot<'a> {
    pub kernel: &'a KernelImage<'a>,
    /// At most `MAX_CMDLINE - 1` bytes; copied NUL-terminated.
    pub cmdline: &'a str,
    /// Module 0; `None` or empty for no initrd.
    pub initrd: Option<&'a [u8]>,
    /// vCPUs described in the MADT (1 ..= `acpi::MAX_VCPUS`).
    pub vcpus: u32,
}

/// Where everything went. The vCPU starts at `entry` in 32-bit protected
/// mode, paging off, with EBX = `start_info`; HVM_PARAM_CONSOLE_PFN and
/// HVM_PARAM_STORE_PFN return `console_gfn` and `xenstore_gfn`.
#[derive(Clone, Debug)]
pub struct BootPlan {
    /// `XEN_ELFNOTE_PHYS32_ENTRY`.
    pub entry: u32,
    /// GPA of `hvm_start_info` (EBX).
    pub start_info: u64,
    pub console_gfn: u64,
    pub xenstore_gfn: u64,
    /// GPA of the RSDP (also in `hvm_start_info.rsdp_paddr`).
    pub rsdp: u64,
    /// The E820 map handed to the guest (also what `XENMEM_memory_map`
    /// should return), sorted by address.
    pub memmap: ArrayVec<HvmMemmapTableEntry, PLAN_MEMMAP_CAPACITY>,
    /// End of the highest E820 RAM range; the ACPI tables start here.
    pub ram_top_usable: u64,
    /// Lowest kernel segment start .. highest segment end.
    pub kernel: Range<u64>,
    /// `hvm_start_info`, command line, module list and memory map.
    pub start_info_block: Range<u64>,
    pub initrd: Option<Range<u64>>,
    /// The ACPI-typed range (page-aligned; the tables use its start).
    pub acpi: Range<u64>,
    /// The RESERVED range: XenStore page, then console page.
    pub special: Range<u64>,
}

/// Why the guest cannot be laid out. Nothing is written to RAM when
/// [`prepare`] fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// Less RAM than low memory, the legacy hole, one page, the ACPI tables
    /// and the special pages need.
    RamTooSmall { ram_bytes: u64, min: u64 },
    /// RAM would reach the local APIC at 0xFEE00000.
    RamTooLarge { ram_bytes: u64, max: u64 },
    /// No vCPUs, or more than the MADT describes.
    BadVcpuCount { vcpus: u32, max: u32 },
    /// The image's segments are malformed.
    Kernel(LoadError),
    /// A segment lies outside RAM [1 MiB, `ram_top_usable`).
    KernelDoesNotFit {
        paddr: u64,
        size: u64,
        ram_top_usable: u64,
    },
    /// The PVH entry point is not inside a loaded segment.
    EntryOutsideKernel { entry: u32 },
    /// Command line of `len` bytes; at most `max` fit (the NUL excluded).
    CommandLineTooLong { len: usize, max: usize },
    /// The start-info block after the kernel would cross `limit`: RAM's top or 1 GiB.
    StartInfoDoesNotFit { at: u64, size: u64, limit: u64 },
    /// The initrd does not fit between the kernel (plus
    /// [`MIN_GAP_AFTER_KERNEL`]) and the top of usable RAM.
    InitrdTooLarge { size: u64, room: u64 },
    /// Writing the start info failed (e.g. too many memory map entries).
    StartInfo(StartInfoError),
    /// Writing the ACPI tables failed (not expected once the layout is made).
    Acpi(AcpiError),
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LayoutError::RamTooSmall { ram_bytes, min } => write!(
                f,
                "{ram_bytes:#x} bytes of guest RAM: the layout needs at least {min:#x}"
            ),
            LayoutError::RamTooLarge { ram_bytes, max } => write!(
                f,
                "{ram_bytes:#x} bytes of guest RAM would reach the local APIC: at most {max:#x}"
            ),
            LayoutError::BadVcpuCount { vcpus, max } => {
                write!(f, "{vcpus} vCPUs: 1 to {max} are supported")
            }
            LayoutError::Kernel(e) => write!(f, "kernel image: {e}"),
            LayoutError::KernelDoesNotFit {
                paddr,
                size,
                ram_top_usable,
            } => write!(
                f,
                "kernel segment at {paddr:#x} ({size:#x} bytes) is outside RAM \
                 [0x100000, {ram_top_usable:#x}): give the guest more memory"
            ),
            LayoutError::EntryOutsideKernel { entry } => {
                write!(f, "PVH entry {entry:#x} is not inside a loaded segment")
            }
            LayoutError::CommandLineTooLong { len, max } => {
                write!(f, "command line of {len} bytes: at most {max}")
            }
            LayoutError::StartInfoDoesNotFit { at, size, limit } => write!(
                f,
                "start info ({size:#x} bytes at {at:#x}, after the kernel) crosses {limit:#x}"
            ),
            LayoutError::InitrdTooLarge { size, room } => write!(
                f,
                "initrd of {size:#x} bytes does not fit: {room:#x} bytes of RAM are free \
                 above the kernel"
            ),
            LayoutError::StartInfo(e) => write!(f, "start info: {e}"),
            LayoutError::Acpi(e) => write!(f, "ACPI tables: {e}"),
        }
    }
}

fn align_up(v: u64, to: u64) -> Option<u64> {
    Some(v.checked_add(to - 1)? & !(to - 1))
}

fn align_down(v: u64, to: u64) -> u64 {
    v & !(to - 1)
}

fn entry(addr: u64, end: u64, kind: u32) -> HvmMemmapTableEntry {
    HvmMemmapTableEntry {
        addr,
        size: end - addr,
        kind,
        reserved: 0,
    }
}

/// The lowest start and highest end of the image's PT_LOAD segments, each
/// checked to lie in RAM [1 MiB, `ram_top_usable`).
fn kernel_extent(kernel: &KernelImage, ram_top_usable: u64) -> Result<Range<u64>, LayoutError> {
    let mut extent: Option<Range<u64>> = None;
    let mut misfit = None;
    kernel
        .for_each_segment(|paddr, _, size| {
            let end = paddr.checked_add(size);
            match end {
                Some(end) if paddr >= HIGH_RAM_START && end <= ram_top_usable => {
                    if size > 0 {
                        let e = extent.get_or_insert(paddr..end);
                        e.start = e.start.min(paddr);
                        e.end = e.end.max(end);
                    }
                }
                _ => {
                    misfit.get_or_insert(LayoutError::KernelDoesNotFit {
                        paddr,
                        size,
                        ram_top_usable,
                    });
                }
            }
            Ok(())
        })
        .map_err(LayoutError::Kernel)?;
    if let Some(e) = misfit {
        return Err(e);
    }
    let entry = u64::from(kernel.entry);
    let mut inside = false;
    kernel
        .for_each_segment(|paddr, _, size| {
            inside |= entry >= paddr && entry - paddr < size;
            Ok(())
        })
        .map_err(LayoutError::Kernel)?;
    match extent {
        Some(e) if inside => Ok(e),
        _ => Err(LayoutError::EntryOutsideKernel {
            entry: kernel.entry,
        }),
    }
}

/// Lays out and writes the guest's start of day into `ram` (index = GPA; the
/// whole slice is the guest's RAM, expected zeroed): kernel segments at
/// their `p_paddr`, the initrd, the ACPI tables, the zeroed XenStore and
/// console pages, `hvm_start_info` v1 with its command line, module list and
/// memory map; the first MiB is zeroed too (no stray "RSD PTR " or "_MP_"
/// for Linux's legacy scans). See the module documentation for the layout.
///
/// Every check happens before the first write: on error `ram` is untouched.
/// Never writes outside `ram`.
pub fn prepare(ram: &mut [u8], boot: &LinuxBoot) -> Result<BootPlan, LayoutError> {
    let ram_bytes = ram.len() as u64;
    if ram_bytes > MAX_RAM {
        return Err(LayoutError::RamTooLarge {
            ram_bytes,
            max: MAX_RAM,
        });
    }
    let acpi_size = acpi::region_size(boot.vcpus).map_err(|_| LayoutError::BadVcpuCount {
        vcpus: boot.vcpus,
        max: acpi::MAX_VCPUS,
    })?;
    let top_area = SPECIAL_PAGES * PAGE_SIZE + acpi_size;
    let min = HIGH_RAM_START + PAGE_SIZE + top_area;
    let top = align_down(ram_bytes, PAGE_SIZE);
    if top < min {
        return Err(LayoutError::RamTooSmall { ram_bytes, min });
    }
    let special = top - SPECIAL_PAGES * PAGE_SIZE..top;
    let acpi_range = special.start - acpi_size..special.start;
    let ram_top_usable = acpi_range.start;
    let xenstore_gfn = special.start / PAGE_SIZE;
    let console_gfn = xenstore_gfn + 1;

    if boot.cmdline.len() >= MAX_CMDLINE {
        return Err(LayoutError::CommandLineTooLong {
            len: boot.cmdline.len(),
            max: MAX_CMDLINE - 1,
        });
    }

    let kernel = kernel_extent(boot.kernel, ram_top_usable)?;

    let map = [
        entry(0, LOW_RAM_END, MEMMAP_TYPE_RAM),
        entry(HIGH_RAM_START, ram_top_usable, MEMMAP_TYPE_RAM),
        entry(acpi_range.start, acpi_range.end, MEMMAP_TYPE_ACPI),
        entry(special.start, special.end, MEMMAP_TYPE_RESERVED),
    ];
    let memmap = ArrayVec::<HvmMemmapTableEntry, PLAN_MEMMAP_CAPACITY>::try_from(&map[..])
        .map_err(|_| LayoutError::StartInfo(StartInfoError::TooManyMemmapEntries))?;

    let initrd = boot.initrd.filter(|i| !i.is_empty());
    let modules = usize::from(initrd.is_some());
    // Both bounded (cmdline < 2048 bytes, ≤ 8 entries): no overflow.
    let si_size = start_info::start_info_size(boot.cmdline.len(), modules, memmap.len())
        .ok_or(LayoutError::StartInfo(StartInfoError::NoRoom))?;
    let si_at = align_up(kernel.end, PAGE_SIZE)
        .ok_or(LayoutError::StartInfo(StartInfoError::NoRoom))?
        .max(HIGH_RAM_START);
    let si_limit = ram_top_usable.min(START_INFO_LIMIT);
    let si_end = si_at.saturating_add(si_size);
    if si_end > si_limit {
        return Err(LayoutError::StartInfoDoesNotFit {
            at: si_at,
            size: si_size,
            limit: si_limit,
        });
    }

    let initrd_range = match initrd {
        None => None,
        Some(bytes) => {
            let size = bytes.len() as u64;
            let lowest = align_up(si_end, PAGE_SIZE)
                .unwrap_or(u64::MAX)
                .saturating_add(MIN_GAP_AFTER_KERNEL);
            let room = ram_top_usable.saturating_sub(lowest);
            let base = ram_top_usable
                .checked_sub(size)
                .map(|b| align_down(b, PAGE_SIZE))
                .filter(|&b| b >= lowest)
                .ok_or(LayoutError::InitrdTooLarge { size, room })?;
            Some(base..base + size)
        }
    };
    let module = initrd_range.as_ref().map(|r| HvmModlistEntry {
        paddr: r.start,
        size: r.end - r.start,
        cmdline_paddr: 0,
        reserved: 0,
    });

    // Writes. Everything below is inside `ram` by the checks above.
    ram[..HIGH_RAM_START as usize].fill(0);
    ram[acpi_range.start as usize..special.end as usize].fill(0);
    boot.kernel
        .load(&mut ram[..ram_top_usable as usize])
        .map_err(LayoutError::Kernel)?;
    if let (Some(r), Some(bytes)) = (&initrd_range, initrd) {
        ram[r.start as usize..r.end as usize].copy_from_slice(bytes);
    }
    let tables = acpi::write_tables(
        &mut ram[..special.start as usize],
        acpi_range.start,
        boot.vcpus,
    )
    .map_err(LayoutError::Acpi)?;
    let modlist = module.as_slice();
    let (start_info, _) = start_info::write_start_info(
        &mut ram[..si_end as usize],
        si_at,
        &StartInfo {
            cmdline: boot.cmdline,
            modules: modlist,
            rsdp: tables.rsdp,
            memmap: &memmap,
        },
    )
    .map_err(LayoutError::StartInfo)?;

    Ok(BootPlan {
        entry: boot.kernel.entry,
        start_info,
        console_gfn,
        xenstore_gfn,
        rsdp: tables.rsdp,
        memmap,
        ram_top_usable,
        kernel,
        start_info_block: si_at..si_end,
        initrd: initrd_range,
        acpi: acpi_range,
        special,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::tests::{check_tables, u32_at, u64_at};
    use crate::image::tests::sized_elf;
    extern crate std;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;

    /// A kernel shaped like Debian 6.1's vmlinux: loaded at 16 MiB, ending at
    /// 0x4A00000, PVH entry 0x1000850.
    fn debian_like() -> Vec<u8> {
        let code: Vec<u8> = (0..0x2000u32).map(|i| (i * 7 + 1) as u8).collect();
        sized_elf(
            0x100_0000,
            &code,
            0x4A0_0000 - 0x100_0000,
            Some(0x100_0850),
            8,
        )
    }

    fn is_ram(map: &[HvmMemmapTableEntry], r: &Range<u64>) -> bool {
        map.iter()
            .any(|e| e.kind == MEMMAP_TYPE_RAM && e.addr <= r.start && r.end <= e.addr + e.size)
    }

    fn overlaps_ram(map: &[HvmMemmapTableEntry], r: &Range<u64>) -> bool {
        map.iter()
            .any(|e| e.kind == MEMMAP_TYPE_RAM && e.addr < r.end && r.start < e.addr + e.size)
    }

    /// The invariants every plan keeps, checked against `ram` as written.
    fn check_plan(ram: &[u8], plan: &BootPlan, boot: &LinuxBoot) {
        let map = &plan.memmap[..];
        // The map: sorted, non-overlapping, page-aligned, inside the slice,
        // ≤ 127 entries, RAM below 640 KiB, nothing listed in the legacy hole.
        assert!(map.len() <= start_info::MAX_MEMMAP_ENTRIES);
        for e in map {
            assert!(e.size > 0);
            assert_eq!(e.addr % PAGE_SIZE, 0);
            assert_eq!(e.size % PAGE_SIZE, 0);
            assert!(e.addr + e.size <= ram.len() as u64);
            assert_eq!(e.reserved, 0);
            assert!(e.addr + e.size <= LOW_RAM_END || e.addr >= HIGH_RAM_START);
        }
        for w in map.windows(2) {
            assert!(w[0].addr + w[0].size <= w[1].addr, "sorted, disjoint");
        }
        assert!(is_ram(map, &(0..LOW_RAM_END)));
        assert_eq!(
            map.iter()
                .filter(|e| e.kind == MEMMAP_TYPE_RAM)
                .map(|e| e.addr + e.size)
                .max(),
            Some(plan.ram_top_usable)
        );

        // The regions: inside the slice, pairwise disjoint, in the right kind of memory.
        let mut regions = std::vec![
            plan.kernel.clone(),
            plan.start_info_block.clone(),
            plan.acpi.clone(),
            plan.special.clone(),
        ];
        regions.extend(plan.initrd.clone());
        for (i, a) in regions.iter().enumerate() {
            assert!(a.start < a.end && a.end <= ram.len() as u64, "{a:x?}");
            for b in &regions[i + 1..] {
                assert!(a.end <= b.start || b.end <= a.start, "{a:x?} / {b:x?}");
            }
        }
        assert!(is_ram(map, &plan.kernel));
        assert!(is_ram(map, &plan.start_info_block));
        assert!(!overlaps_ram(map, &plan.acpi));
        assert!(!overlaps_ram(map, &plan.special));
        assert!(map
            .iter()
            .any(|e| e.kind == MEMMAP_TYPE_ACPI && (e.addr..e.addr + e.size) == plan.acpi));
        assert!(map
            .iter()
            .any(|e| e.kind == MEMMAP_TYPE_RESERVED && (e.addr..e.addr + e.size) == plan.special));
        assert!(plan.start_info_block.end <= START_INFO_LIMIT);
        assert_eq!(plan.special.end - plan.special.start, 2 * PAGE_SIZE);
        assert_eq!(plan.xenstore_gfn, plan.special.start / PAGE_SIZE);
        assert_eq!(plan.console_gfn, plan.xenstore_gfn + 1);
        for gfn in [plan.xenstore_gfn, plan.console_gfn] {
            let p = (gfn * PAGE_SIZE) as usize;
            assert!(ram[p..p + PAGE_SIZE as usize].iter().all(|&b| b == 0));
        }
        assert!(ram[..HIGH_RAM_START as usize].iter().all(|&b| b == 0));
        if let Some(r) = &plan.initrd {
            assert!(is_ram(map, r));
            assert_eq!(r.start % PAGE_SIZE, 0);
            assert!(r.end <= 1 << 32);
            assert!(r.start >= plan.start_info_block.end + MIN_GAP_AFTER_KERNEL);
            assert_eq!(&ram[r.start as usize..r.end as usize], boot.initrd.unwrap());
        }

        // hvm_start_info v1 read back at the offsets of start_info.h.
        let si = plan.start_info;
        assert_eq!(si, plan.start_info_block.start);
        assert_eq!(si % 8, 0);
        assert_eq!(u32_at(ram, si), 0x336e_c578);
        assert_eq!(u32_at(ram, si + 4), 1);
        assert_eq!(u32_at(ram, si + 8), 0, "flags: domU");
        let nr_modules = u32_at(ram, si + 12);
        let modlist = u64_at(ram, si + 16);
        let cmdline = u64_at(ram, si + 24) as usize;
        assert_eq!(u64_at(ram, si + 32), plan.rsdp);
        let memmap = u64_at(ram, si + 40);
        assert_eq!(u32_at(ram, si + 48) as usize, map.len());
        assert_eq!(u32_at(ram, si + 52), 0);
        let c = boot.cmdline.as_bytes();
        assert_eq!(&ram[cmdline..cmdline + c.len()], c);
        assert_eq!(ram[cmdline + c.len()], 0);
        for (i, e) in map.iter().enumerate() {
            let at = memmap + 24 * i as u64;
            assert_eq!(
                (u64_at(ram, at), u64_at(ram, at + 8), u32_at(ram, at + 16)),
                (e.addr, e.size, e.kind)
            );
        }
        assert!(memmap + 24 * map.len() as u64 <= plan.start_info_block.end);
        match &plan.initrd {
            None => assert_eq!((nr_modules, modlist), (0, 0)),
            Some(r) => {
                assert_eq!(nr_modules, 1);
                assert_eq!(u64_at(ram, modlist), r.start);
                assert_eq!(u64_at(ram, modlist + 8), r.end - r.start);
                assert_eq!(u64_at(ram, modlist + 16), 0);
                assert!(modlist + 32 <= plan.start_info_block.end);
            }
        }
        // ACPI, parsed back from the RSDP.
        assert_eq!(plan.rsdp, plan.acpi.start);
        check_tables(ram, plan.rsdp, boot.vcpus);
    }

    #[test]
    fn debian_like_guest_in_256_mib() {
        let elf = debian_like();
        let kernel = KernelImage::parse(&elf).unwrap();
        let initrd: Vec<u8> = (0..(30 * MIB + 123) as u32)
            .map(|i| (i >> 12) as u8)
            .collect();
        let boot = LinuxBoot {
            kernel: &kernel,
            cmdline: "console=hvc0 root=/dev/xvda1 ro",
            initrd: Some(&initrd),
            vcpus: 4,
        };
        let mut ram = std::vec![0xa5u8; (256 * MIB) as usize];
        let plan = prepare(&mut ram, &boot).unwrap();
        check_plan(&ram, &plan, &boot);

        assert_eq!(plan.entry, 0x100_0850);
        assert_eq!(plan.kernel, 0x100_0000..0x4A0_0000);
        assert_eq!(plan.start_info, 0x4A0_0000);
        // 56 + 32 (31 + NUL) + 32 (one module) + 4 * 24.
        assert_eq!(plan.start_info_block, 0x4A0_0000..0x4A0_0000 + 216);
        assert_eq!(plan.ram_top_usable, 0xFFF_D000);
        assert_eq!(plan.acpi, 0xFFF_D000..0xFFF_E000);
        assert_eq!(plan.special, 0xFFF_E000..0x1000_0000);
        assert_eq!((plan.xenstore_gfn, plan.console_gfn), (0xFFFE, 0xFFFF));
        assert_eq!(plan.rsdp, 0xFFF_D000);
        let initrd_start = (0xFFF_D000 - (30 * MIB + 123)) & !0xfff;
        assert_eq!(
            plan.initrd,
            Some(initrd_start..initrd_start + 30 * MIB + 123)
        );
        let map: Vec<_> = plan
            .memmap
            .iter()
            .map(|e| (e.addr, e.size, e.kind))
            .collect();
        assert_eq!(
            map,
            [
                (0, 0xA_0000, 1),
                (0x10_0000, 0xFFF_D000 - 0x10_0000, 1),
                (0xFFF_D000, 0x1000, 3),
                (0xFFF_E000, 0x2000, 2),
            ]
        );
        // The kernel: its bytes, then its zeroed memory size.
        assert_eq!(ram[0x100_0000], 1);
        assert_eq!(ram[0x100_0001], 8);
        assert!(ram[0x100_2000..0x4A0_0000].iter().all(|&b| b == 0));
        // Untouched free RAM keeps whatever was there.
        assert_eq!(ram[0x4A0_1000], 0xa5);
        assert_eq!(ram[initrd_start as usize - 1], 0xa5);
    }

    #[test]
    fn no_initrd_and_an_empty_one_are_the_same() {
        let elf = debian_like();
        let kernel = KernelImage::parse(&elf).unwrap();
        for initrd in [None, Some(&[][..])] {
            let boot = LinuxBoot {
                kernel: &kernel,
                cmdline: "",
                initrd,
                vcpus: 1,
            };
            let mut ram = std::vec![0u8; (128 * MIB) as usize];
            let plan = prepare(&mut ram, &boot).unwrap();
            assert!(plan.initrd.is_none());
            check_plan(&ram, &plan, &boot);
            assert_eq!(
                plan.start_info_block.end - plan.start_info_block.start,
                56 + 8 + 96
            );
        }
    }

    #[test]
    fn unaligned_ram_size_and_many_vcpus() {
        let elf = sized_elf(0x20_0000, &[0xf4; 16], 0x10_0000, Some(0x20_0000), 8);
        let kernel = KernelImage::parse(&elf).unwrap();
        let initrd = std::vec![7u8; 5000];
        let boot = LinuxBoot {
            kernel: &kernel,
            cmdline: "x",
            initrd: Some(&initrd),
            vcpus: acpi::MAX_VCPUS,
        };
        let mut ram = std::vec![0u8; (32 * MIB + 0x7ff) as usize];
        let plan = prepare(&mut ram, &boot).unwrap();
        check_plan(&ram, &plan, &boot);
        assert_eq!(plan.special.end, 32 * MIB);
        assert_eq!(plan.acpi, 32 * MIB - 0x4000..32 * MIB - 0x2000);
    }

    /// Runs `prepare` on RAM filled with 0x5a and checks the error and that
    /// nothing was written.
    fn refused(ram_bytes: u64, boot: &LinuxBoot) -> LayoutError {
        let mut ram = std::vec![0x5au8; ram_bytes as usize];
        let err = prepare(&mut ram, boot).unwrap_err();
        assert!(ram.iter().all(|&b| b == 0x5a), "{err:?} wrote to RAM");
        err
    }

    #[test]
    fn failure_paths() {
        let elf = debian_like();
        let kernel = KernelImage::parse(&elf).unwrap();
        let boot = LinuxBoot {
            kernel: &kernel,
            cmdline: "quiet",
            initrd: None,
            vcpus: 2,
        };
        // RAM too small for the kernel (it ends at 0x4A00000).
        assert_eq!(
            refused(64 * MIB, &boot),
            LayoutError::KernelDoesNotFit {
                paddr: 0x100_0000,
                size: 0x3A0_0000,
                ram_top_usable: 64 * MIB - 0x3000,
            }
        );
        // Too small for anything.
        assert_eq!(
            refused(MIB, &boot),
            LayoutError::RamTooSmall {
                ram_bytes: MIB,
                min: MIB + 0x4000
            }
        );
        // Initrd too big: 256 MiB - 0x3000 - (0x4A01000 + 16 MiB) is free.
        let big = std::vec![1u8; (190 * MIB) as usize];
        let room = 256 * MIB - 0x3000 - (0x4A0_1000 + MIN_GAP_AFTER_KERNEL);
        assert_eq!(
            refused(
                256 * MIB,
                &LinuxBoot {
                    initrd: Some(&big),
                    ..boot
                }
            ),
            LayoutError::InitrdTooLarge {
                size: 190 * MIB,
                room
            }
        );
        // An initrd of exactly the room fits.
        let fits = std::vec![2u8; room as usize];
        let mut ram = std::vec![0u8; (256 * MIB) as usize];
        let b = LinuxBoot {
            initrd: Some(&fits),
            ..boot
        };
        let plan = prepare(&mut ram, &b).unwrap();
        check_plan(&ram, &plan, &b);
        drop(ram);
        // Command line: 2047 bytes fit, 2048 do not.
        let long = "y".repeat(2048);
        assert_eq!(
            refused(
                128 * MIB,
                &LinuxBoot {
                    cmdline: &long,
                    ..boot
                }
            ),
            LayoutError::CommandLineTooLong {
                len: 2048,
                max: 2047
            }
        );
        let mut ram = std::vec![0u8; (128 * MIB) as usize];
        let b = LinuxBoot {
            cmdline: &long[..2047],
            ..boot
        };
        let plan = prepare(&mut ram, &b).unwrap();
        check_plan(&ram, &plan, &b);
        drop(ram);
        // vCPU counts.
        for vcpus in [0, acpi::MAX_VCPUS + 1] {
            assert_eq!(
                refused(128 * MIB, &LinuxBoot { vcpus, ..boot }),
                LayoutError::BadVcpuCount {
                    vcpus,
                    max: acpi::MAX_VCPUS
                }
            );
        }
    }

    #[test]
    fn kernel_placement_refusals() {
        let boot = |k| LinuxBoot {
            kernel: k,
            cmdline: "",
            initrd: None,
            vcpus: 1,
        };
        // A segment in the legacy hole / low memory.
        let low = sized_elf(0x9_0000, &[0xf4; 16], 0x2_0000, Some(0x9_0000), 8);
        let k = KernelImage::parse(&low).unwrap();
        assert!(matches!(
            refused(8 * MIB, &boot(&k)),
            LayoutError::KernelDoesNotFit {
                paddr: 0x9_0000,
                ..
            }
        ));
        // Entry outside the image.
        let stray = sized_elf(0x20_0000, &[0xf4; 16], 0x1000, Some(0x30_0000), 8);
        let k = KernelImage::parse(&stray).unwrap();
        assert_eq!(
            refused(8 * MIB, &boot(&k)),
            LayoutError::EntryOutsideKernel { entry: 0x30_0000 }
        );
        // A kernel filling usable RAM leaves no room for the start info.
        let full = sized_elf(0x10_0000, &[0xf4; 16], 7 * MIB - 0x3000, Some(0x10_0000), 8);
        let k = KernelImage::parse(&full).unwrap();
        assert_eq!(
            refused(8 * MIB, &boot(&k)),
            LayoutError::StartInfoDoesNotFit {
                at: 8 * MIB - 0x3000,
                size: 56 + 8 + 96,
                limit: 8 * MIB - 0x3000
            }
        );
    }

    #[test]
    fn start_info_must_end_below_1_gib() {
        // A kernel ending at 1 GiB in a 1.5 GiB guest (the slice is
        // allocated zeroed and, refused before any write, never touched).
        let elf = sized_elf(
            0x100_0000,
            &[0xf4; 16],
            (1 << 30) - 0x100_0000,
            Some(0x100_0000),
            8,
        );
        let kernel = KernelImage::parse(&elf).unwrap();
        let boot = LinuxBoot {
            kernel: &kernel,
            cmdline: "",
            initrd: None,
            vcpus: 1,
        };
        let mut ram = std::vec![0u8; 3 << 29];
        assert_eq!(
            prepare(&mut ram, &boot).unwrap_err(),
            LayoutError::StartInfoDoesNotFit {
                at: 1 << 30,
                size: 160,
                limit: 1 << 30
            }
        );
    }

    #[test]
    fn ram_reaching_the_lapic_is_refused() {
        let elf = debian_like();
        let kernel = KernelImage::parse(&elf).unwrap();
        let boot = LinuxBoot {
            kernel: &kernel,
            cmdline: "",
            initrd: None,
            vcpus: 1,
        };
        // Zeroed allocation: reserved address space, never touched.
        let mut ram = std::vec![0u8; MAX_RAM as usize + 1];
        assert_eq!(
            prepare(&mut ram, &boot).unwrap_err(),
            LayoutError::RamTooLarge {
                ram_bytes: MAX_RAM + 1,
                max: MAX_RAM
            }
        );
    }

    #[test]
    fn errors_read_well() {
        let e = LayoutError::InitrdTooLarge {
            size: 0x1000,
            room: 0,
        };
        assert!(std::format!("{e}").contains("initrd"));
        let e = LayoutError::StartInfo(StartInfoError::TooManyMemmapEntries);
        assert!(std::format!("{e}").contains("127"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
        #[test]
        fn any_plan_is_well_formed(
            ram_pages in 0u64..(64 * MIB / PAGE_SIZE),
            ram_tail in 0u64..PAGE_SIZE,
            kernel_page in 0u64..1024,
            kernel_memsz in 0x100u64..(4 * MIB),
            initrd_len in 0usize..(16 << 20),
            cmdline_len in 0usize..2100,
            vcpus in 0u32..560,
        ) {
            let paddr = HIGH_RAM_START + kernel_page * PAGE_SIZE;
            let elf = sized_elf(paddr, &[0xcc; 0x100], kernel_memsz, Some(paddr + 0x10), 8);
            let kernel = KernelImage::parse(&elf).unwrap();
            let initrd = std::vec![0x3cu8; initrd_len];
            let cmdline = "c".repeat(cmdline_len);
            let boot = LinuxBoot {
                kernel: &kernel,
                cmdline: &cmdline,
                initrd: Some(&initrd),
                vcpus,
            };
            let len = (ram_pages * PAGE_SIZE + ram_tail) as usize;
            let mut ram = std::vec![0u8; len];
            match prepare(&mut ram, &boot) {
                Ok(plan) => check_plan(&ram, &plan, &boot),
                Err(_) => {
                    // Nothing written (memcmp against fresh zeroes).
                    let zeroes = std::vec![0u8; len];
                    proptest::prop_assert!(ram == zeroes);
                }
            }
        }
    }
}
