//! Xen public ABI structures and constants (xen/include/public), x86-64 layout.
#![no_std]

pub mod blkif;
#[cfg(target_arch = "x86_64")]
pub mod call;
pub mod console;
pub mod domain_handle;
pub mod domain_table;
pub mod event_channel;
pub mod features;
pub mod grant_table;
pub mod hvm;
pub mod hypercall;
pub mod memory;
pub mod netif;
pub mod sched;
pub mod shared_info;
pub mod start_info;
pub mod vcpu;
