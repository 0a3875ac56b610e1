//! Types shared by the arch-neutral core and the VMX/SVM backends: capabilities, the vCPU interface, exit reasons.
#![no_std]

extern crate alloc;

pub mod address_space;
pub mod caps;
pub mod exit;
pub mod mitigations;
pub mod regs;
pub mod vcpu;

pub use address_space::{AddressSpace, IdentityTables};
pub use caps::{VirtCaps, VirtKind};
pub use exit::{combine_exceptions, queue_on_top, Access, Event, Exit, IoAccess};
pub use mitigations::EntryMitigations;
pub use regs::{cr4_change_flushes_tlb, Gpr, Paging, Segment, CR4_TLB_BITS};
pub use vcpu::{Backend, FrameAlloc, GuestCode, InitialState, Vcpu, VcpuConfig};
