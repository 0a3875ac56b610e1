//! PVH loader: places a Xen PVH kernel, its initrd, hvm_start_info, memory map and ACPI tables in guest memory.
#![no_std]

extern crate alloc;

pub mod acpi;
pub mod image;
pub mod linux;
pub mod start_info;

pub use image::{KernelImage, LoadError};
pub use linux::{prepare, BootPlan, LayoutError, LinuxBoot};
pub use start_info::{place_start_info, write_start_info, StartInfo, StartInfoError};
