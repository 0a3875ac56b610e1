//! Physical memory: the heap and the frame allocator, both buddy allocators over usable RAM.

use buddy_system_allocator::{FrameAllocator, LockedHeap};
use spin::Mutex;
use xenolith::boot_info::PhysRange;
use xenolith::memory_map::PAGE_SIZE;

/// Heap for the hypervisor's own objects; guest memory comes from frames.
pub const HEAP_SIZE: u64 = 4 << 20;
/// Start of day refuses to run with less usable RAM than this: the heap, the
/// page tables and room for at least one small guest.
pub const MIN_USABLE: u64 = 16 << 20;

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

static FRAMES: Mutex<FrameAllocator<32>> = Mutex::new(FrameAllocator::new());

/// One bit per host frame: set once the frame has been handed out since boot.
/// Frames never handed out hold only what firmware and the boot loader left
/// (boot modules stay reserved and are never among them), no domain's data.
static HANDED_OUT: Mutex<Option<alloc::vec::Vec<u64>>> = Mutex::new(None);
/// `scrub=always` on the command line: zero every guest frame, fresh or not.
static SCRUB_ALWAYS: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Starts tracking frames up to physical address `top`, the end of usable
/// RAM (after the heap exists). Without room for the bitmap (one bit per
/// frame: 32 KiB per GiB), every guest frame is zeroed instead.
pub fn track_frames(top: u64, scrub_always: bool) {
    let words = (top / PAGE_SIZE).div_ceil(64) as usize;
    let mut bits = alloc::vec::Vec::new();
    if bits.try_reserve_exact(words).is_ok() {
        bits.resize(words, 0u64);
        *HANDED_OUT.lock() = Some(bits);
    }
    SCRUB_ALWAYS.store(scrub_always, core::sync::atomic::Ordering::Relaxed);
}

/// Whether `count` frames at `phys` must be zeroed before a domain gets them:
/// if any was handed out before (and marks them handed out now). Untracked
/// frames always need it.
pub fn needs_scrub(phys: u64, count: usize) -> bool {
    let mut guard = HANDED_OUT.lock();
    let Some(bits) = guard.as_mut() else {
        return true;
    };
    let first = (phys / PAGE_SIZE) as usize;
    let mut reused = SCRUB_ALWAYS.load(core::sync::atomic::Ordering::Relaxed);
    for frame in first..first + count {
        match bits.get_mut(frame / 64) {
            Some(word) => {
                reused |= *word & (1 << (frame % 64)) != 0;
                *word |= 1 << (frame % 64);
            }
            None => reused = true,
        }
    }
    reused
}

/// Marks frames the hypervisor takes for itself as handed out.
fn mark_handed_out(phys: u64, count: usize) {
    if let Some(bits) = HANDED_OUT.lock().as_mut() {
        let first = (phys / PAGE_SIZE) as usize;
        for frame in first..first + count {
            if let Some(word) = bits.get_mut(frame / 64) {
                *word |= 1 << (frame % 64);
            }
        }
    }
}

/// The part of `r` below `limit`.
fn below(r: PhysRange, limit: u64) -> PhysRange {
    PhysRange {
        start: r.start,
        end: r.end.min(limit),
    }
}

/// Sets up the heap in the first range that holds it below `limit`, and
/// hands every other byte below `limit` to the frame allocator (which needs
/// the heap for its free lists). Returns false if no range holds the heap.
pub fn init(usable: &[PhysRange], limit: u64) -> bool {
    let Some(home) = usable
        .iter()
        .map(|r| below(*r, limit))
        .find(|r| r.len() >= HEAP_SIZE)
    else {
        return false;
    };
    // SAFETY: `home` is usable RAM that nothing else owns, identity-mapped.
    unsafe { HEAP.lock().init(home.start as usize, HEAP_SIZE as usize) };
    let heap = PhysRange {
        start: home.start,
        end: home.start + HEAP_SIZE,
    };
    let mut frames = FRAMES.lock();
    for r in usable
        .iter()
        .map(|r| below(*r, limit))
        .filter(|r| !r.is_empty())
    {
        for part in [
            PhysRange {
                start: r.start,
                end: r.end.min(heap.start),
            },
            PhysRange {
                start: r.start.max(heap.end),
                end: r.end,
            },
        ] {
            if !part.is_empty() {
                frames.add_frame(
                    (part.start / PAGE_SIZE) as usize,
                    (part.end / PAGE_SIZE) as usize,
                );
            }
        }
    }
    true
}

/// Hands the bytes at or above `limit` to the frame allocator, once they are mapped.
pub fn add_above(usable: &[PhysRange], limit: u64) {
    let mut frames = FRAMES.lock();
    for r in usable {
        let part = PhysRange {
            start: r.start.max(limit),
            end: r.end,
        };
        if !part.is_empty() {
            frames.add_frame(
                (part.start / PAGE_SIZE) as usize,
                (part.end / PAGE_SIZE) as usize,
            );
        }
    }
}

/// `count` contiguous, naturally aligned frames; returns the physical address.
/// Their contents are whatever the last owner left: callers zero them, or
/// ask `needs_scrub` (guest RAM).
pub fn alloc_frames(count: usize) -> Option<u64> {
    FRAMES.lock().alloc(count).map(|f| f as u64 * PAGE_SIZE)
}

/// Gives back `count` frames from `alloc_frames` at `phys`.
pub fn free_frames(phys: u64, count: usize) {
    FRAMES.lock().dealloc((phys / PAGE_SIZE) as usize, count);
}

/// The frame allocator as the backends and address spaces see it.
pub struct HostFrames;

impl vcpu::FrameAlloc for HostFrames {
    fn alloc_zeroed(&mut self, count: usize) -> Option<u64> {
        let phys = alloc_frames(count)?;
        mark_handed_out(phys, count);
        // SAFETY: fresh frames, owned by the caller, identity-mapped.
        unsafe { core::ptr::write_bytes(phys as *mut u8, 0, count * PAGE_SIZE as usize) };
        Some(phys)
    }

    fn free(&mut self, phys: u64, count: usize) {
        free_frames(phys, count);
    }
}

/// One zeroed frame.
pub fn alloc_zeroed_frame() -> Option<u64> {
    let phys = alloc_frames(1)?;
    mark_handed_out(phys, 1);
    // SAFETY: a fresh frame, owned by the caller, identity-mapped.
    unsafe { core::ptr::write_bytes(phys as *mut u8, 0, PAGE_SIZE as usize) };
    Some(phys)
}

pub fn heap_bytes() -> usize {
    HEAP.lock().stats_total_bytes()
}
