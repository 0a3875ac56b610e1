//! The XenStore server as plain library code: wire protocol, ring, store, permissions, transactions, watches (Xen xs_wire.h, docs/misc/xenstore.txt).

pub mod ops;
pub mod path;
pub mod perms;
pub mod ring;
pub mod server;
pub mod store;
pub mod transaction;
pub mod watch;
pub mod wire;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use ring::{Ring, RingMemory};
pub use server::{Config, Introduction, Server};
pub use wire::{Errno, Header, MsgType};
