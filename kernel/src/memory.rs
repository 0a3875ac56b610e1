//! Physical memory: the heap and the frame allocator, both buddy allocators over usable RAM.

use buddy_system_allocator::{FrameAllocator, LockedHeap};
use core::sync::atomic::{AtomicU64, Ordering};
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

/// One past the highest frame the allocator was given: Xen's `max_page`,
/// what `XENMEM_maximum_ram_page` answers.
static MAX_PAGE: AtomicU64 = AtomicU64::new(0);

/// One past the highest host RAM frame.
pub fn max_page() -> u64 {
    MAX_PAGE.load(Ordering::Relaxed)
}

fn note_top(end: u64) {
    MAX_PAGE.fetch_max(end / PAGE_SIZE, Ordering::Relaxed);
}

/// Zeroes `count` frames at `phys` before a domain gets them. Every frame
/// a domain is given is zeroed, whoever had it before and whether or not
/// anyone did: frames no one has owned since boot still hold what firmware,
/// a boot loader or the previous boot (a warm reboot) left, and no guest
/// may read bytes it did not write or the hypervisor did not clear.
///
/// A frame that already reads as zero is left alone: the check reads, and
/// only a frame with a non-zero byte is written. Under QEMU TCG a write is
/// what costs (the first store to a page makes QEMU allocate it), so
/// memory that was never used, which QEMU gives as zeros, is checked in a
/// quarter of the time it takes to zero it (a 256 MiB guest: 140 ms
/// against 580 ms; docs/security.md); on hardware the check is a read of
/// what zeroing would write.
pub fn scrub(phys: u64, count: usize) {
    const WORDS: usize = PAGE_SIZE as usize / 8;
    for frame in 0..count as u64 {
        let page = (phys + frame * PAGE_SIZE) as *mut u64;
        // SAFETY: frames the caller just took from the allocator and owns,
        // identity-mapped, page-aligned.
        let words = unsafe { core::slice::from_raw_parts_mut(page, WORDS) };
        if words.iter().any(|&w| w != 0) {
            words.fill(0);
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
                note_top(part.end);
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
            note_top(part.end);
            frames.add_frame(
                (part.start / PAGE_SIZE) as usize,
                (part.end / PAGE_SIZE) as usize,
            );
        }
    }
}

/// `count` contiguous, naturally aligned frames; returns the physical address.
/// Their contents are whatever the last owner left: callers `scrub` them.
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
        scrub(phys, count);
        Some(phys)
    }

    fn free(&mut self, phys: u64, count: usize) {
        free_frames(phys, count);
    }
}

/// One zeroed frame.
pub fn alloc_zeroed_frame() -> Option<u64> {
    let phys = alloc_frames(1)?;
    scrub(phys, 1);
    Some(phys)
}

pub fn heap_bytes() -> usize {
    HEAP.lock().stats_total_bytes()
}
