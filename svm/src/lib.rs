//! AMD-V backend: VMCB, VMRUN, NPT and ASIDs behind the vCPU interface.
#![no_std]

pub mod caps;
