//! A domain's guest-physical address space, in whichever second-level format (EPT or NPT) its backend uses.

use crate::FrameAlloc;
use ept::{
    Flush, Format, Gpa, Hpa, MapError, MemType, PageSize, Perms, SecondLevel, TableMemory,
    Translation,
};

/// The core maps and queries guest memory through this; only the backend
/// that created it knows the entry format. A `Flush::Needed` result must be
/// followed by `Vcpu::flush_second_level` on every vCPU of the domain.
pub trait AddressSpace {
    /// The PML4 frame, for `VcpuConfig::second_level_root`.
    fn root(&self) -> u64;
    fn map(
        &mut self,
        frames: &mut dyn FrameAlloc,
        gpa: Gpa,
        hpa: Hpa,
        size: PageSize,
        perms: Perms,
        mem_type: MemType,
    ) -> Result<Flush, MapError>;
    fn unmap(
        &mut self,
        frames: &mut dyn FrameAlloc,
        gpa: Gpa,
        size: PageSize,
    ) -> Result<Flush, MapError>;
    fn translate(&self, gpa: Gpa) -> Option<Translation>;
    /// Frees every table frame. No vCPU may use the tables any more.
    fn destroy(self: alloc::boxed::Box<Self>, frames: &mut dyn FrameAlloc);
}

/// Table frames in the hypervisor's identity map: a frame's physical
/// address is also where the hypervisor reads and writes it.
pub struct IdentityTables<'a> {
    frames: Option<&'a mut dyn FrameAlloc>,
}

impl<'a> IdentityTables<'a> {
    pub fn new(frames: &'a mut dyn FrameAlloc) -> Self {
        IdentityTables {
            frames: Some(frames),
        }
    }

    /// For walks only: allocating through it fails.
    pub fn read_only() -> Self {
        IdentityTables { frames: None }
    }
}

impl TableMemory for IdentityTables<'_> {
    fn alloc_zeroed_table(&mut self) -> Option<Hpa> {
        self.frames.as_mut()?.alloc_zeroed(1).map(Hpa)
    }

    fn free_table(&mut self, table: Hpa) {
        if let Some(frames) = self.frames.as_mut() {
            frames.free(table.0, 1);
        }
    }

    fn table(&self, table: Hpa) -> &[u64; 512] {
        // SAFETY: `table` came from `alloc_zeroed_table`: a whole, aligned,
        // identity-mapped frame that only this address space uses.
        unsafe { &*(table.0 as *const [u64; 512]) }
    }

    fn table_mut(&mut self, table: Hpa) -> &mut [u64; 512] {
        // SAFETY: as above; `&mut self` makes the access exclusive.
        unsafe { &mut *(table.0 as *mut [u64; 512]) }
    }
}

impl<F: Format> AddressSpace for SecondLevel<F> {
    fn root(&self) -> u64 {
        SecondLevel::root(self).0
    }

    fn map(
        &mut self,
        frames: &mut dyn FrameAlloc,
        gpa: Gpa,
        hpa: Hpa,
        size: PageSize,
        perms: Perms,
        mem_type: MemType,
    ) -> Result<Flush, MapError> {
        SecondLevel::map(
            self,
            &mut IdentityTables::new(frames),
            gpa,
            hpa,
            size,
            perms,
            mem_type,
        )
    }

    fn unmap(
        &mut self,
        frames: &mut dyn FrameAlloc,
        gpa: Gpa,
        size: PageSize,
    ) -> Result<Flush, MapError> {
        SecondLevel::unmap(self, &mut IdentityTables::new(frames), gpa, size)
    }

    fn translate(&self, gpa: Gpa) -> Option<Translation> {
        SecondLevel::translate(self, &IdentityTables::read_only(), gpa)
    }

    fn destroy(self: alloc::boxed::Box<Self>, frames: &mut dyn FrameAlloc) {
        SecondLevel::destroy(*self, &mut IdentityTables::new(frames));
    }
}
