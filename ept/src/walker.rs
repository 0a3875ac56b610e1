//! The guest page-table walker: guest-virtual to guest-physical through the guest's own tables, with the CPU's checks.

use crate::addr::{Gpa, Gva};
use crate::format::ADDRESS_MASK;
use crate::memory::GuestPhysRead;

// Paging-structure entry bits, the same in every mode where they exist
// (SDM Vol. 3A 4.3 tables 4-4 to 4-6, 4.4.2 tables 4-9 to 4-11, 4.5.4
// tables 4-15 to 4-20).
const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const PAGE_SIZE: u64 = 1 << 7;
const NO_EXECUTE: u64 = 1 << 63;
/// Bits 29:13 of a PDPTE mapping 1 GiB and bits 20:13 of a PDE mapping 2 MiB
/// are reserved (bit 12 is PAT).
const RESERVED_1G: u64 = 0x3fff_e000;
const RESERVED_2M: u64 = 0x001f_e000;
/// PAE PDPTE bits 2:1 and 8:6 are reserved: a PDPTE has no R/W, U/S, D or
/// PS (SDM Vol. 3A 4.4.1, table 4-8, which reserves bit 5 too). Bit 5 is
/// let through as the accessed bit: QEMU's emulated CPU sets it in the
/// PDPTEs it walks (seen under TCG with `-cpu EPYC`: a PDPTE written as
/// 0x144001 read back 0x144021), and a walker refusing what the guest's
/// own CPU accepts would fault every PAE guest there.
const PDPTE_RESERVED: u64 = 0x1c6;
/// 32-bit paging: bits 31:12 of an entry address the next table or page
/// (SDM Vol. 3A 4.3, tables 4-3 to 4-6).
const ADDRESS_32: u64 = 0xffff_f000;
/// 32-bit paging: bits 31:22 of a PDE mapping 4 MiB (table 4-4).
const ADDRESS_4M: u64 = 0xffc0_0000;
/// PAE paging: CR3 bits 31:5 locate the PDPT (SDM Vol. 3A 4.4.1, table 4-7).
const PDPT_32: u64 = 0xffff_ffe0;

/// Whether a PAE PDPTE is present with a reserved bit set (bits 2:1, 8:6,
/// XD, or address bits from `max_phys_bits` up): what makes the MOV to CR0,
/// CR3 or CR4 that loads it raise #GP (SDM Vol. 3A 4.4.1), and the walk
/// through it fault.
pub fn pae_pdpte_invalid(pdpte: u64, max_phys_bits: u8) -> bool {
    let above_max_phys = ADDRESS_MASK & !((1u64 << max_phys_bits.min(52)) - 1);
    pdpte & PRESENT != 0 && pdpte & (PDPTE_RESERVED | NO_EXECUTE | above_max_phys) != 0
}

/// The guest-physical address of the 4 PAE PDPTEs: CR3[31:5] (SDM Vol. 3A
/// 4.4.1, table 4-7). They are 32 bytes in one page.
pub fn pae_pdpt(cr3: u64) -> Gpa {
    Gpa(cr3 & PDPT_32)
}

/// How the guest translates linear addresses (SDM Vol. 3A 4.1.1, table 4-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingMode {
    /// CR0.PG = 0: linear addresses are physical.
    Disabled,
    /// 32-bit paging (CR4.PAE = 0): two levels of 4-byte entries, 4 MiB
    /// pages with CR4.PSE (SDM Vol. 3A 4.3).
    Bits32,
    /// PAE paging (EFER.LMA = 0): four PDPTEs, then two levels of 8-byte
    /// entries (SDM Vol. 3A 4.4).
    Pae,
    /// 4-level long-mode paging (SDM Vol. 3A 4.5).
    Level4,
    /// 5-level long-mode paging (CR4.LA57): a PML5 above the PML4.
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

/// The size of the guest page a translation lands in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GuestPageSize {
    Size4K,
    /// A PAE or long-mode PDE with PS.
    Size2M,
    /// A 32-bit PDE with PS under CR4.PSE.
    Size4M,
    /// A long-mode PDPTE with PS.
    Size1G,
}

impl GuestPageSize {
    /// Size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            GuestPageSize::Size4K => 1 << 12,
            GuestPageSize::Size2M => 1 << 21,
            GuestPageSize::Size4M => 1 << 22,
            GuestPageSize::Size1G => 1 << 30,
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
    /// EFER.NXE: bit 63 of an entry means execute-disable instead of reserved
    /// (PAE and long mode; 32-bit paging has no execute-disable).
    pub no_execute: bool,
    /// CR4.PSE: a 32-bit PDE with PS maps 4 MiB (PAE and long mode ignore it).
    pub large_pages: bool,
    /// The guest's MAXPHYADDR (CPUID 8000_0008h EAX[7:0]); entry address bits
    /// from here up to 51 are reserved, and a 4 MiB page's PSE-36 bits
    /// reach at most bit min(MAXPHYADDR, 40) - 1.
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
    /// Not a linear address of the mode: in long mode, bits 63:47 (63:56
    /// with 5-level paging) are not all equal, and the CPU raises #GP or #SS,
    /// not #PF (SDM Vol. 3A 3.3.7.1); with 32-bit or PAE paging, an address
    /// at or above 4 GiB, which such a guest cannot form.
    NonCanonical,
    /// A paging-structure entry lies at this guest-physical address, which is
    /// not guest RAM. No architectural fault fits; the caller decides.
    Unreadable(Gpa),
}

/// Where a guest-virtual address leads and what the walk allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestTranslation {
    pub gpa: Gpa,
    /// The guest page size (4 KiB when paging is off).
    pub size: GuestPageSize,
    /// R/W set at every level.
    pub writable: bool,
    /// U/S set at every level.
    pub user: bool,
    /// No XD at any level (always true when EFER.NXE is clear, and with
    /// 32-bit paging).
    pub executable: bool,
}

impl GuestTranslation {
    /// A 4 KiB page with every right, before any level restricts it.
    const fn unrestricted(gpa: Gpa) -> GuestTranslation {
        GuestTranslation {
            gpa,
            size: GuestPageSize::Size4K,
            writable: true,
            user: true,
            executable: true,
        }
    }

    /// Restricts the rights to those of one more entry's R/W and U/S.
    fn restrict(&mut self, entry: u64) {
        self.writable &= entry & WRITABLE != 0;
        self.user &= entry & USER != 0;
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
            large_pages: cr4 & 1 << 4 != 0,
            max_phys_bits,
        }
    }

    /// Translates `gva` for `access` the way the CPU would. Accessed and
    /// dirty bits are not set: this walker only reads guest memory. PAE
    /// PDPTEs are read from memory at each walk, where the CPU uses the
    /// copies it loaded with CR3 (SDM Vol. 3A 4.4.1): a guest that changes
    /// its PDPT without reloading CR3 sees the new entries here.
    pub fn translate(
        &self,
        mem: &impl GuestPhysRead,
        gva: Gva,
        access: Access,
    ) -> Result<GuestTranslation, WalkError> {
        match self.mode {
            PagingMode::Disabled => Ok(GuestTranslation::unrestricted(Gpa(gva.0))),
            PagingMode::Bits32 => self.walk_32bit(mem, linear_32(gva)?, access),
            PagingMode::Pae => self.walk_pae(mem, linear_32(gva)?, access),
            PagingMode::Level4 => self.walk_long(mem, gva, access, 4),
            PagingMode::Level5 => self.walk_long(mem, gva, access, 5),
        }
    }

    /// CR3 -> PDE -> PTE with 4-byte entries (SDM Vol. 3A 4.3). Nothing is
    /// reserved but a 4 MiB page's bit 21 and its PSE-36 address bits at or
    /// above MAXPHYADDR; there is no execute-disable.
    fn walk_32bit(&self, mem: &impl GuestPhysRead, linear: u32, access: Access) -> Walk {
        let mut rights = GuestTranslation::unrestricted(Gpa(0));
        let pde_gpa = Gpa((self.cr3 & ADDRESS_32) + u64::from(linear >> 22) * 4);
        let pde = read_32(mem, pde_gpa)?;
        if pde & PRESENT == 0 {
            return Err(self.fault(access, 0));
        }
        rights.restrict(pde);
        if self.large_pages && pde & PAGE_SIZE != 0 {
            // Table 4-4: bits (M-20):13 are physical bits (M-1):32 (PSE-36),
            // bits 21:(M-19) are reserved, M = min(MAXPHYADDR, 40).
            let m = u32::from(self.max_phys_bits.clamp(32, 40));
            let reserved = (1 << 22) - (1 << (m - 19));
            if pde & reserved != 0 {
                return Err(self.fault(access, PageFaultCode::PRESENT | PageFaultCode::RESERVED));
            }
            let high = (pde >> 13) & 0xff;
            rights.gpa = Gpa(high << 32 | pde & ADDRESS_4M | u64::from(linear) & 0x3f_ffff);
            rights.size = GuestPageSize::Size4M;
            return self.check_rights(rights, access);
        }
        let pte_gpa = Gpa((pde & ADDRESS_32) + u64::from(linear >> 12 & 0x3ff) * 4);
        let pte = read_32(mem, pte_gpa)?;
        if pte & PRESENT == 0 {
            return Err(self.fault(access, 0));
        }
        rights.restrict(pte);
        rights.gpa = Gpa(pte & ADDRESS_32 | u64::from(linear) & 0xfff);
        self.check_rights(rights, access)
    }

    /// CR3 -> PDPTE -> PDE -> PTE (SDM Vol. 3A 4.4). The PDPTE, one of four
    /// at CR3[31:5], only says present and where the page directory is: it
    /// has no rights bits, and any reserved bit in a present one (bits 2:1,
    /// 8:6, XD, address bits from MAXPHYADDR) is a reserved-bit fault. The
    /// PDE and PTE are long mode's.
    fn walk_pae(&self, mem: &impl GuestPhysRead, linear: u32, access: Access) -> Walk {
        let entry_gpa = Gpa(pae_pdpt(self.cr3).0 + u64::from(linear >> 30) * 8);
        let pdpte = mem
            .read_u64(entry_gpa)
            .ok_or(WalkError::Unreadable(entry_gpa))?;
        if pdpte & PRESENT == 0 {
            return Err(self.fault(access, 0));
        }
        if pae_pdpte_invalid(pdpte, self.max_phys_bits) {
            return Err(self.fault(access, PageFaultCode::PRESENT | PageFaultCode::RESERVED));
        }
        let rights = GuestTranslation::unrestricted(Gpa(0));
        self.walk_tables(
            mem,
            u64::from(linear),
            access,
            pdpte & ADDRESS_MASK,
            2,
            rights,
        )
    }

    /// CR3 -> (PML5E ->) PML4E -> PDPTE -> PDE -> PTE (SDM Vol. 3A 4.5.4),
    /// after the canonical check at 48 or 57 bits.
    fn walk_long(&self, mem: &impl GuestPhysRead, gva: Gva, access: Access, levels: u32) -> Walk {
        // Canonical: the bits above the top translated bit all equal it.
        let unused = 64 - (12 + 9 * levels);
        if ((gva.0 as i64) << unused >> unused) as u64 != gva.0 {
            return Err(WalkError::NonCanonical);
        }
        let table = self.cr3 & ADDRESS_MASK & self.phys_mask();
        let rights = GuestTranslation::unrestricted(Gpa(0));
        self.walk_tables(mem, gva.0, access, table, levels, rights)
    }

    /// The 8-byte-entry tables from `level` down (4.4.2 and 4.5.4 share
    /// their format). Not-present and reserved bits end the walk at once;
    /// access rights are checked on the combined rights of all levels once
    /// the walk reaches a page (4.6).
    fn walk_tables(
        &self,
        mem: &impl GuestPhysRead,
        gva: u64,
        access: Access,
        mut table: u64,
        mut level: u32,
        mut rights: GuestTranslation,
    ) -> Walk {
        loop {
            let shift = 12 + 9 * (level - 1);
            let entry_gpa = Gpa(table + ((gva >> shift) & 0x1ff) * 8);
            let entry = mem
                .read_u64(entry_gpa)
                .ok_or(WalkError::Unreadable(entry_gpa))?;
            if entry & PRESENT == 0 {
                return Err(self.fault(access, 0));
            }
            if entry & self.reserved_bits(entry, level) != 0 {
                return Err(self.fault(access, PageFaultCode::PRESENT | PageFaultCode::RESERVED));
            }
            rights.restrict(entry);
            rights.executable &= !self.no_execute || entry & NO_EXECUTE == 0;
            let page = match level {
                1 => Some(GuestPageSize::Size4K),
                2 if entry & PAGE_SIZE != 0 => Some(GuestPageSize::Size2M),
                3 if entry & PAGE_SIZE != 0 => Some(GuestPageSize::Size1G),
                _ => None,
            };
            if let Some(size) = page {
                let base = entry & ADDRESS_MASK & !(size.bytes() - 1);
                rights.gpa = Gpa(base | (gva & (size.bytes() - 1)));
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

    /// Reserved bits of an 8-byte entry at `level` (SDM Vol. 3A 4.4.2 tables
    /// 4-9 to 4-11, 4.5.4 tables 4-15 to 4-20): address bits above
    /// MAXPHYADDR, XD without EFER.NXE, PS in a PML4E or PML5E, and the low
    /// address bits of a large page.
    fn reserved_bits(&self, entry: u64, level: u32) -> u64 {
        let mut reserved = self.above_max_phys();
        if !self.no_execute {
            reserved |= NO_EXECUTE;
        }
        match level {
            4 | 5 => reserved |= PAGE_SIZE,
            3 if entry & PAGE_SIZE != 0 => reserved |= RESERVED_1G,
            2 if entry & PAGE_SIZE != 0 => reserved |= RESERVED_2M,
            _ => {}
        }
        reserved
    }

    fn phys_mask(&self) -> u64 {
        (1u64 << self.max_phys_bits.min(52)) - 1
    }

    /// Address bits of an 8-byte entry from MAXPHYADDR up to 51.
    fn above_max_phys(&self) -> u64 {
        ADDRESS_MASK & !self.phys_mask()
    }

    /// The #PF for `access`. I/D is reported only with EFER.NXE under PAE or
    /// long-mode paging, as the SDM says without SMEP (Vol. 3A 4.7) and AMD
    /// documents (APM Vol. 2 8.4.2); SMEP is not modelled.
    fn fault(&self, access: Access, mut code: u32) -> WalkError {
        if access.write {
            code |= PageFaultCode::WRITE;
        }
        if access.user {
            code |= PageFaultCode::USER;
        }
        if access.fetch && self.no_execute && self.mode != PagingMode::Bits32 {
            code |= PageFaultCode::FETCH;
        }
        WalkError::PageFault(PageFaultCode(code))
    }
}

/// A linear address of 32-bit or PAE paging: one the guest can form, below 4 GiB.
fn linear_32(gva: Gva) -> Result<u32, WalkError> {
    u32::try_from(gva.0).map_err(|_| WalkError::NonCanonical)
}

/// A 4-byte entry of 32-bit paging, widened so the 8-byte bit constants apply.
fn read_32(mem: &impl GuestPhysRead, gpa: Gpa) -> Result<u64, WalkError> {
    mem.read_u32(gpa)
        .map(u64::from)
        .ok_or(WalkError::Unreadable(gpa))
}
