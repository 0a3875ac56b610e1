//! `vcpu_op` sub-operations and their arguments (public/vcpu.h).

use core::mem::offset_of;
use static_assertions::{assert_eq_size, const_assert_eq};

// VCPUOP_* (vcpu.h); `vcpu_op(cmd, vcpuid, arg)`.
pub const VCPUOP_INITIALISE: u64 = 0;
pub const VCPUOP_UP: u64 = 1;
pub const VCPUOP_DOWN: u64 = 2;
pub const VCPUOP_IS_UP: u64 = 3;
/// Argument: `VcpuRunstateInfo` (out).
pub const VCPUOP_GET_RUNSTATE_INFO: u64 = 4;
/// Argument: `VcpuRegisterRunstateMemoryArea`.
pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u64 = 5;
/// Argument: `VcpuSetPeriodicTimer`.
pub const VCPUOP_SET_PERIODIC_TIMER: u64 = 6;
/// Argument: NULL.
pub const VCPUOP_STOP_PERIODIC_TIMER: u64 = 7;
/// Argument: `VcpuSetSingleshotTimer`.
pub const VCPUOP_SET_SINGLESHOT_TIMER: u64 = 8;
/// Argument: NULL.
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u64 = 9;
/// Argument: `VcpuRegisterVcpuInfo`.
pub const VCPUOP_REGISTER_VCPU_INFO: u64 = 10;
pub const VCPUOP_SEND_NMI: u64 = 11;
/// Argument: `VcpuGetPhysid` (out).
pub const VCPUOP_GET_PHYSID: u64 = 12;
/// Argument: `VcpuRegisterTimeMemoryArea`.
pub const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u64 = 13;
/// As `VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA` with a guest-physical address.
pub const VCPUOP_REGISTER_RUNSTATE_PHYS_AREA: u64 = 14;
/// As `VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA` with a guest-physical address.
pub const VCPUOP_REGISTER_VCPU_TIME_PHYS_AREA: u64 = 15;

// RUNSTATE_* (vcpu.h), the values of `VcpuRunstateInfo::state`.
pub const RUNSTATE_RUNNING: i32 = 0;
pub const RUNSTATE_RUNNABLE: i32 = 1;
pub const RUNSTATE_BLOCKED: i32 = 2;
pub const RUNSTATE_OFFLINE: i32 = 3;

/// `XEN_RUNSTATE_UPDATE` (vcpu.h): set in `state_entry_time` while the
/// hypervisor rewrites the area, when the guest enabled
/// `VMASST_TYPE_runstate_update_flag`.
pub const RUNSTATE_UPDATE: u64 = 1 << 63;

/// `VCPU_SSHOTTMR_future` (vcpu.h): the guest asks for -ETIME if the
/// deadline has passed; the header allows the hypervisor to ignore it (Xen does).
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1 << 0;

/// `struct vcpu_runstate_info` (vcpu.h), 48 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRunstateInfo {
    /// `RUNSTATE_*`.
    pub state: i32,
    pub pad: u32,
    /// System time (ns) when `state` was entered; bit 63 is `RUNSTATE_UPDATE`.
    pub state_entry_time: u64,
    /// Nanoseconds spent in each `RUNSTATE_*`.
    pub time: [u64; 4],
}

/// `struct vcpu_register_runstate_memory_area` (vcpu.h): a guest-virtual
/// address (union of handle, pointer and u64 `p`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterRunstateMemoryArea {
    pub addr: u64,
}

/// `struct vcpu_register_time_memory_area` (vcpu.h): guest-virtual address of
/// a secondary `vcpu_time_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterTimeMemoryArea {
    pub addr: u64,
}

/// `struct vcpu_set_periodic_timer` (vcpu.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSetPeriodicTimer {
    pub period_ns: u64,
}

/// `struct vcpu_set_singleshot_timer` (vcpu.h): 16 bytes, the last four
/// being the C struct's tail padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute system time (the pvclock's nanoseconds).
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`.
    pub flags: u32,
    pub pad: u32,
}

/// `struct vcpu_register_vcpu_info` (vcpu.h): where the vCPU's `vcpu_info` moves.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterVcpuInfo {
    /// The page's frame number (a GFN for a PVH guest).
    pub mfn: u64,
    /// Byte offset in that page.
    pub offset: u32,
    pub rsvd: u32,
}

/// `struct vcpu_get_physid` (vcpu.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuGetPhysid {
    pub phys_id: u64,
}

assert_eq_size!(VcpuRunstateInfo, [u8; 48]);
const_assert_eq!(offset_of!(VcpuRunstateInfo, state), 0);
const_assert_eq!(offset_of!(VcpuRunstateInfo, pad), 4);
const_assert_eq!(offset_of!(VcpuRunstateInfo, state_entry_time), 8);
const_assert_eq!(offset_of!(VcpuRunstateInfo, time), 16);
assert_eq_size!(VcpuRegisterRunstateMemoryArea, [u8; 8]);
assert_eq_size!(VcpuRegisterTimeMemoryArea, [u8; 8]);
assert_eq_size!(VcpuSetPeriodicTimer, [u8; 8]);
assert_eq_size!(VcpuSetSingleshotTimer, [u8; 16]);
const_assert_eq!(offset_of!(VcpuSetSingleshotTimer, flags), 8);
const_assert_eq!(offset_of!(VcpuSetSingleshotTimer, pad), 12);
assert_eq_size!(VcpuRegisterVcpuInfo, [u8; 16]);
const_assert_eq!(offset_of!(VcpuRegisterVcpuInfo, offset), 8);
const_assert_eq!(offset_of!(VcpuRegisterVcpuInfo, rsvd), 12);
assert_eq_size!(VcpuGetPhysid, [u8; 8]);
