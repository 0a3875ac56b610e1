//! PVH loader: places a Xen PVH kernel, its hvm_start_info, memory map and command line in guest memory.
#![no_std]

pub mod image;
pub mod start_info;

pub use image::{KernelImage, LoadError};
pub use start_info::{place_start_info, StartInfoError};
