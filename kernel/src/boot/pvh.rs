//! Reading `hvm_start_info` (PVH entry): memory map, command line, and the module archive.

use super::{c_string, phys_bytes};
use arrayvec::ArrayVec;
use xen_abi::start_info::{HvmMemmapTableEntry, HvmModlistEntry, HvmStartInfo, HVM_START_MAGIC};
use xenolith::boot_info::{BootError, BootInfo, Loader, MemoryRegion, PhysRange, RegionKind};
use xenolith::newc::{self, ArchiveError};

/// Longest command line accepted (Linux's COMMAND_LINE_SIZE on x86).
const MAX_CMDLINE: u64 = 2048;

fn read_struct<T: Copy>(addr: u64) -> Result<T, BootError> {
    let bytes = phys_bytes(
        addr,
        core::mem::size_of::<T>() as u64,
        "start info outside memory",
    )?;
    // SAFETY: `bytes` covers a whole `T`, and `T` is a plain `repr(C)` struct
    // of integers, valid for any bit pattern; the read is unaligned-safe.
    Ok(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

pub fn read(info: u64) -> Result<BootInfo<'static>, BootError> {
    let start: HvmStartInfo = read_struct(info)?;
    if start.magic != HVM_START_MAGIC {
        return Err(BootError::BadMagic(start.magic));
    }
    let mut boot = BootInfo {
        loader: Loader::Pvh,
        cmdline: "",
        memory: ArrayVec::new(),
        modules: ArrayVec::new(),
        rsdp: (start.rsdp_paddr != 0).then_some(start.rsdp_paddr),
        reserved: ArrayVec::new(),
    };
    let reserve = |boot: &mut BootInfo, r: PhysRange| {
        boot.reserved
            .try_push(r)
            .map_err(|_| BootError::TooManyModules)
    };
    reserve(
        &mut boot,
        PhysRange {
            start: info,
            end: info + 56,
        },
    )?;

    let (cmdline, range) = c_string(start.cmdline_paddr, MAX_CMDLINE)?;
    boot.cmdline = cmdline;
    reserve(&mut boot, range)?;

    // Version 0 has no memory map, and this hypervisor has no other source.
    if start.version < 1 || start.memmap_entries == 0 {
        return Err(BootError::NoMemoryMap);
    }
    let entry_size = core::mem::size_of::<HvmMemmapTableEntry>() as u64;
    for i in 0..u64::from(start.memmap_entries) {
        let e: HvmMemmapTableEntry = read_struct(start.memmap_paddr + i * entry_size)?;
        let range = PhysRange::sized(e.addr, e.size).ok_or(BootError::NoMemoryMap)?;
        let region = MemoryRegion {
            range,
            kind: RegionKind::from_e820(e.kind),
        };
        boot.memory
            .try_push(region)
            .map_err(|_| BootError::TooManyRegions)?;
    }
    let map_len = u64::from(start.memmap_entries) * entry_size;
    reserve(
        &mut boot,
        PhysRange {
            start: start.memmap_paddr,
            end: start.memmap_paddr + map_len,
        },
    )?;

    // QEMU passes its single -initrd here: a newc archive of named modules.
    let list_size = core::mem::size_of::<HvmModlistEntry>() as u64;
    for i in 0..u64::from(start.nr_modules) {
        let m: HvmModlistEntry = read_struct(start.modlist_paddr + i * list_size)?;
        reserve(
            &mut boot,
            PhysRange {
                start: start.modlist_paddr,
                end: start.modlist_paddr + list_size * (i + 1),
            },
        )?;
        if m.size == 0 {
            continue;
        }
        let archive = phys_bytes(m.paddr, m.size, "module outside the low 4 GiB")?;
        reserve(
            &mut boot,
            PhysRange {
                start: m.paddr,
                end: m.paddr + m.size,
            },
        )?;
        newc::for_each_file(archive, |module| {
            boot.modules
                .try_push(module)
                .map_err(|_| ArchiveError::TooMany)
        })
        .map_err(BootError::BadArchive)?;
    }
    Ok(boot)
}
