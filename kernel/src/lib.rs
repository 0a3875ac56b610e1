//! The Xenolith hypervisor library: the boot-info model and the pure logic of start of day, host-testable.
#![cfg_attr(not(test), no_std)]

pub mod boot_info;
pub mod byte_copy;
pub mod byte_queue;
pub mod caps_line;
pub mod cmdline;
pub mod console_quota;
pub mod cpuid_policy;
pub mod cr4_policy;
pub mod emulate;
pub mod evtchn;
pub mod fnv;
pub mod grant_table;
pub mod hypercall_page;
pub mod memory_map;
pub mod msr_policy;
pub mod newc;
pub mod page_policy;
pub mod pvclock;
pub mod reservation;
pub mod rsdp;
pub mod spec_ctrl;
pub mod vlapic;
pub mod xcr0;
