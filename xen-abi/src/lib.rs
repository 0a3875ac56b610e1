//! Xen public ABI structures and constants (xen/include/public), x86-64 layout.
#![no_std]

pub mod hypercall;
pub mod start_info;
