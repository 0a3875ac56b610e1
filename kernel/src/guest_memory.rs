//! Checked access to a domain's memory by guest-physical and guest-virtual address.

use ept::{Access, Gpa, GuestPaging, GuestPhysRead, Gva, Perms};
use vcpu::{AddressSpace, Paging};

/// Why a guest address could not be used; hypercalls turn it into -EFAULT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct Fault;

/// The guest's MAXPHYADDR as the walker checks reserved bits against it:
/// the architectural maximum, so valid entries are never refused.
const MAX_PHYS_BITS: u8 = 52;
const PAGE: u64 = 4096;

/// A domain's memory, reached only through its second-level tables: what
/// they do not map (or map without the needed permission) does not exist.
pub struct GuestMemory<'a> {
    space: &'a dyn AddressSpace,
}

impl<'a> GuestMemory<'a> {
    pub fn new(space: &'a dyn AddressSpace) -> Self {
        GuestMemory { space }
    }

    /// The host bytes behind `len` bytes at `gpa`, all within one 4 KiB page.
    fn host_bytes(&self, gpa: u64, len: usize, write: bool) -> Result<*mut u8, Fault> {
        debug_assert!(gpa % PAGE + len as u64 <= PAGE);
        let t = self.space.translate(Gpa(gpa)).ok_or(Fault)?;
        let wanted = if write { Perms::RW } else { Perms::R };
        if (wanted.write && !t.perms.write) || !t.perms.read {
            return Err(Fault);
        }
        Ok(t.hpa.0 as *mut u8)
    }

    /// Copies from guest-physical memory.
    pub fn read_gpa(&self, gpa: u64, buf: &mut [u8]) -> Result<(), Fault> {
        self.chunks(gpa, buf.len(), |at, off, n| {
            let src = self.host_bytes(at, n, false)?;
            // SAFETY: `src` is `n` bytes of this domain's RAM within one page,
            // identity-mapped; `buf` is distinct hypervisor memory.
            unsafe { core::ptr::copy_nonoverlapping(src, buf[off..].as_mut_ptr(), n) };
            Ok(())
        })
    }

    /// Copies into guest-physical memory.
    pub fn write_gpa(&self, gpa: u64, data: &[u8]) -> Result<(), Fault> {
        self.chunks(gpa, data.len(), |at, off, n| {
            let dst = self.host_bytes(at, n, true)?;
            // SAFETY: as in `read_gpa`, in the other direction.
            unsafe { core::ptr::copy_nonoverlapping(data[off..].as_ptr(), dst, n) };
            Ok(())
        })
    }

    /// Splits `[addr, addr+len)` at page boundaries: `each(address, offset, length)`.
    fn chunks(
        &self,
        addr: u64,
        len: usize,
        mut each: impl FnMut(u64, usize, usize) -> Result<(), Fault>,
    ) -> Result<(), Fault> {
        let mut off = 0;
        while off < len {
            let at = addr.checked_add(off as u64).ok_or(Fault)?;
            let n = ((PAGE - at % PAGE) as usize).min(len - off);
            each(at, off, n)?;
            off += n;
        }
        Ok(())
    }

    fn walk(&self, paging: &Paging, gva: u64, access: Access) -> Result<u64, Fault> {
        let walker = GuestPaging::from_registers(
            paging.cr0,
            paging.cr3,
            paging.cr4,
            paging.efer,
            MAX_PHYS_BITS,
        );
        let t = walker
            .translate(self, Gva(gva), access)
            .map_err(|_| Fault)?;
        Ok(t.gpa.0)
    }

    /// The guest-physical address behind `gva` for an instruction fetch, if mapped.
    pub fn gpa_of_code(&self, paging: &Paging, gva: u64) -> Option<u64> {
        self.walk(
            paging,
            gva,
            Access {
                fetch: true,
                ..Access::default()
            },
        )
        .ok()
    }

    /// The guest-physical address behind `gva` for a write, if mapped.
    pub fn gpa_of(&self, paging: &Paging, gva: u64) -> Option<u64> {
        self.walk(
            paging,
            gva,
            Access {
                write: true,
                ..Access::default()
            },
        )
        .ok()
    }

    /// The guest-physical address behind `gva` for a data access by an
    /// emulated instruction (CPL 3 walks as a user access), if the guest's
    /// page tables allow it.
    pub fn gpa_of_data(&self, paging: &Paging, gva: u64, write: bool, user: bool) -> Option<u64> {
        self.walk(
            paging,
            gva,
            Access {
                write,
                user,
                ..Access::default()
            },
        )
        .ok()
    }

    /// Copies from guest-virtual memory, walking the guest's page tables page by page.
    pub fn read_gva(
        &self,
        paging: &Paging,
        user: bool,
        gva: u64,
        buf: &mut [u8],
    ) -> Result<(), Fault> {
        let access = Access {
            write: false,
            user,
            ..Access::default()
        };
        self.chunks(gva, buf.len(), |at, off, n| {
            let gpa = self.walk(paging, at, access)?;
            self.read_gpa(gpa, &mut buf[off..off + n])
        })
    }

    /// Copies into guest-virtual memory, with the guest's write-permission checks.
    pub fn write_gva(
        &self,
        paging: &Paging,
        user: bool,
        gva: u64,
        data: &[u8],
    ) -> Result<(), Fault> {
        let access = Access {
            write: true,
            user,
            ..Access::default()
        };
        self.chunks(gva, data.len(), |at, off, n| {
            let gpa = self.walk(paging, at, access)?;
            self.write_gpa(gpa, &data[off..off + n])
        })
    }
}

impl GuestPhysRead for GuestMemory<'_> {
    fn read_u64(&self, gpa: Gpa) -> Option<u64> {
        if !gpa.0.is_multiple_of(8) {
            return None;
        }
        let mut bytes = [0u8; 8];
        self.read_gpa(gpa.0, &mut bytes).ok()?;
        Some(u64::from_le_bytes(bytes))
    }
}

impl vcpu::GuestCode for GuestMemory<'_> {
    fn fetch(&self, paging: &Paging, linear: u64, buf: &mut [u8]) -> bool {
        let access = Access {
            fetch: true,
            ..Access::default()
        };
        self.chunks(linear, buf.len(), |at, off, n| {
            let gpa = self.walk(paging, at, access)?;
            self.read_gpa(gpa, &mut buf[off..off + n])
        })
        .is_ok()
    }
}
