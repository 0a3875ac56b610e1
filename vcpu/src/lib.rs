//! Types shared by the arch-neutral core and the VMX/SVM backends.
#![no_std]

pub mod caps;

pub use caps::{VirtCaps, VirtKind};
