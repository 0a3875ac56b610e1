//! `sched_op` arguments (public/sched.h); the `SCHEDOP_*`/`SHUTDOWN_*` numbers live in `crate::hypercall`.

use crate::event_channel::DomId;
use core::mem::offset_of;
use static_assertions::{assert_eq_size, const_assert_eq};

pub use crate::hypercall::{
    SCHEDOP_BLOCK, SCHEDOP_PIN_OVERRIDE, SCHEDOP_POLL, SCHEDOP_REMOTE_SHUTDOWN, SCHEDOP_SHUTDOWN,
    SCHEDOP_SHUTDOWN_CODE, SCHEDOP_WATCHDOG, SCHEDOP_YIELD, SHUTDOWN_CRASH, SHUTDOWN_POWEROFF,
    SHUTDOWN_REBOOT, SHUTDOWN_SOFT_RESET, SHUTDOWN_SUSPEND, SHUTDOWN_WATCHDOG,
};

/// `SHUTDOWN_MAX` (sched.h): the highest valid reason.
pub const SHUTDOWN_MAX: u32 = SHUTDOWN_SOFT_RESET;

/// `struct sched_shutdown` (sched.h), `SCHEDOP_shutdown` and `SCHEDOP_shutdown_code`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedShutdown {
    /// `SHUTDOWN_*`.
    pub reason: u32,
}

/// `struct sched_poll` (sched.h), `SCHEDOP_poll`, 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedPoll {
    /// Guest handle of `evtchn_port_t[nr_ports]`.
    pub ports: u64,
    pub nr_ports: u32,
    pub pad: u32,
    /// Absolute system time (ns) to give up at; 0 = never.
    pub timeout: u64,
}

/// `struct sched_remote_shutdown` (sched.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedRemoteShutdown {
    pub domain_id: DomId,
    pub pad: u16,
    /// `SHUTDOWN_*`.
    pub reason: u32,
}

/// `struct sched_watchdog` (sched.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedWatchdog {
    pub id: u32,
    pub timeout: u32,
}

assert_eq_size!(SchedShutdown, [u8; 4]);
assert_eq_size!(SchedPoll, [u8; 24]);
const_assert_eq!(offset_of!(SchedPoll, nr_ports), 8);
const_assert_eq!(offset_of!(SchedPoll, pad), 12);
const_assert_eq!(offset_of!(SchedPoll, timeout), 16);
assert_eq_size!(SchedRemoteShutdown, [u8; 8]);
const_assert_eq!(offset_of!(SchedRemoteShutdown, pad), 2);
const_assert_eq!(offset_of!(SchedRemoteShutdown, reason), 4);
assert_eq_size!(SchedWatchdog, [u8; 8]);
const_assert_eq!(offset_of!(SchedWatchdog, timeout), 4);
