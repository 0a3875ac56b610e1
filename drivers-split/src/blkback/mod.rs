//! blkback: virtual block devices for the guests' unmodified `xen-blkfront`.
//!
//! - [`config`]: which disk goes to which guest (`vbd=` options);
//! - [`xenbus`]: the XenStore nodes and the XenbusState handshake;
//! - [`request`]: a ring slot read once and checked;
//! - [`blkif`]: a connected ring served in batches by grant copy;
//! - [`device`]: where the bytes live (`BlockDevice`, the RAM disk; the
//!   virtio disk is in the driver-domain binary, next to its port I/O).

pub mod blkif;
pub mod config;
pub mod device;
pub mod request;
pub mod xenbus;
