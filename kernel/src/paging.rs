//! The hypervisor's own page tables: all physical memory identity-mapped, the image W^X, stack guards unmapped.

use crate::memory::alloc_zeroed_frame;
use xenolith::boot_info::PhysRange;
use xenolith::page_policy::{access, ImageLayout, PageAccess};

// Long-mode paging entry bits (SDM Vol. 3A 5.5.5, tables 5-15 to 5-20).
const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const HUGE: u64 = 1 << 7;
const NO_EXECUTE: u64 = 1 << 63;
const IA32_EFER: u32 = 0xc000_0080;
const EFER_NXE: u64 = 1 << 11;

const SIZE_4K: u64 = 1 << 12;
const SIZE_2M: u64 = 1 << 21;
const SIZE_1G: u64 = 1 << 30;

extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __image_start: u8;
    static __image_end: u8;
    static __stack_guard: u8;
    static __ist_guard: u8;
}

macro_rules! sym {
    ($s:ident) => {
        core::ptr::addr_of!($s) as u64
    };
}

pub fn image() -> ImageLayout {
    ImageLayout {
        text: PhysRange {
            start: sym!(__text_start),
            end: sym!(__text_end),
        },
        rodata: PhysRange {
            start: sym!(__rodata_start),
            end: sym!(__rodata_end),
        },
        data: PhysRange {
            start: sym!(__data_start),
            end: sym!(__image_end),
        },
        guards: [sym!(__stack_guard), sym!(__ist_guard)],
    }
}

pub fn image_range() -> PhysRange {
    PhysRange {
        start: sym!(__image_start),
        end: sym!(__image_end),
    }
}

fn table(phys: u64) -> &'static mut [u64; 512] {
    // SAFETY: page-table frames are zeroed, owned by this module and identity-mapped.
    unsafe { &mut *(phys as *mut [u64; 512]) }
}

#[derive(Debug)]
pub struct OutOfFrames;

/// Builds the tables for `[0, top)` and switches CR3 to them. Every frame
/// they use must already be reachable through the boot mapping (below 4 GiB).
pub fn init(top: u64) -> Result<(), OutOfFrames> {
    // SAFETY: reading EFER has no side effects.
    let nx_bit = if unsafe { x86::msr::rdmsr(IA32_EFER) } & EFER_NXE != 0 {
        NO_EXECUTE
    } else {
        0
    };
    let layout = image();
    let image = image_range();
    let small = |base: u64| base == 0 || (base < image.end && image.start < base + SIZE_2M);

    let pml4 = alloc_zeroed_frame().ok_or(OutOfFrames)?;
    let mut pdpt = 0;
    for gib in 0..top.div_ceil(SIZE_1G) {
        if gib % 512 == 0 {
            pdpt = alloc_zeroed_frame().ok_or(OutOfFrames)?;
            table(pml4)[(gib / 512) as usize] = pdpt | PRESENT | WRITABLE;
        }
        let pd = alloc_zeroed_frame().ok_or(OutOfFrames)?;
        table(pdpt)[(gib % 512) as usize] = pd | PRESENT | WRITABLE;
        for i in 0..512u64 {
            let base = gib * SIZE_1G + i * SIZE_2M;
            table(pd)[i as usize] = if small(base) {
                let pt = alloc_zeroed_frame().ok_or(OutOfFrames)?;
                for j in 0..512u64 {
                    let page = base + j * SIZE_4K;
                    table(pt)[j as usize] = match access(page, &layout) {
                        PageAccess::NotPresent => 0,
                        PageAccess::ReadExecute => page | PRESENT,
                        PageAccess::Read => page | PRESENT | nx_bit,
                        PageAccess::ReadWrite => page | PRESENT | WRITABLE | nx_bit,
                    };
                }
                pt | PRESENT | WRITABLE
            } else {
                base | PRESENT | WRITABLE | HUGE | nx_bit
            };
        }
    }
    // SAFETY: the new tables map the running code, stack and data at the
    // same addresses as the boot tables; CR0.WP is already set.
    unsafe { x86::controlregs::cr3_write(pml4) };
    Ok(())
}
