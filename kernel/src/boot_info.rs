//! One view of what the boot loader handed over, whichever entry (multiboot2 or PVH) was taken.

use arrayvec::ArrayVec;

/// Capacity of the memory map. E820 maps from firmware rarely exceed 64 entries;
/// Linux's own `E820_MAX_ENTRIES_ZEROPAGE` is 128.
pub const MAX_MEMORY_REGIONS: usize = 128;
/// Capacity of the module list.
pub const MAX_MODULES: usize = 64;
/// Capacity of the list of boot structures to keep out of the allocators.
pub const MAX_RESERVED: usize = MAX_MODULES + 8;

/// Which entry point the image was started through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loader {
    /// Multiboot2 (GRUB): EAX = 0x36d76289, EBX = boot information.
    Multiboot2,
    /// Xen PVH (`XEN_ELFNOTE_PHYS32_ENTRY`, QEMU `-kernel`): EBX = `hvm_start_info`.
    Pvh,
}

impl Loader {
    pub const fn name(self) -> &'static str {
        match self {
            Loader::Multiboot2 => "multiboot2",
            Loader::Pvh => "pvh",
        }
    }
}

/// A half-open physical address range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysRange {
    pub start: u64,
    pub end: u64,
}

impl PhysRange {
    /// The range of `len` bytes at `start`, or `None` if it wraps around.
    pub fn sized(start: u64, len: u64) -> Option<Self> {
        Some(PhysRange {
            start,
            end: start.checked_add(len)?,
        })
    }

    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// What a memory-map range holds, in E820 terms (ACPI 6.5, table 15.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    Ram,
    Reserved,
    AcpiReclaimable,
    AcpiNvs,
    Unusable,
    Other(u32),
}

impl RegionKind {
    pub fn from_e820(kind: u32) -> Self {
        match kind {
            1 => RegionKind::Ram,
            2 => RegionKind::Reserved,
            3 => RegionKind::AcpiReclaimable,
            4 => RegionKind::AcpiNvs,
            5 => RegionKind::Unusable,
            other => RegionKind::Other(other),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    pub range: PhysRange,
    pub kind: RegionKind,
}

/// One boot module: its name and its bytes, where the loader left them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module<'a> {
    pub name: &'a str,
    pub data: &'a [u8],
}

/// Everything the rest of start of day needs from the boot loader.
#[derive(Debug)]
pub struct BootInfo<'a> {
    pub loader: Loader,
    pub cmdline: &'a str,
    pub memory: ArrayVec<MemoryRegion, MAX_MEMORY_REGIONS>,
    pub modules: ArrayVec<Module<'a>, MAX_MODULES>,
    /// Physical address of the ACPI RSDP, if the loader gave one or a scan found it.
    pub rsdp: Option<u64>,
    /// Boot structures (loader tables, command line, module bytes) that the
    /// frame allocator must never hand out.
    pub reserved: ArrayVec<PhysRange, MAX_RESERVED>,
}

/// Why the boot information could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    BadMagic(u32),
    NoMemoryMap,
    TooManyRegions,
    TooManyModules,
    BadModule(&'static str),
    BadCommandLine,
    BadArchive(crate::newc::ArchiveError),
}

impl core::fmt::Display for BootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootError::BadMagic(m) => write!(f, "boot information has a bad magic number {m:#x}"),
            BootError::NoMemoryMap => write!(f, "the boot loader gave no memory map"),
            BootError::TooManyRegions => {
                write!(f, "memory map has more than {MAX_MEMORY_REGIONS} entries")
            }
            BootError::TooManyModules => write!(f, "more than {MAX_MODULES} boot modules"),
            BootError::BadModule(why) => write!(f, "bad boot module: {why}"),
            BootError::BadCommandLine => write!(f, "the command line is not UTF-8"),
            BootError::BadArchive(e) => write!(f, "bad module archive: {e}"),
        }
    }
}
