//! The guest page-table walker: guest-virtual to guest-physical through the guest's own tables, with the CPU's checks.

use crate::addr::{Gpa, Gva, PageSize};
use crate::format::ADDRESS_MASK;
use crate::memory::GuestPhysRead;

// Long-mode paging entry bits (SDM Vol. 3A 4.5.4, tables 4-15 to 4-20).
const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const PAGE_SIZE: u64 = 1 << 7;
const NO_EXECUTE: u64 = 1 << 63;
/// Bits 29:13 of a PDPTE mapping 1 GiB and bits 20:13 of a PDE mapping 2 MiB
/// are reserved (bit 12 is PAT).
const RESERVED_1G: u64 = 0x3fff_e000;
const RESERVED_2M: u64 = 0x001f_e000;

/// How the guest translates linear addresses (SDM Vol. 3A 4.1.1, table 4-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingMode {
    /// CR0.PG = 0: linear addresses are physical.
    Disabled,
    /// 32-bit paging (CR4.PAE = 0). Not walked.
    Bits32,
    /// PAE paging (EFER.LMA = 0). Not walked.
    Pae,
    /// 4-level long-mode paging.
    Level4,
    /// 5-level long-mode paging (CR4.LA57). Not walked.
    Level5,
}

impl PagingMode {
    /// The mode selected by CR0.PG (bit 31), CR4.PAE (bit 5), EFER.LMA (bit 10)
    /// and CR4.LA57 (bit 12).
    pub fn from_registers(cr0: u64, cr4: u64, efer: u64) -> PagingMode {
        if cr0 & 1 << 31 == 0 {
            PagingMode::Disabled
        } else if cr4 & 1 << 5 == 0 {
            PagingMode::Bits32
        } else if efer & 1 << 10 == 0 {
            PagingMode::Pae
        } else if cr4 & 1 << 12 == 0 {
            PagingMode::Level4
        } else {
            PagingMode::Level5
        }
    }
}

/// The guest state a walk depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestPaging {
    pub mode: PagingMode,
    pub cr3: u64,
    /// CR0.WP: supervisor writes must respect read-only pages too.
    pub write_protect: bool,
    /// EFER.NXE: bit 63 of an entry means execute-disable instead of reserved.
    pub no_execute: bool,
    /// The guest's MAXPHYADDR (CPUID 8000_0008h EAX[7:0]); entry address bits
    /// from here up to 51 are reserved.
    pub max_phys_bits: u8,
}

/// What the access that needs the translation is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access {
    pub write: bool,
    /// Made at CPL 3 (SDM Vol. 3A 4.6: a user-mode access).
    pub user: bool,
    /// An instruction fetch.
    pub fetch: bool,
}

impl Access {
    pub const READ: Access = Access::of(false, false, false);
    pub const WRITE: Access = Access::of(true, false, false);
    pub const FETCH: Access = Access::of(false, false, true);

    const fn of(write: bool, user: bool, fetch: bool) -> Access {
        Access { write, user, fetch }
    }

    /// The same access made from user mode.
    pub const fn by_user(self) -> Access {
        Access { user: true, ..self }
    }
}

/// A #PF error code (SDM Vol. 3A 4.7, figure 4-12), ready to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFaultCode(pub u32);

impl PageFaultCode {
    /// Set: a protection or reserved-bit violation; clear: a not-present entry.
    pub const PRESENT: u32 = 1 << 0;
    /// The access was a write.
    pub const WRITE: u32 = 1 << 1;
    /// The access was a user-mode access.
    pub const USER: u32 = 1 << 2;
    /// A reserved bit was set in some paging-structure entry.
    pub const RESERVED: u32 = 1 << 3;
    /// The access was an instruction fetch.
    pub const FETCH: u32 = 1 << 4;

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

/// Why a guest-virtual address did not translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// The CPU would raise #PF with this error code (and CR2 = the address).
    PageFault(PageFaultCode),
    /// Bits 63:47 are not all equal: the CPU raises #GP or #SS, not #PF
    /// (SDM Vol. 3A 3.3.7.1).
    NonCanonical,
    /// A paging-structure entry lies at this guest-physical address, which is
    /// not guest RAM. No architectural fault fits; the caller decides.
    Unreadable(Gpa),
    /// A mode this walker does not implement; never a guess.
    UnsupportedMode(PagingMode),
}

/// Where a guest-virtual address leads and what the walk allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestTranslation {
    pub gpa: Gpa,
    /// The guest page size (4 KiB when paging is off).
    pub size: PageSize,
    /// R/W set at every level.
    pub writable: bool,
    /// U/S set at every level.
    pub user: bool,
    /// No XD at any level (always true when EFER.NXE is clear).
    pub executable: bool,
}

impl GuestTranslation {
    /// A 4 KiB page with every right, before any level restricts it.
    const fn unrestricted(gpa: Gpa) -> GuestTranslation {
        GuestTranslation {
            gpa,
            size: PageSize::Size4K,
            writable: true,
            user: true,
            executable: true,
        }
    }
}

type Walk = Result<GuestTranslation, WalkError>;

impl GuestPaging {
    /// The walk state from the guest's control registers, EFER and MAXPHYADDR.
    pub fn from_registers(
        cr0: u64,
        cr3: u64,
        cr4: u64,
        efer: u64,
        max_phys_bits: u8,
    ) -> GuestPaging {
        GuestPaging {
            mode: PagingMode::from_registers(cr0, cr4, efer),
            cr3,
            write_protect: cr0 & 1 << 16 != 0,
            no_execute: efer & 1 << 11 != 0,
            max_phys_bits,
        }
    }

    /// Translates `gva` for `access` the way the CPU would. Accessed and
    /// dirty bits are not set: this walker only reads guest memory.
    pub fn translate(
        &self,
        mem: &impl GuestPhysRead,
        gva: Gva,
        access: Access,
    ) -> Result<GuestTranslation, WalkError> {
        match self.mode {
            PagingMode::Disabled => Ok(GuestTranslation::unrestricted(Gpa(gva.0))),
            PagingMode::Level4 => self.walk_level4(mem, gva, access),
            mode => Err(WalkError::UnsupportedMode(mode)),
        }
    }

    /// CR3 -> PML4E -> PDPTE -> PDE -> PTE (SDM Vol. 3A 4.5.4). Not-present
    /// and reserved bits end the walk at once; access rights are checked on
    /// the combined rights of all levels once the walk reaches a page (4.6).
    fn walk_level4(&self, mem: &impl GuestPhysRead, gva: Gva, access: Access) -> Walk {
        // Canonical: bits 63:47 all equal to bit 47.
        if ((gva.0 as i64) << 16 >> 16) as u64 != gva.0 {
            return Err(WalkError::NonCanonical);
        }
        let mut table = self.cr3 & ADDRESS_MASK & self.phys_mask();
        let mut rights = GuestTranslation::unrestricted(Gpa(0));
        let mut level = 4;
        loop {
            let shift = 12 + 9 * (level - 1);
            let entry_gpa = Gpa(table + ((gva.0 >> shift) & 0x1ff) * 8);
            let entry = mem
                .read_u64(entry_gpa)
                .ok_or(WalkError::Unreadable(entry_gpa))?;
            if entry & PRESENT == 0 {
                return Err(self.fault(access, 0));
            }
            if entry & self.reserved_bits(entry, level) != 0 {
                return Err(self.fault(access, PageFaultCode::PRESENT | PageFaultCode::RESERVED));
            }
            rights.writable &= entry & WRITABLE != 0;
            rights.user &= entry & USER != 0;
            rights.executable &= !self.no_execute || entry & NO_EXECUTE == 0;
            let page = match level {
                1 => Some(PageSize::Size4K),
                2 | 3 if entry & PAGE_SIZE != 0 => PageSize::at_level(level),
                _ => None,
            };
            if let Some(size) = page {
                let base = entry & ADDRESS_MASK & !(size.bytes() - 1);
                rights.gpa = Gpa(base | (gva.0 & (size.bytes() - 1)));
                rights.size = size;
                return self.check_rights(rights, access);
            }
            table = entry & ADDRESS_MASK;
            level -= 1;
        }
    }

    /// Access rights (SDM Vol. 3A 4.6.1), without SMEP, SMAP or protection keys.
    fn check_rights(&self, rights: GuestTranslation, access: Access) -> Walk {
        let denied = (access.user && !rights.user)
            || (access.write && !rights.writable && (access.user || self.write_protect))
            || (access.fetch && !rights.executable);
        if denied {
            Err(self.fault(access, PageFaultCode::PRESENT))
        } else {
            Ok(rights)
        }
    }

    /// Reserved bits of an entry at `level` (SDM Vol. 3A 4.5.4 tables 4-15 to
    /// 4-20): address bits above MAXPHYADDR, XD without EFER.NXE, PS in a
    /// PML4E, and the low address bits of a large page.
    fn reserved_bits(&self, entry: u64, level: u32) -> u64 {
        let mut reserved = ADDRESS_MASK & !self.phys_mask();
        if !self.no_execute {
            reserved |= NO_EXECUTE;
        }
        match level {
            4 => reserved |= PAGE_SIZE,
            3 if entry & PAGE_SIZE != 0 => reserved |= RESERVED_1G,
            2 if entry & PAGE_SIZE != 0 => reserved |= RESERVED_2M,
            _ => {}
        }
        reserved
    }

    fn phys_mask(&self) -> u64 {
        (1u64 << self.max_phys_bits.min(52)) - 1
    }

    /// The #PF for `access`. I/D is reported only with EFER.NXE, as AMD
    /// documents (APM Vol. 2 8.4.2) and older SDMs did; SMEP is not modelled.
    fn fault(&self, access: Access, mut code: u32) -> WalkError {
        if access.write {
            code |= PageFaultCode::WRITE;
        }
        if access.user {
            code |= PageFaultCode::USER;
        }
        if access.fetch && self.no_execute {
            code |= PageFaultCode::FETCH;
        }
        WalkError::PageFault(PageFaultCode(code))
    }
}
