//! How this crate reaches memory: table frames on the host side, guest memory on the guest side.

use crate::addr::{Gpa, Hpa};

/// Frames for second-level tables: allocation, freeing and access.
///
/// In the hypervisor, physical memory is identity-mapped, so `table` and
/// `table_mut` are a cast of the frame's address (the one `unsafe` step lives
/// there, next to the allocator); in host tests they index a vector.
pub trait TableMemory {
    /// A fresh 4 KiB frame filled with zeros (all entries not present), or
    /// `None` when memory is exhausted.
    fn alloc_zeroed_table(&mut self) -> Option<Hpa>;

    /// Gives back a frame from `alloc_zeroed_table`. Its contents are not
    /// cleared first; the allocator must zero it again before reuse.
    fn free_table(&mut self, table: Hpa);

    /// The 512 entries of a table frame this memory allocated.
    fn table(&self, table: Hpa) -> &[u64; 512];

    /// The 512 entries of a table frame this memory allocated, for writing.
    fn table_mut(&mut self, table: Hpa) -> &mut [u64; 512];
}

/// Reads guest-physical memory for the guest page-table walker.
pub trait GuestPhysRead {
    /// The naturally aligned 8 bytes at `gpa`, or `None` when the address is
    /// not guest RAM (unmapped, MMIO, or memory the guest does not own).
    fn read_u64(&self, gpa: Gpa) -> Option<u64>;

    /// The naturally aligned 4 bytes at `gpa` (32-bit paging's entries), or
    /// `None` when the address is not guest RAM: the half of the aligned
    /// 8 bytes that holds them (x86 is little-endian).
    fn read_u32(&self, gpa: Gpa) -> Option<u32> {
        if !gpa.0.is_multiple_of(4) {
            return None;
        }
        let qword = self.read_u64(Gpa(gpa.0 & !7))?;
        Some((qword >> (8 * (gpa.0 & 4))) as u32)
    }
}
