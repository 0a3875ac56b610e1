//! The driver domain: a deprivileged PVH guest running the XenStore server, start-of-day toolstack work and the console, block and net backends.
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod blkback;
pub mod console;
pub mod domains;
pub mod grant_copy;
pub mod netback;
pub mod ring;
pub mod toolstack;
pub mod xenbus_state;
pub mod xenstore;
