//! Which guest gets which network interface: the driver domain's `vif=` options and the MAC addresses they name or imply.

use alloc::string::String;
use core::fmt;

/// An Ethernet address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    /// Group addresses (broadcast, multicast) have the I/G bit set.
    pub fn is_group(&self) -> bool {
        self.0[0] & 1 != 0
    }

    /// From the first six bytes of `b`.
    pub fn from_slice(b: &[u8]) -> Mac {
        let mut m = [0u8; 6];
        m.copy_from_slice(&b[..6]);
        Mac(m)
    }

    /// Parses `xx:xx:xx:xx:xx:xx`; group and all-zero addresses are refused
    /// (an interface's own address must be unicast).
    pub fn parse(text: &str) -> Result<Mac, &'static str> {
        let mut m = [0u8; 6];
        let mut parts = text.split(':');
        for b in m.iter_mut() {
            let p = parts.next().ok_or("a MAC address has six parts")?;
            if p.len() != 2 {
                return Err("each part of a MAC address is two hex digits");
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| "a MAC address is hex")?;
        }
        if parts.next().is_some() {
            return Err("a MAC address has six parts");
        }
        let mac = Mac(m);
        if mac.is_group() || m == [0; 6] {
            return Err("a MAC address must be unicast and not zero");
        }
        Ok(mac)
    }

    /// The address an interface gets when the config names none: Xen's
    /// OUI 00:16:3e (libxl uses it for random ones) and three bytes of an
    /// FNV-1a hash of the guest's name and the interface number, so it is
    /// the same on every boot.
    pub fn generated(guest: &str, index: u32) -> Mac {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in guest.bytes().chain(index.to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let [a, b, c, ..] = h.to_le_bytes();
        // The top bit clear, as libxl does for its random half.
        Mac([0x00, 0x16, 0x3e, a & 0x7f, b, c])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// One `vif=<guest>[:<mac>]` option; the n-th of a guest is its `vif/<n>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VifSpec {
    pub guest: String,
    pub devid: u32,
    pub mac: Mac,
}

/// Interfaces one guest may have.
pub const VIFS_PER_GUEST: u32 = 4;

/// Parses one `vif=` value; `devid` is how many the guest had before.
pub fn parse_vif(text: &str, devid: u32) -> Result<VifSpec, &'static str> {
    let (guest, mac) = match text.split_once(':') {
        Some((g, m)) => (g, Some(m)),
        None => (text, None),
    };
    if guest.is_empty() {
        return Err("no guest name");
    }
    if devid >= VIFS_PER_GUEST {
        return Err("a guest has at most 4 interfaces");
    }
    let mac = match mac {
        Some(m) => Mac::parse(m)?,
        None => Mac::generated(guest, devid),
    };
    Ok(VifSpec {
        guest: String::from(guest),
        devid,
        mac,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn options() {
        let v = parse_vif("linux1:00:16:3e:01:02:03", 0).unwrap();
        assert_eq!(v.guest, "linux1");
        assert_eq!(v.mac.to_string(), "00:16:3e:01:02:03");
        let g = parse_vif("linux1", 1).unwrap();
        assert_eq!(g.mac, Mac::generated("linux1", 1));
        assert_ne!(g.mac, Mac::generated("linux1", 0));
        assert_ne!(g.mac, Mac::generated("linux2", 1));
        assert!(!g.mac.is_group());
        assert_eq!(&g.mac.0[..3], &[0x00, 0x16, 0x3e]);
        for bad in [
            ":00:16:3e:01:02:03",
            "l:01:16:3e:01:02:03",
            "l:00:00:00:00:00:00",
            "l:00:16:3e:01:02",
            "l:00:16:3e:01:02:03:04",
            "l:0:16:3e:01:02:03",
            "l:zz:16:3e:01:02:03",
        ] {
            assert!(parse_vif(bad, 0).is_err(), "{bad}");
        }
        assert!(parse_vif("l", VIFS_PER_GUEST).is_err());
    }
}
