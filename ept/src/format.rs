//! The entry-format trait the table builder is generic over, and the permissions and memory types it encodes.

use crate::addr::{Hpa, PageSize};

/// Bits 51:12 of any entry: the physical address of the next table or of the page.
/// Both EPT (SDM Vol. 3C 29.3.2) and long-mode paging (AMD APM Vol. 2 5.3.3)
/// put it there; 52 bits is the architectural maximum physical address width.
pub const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// What a guest may do with a page. Not every format can express every set:
/// see [`Format::supports`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
}

impl Perms {
    pub const NONE: Perms = Perms::new(false, false, false);
    pub const R: Perms = Perms::new(true, false, false);
    pub const RW: Perms = Perms::new(true, true, false);
    pub const RX: Perms = Perms::new(true, false, true);
    pub const RWX: Perms = Perms::new(true, true, true);
    /// Execute-only: EPT can express it (if the CPU supports it), NPT cannot.
    pub const X: Perms = Perms::new(false, false, true);

    pub const fn new(read: bool, write: bool, execute: bool) -> Perms {
        Perms {
            read,
            write,
            execute,
        }
    }
}

/// Memory types, numbered with the architectural encoding shared by PAT,
/// MTRRs and the EPT memory-type field (SDM Vol. 3A "Memory Types That Can Be
/// Encoded With PAT"; SDM Vol. 3C 29.3.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MemType {
    Uncacheable = 0,
    WriteCombining = 1,
    WriteThrough = 4,
    WriteProtected = 5,
    WriteBack = 6,
}

impl MemType {
    pub const ALL: [MemType; 5] = [
        MemType::Uncacheable,
        MemType::WriteCombining,
        MemType::WriteThrough,
        MemType::WriteProtected,
        MemType::WriteBack,
    ];
}

/// One second-level entry format. The builder in `table.rs` only moves
/// entries around through these functions; it never looks at a bit itself.
///
/// Levels are numbered as in the manuals' walk: 4 = PML4, 3 = PDPT, 2 = PD, 1 = PT.
pub trait Format {
    /// Short name for messages: "EPT" or "NPT".
    const NAME: &'static str;

    /// Whether an entry of this format can grant exactly `perms`.
    fn supports(perms: Perms) -> bool;

    /// Whether this format (with the hypervisor's PAT setup) can express `mem_type`.
    fn supports_mem_type(mem_type: MemType) -> bool;

    /// A non-leaf entry pointing at the table at `table`, granting everything
    /// so that only leaves restrict access.
    fn table_entry(table: Hpa) -> u64;

    /// A leaf entry mapping the `size` page at `hpa`. The caller has checked
    /// alignment, [`Format::supports`] and [`Format::supports_mem_type`].
    fn leaf_entry(hpa: Hpa, size: PageSize, perms: Perms, mem_type: MemType) -> u64;

    /// Whether the entry maps or points at anything.
    fn is_present(entry: u64) -> bool;

    /// For a present entry at `level`: the size of the page it maps, or
    /// `None` when it points at a next-level table.
    fn leaf_size(entry: u64, level: u32) -> Option<PageSize>;

    /// The permissions a present leaf grants.
    fn perms(entry: u64) -> Perms;

    /// The memory type of a present leaf.
    fn mem_type(entry: u64) -> MemType;

    /// The physical address in a present entry: the next table, or the page
    /// (already aligned to the page size, since the builder only writes aligned ones).
    fn address(entry: u64) -> Hpa {
        Hpa(entry & ADDRESS_MASK)
    }
}
