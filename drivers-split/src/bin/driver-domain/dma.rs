//! The DMA pool: memory the hypervisor maps at guest-physical = host-physical, so a device's DMA addresses are plain pointers here.

use core::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(0);
static END: AtomicU64 = AtomicU64::new(0);

/// Takes the pool the domain table names (identity-mapped by entry.S's
/// 4 GiB map and by the hypervisor's second-level tables).
pub fn init(base: u64, size: u64) {
    NEXT.store(base, Ordering::Relaxed);
    END.store(base + size, Ordering::Relaxed);
}

/// `bytes` of the pool (page-aligned, zeroed by the hypervisor), kept for
/// the life of the domain; `None` once the pool is used up.
pub fn alloc(bytes: usize) -> Option<&'static mut [u8]> {
    let len = (bytes as u64).next_multiple_of(4096);
    let at = NEXT.load(Ordering::Relaxed);
    if at == 0 || at + len > END.load(Ordering::Relaxed) {
        return None;
    }
    NEXT.store(at + len, Ordering::Relaxed);
    // SAFETY: pool memory handed out once, never freed, mapped for the
    // domain's life; the address is the physical address devices use.
    Some(unsafe { core::slice::from_raw_parts_mut(at as *mut u8, bytes) })
}
