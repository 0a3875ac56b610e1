//! Second-level page tables for guests: Intel EPT and AMD NPT built by one generic builder, and the guest page-table walker.
//!
//! The crate touches no hardware and contains no `unsafe`: table frames are
//! reached through [`TableMemory`] and guest memory through [`GuestPhysRead`],
//! which the hypervisor implements over its identity map and the tests over
//! plain vectors. TLB invalidation is left to the backend, which acts on the
//! [`Flush`] every mutating operation returns.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

mod addr;
mod ept_format;
mod flush;
mod format;
mod memory;
mod npt_format;
mod table;
mod walker;

#[cfg(test)]
mod tests;

pub use addr::{Gpa, Gva, Hpa, PageSize};
pub use ept_format::Ept;
pub use flush::Flush;
pub use format::{Format, MemType, Perms};
pub use memory::{GuestPhysRead, TableMemory};
pub use npt_format::Npt;
pub use table::{EptTable, MapError, NptTable, SecondLevel, Translation};
pub use walker::{
    pae_pdpt, pae_pdpte_invalid, Access, GuestPageSize, GuestPaging, GuestTranslation,
    PageFaultCode, PagingMode, WalkError,
};
