//! A domain's handle: the 16-byte UUID Xen keeps per domain, derived here from the domain's name.
//!
//! Xen's toolstack picks `xen_domain_handle_t` (public/xen.h) at domain
//! creation; the domain reads it back with `XENVER_guest_handle` and finds
//! it in XenStore as `/vm/<uuid>`. Here the hypervisor builds the domains,
//! so both sides derive it from the name the domain table carries: stable
//! across boots, distinct between names, laid out as a version-4 UUID.

/// `xen_domain_handle_t`: `uint8_t[16]`.
pub type DomainHandle = [u8; 16];

/// The handle of the domain called `name`: two FNV-1a-style hashes of it,
/// with the version (4) and variant (10) bits of RFC 4122 set.
pub fn domain_handle(name: &[u8]) -> DomainHandle {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut h2: u64 = 0x8422_2325_cbf2_9ce4;
    for &b in name {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        h2 = (h2 ^ u64::from(b))
            .wrapping_mul(0x100_0000_01b3)
            .rotate_left(7);
    }
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&((h >> 32) as u32).to_be_bytes());
    out[4..6].copy_from_slice(&(((h >> 16) & 0xffff) as u16).to_be_bytes());
    out[6..8].copy_from_slice(&((0x4000 | (h & 0xfff)) as u16).to_be_bytes());
    out[8..10].copy_from_slice(&((0x8000 | ((h2 >> 48) & 0x3fff)) as u16).to_be_bytes());
    out[10..].copy_from_slice(&(h2 & 0xffff_ffff_ffff).to_be_bytes()[2..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_distinct_and_version_4() {
        let a = domain_handle(b"linux");
        assert_eq!(a, domain_handle(b"linux"));
        assert_ne!(a, domain_handle(b"linux-2"));
        assert_eq!(a[6] >> 4, 4);
        assert_eq!(a[8] >> 6, 0b10);
    }
}
