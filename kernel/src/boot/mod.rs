//! Start of day from either loader: the entry trampoline and the readers that build one `BootInfo`.

mod multiboot;
mod pvh;

use core::arch::global_asm;
use xenolith::boot_info::{BootError, BootInfo, Loader, PhysRange};

global_asm!(include_str!("entry.S"), options(att_syntax));

/// The `kind` that entry.S passes to `kernel_entry`.
pub const ENTRY_MULTIBOOT2: u32 = 1;
pub const ENTRY_PVH: u32 = 2;

pub fn loader(kind: u32) -> Loader {
    match kind {
        ENTRY_PVH => Loader::Pvh,
        ENTRY_MULTIBOOT2 => Loader::Multiboot2,
        _ => unreachable!("entry.S passes only its two entry kinds"),
    }
}

/// Reads the loader's structures at physical `info`.
pub fn read(kind: u32, info: u64) -> Result<BootInfo<'static>, BootError> {
    let mut boot = match loader(kind) {
        Loader::Pvh => pvh::read(info)?,
        Loader::Multiboot2 => multiboot::read(info)?,
    };
    if boot.rsdp.is_none() {
        boot.rsdp = scan_rsdp();
    }
    Ok(boot)
}

/// `len` bytes at physical `addr`, or an error for a null or wrapping range.
///
/// Boot structures lie below 4 GiB, which the boot page tables identity-map.
fn phys_bytes(addr: u64, len: u64, what: &'static str) -> Result<&'static [u8], BootError> {
    if addr == 0 || PhysRange::sized(addr, len).is_none_or(|r| r.end > 1 << 32) {
        return Err(BootError::BadModule(what));
    }
    // SAFETY: identity-mapped memory the loader handed over; it stays
    // reserved (kept out of the allocators) for the hypervisor's lifetime.
    Ok(unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) })
}

/// The NUL-terminated string at physical `addr`, at most `max` bytes.
fn c_string(addr: u64, max: u64) -> Result<(&'static str, PhysRange), BootError> {
    if addr == 0 {
        return Ok(("", PhysRange { start: 0, end: 0 }));
    }
    let bytes = phys_bytes(addr, max, "string outside the low 4 GiB")?;
    let len = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or(BootError::BadCommandLine)?;
    let text = core::str::from_utf8(&bytes[..len]).map_err(|_| BootError::BadCommandLine)?;
    Ok((
        text,
        PhysRange {
            start: addr,
            end: addr + len as u64 + 1,
        },
    ))
}

/// ACPI 6.5 5.2.5.1: the first KiB of the EBDA, then 0xE0000-0xFFFFF.
fn scan_rsdp() -> Option<u64> {
    // SAFETY: low memory is identity-mapped by the boot tables; 0x40E holds
    // the EBDA segment in the BIOS data area.
    let ebda = u64::from(unsafe { core::ptr::read_volatile(0x40e as *const u16) }) << 4;
    let window = |start: u64, len: u64| phys_bytes(start, len, "").ok();
    (ebda >= 0x80000)
        .then(|| window(ebda, 1024))
        .flatten()
        .and_then(|w| xenolith::rsdp::find(w, ebda))
        .or_else(|| window(0xe0000, 0x20000).and_then(|w| xenolith::rsdp::find(w, 0xe0000)))
}
