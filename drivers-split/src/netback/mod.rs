//! netback: virtual network interfaces for the guests' unmodified `xen-netfront`, joined by a learning switch.
//!
//! - [`config`]: which guest gets which interface and MAC (`vif=` options);
//! - [`xenbus`]: the XenStore nodes and the handshake;
//! - [`tx`]: a packet's transmit slots read once and checked;
//! - [`checksum`]: TCP/UDP checksums the frontend left blank;
//! - [`switch`]: where a frame goes;
//! - [`vif`]: a connected interface's two rings, served by grant copy.

pub mod checksum;
pub mod config;
pub mod switch;
pub mod tx;
pub mod vif;
pub mod xenbus;

#[cfg(test)]
mod tests;
