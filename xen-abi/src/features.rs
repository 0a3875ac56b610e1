//! `XENFEAT_*` bits (public/features.h), `xen_feature_info` (public/version.h) and what a PVH domU is told.

use core::mem::offset_of;
use static_assertions::{assert_eq_size, const_assert_eq};

// XENFEAT_* (features.h): bit numbers in submap 0.
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
pub const XENFEAT_WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
/// GFN == PFN everywhere; grant frames are mapped with add_to_physmap.
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;
pub const XENFEAT_PAE_PGDIR_ABOVE_4GB: u32 = 4;
pub const XENFEAT_MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
pub const XENFEAT_HIGHMEM_ASSIST: u32 = 6;
pub const XENFEAT_GNTTAB_MAP_AVAIL_BITS: u32 = 7;
/// `HVM_PARAM_CALLBACK_IRQ` type 2 (vector) is available.
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
/// The pvclock in `vcpu_info.time` may be used (Linux's Xen clocksource/clockevent).
pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;
/// Interrupts go through PIRQs/PHYSDEVOP. Never for a PVH domU.
pub const XENFEAT_HVM_PIRQS: u32 = 10;
/// The domain is dom0. Never for a domU.
pub const XENFEAT_DOM0: u32 = 11;
pub const XENFEAT_GRANT_MAP_IDENTITY: u32 = 12;
pub const XENFEAT_MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
pub const XENFEAT_ARM_SMCCC_SUPPORTED: u32 = 14;
/// Declared by the guest (ELF note): it takes the RSDP from start info.
pub const XENFEAT_LINUX_RSDP_UNRESTRICTED: u32 = 15;
pub const XENFEAT_NOT_DIRECT_MAPPED: u32 = 16;
pub const XENFEAT_DIRECT_MAPPED: u32 = 17;
pub const XENFEAT_RUNSTATE_PHYS_AREA: u32 = 18;
pub const XENFEAT_VCPU_TIME_PHYS_AREA: u32 = 19;
pub const XENFEAT_DM_MSIX_ALL_WRITES: u32 = 20;
/// `XENFEAT_NR_SUBMAPS` (features.h): only submap 0 exists; others are -EINVAL.
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

/// Submap 0 for a PVH domU: what Xen reports (xen/common/kernel.c) minus the
/// features Xenolith does not implement (vnode, the *_phys_area vCPU ops,
/// dm_msix_all_writes). Never `hvm_pirqs` or `dom0`. = 0x0001_0305.
pub const PVH_DOMU_SUBMAP0: u32 = (1 << XENFEAT_WRITABLE_PAGE_TABLES)
    | (1 << XENFEAT_AUTO_TRANSLATED_PHYSMAP)
    | (1 << XENFEAT_HVM_CALLBACK_VECTOR)
    | (1 << XENFEAT_HVM_SAFE_PVCLOCK)
    | (1 << XENFEAT_NOT_DIRECT_MAPPED);

/// `XENVER_get_features` answer for `submap_idx`, or `None` (-EINVAL).
pub const fn pvh_domu_submap(submap_idx: u32) -> Option<u32> {
    match submap_idx {
        0 => Some(PVH_DOMU_SUBMAP0),
        _ => None,
    }
}

/// `struct xen_feature_info` (version.h), the `XENVER_get_features` argument.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenFeatureInfo {
    /// In: which 32-bit submap.
    pub submap_idx: u32,
    /// Out.
    pub submap: u32,
}

assert_eq_size!(XenFeatureInfo, [u8; 8]);
const_assert_eq!(offset_of!(XenFeatureInfo, submap), 4);
const_assert_eq!(PVH_DOMU_SUBMAP0, 0x0001_0305);
const_assert_eq!(
    PVH_DOMU_SUBMAP0 & ((1 << XENFEAT_HVM_PIRQS) | (1 << XENFEAT_DOM0)),
    0
);
