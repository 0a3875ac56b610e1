//! Intel VT-x backend: VMXON, VMCS, EPT and VPID behind the vCPU interface.
#![no_std]

pub mod caps;
