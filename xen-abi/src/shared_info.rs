//! The `shared_info` page, `vcpu_info` and `vcpu_time_info` (public/xen.h, public/arch-x86/xen.h, xen-x86_64.h).

use core::mem::offset_of;
use static_assertions::{assert_eq_size, const_assert_eq};

pub use crate::vcpu::VcpuRunstateInfo;

/// `XEN_LEGACY_MAX_VCPUS` (arch-x86/xen.h): `vcpu_info` slots in `shared_info`.
pub const LEGACY_MAX_VCPUS: usize = 32;

/// Words of `evtchn_pending` / `evtchn_mask`: `sizeof(xen_ulong_t) * 8` (xen.h).
pub const EVTCHN_WORDS: usize = 64;

/// `XEN_PVCLOCK_TSC_STABLE_BIT` (xen.h), in `VcpuTimeInfo::flags`: the TSC is
/// invariant and synchronised across vCPUs.
pub const PVCLOCK_TSC_STABLE: u8 = 1 << 0;
/// `XEN_PVCLOCK_GUEST_STOPPED` (xen.h), in `VcpuTimeInfo::flags`.
pub const PVCLOCK_GUEST_STOPPED: u8 = 1 << 1;

/// `struct vcpu_time_info` (xen.h, interface version > 0x040600): the pvclock
/// record. Now (ns) = `system_time` + ((rdtsc − `tsc_timestamp`) shifted by
/// `tsc_shift`) × `tsc_to_system_mul` >> 32. `version` is odd while an update
/// is in progress.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuTimeInfo {
    pub version: u32,
    pub pad0: u32,
    /// Guest-visible TSC at the last update.
    pub tsc_timestamp: u64,
    /// Nanoseconds since the hypervisor's time origin, at `tsc_timestamp`.
    pub system_time: u64,
    /// Nanoseconds per (shifted) TSC tick as a 0.32 binary fraction.
    pub tsc_to_system_mul: u32,
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*`.
    pub flags: u8,
    pub pad1: [u8; 2],
}

/// `struct arch_vcpu_info` (xen-x86_64.h): `cr2` is PV only.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchVcpuInfo {
    pub cr2: u64,
    pub pad: u64,
}

/// `struct vcpu_info` (xen.h), 64 bytes: a vCPU's upcall flags, selector and
/// time. Lives in `shared_info.vcpu_info[id]` until the guest moves it with
/// `VCPUOP_register_vcpu_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuInfo {
    /// Set by the hypervisor when an upcall is due; cleared by the guest.
    pub evtchn_upcall_pending: u8,
    /// PV only (`XEN_HAVE_PV_UPCALL_MASK`); HVM/PVH masks upcalls with RFLAGS.IF.
    pub evtchn_upcall_mask: u8,
    pub pad0: [u8; 6],
    /// Bit w: word w of `evtchn_pending` may hold newly pending ports.
    pub evtchn_pending_sel: u64,
    pub arch: ArchVcpuInfo,
    pub time: VcpuTimeInfo,
}

/// `struct arch_shared_info` (arch-x86/xen.h, 64-bit): PV only except `nmi_reason`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchSharedInfo {
    pub max_pfn: u64,
    pub pfn_to_mfn_frame_list_list: u64,
    pub nmi_reason: u64,
    pub p2m_cr3: u64,
    pub p2m_vaddr: u64,
    pub p2m_generation: u64,
}

/// `struct shared_info` (xen.h), 64-bit layout: 3136 bytes at the start of the
/// page the guest maps with `XENMEM_add_to_physmap(XENMAPSPACE_shared_info)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedInfo {
    pub vcpu_info: [VcpuInfo; LEGACY_MAX_VCPUS],
    /// Port p is bit p % 64 of word p / 64.
    pub evtchn_pending: [u64; EVTCHN_WORDS],
    /// Written only by the guest; the hypervisor reads it.
    pub evtchn_mask: [u64; EVTCHN_WORDS],
    /// Seqlock over the wallclock, like `VcpuTimeInfo::version`.
    pub wc_version: u32,
    /// UTC seconds (low 32 bits) at system time 0.
    pub wc_sec: u32,
    pub wc_nsec: u32,
    /// Upper 32 bits of the seconds (not read by Linux 6.1).
    pub wc_sec_hi: u32,
    pub arch: ArchSharedInfo,
}

impl SharedInfo {
    /// All zero: no vCPU has an upcall pending, no port pending or masked.
    pub const ZERO: Self = Self {
        vcpu_info: [VcpuInfo {
            evtchn_upcall_pending: 0,
            evtchn_upcall_mask: 0,
            pad0: [0; 6],
            evtchn_pending_sel: 0,
            arch: ArchVcpuInfo { cr2: 0, pad: 0 },
            time: VcpuTimeInfo {
                version: 0,
                pad0: 0,
                tsc_timestamp: 0,
                system_time: 0,
                tsc_to_system_mul: 0,
                tsc_shift: 0,
                flags: 0,
                pad1: [0; 2],
            },
        }; LEGACY_MAX_VCPUS],
        evtchn_pending: [0; EVTCHN_WORDS],
        evtchn_mask: [0; EVTCHN_WORDS],
        wc_version: 0,
        wc_sec: 0,
        wc_nsec: 0,
        wc_sec_hi: 0,
        arch: ArchSharedInfo {
            max_pfn: 0,
            pfn_to_mfn_frame_list_list: 0,
            nmi_reason: 0,
            p2m_cr3: 0,
            p2m_vaddr: 0,
            p2m_generation: 0,
        },
    };
}

impl Default for SharedInfo {
    fn default() -> Self {
        Self::ZERO
    }
}

// Byte offsets inside the shared_info page, for code that works on the guest
// page directly rather than through `SharedInfo`.
pub const VCPU_INFO_OFFSET: usize = offset_of!(SharedInfo, vcpu_info);
pub const EVTCHN_PENDING_OFFSET: usize = offset_of!(SharedInfo, evtchn_pending);
pub const EVTCHN_MASK_OFFSET: usize = offset_of!(SharedInfo, evtchn_mask);
pub const WC_VERSION_OFFSET: usize = offset_of!(SharedInfo, wc_version);
pub const WC_SEC_OFFSET: usize = offset_of!(SharedInfo, wc_sec);
pub const WC_NSEC_OFFSET: usize = offset_of!(SharedInfo, wc_nsec);
pub const WC_SEC_HI_OFFSET: usize = offset_of!(SharedInfo, wc_sec_hi);
pub const ARCH_OFFSET: usize = offset_of!(SharedInfo, arch);
/// Offset of `vcpu_info[vcpu]` in the page (vcpu < `LEGACY_MAX_VCPUS`).
pub const fn vcpu_info_offset(vcpu: usize) -> usize {
    VCPU_INFO_OFFSET + vcpu * core::mem::size_of::<VcpuInfo>()
}

// Offsets inside a `vcpu_info`, wherever it lives.
pub const UPCALL_PENDING_OFFSET: usize = offset_of!(VcpuInfo, evtchn_upcall_pending);
pub const UPCALL_MASK_OFFSET: usize = offset_of!(VcpuInfo, evtchn_upcall_mask);
pub const PENDING_SEL_OFFSET: usize = offset_of!(VcpuInfo, evtchn_pending_sel);
pub const TIME_OFFSET: usize = offset_of!(VcpuInfo, time);

// Layouts from the x86-64 headers (sizes in their comments; offsets computed).
assert_eq_size!(VcpuTimeInfo, [u8; 32]);
const_assert_eq!(offset_of!(VcpuTimeInfo, version), 0);
const_assert_eq!(offset_of!(VcpuTimeInfo, pad0), 4);
const_assert_eq!(offset_of!(VcpuTimeInfo, tsc_timestamp), 8);
const_assert_eq!(offset_of!(VcpuTimeInfo, system_time), 16);
const_assert_eq!(offset_of!(VcpuTimeInfo, tsc_to_system_mul), 24);
const_assert_eq!(offset_of!(VcpuTimeInfo, tsc_shift), 28);
const_assert_eq!(offset_of!(VcpuTimeInfo, flags), 29);
const_assert_eq!(offset_of!(VcpuTimeInfo, pad1), 30);
assert_eq_size!(ArchVcpuInfo, [u8; 16]);
const_assert_eq!(offset_of!(ArchVcpuInfo, pad), 8);
assert_eq_size!(VcpuInfo, [u8; 64]);
const_assert_eq!(UPCALL_PENDING_OFFSET, 0);
const_assert_eq!(UPCALL_MASK_OFFSET, 1);
const_assert_eq!(offset_of!(VcpuInfo, pad0), 2);
const_assert_eq!(PENDING_SEL_OFFSET, 8);
const_assert_eq!(offset_of!(VcpuInfo, arch), 16);
const_assert_eq!(TIME_OFFSET, 32);
assert_eq_size!(ArchSharedInfo, [u8; 48]);
const_assert_eq!(offset_of!(ArchSharedInfo, pfn_to_mfn_frame_list_list), 8);
const_assert_eq!(offset_of!(ArchSharedInfo, nmi_reason), 16);
const_assert_eq!(offset_of!(ArchSharedInfo, p2m_cr3), 24);
const_assert_eq!(offset_of!(ArchSharedInfo, p2m_vaddr), 32);
const_assert_eq!(offset_of!(ArchSharedInfo, p2m_generation), 40);
assert_eq_size!(SharedInfo, [u8; 3136]);
const_assert_eq!(VCPU_INFO_OFFSET, 0);
const_assert_eq!(EVTCHN_PENDING_OFFSET, 2048);
const_assert_eq!(EVTCHN_MASK_OFFSET, 2560);
const_assert_eq!(WC_VERSION_OFFSET, 3072);
const_assert_eq!(WC_SEC_OFFSET, 3076);
const_assert_eq!(WC_NSEC_OFFSET, 3080);
const_assert_eq!(WC_SEC_HI_OFFSET, 3084);
const_assert_eq!(ARCH_OFFSET, 3088);
const_assert_eq!(vcpu_info_offset(31), 1984);
