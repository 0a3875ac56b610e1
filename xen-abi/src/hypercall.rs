//! Hypercall numbers, sub-operations and error codes (public/xen.h, public/version.h, public/sched.h, public/errno.h).

// Hypercall numbers (public/xen.h, `__HYPERVISOR_*`).
pub const PLATFORM_OP: u64 = 7;
pub const MEMORY_OP: u64 = 12;
pub const MULTICALL: u64 = 13;
/// Used by Linux only when `VCPUOP_stop_periodic_timer` fails.
pub const SET_TIMER_OP: u64 = 15;
pub const XEN_VERSION: u64 = 17;
pub const CONSOLE_IO: u64 = 18;
pub const PHYSDEV_OP_COMPAT: u64 = 19;
pub const GRANT_TABLE_OP: u64 = 20;
pub const VM_ASSIST: u64 = 21;
pub const VCPU_OP: u64 = 24;
pub const SCHED_OP: u64 = 29;
pub const CALLBACK_OP: u64 = 30;
pub const EVENT_CHANNEL_OP: u64 = 32;
pub const PHYSDEV_OP: u64 = 33;
pub const HVM_OP: u64 = 34;
pub const DM_OP: u64 = 41;
pub const SYSCTL: u64 = 35;
pub const DOMCTL: u64 = 36;
pub const HYPFS_OP: u64 = 42;
/// The interface versions Xen 4.17 checks before anything else
/// (public/sysctl.h, public/domctl.h, public/platform.h): a mismatch is
/// -EACCES, which is how a guest (XTF) probes for the version.
pub const XEN_SYSCTL_INTERFACE_VERSION: u32 = 0x15;
pub const XEN_DOMCTL_INTERFACE_VERSION: u32 = 0x15;
pub const XENPF_INTERFACE_VERSION: u32 = 0x0300_0001;
/// Sizes of `xen_sysctl_t`, `xen_domctl_t` and `xen_platform_op_t`
/// (a 128-byte union after the header), which Xen copies in whole.
pub const SYSCTL_SIZE: usize = 136;
pub const DOMCTL_SIZE: usize = 144;
pub const PLATFORM_OP_SIZE: usize = 136;
/// `__HYPERVISOR_arch_7`: reserved by Xen for architecture-specific use.
/// Xenolith uses it for its test operations (see `TEST_OP_*`).
pub const ARCH_7: u64 = 55;

// XENVER_* (public/version.h).
pub const XENVER_VERSION: u64 = 0;
pub const XENVER_EXTRAVERSION: u64 = 1;
pub const XENVER_COMPILE_INFO: u64 = 2;
pub const XENVER_CAPABILITIES: u64 = 3;
pub const XENVER_CHANGESET: u64 = 4;
pub const XENVER_PLATFORM_PARAMETERS: u64 = 5;
/// Argument: `xen_feature_info` (`crate::features::XenFeatureInfo`).
pub const XENVER_GET_FEATURES: u64 = 6;
pub const XENVER_PAGESIZE: u64 = 7;
pub const XENVER_GUEST_HANDLE: u64 = 8;
pub const XENVER_COMMANDLINE: u64 = 9;
pub const XENVER_BUILD_ID: u64 = 10;
/// `xen_compile_info_t`: compiler[64], compile_by[16], compile_domain[32], compile_date[32].
pub const XEN_COMPILE_INFO_LEN: usize = 144;
/// `xen_capabilities_info_t` is `char[1024]`.
pub const XEN_CAPABILITIES_INFO_LEN: usize = 1024;
/// `xen_changeset_info_t` is `char[64]`.
pub const XEN_CHANGESET_INFO_LEN: usize = 64;
/// `xen_commandline_t` is `char[1024]`.
pub const XEN_COMMANDLINE_LEN: usize = 1024;
/// `HYPERVISOR_VIRT_START` of x86-64 Xen (xen/arch/x86/include/asm/config.h,
/// `PML4_ADDR(256)`): what `XENVER_platform_parameters` reports to 64-bit
/// callers. 32-bit HVM callers get the compat field, 0 (an HVM domain's
/// `hv_compat_vstart` is never set).
pub const HYPERVISOR_VIRT_START: u64 = 0xffff_8000_0000_0000;
/// `xen_extraversion_t` is `char[16]`.
pub const XEN_EXTRAVERSION_LEN: usize = 16;

// CONSOLEIO_* (public/xen.h).
pub const CONSOLEIO_WRITE: u64 = 0;
pub const CONSOLEIO_READ: u64 = 1;

// SCHEDOP_* and SHUTDOWN_* (public/sched.h); their argument structures are in `crate::sched`.
pub const SCHEDOP_YIELD: u64 = 0;
pub const SCHEDOP_BLOCK: u64 = 1;
pub const SCHEDOP_SHUTDOWN: u64 = 2;
pub const SCHEDOP_POLL: u64 = 3;
pub const SCHEDOP_REMOTE_SHUTDOWN: u64 = 4;
pub const SCHEDOP_SHUTDOWN_CODE: u64 = 5;
pub const SCHEDOP_WATCHDOG: u64 = 6;
pub const SCHEDOP_PIN_OVERRIDE: u64 = 7;
pub const SHUTDOWN_POWEROFF: u32 = 0;
pub const SHUTDOWN_REBOOT: u32 = 1;
pub const SHUTDOWN_SUSPEND: u32 = 2;
pub const SHUTDOWN_CRASH: u32 = 3;
pub const SHUTDOWN_WATCHDOG: u32 = 4;
/// `SHUTDOWN_soft_reset` (kexec); `SHUTDOWN_MAX` is this value.
pub const SHUTDOWN_SOFT_RESET: u32 = 5;

// vm_assist commands and types (public/xen.h, `VMASST_*`).
pub const VMASST_CMD_ENABLE: u64 = 0;
pub const VMASST_CMD_DISABLE: u64 = 1;
/// Linux asks for it; granting it means setting `XEN_RUNSTATE_UPDATE`
/// (`crate::vcpu`) around every runstate-area update.
pub const VMASST_TYPE_RUNSTATE_UPDATE_FLAG: u64 = 5;

/// Xenolith test operation on `ARCH_7`: raise interrupt `vector` (arg 2) at
/// the guest as soon as it can take it. A stand-in until event channels exist.
pub const TEST_OP_RAISE_IRQ: u64 = 1;
/// Xenolith test operation: take the guest's own RAM page `gfn` (arg 2) out
/// of its second-level tables until the guest next touches it; that one
/// nested page fault puts it back instead of ending the domain. The test
/// guest uses it to make an event's delivery exit half-way and checks the
/// event still arrives (the `Vcpu` contract's re-delivery).
pub const TEST_OP_UNMAP_ONCE: u64 = 2;

// Error numbers (public/errno.h; negated in RAX).
pub const EPERM: i64 = 1;
pub const ENOENT: i64 = 2;
pub const ESRCH: i64 = 3;
pub const EINTR: i64 = 4;
pub const EIO: i64 = 5;
pub const ENXIO: i64 = 6;
pub const E2BIG: i64 = 7;
pub const EAGAIN: i64 = 11;
pub const ENOMEM: i64 = 12;
pub const EACCES: i64 = 13;
pub const EFAULT: i64 = 14;
pub const EBUSY: i64 = 16;
pub const EEXIST: i64 = 17;
pub const ENODEV: i64 = 19;
pub const EINVAL: i64 = 22;
pub const ENOSPC: i64 = 28;
pub const ERANGE: i64 = 34;
pub const ENOSYS: i64 = 38;
pub const ENOBUFS: i64 = 105;
pub const ENODATA: i64 = 61;
pub const ETIME: i64 = 62;
pub const EOVERFLOW: i64 = 75;
pub const ERESTART: i64 = 85;
pub const EOPNOTSUPP: i64 = 95;

/// The version this hypervisor reports: Linux's xenbus skips
/// XS_RESET_WATCHES below major 4 (../shared/spec/xen-pvh-abi.md 2.1).
pub const VERSION_MAJOR: u32 = 4;
pub const VERSION_MINOR: u32 = 17;
