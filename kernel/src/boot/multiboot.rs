//! Reading the multiboot2 boot information (GRUB): memory map, command line, one module per `module2`.

use super::phys_bytes;
use arrayvec::ArrayVec;
use multiboot2::{BootInformation, BootInformationHeader, MemoryAreaType};
use xenolith::boot_info::{
    BootError, BootInfo, Loader, MemoryRegion, Module, PhysRange, RegionKind,
};

pub fn read(info: u64) -> Result<BootInfo<'static>, BootError> {
    // SAFETY: EAX held the multiboot2 magic, so EBX points at a boot
    // information structure; the crate checks its size and tags.
    let mbi = unsafe { BootInformation::load(info as *const BootInformationHeader) }
        .map_err(|_| BootError::BadMagic(0))?;
    let mut boot = BootInfo {
        loader: Loader::Multiboot2,
        cmdline: "",
        memory: ArrayVec::new(),
        modules: ArrayVec::new(),
        rsdp: None,
        reserved: ArrayVec::new(),
    };
    // The structure itself holds the strings and the RSDP copy used below.
    let whole = PhysRange {
        start: mbi.start_address() as u64,
        end: mbi.end_address() as u64,
    };
    boot.reserved
        .try_push(whole)
        .map_err(|_| BootError::TooManyModules)?;

    if let Some(tag) = mbi.command_line_tag() {
        // SAFETY of 'static: the string lives inside the reserved structure.
        let text: &str = tag.cmdline().map_err(|_| BootError::BadCommandLine)?;
        boot.cmdline = unsafe { &*(text as *const str) };
    }

    let map = mbi.memory_map_tag().ok_or(BootError::NoMemoryMap)?;
    for area in map.memory_areas() {
        let range =
            PhysRange::sized(area.start_address(), area.size()).ok_or(BootError::NoMemoryMap)?;
        let kind = match area.typ() {
            MemoryAreaType::Available => RegionKind::Ram,
            MemoryAreaType::Reserved => RegionKind::Reserved,
            MemoryAreaType::AcpiAvailable => RegionKind::AcpiReclaimable,
            MemoryAreaType::ReservedHibernate => RegionKind::AcpiNvs,
            MemoryAreaType::Defective => RegionKind::Unusable,
            MemoryAreaType::Custom(n) => RegionKind::Other(n),
        };
        boot.memory
            .try_push(MemoryRegion { range, kind })
            .map_err(|_| BootError::TooManyRegions)?;
    }

    for tag in mbi.module_tags() {
        let (start, end) = (u64::from(tag.start_address()), u64::from(tag.end_address()));
        if end < start {
            return Err(BootError::BadModule("module ends before it starts"));
        }
        let data = if end == start {
            &[][..]
        } else {
            phys_bytes(start, end - start, "module outside memory")?
        };
        let name: &str = tag
            .cmdline()
            .map_err(|_| BootError::BadModule("module name is not UTF-8"))?;
        // SAFETY of 'static: the name lives inside the reserved structure.
        let name = unsafe { &*(name as *const str) };
        boot.reserved
            .try_push(PhysRange { start, end })
            .map_err(|_| BootError::TooManyModules)?;
        boot.modules
            .try_push(Module { name, data })
            .map_err(|_| BootError::TooManyModules)?;
    }

    // GRUB copies the RSDP into the tag; its address there is as good as the original.
    let rsdp = mbi
        .rsdp_v2_tag()
        .map(|t| t as *const _ as u64)
        .or_else(|| mbi.rsdp_v1_tag().map(|t| t as *const _ as u64));
    // The RSDP starts after the 8-byte tag header.
    boot.rsdp = rsdp.map(|tag| tag + 8);
    Ok(boot)
}
