//! A domain's EPT tables, limited to what this CPU's EPT can express (SDM Vol. 3C 29.3; Vol. 3D A.10).

use crate::controls::{EPT_EXECUTE_ONLY, EPT_PAGES_1G, EPT_PAGES_2M};
use alloc::boxed::Box;
use ept::{Flush, Gpa, Hpa, MapError, MemType, PageSize, Perms, Translation};
use vcpu::{AddressSpace, FrameAlloc};

/// The EPT features that decide which mappings are possible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EptFeatures {
    pub execute_only: bool,
    pub pages_2m: bool,
    pub pages_1g: bool,
}

impl EptFeatures {
    /// From IA32_VMX_EPT_VPID_CAP bits 0, 16 and 17 (SDM Vol. 3D A.10).
    pub fn from_capability(ept_vpid: u64) -> EptFeatures {
        EptFeatures {
            execute_only: ept_vpid & EPT_EXECUTE_ONLY != 0,
            pages_2m: ept_vpid & EPT_PAGES_2M != 0,
            pages_1g: ept_vpid & EPT_PAGES_1G != 0,
        }
    }

    /// The largest page size no bigger than `size` that the CPU maps with
    /// one entry (a PDE or PDPTE with bit 7 set is otherwise an EPT
    /// misconfiguration, SDM Vol. 3C 29.3.3.1).
    pub fn page_size(&self, size: PageSize) -> PageSize {
        match size {
            PageSize::Size1G if self.pages_1g => PageSize::Size1G,
            PageSize::Size1G | PageSize::Size2M if self.pages_2m => PageSize::Size2M,
            _ => PageSize::Size4K,
        }
    }
}

/// EPT tables (`S`, normally `ept::EptTable`) that map a page size the CPU
/// lacks as 512 (or 512 x 512) smaller pages, and refuse execute-only
/// pages where the CPU cannot express them.
pub struct EptSpace<S> {
    tables: S,
    features: EptFeatures,
}

impl<S: AddressSpace> EptSpace<S> {
    pub fn new(tables: S, features: EptFeatures) -> Self {
        EptSpace { tables, features }
    }
}

impl<S: AddressSpace> AddressSpace for EptSpace<S> {
    fn root(&self) -> u64 {
        self.tables.root()
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
        if perms == Perms::X && !self.features.execute_only {
            return Err(MapError::UnsupportedPerms(perms));
        }
        let step = self.features.page_size(size);
        if step == size {
            return self.tables.map(frames, gpa, hpa, size, perms, mem_type);
        }
        if !gpa.0.is_multiple_of(size.bytes()) || !hpa.0.is_multiple_of(size.bytes()) {
            return Err(MapError::Misaligned);
        }
        // A failure part-way leaves the pages before it mapped, as a
        // failed `map` may leave a larger page split.
        let mut flush = Flush::None;
        for offset in (0..size.bytes()).step_by(step.bytes() as usize) {
            let f = self.tables.map(
                frames,
                Gpa(gpa.0 + offset),
                Hpa(hpa.0 + offset),
                step,
                perms,
                mem_type,
            )?;
            flush = flush.merge(f);
        }
        Ok(flush)
    }

    /// Unmapping a size the CPU lacks is fine: the tables remove whatever
    /// smaller pages lie under it.
    fn unmap(
        &mut self,
        frames: &mut dyn FrameAlloc,
        gpa: Gpa,
        size: PageSize,
    ) -> Result<Flush, MapError> {
        self.tables.unmap(frames, gpa, size)
    }

    fn translate(&self, gpa: Gpa) -> Option<Translation> {
        self.tables.translate(gpa)
    }

    fn destroy(self: Box<Self>, frames: &mut dyn FrameAlloc) {
        let this = *self;
        Box::new(this.tables).destroy(frames);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Records every map call; never touches memory.
    #[derive(Default)]
    struct Recorder {
        maps: Vec<(u64, u64, PageSize)>,
    }

    impl AddressSpace for Recorder {
        fn root(&self) -> u64 {
            0x1000
        }
        fn map(
            &mut self,
            _: &mut dyn FrameAlloc,
            gpa: Gpa,
            hpa: Hpa,
            size: PageSize,
            _: Perms,
            _: MemType,
        ) -> Result<Flush, MapError> {
            self.maps.push((gpa.0, hpa.0, size));
            Ok(Flush::None)
        }
        fn unmap(
            &mut self,
            _: &mut dyn FrameAlloc,
            _: Gpa,
            _: PageSize,
        ) -> Result<Flush, MapError> {
            Ok(Flush::Needed)
        }
        fn translate(&self, _: Gpa) -> Option<Translation> {
            None
        }
        fn destroy(self: Box<Self>, _: &mut dyn FrameAlloc) {}
    }

    struct NoFrames;
    impl FrameAlloc for NoFrames {
        fn alloc_zeroed(&mut self, _: usize) -> Option<u64> {
            None
        }
        fn free(&mut self, _: u64, _: usize) {}
    }

    const ALL: EptFeatures = EptFeatures {
        execute_only: true,
        pages_2m: true,
        pages_1g: true,
    };

    fn map(
        f: EptFeatures,
        gpa: u64,
        hpa: u64,
        size: PageSize,
        perms: Perms,
    ) -> Result<Vec<(u64, u64, PageSize)>, MapError> {
        let mut s = EptSpace::new(Recorder::default(), f);
        let _ = s.map(
            &mut NoFrames,
            Gpa(gpa),
            Hpa(hpa),
            size,
            perms,
            MemType::WriteBack,
        )?;
        Ok(s.tables.maps)
    }

    #[test]
    fn features_from_capability() {
        assert_eq!(EptFeatures::from_capability(0x0f01_0633_4141), ALL);
        let none = EptFeatures::from_capability(0x4040);
        assert_eq!(none.page_size(PageSize::Size1G), PageSize::Size4K);
        assert!(!none.execute_only);
    }

    #[test]
    fn supported_sizes_pass_through() {
        let m = map(ALL, 0x4000_0000, 0x8000_0000, PageSize::Size1G, Perms::RWX).unwrap();
        assert_eq!(m, [(0x4000_0000, 0x8000_0000, PageSize::Size1G)]);
    }

    #[test]
    fn one_gib_split_into_two_mib() {
        let f = EptFeatures {
            pages_1g: false,
            ..ALL
        };
        let m = map(f, 0x4000_0000, 0x8000_0000, PageSize::Size1G, Perms::RW).unwrap();
        assert_eq!(m.len(), 512);
        assert_eq!(m[0], (0x4000_0000, 0x8000_0000, PageSize::Size2M));
        assert_eq!(m[511], (0x7fe0_0000, 0xbfe0_0000, PageSize::Size2M));
    }

    #[test]
    fn two_mib_split_into_four_kib() {
        let f = EptFeatures {
            pages_2m: false,
            pages_1g: false,
            ..ALL
        };
        let m = map(f, 0x20_0000, 0x60_0000, PageSize::Size2M, Perms::RW).unwrap();
        assert_eq!(m.len(), 512);
        assert!(m.iter().all(|&(_, _, s)| s == PageSize::Size4K));
        assert_eq!(m[1], (0x20_1000, 0x60_1000, PageSize::Size4K));
    }

    #[test]
    fn misaligned_split_refused() {
        let f = EptFeatures {
            pages_2m: false,
            ..ALL
        };
        assert_eq!(
            map(f, 0x20_1000, 0, PageSize::Size2M, Perms::R),
            Err(MapError::Misaligned)
        );
    }

    #[test]
    fn execute_only_needs_the_feature() {
        let f = EptFeatures {
            execute_only: false,
            ..ALL
        };
        assert_eq!(
            map(f, 0, 0, PageSize::Size4K, Perms::X),
            Err(MapError::UnsupportedPerms(Perms::X))
        );
        assert!(map(ALL, 0, 0, PageSize::Size4K, Perms::X).is_ok());
    }
}
