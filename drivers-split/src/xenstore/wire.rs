//! The XenStore wire protocol: message header, types, error names and payload parsing (xs_wire.h).

use alloc::vec::Vec;

/// `XENSTORE_PAYLOAD_MAX` (xs_wire.h): the largest payload either side may send.
pub const PAYLOAD_MAX: usize = 4096;
/// Size of `struct xsd_sockmsg`.
pub const HEADER_LEN: usize = 16;

/// `enum xsd_sockmsg_type` (xs_wire.h); numbers are the wire values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MsgType {
    Control = 0,
    Directory = 1,
    Read = 2,
    GetPerms = 3,
    Watch = 4,
    Unwatch = 5,
    TransactionStart = 6,
    TransactionEnd = 7,
    Introduce = 8,
    Release = 9,
    GetDomainPath = 10,
    Write = 11,
    Mkdir = 12,
    Rm = 13,
    SetPerms = 14,
    WatchEvent = 15,
    Error = 16,
    IsDomainIntroduced = 17,
    Resume = 18,
    SetTarget = 19,
    // 20 was XS_RESTRICT, removed.
    ResetWatches = 21,
    DirectoryPart = 22,
    GetFeature = 23,
    SetFeature = 24,
    GetQuota = 25,
    SetQuota = 26,
}

impl MsgType {
    /// The type for a wire value, if it names one (20 and >= 27 do not).
    pub fn from_u32(v: u32) -> Option<Self> {
        use MsgType::*;
        Some(match v {
            0 => Control,
            1 => Directory,
            2 => Read,
            3 => GetPerms,
            4 => Watch,
            5 => Unwatch,
            6 => TransactionStart,
            7 => TransactionEnd,
            8 => Introduce,
            9 => Release,
            10 => GetDomainPath,
            11 => Write,
            12 => Mkdir,
            13 => Rm,
            14 => SetPerms,
            15 => WatchEvent,
            16 => Error,
            17 => IsDomainIntroduced,
            18 => Resume,
            19 => SetTarget,
            21 => ResetWatches,
            22 => DirectoryPart,
            23 => GetFeature,
            24 => SetFeature,
            25 => GetQuota,
            26 => SetQuota,
            _ => return None,
        })
    }
}

/// The errors of the `xsd_errors` table (xs_wire.h), in table order.
/// Replies carry the *name*; Linux maps unknown names to EINVAL, so only
/// these are ever sent (xenstored reports quota overruns as ENOSPC, not a
/// made-up "EQUOTA").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Errno {
    Einval,
    Eacces,
    Eexist,
    Eisdir,
    Enoent,
    Enomem,
    Enospc,
    Eio,
    Enotempty,
    Enosys,
    Erofs,
    Ebusy,
    Eagain,
    Eisconn,
    E2big,
    Eperm,
}

impl Errno {
    /// Every error, in `xsd_errors` order.
    pub const ALL: [Errno; 16] = [
        Errno::Einval,
        Errno::Eacces,
        Errno::Eexist,
        Errno::Eisdir,
        Errno::Enoent,
        Errno::Enomem,
        Errno::Enospc,
        Errno::Eio,
        Errno::Enotempty,
        Errno::Enosys,
        Errno::Erofs,
        Errno::Ebusy,
        Errno::Eagain,
        Errno::Eisconn,
        Errno::E2big,
        Errno::Eperm,
    ];

    /// The name sent in an `XS_ERROR` reply (without its NUL).
    pub fn name(self) -> &'static str {
        match self {
            Errno::Einval => "EINVAL",
            Errno::Eacces => "EACCES",
            Errno::Eexist => "EEXIST",
            Errno::Eisdir => "EISDIR",
            Errno::Enoent => "ENOENT",
            Errno::Enomem => "ENOMEM",
            Errno::Enospc => "ENOSPC",
            Errno::Eio => "EIO",
            Errno::Enotempty => "ENOTEMPTY",
            Errno::Enosys => "ENOSYS",
            Errno::Erofs => "EROFS",
            Errno::Ebusy => "EBUSY",
            Errno::Eagain => "EAGAIN",
            Errno::Eisconn => "EISCONN",
            Errno::E2big => "E2BIG",
            Errno::Eperm => "EPERM",
        }
    }
}

/// `struct xsd_sockmsg`: four little-endian u32s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Header {
    pub ty: u32,
    pub req_id: u32,
    pub tx_id: u32,
    pub len: u32,
}

impl Header {
    pub fn parse(b: &[u8; HEADER_LEN]) -> Self {
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Header {
            ty: w(0),
            req_id: w(4),
            tx_id: w(8),
            len: w(12),
        }
    }

    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.ty.to_le_bytes());
        b[4..8].copy_from_slice(&self.req_id.to_le_bytes());
        b[8..12].copy_from_slice(&self.tx_id.to_le_bytes());
        b[12..16].copy_from_slice(&self.len.to_le_bytes());
        b
    }
}

/// One framed message: header plus payload (`len` ≤ `PAYLOAD_MAX` is
/// enforced by whoever builds it).
pub fn encode(ty: MsgType, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    let hdr = Header {
        ty: ty as u32,
        req_id,
        tx_id,
        len: payload.len() as u32,
    };
    let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
    v.extend_from_slice(&hdr.to_bytes());
    v.extend_from_slice(payload);
    v
}

/// An `XS_ERROR` reply: the errno name and a NUL, ids echoed (xenstored `send_error`).
pub fn error_reply(req_id: u32, tx_id: u32, e: Errno) -> Vec<u8> {
    let mut p = Vec::with_capacity(10);
    p.extend_from_slice(e.name().as_bytes());
    p.push(0);
    encode(MsgType::Error, req_id, tx_id, &p)
}

/// xenstored `onearg`: the payload must hold exactly one NUL, at its end.
pub fn one_arg(payload: &[u8]) -> Result<&[u8], Errno> {
    match payload.iter().position(|&b| b == 0) {
        Some(i) if i + 1 == payload.len() => Ok(&payload[..i]),
        _ => Err(Errno::Einval),
    }
}

/// xenstored `get_strings`: the NUL-terminated strings at the start of the
/// payload (bytes after the last NUL are not a string). Returns the first
/// `N` of them and how many there were.
pub fn strings<const N: usize>(payload: &[u8]) -> ([&[u8]; N], usize) {
    let mut out: [&[u8]; N] = [&[]; N];
    let mut n = 0;
    let mut rest = payload;
    while let Some(i) = rest.iter().position(|&b| b == 0) {
        if n < N {
            out[n] = &rest[..i];
        }
        n += 1;
        rest = &rest[i + 1..];
    }
    (out, n)
}

/// A decimal domain id as `parse_domid` accepts it (no sign, no junk, < 65536).
pub fn parse_domid(s: &[u8]) -> Result<u16, Errno> {
    parse_u32(s)
        .and_then(|v| u16::try_from(v).ok())
        .ok_or(Errno::Einval)
}

/// A plain decimal u32 (no sign, no spaces), or None.
pub fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter()
        .try_fold(0u64, |a, &d| Some(a * 10 + u64::from(d - b'0')))
        .and_then(|v| u32::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip() {
        let h = Header {
            ty: 2,
            req_id: 0xdead_beef,
            tx_id: 7,
            len: 12,
        };
        assert_eq!(Header::parse(&h.to_bytes()), h);
        assert_eq!(&h.to_bytes()[..4], &[2, 0, 0, 0]);
    }

    #[test]
    fn types_match_xs_wire() {
        assert_eq!(MsgType::from_u32(21), Some(MsgType::ResetWatches));
        assert_eq!(MsgType::from_u32(20), None);
        assert_eq!(MsgType::from_u32(27), None);
        assert_eq!(MsgType::from_u32(0xffff), None);
        for v in 0..27 {
            if let Some(t) = MsgType::from_u32(v) {
                assert_eq!(t as u32, v);
            }
        }
    }

    #[test]
    fn error_names() {
        assert_eq!(Errno::ALL[0].name(), "EINVAL");
        assert_eq!(Errno::ALL[15].name(), "EPERM");
        let r = error_reply(9, 3, Errno::Enoent);
        assert_eq!(Header::parse(r[..16].try_into().unwrap()).ty, 16);
        assert_eq!(&r[16..], b"ENOENT\0");
    }

    #[test]
    fn arg_parsing() {
        assert_eq!(one_arg(b"a/b\0"), Ok(&b"a/b"[..]));
        assert_eq!(one_arg(b"a/b"), Err(Errno::Einval));
        assert_eq!(one_arg(b"a\0b\0"), Err(Errno::Einval));
        assert_eq!(one_arg(b""), Err(Errno::Einval));
        let (v, n) = strings::<2>(b"p\0tok\0junk");
        assert_eq!((v[0], v[1], n), (&b"p"[..], &b"tok"[..], 2));
        assert_eq!(parse_domid(b"65535"), Ok(65535));
        assert_eq!(parse_domid(b"65536"), Err(Errno::Einval));
        assert_eq!(parse_domid(b"-1"), Err(Errno::Einval));
        assert_eq!(parse_domid(b""), Err(Errno::Einval));
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
    }
}
