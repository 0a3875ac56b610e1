//! The console ring page `xencons_interface` (public/io/console.h).

use core::mem::offset_of;
use static_assertions::{assert_eq_size, const_assert_eq};

/// Bytes of `in` (backend → guest).
pub const XENCONS_IN_SIZE: usize = 1024;
/// Bytes of `out` (guest → backend).
pub const XENCONS_OUT_SIZE: usize = 2048;

/// `XENCONSOLE_CONNECTED` (console.h), in `connection`.
pub const XENCONSOLE_CONNECTED: u8 = 0;
/// `XENCONSOLE_DISCONNECTED` (console.h).
pub const XENCONSOLE_DISCONNECTED: u8 = 1;

/// `struct xencons_interface` (console.h): free-running u32 indices; byte i
/// of a stream is at `i & (size − 1)`. 3089 bytes of fields, 3092 with the
/// C struct's tail padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenconsInterface {
    pub r#in: [u8; XENCONS_IN_SIZE],
    pub out: [u8; XENCONS_OUT_SIZE],
    /// Written by the guest.
    pub in_cons: u32,
    /// Written by the backend.
    pub in_prod: u32,
    /// Written by the backend.
    pub out_cons: u32,
    /// Written by the guest.
    pub out_prod: u32,
    /// `XENCONSOLE_*` (not read by Linux 6.1).
    pub connection: u8,
    pub pad: [u8; 3],
}

impl XenconsInterface {
    pub const ZERO: Self = Self {
        r#in: [0; XENCONS_IN_SIZE],
        out: [0; XENCONS_OUT_SIZE],
        in_cons: 0,
        in_prod: 0,
        out_cons: 0,
        out_prod: 0,
        connection: XENCONSOLE_CONNECTED,
        pad: [0; 3],
    };
}

impl Default for XenconsInterface {
    fn default() -> Self {
        Self::ZERO
    }
}

/// `MASK_XENCONS_IDX(idx, in)`.
pub const fn mask_in(idx: u32) -> usize {
    idx as usize & (XENCONS_IN_SIZE - 1)
}

/// `MASK_XENCONS_IDX(idx, out)`.
pub const fn mask_out(idx: u32) -> usize {
    idx as usize & (XENCONS_OUT_SIZE - 1)
}

assert_eq_size!(XenconsInterface, [u8; 3092]);
const_assert_eq!(offset_of!(XenconsInterface, r#in), 0);
const_assert_eq!(offset_of!(XenconsInterface, out), 1024);
const_assert_eq!(offset_of!(XenconsInterface, in_cons), 3072);
const_assert_eq!(offset_of!(XenconsInterface, in_prod), 3076);
const_assert_eq!(offset_of!(XenconsInterface, out_cons), 3080);
const_assert_eq!(offset_of!(XenconsInterface, out_prod), 3084);
const_assert_eq!(offset_of!(XenconsInterface, connection), 3088);
const_assert_eq!(offset_of!(XenconsInterface, pad), 3089);
const_assert_eq!(XENCONS_IN_SIZE & (XENCONS_IN_SIZE - 1), 0);
const_assert_eq!(XENCONS_OUT_SIZE & (XENCONS_OUT_SIZE - 1), 0);
