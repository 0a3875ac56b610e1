//! How each page of the hypervisor's own address space is mapped: the W^X layout of the image.

use crate::boot_info::PhysRange;

/// The image's sections, page-aligned, as the linker script lays them out.
#[derive(Clone, Copy, Debug)]
pub struct ImageLayout {
    /// Boot trampoline and Rust code.
    pub text: PhysRange,
    /// Read-only data and the ELF notes.
    pub rodata: PhysRange,
    /// Data, BSS and the stacks.
    pub data: PhysRange,
    /// Pages left unmapped so that a stack overflow faults instead of corrupting.
    pub guards: [u64; 2],
}

/// The access a page gets. Everything but `ReadExecute` is mapped no-execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageAccess {
    NotPresent,
    ReadExecute,
    Read,
    ReadWrite,
}

/// The access of the 4 KiB page at physical (= virtual) address `page`.
///
/// Page 0 stays unmapped to catch null pointers; memory outside the image
/// is data the hypervisor manages (heap, frames, boot modules).
pub fn access(page: u64, image: &ImageLayout) -> PageAccess {
    let within = |r: &PhysRange| r.start <= page && page < r.end;
    if page == 0 || image.guards.contains(&page) {
        PageAccess::NotPresent
    } else if within(&image.text) {
        PageAccess::ReadExecute
    } else if within(&image.rodata) {
        PageAccess::Read
    } else {
        PageAccess::ReadWrite
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w_xor_x() {
        let image = ImageLayout {
            text: PhysRange {
                start: 0x200000,
                end: 0x210000,
            },
            rodata: PhysRange {
                start: 0x210000,
                end: 0x214000,
            },
            data: PhysRange {
                start: 0x214000,
                end: 0x240000,
            },
            guards: [0x220000, 0x232000],
        };
        assert_eq!(access(0, &image), PageAccess::NotPresent);
        assert_eq!(access(0x1000, &image), PageAccess::ReadWrite);
        assert_eq!(access(0x200000, &image), PageAccess::ReadExecute);
        assert_eq!(access(0x20f000, &image), PageAccess::ReadExecute);
        assert_eq!(access(0x210000, &image), PageAccess::Read);
        assert_eq!(access(0x214000, &image), PageAccess::ReadWrite);
        assert_eq!(access(0x220000, &image), PageAccess::NotPresent);
        assert_eq!(access(0x232000, &image), PageAccess::NotPresent);
        assert_eq!(access(0x240000, &image), PageAccess::ReadWrite);
    }
}
