//! Hypercall numbers, sub-operations and error codes (public/xen.h, public/version.h, public/sched.h, public/errno.h).

// Hypercall numbers (public/xen.h, `__HYPERVISOR_*`).
pub const MEMORY_OP: u64 = 12;
pub const XEN_VERSION: u64 = 17;
pub const CONSOLE_IO: u64 = 18;
pub const GRANT_TABLE_OP: u64 = 20;
pub const VCPU_OP: u64 = 24;
pub const SCHED_OP: u64 = 29;
pub const EVENT_CHANNEL_OP: u64 = 32;
pub const HVM_OP: u64 = 34;
/// `__HYPERVISOR_arch_7`: reserved by Xen for architecture-specific use.
/// Xenolith uses it for its test operations (see `TEST_OP_*`).
pub const ARCH_7: u64 = 55;

// XENVER_* (public/version.h).
pub const XENVER_VERSION: u64 = 0;
pub const XENVER_EXTRAVERSION: u64 = 1;
/// `xen_extraversion_t` is `char[16]`.
pub const XEN_EXTRAVERSION_LEN: usize = 16;

// CONSOLEIO_* (public/xen.h).
pub const CONSOLEIO_WRITE: u64 = 0;
pub const CONSOLEIO_READ: u64 = 1;

// SCHEDOP_* and SHUTDOWN_* (public/sched.h).
pub const SCHEDOP_YIELD: u64 = 0;
pub const SCHEDOP_BLOCK: u64 = 1;
pub const SCHEDOP_SHUTDOWN: u64 = 2;
pub const SHUTDOWN_POWEROFF: u32 = 0;
pub const SHUTDOWN_REBOOT: u32 = 1;
pub const SHUTDOWN_SUSPEND: u32 = 2;
pub const SHUTDOWN_CRASH: u32 = 3;
pub const SHUTDOWN_WATCHDOG: u32 = 4;

/// Xenolith test operation on `ARCH_7`: raise interrupt `vector` (arg 2) at
/// the guest as soon as it can take it. A stand-in until event channels exist.
pub const TEST_OP_RAISE_IRQ: u64 = 1;

// Error numbers (public/errno.h; negated in RAX).
pub const EPERM: i64 = 1;
pub const EFAULT: i64 = 14;
pub const EINVAL: i64 = 22;
pub const ENOSYS: i64 = 38;

/// The version this hypervisor reports: Linux's xenbus skips
/// XS_RESET_WATCHES below major 4 (../shared/spec/xen-pvh-abi.md 2.1).
pub const VERSION_MAJOR: u32 = 4;
pub const VERSION_MINOR: u32 = 17;
