//! Address newtypes (guest-virtual, guest-physical, host-physical) and the three page sizes.

/// A guest-virtual (linear) address, translated by the guest's own page tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gva(pub u64);

/// A guest-physical address, translated by the second-level (EPT/NPT) tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gpa(pub u64);

/// A host-physical address: what second-level tables map to, and where table frames live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hpa(pub u64);

/// The page sizes of 4-level paging: a PTE, a PDE with PS, a PDPTE with PS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSize {
    Size4K,
    Size2M,
    Size1G,
}

impl PageSize {
    /// Size in bytes.
    pub const fn bytes(self) -> u64 {
        1 << self.shift()
    }

    /// log2 of the size: 12, 21 or 30.
    pub const fn shift(self) -> u32 {
        match self {
            PageSize::Size4K => 12,
            PageSize::Size2M => 21,
            PageSize::Size1G => 30,
        }
    }

    /// The table level whose entries map pages of this size (1 = PT, 2 = PD, 3 = PDPT).
    pub const fn level(self) -> u32 {
        match self {
            PageSize::Size4K => 1,
            PageSize::Size2M => 2,
            PageSize::Size1G => 3,
        }
    }

    /// The page size a leaf entry at `level` maps; `None` for the PML4, which has no leaves.
    pub const fn at_level(level: u32) -> Option<PageSize> {
        match level {
            1 => Some(PageSize::Size4K),
            2 => Some(PageSize::Size2M),
            3 => Some(PageSize::Size1G),
            _ => None,
        }
    }
}
