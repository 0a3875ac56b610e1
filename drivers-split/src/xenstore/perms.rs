//! Node permissions: `n`/`r`/`w`/`b` + domid lists, first entry = owner and default (xenstore.txt, xenstored `perm_for_conn`).

use super::wire::{parse_domid, Errno};
use alloc::format;
use alloc::vec::Vec;

/// Access bits (xenstore_lib.h `XS_PERM_READ`, `XS_PERM_WRITE`).
pub const READ: u8 = 1;
pub const WRITE: u8 = 2;
/// What an owner (or the privileged domain) gets: everything.
pub const ALL: u8 = READ | WRITE;

/// One `<letter><domid>` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PermEntry {
    pub domid: u16,
    /// `READ` | `WRITE` bits.
    pub access: u8,
}

/// A node's list; never empty. Entry 0 names the owner, and its access is
/// what every domain not listed gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Perms(Vec<PermEntry>);

impl Perms {
    /// Owned by `owner`, no access for anyone else (`n<owner>`).
    pub fn owned_by(owner: u16) -> Self {
        Perms(alloc::vec![PermEntry {
            domid: owner,
            access: 0
        }])
    }

    pub fn entries(&self) -> &[PermEntry] {
        &self.0
    }

    pub fn owner(&self) -> u16 {
        self.0[0].domid
    }

    /// The same list with another owner (xenstored `construct_node`: an
    /// unprivileged creator owns what it creates).
    pub fn with_owner(&self, owner: u16) -> Self {
        let mut p = self.clone();
        p.0[0].domid = owner;
        p
    }

    /// xenstored `perm_for_conn`: owner and privileged get all; else the
    /// first later entry naming `domid`; else the default (entry 0).
    pub fn access_for(&self, domid: u16, privileged: bool) -> u8 {
        if privileged || self.owner() == domid {
            return ALL;
        }
        self.0[1..]
            .iter()
            .find(|e| e.domid == domid)
            .unwrap_or(&self.0[0])
            .access
    }

    /// Parse the `SET_PERMS` strings (xenstore_lib `xenstore_strings_to_perms`).
    pub fn parse<'a>(strs: impl Iterator<Item = &'a [u8]>) -> Result<Self, Errno> {
        let mut v = Vec::new();
        for s in strs {
            let (&letter, id) = s.split_first().ok_or(Errno::Einval)?;
            let access = match letter {
                b'n' => 0,
                b'r' => READ,
                b'w' => WRITE,
                b'b' => READ | WRITE,
                _ => return Err(Errno::Einval),
            };
            v.push(PermEntry {
                domid: parse_domid(id)?,
                access,
            });
        }
        if v.is_empty() {
            return Err(Errno::Einval);
        }
        Ok(Perms(v))
    }

    /// The `GET_PERMS` reply: each entry as a NUL-terminated string.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.0 {
            let l = match e.access {
                0 => 'n',
                READ => 'r',
                WRITE => 'w',
                _ => 'b',
            };
            out.extend_from_slice(format!("{l}{}", e.domid).as_bytes());
            out.push(0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[&str]) -> Perms {
        Perms::parse(s.iter().map(|x| x.as_bytes())).unwrap()
    }

    #[test]
    fn owner_default_and_specific() {
        let perms = p(&["n0", "r5", "b7"]);
        assert_eq!(perms.owner(), 0);
        assert_eq!(perms.access_for(0, false), ALL);
        assert_eq!(perms.access_for(5, false), READ);
        assert_eq!(perms.access_for(7, false), ALL);
        assert_eq!(perms.access_for(9, false), 0);
        assert_eq!(perms.access_for(9, true), ALL);
        let perms = p(&["r3"]);
        assert_eq!(perms.access_for(4, false), READ);
        assert_eq!(perms.access_for(3, false), ALL);
    }

    #[test]
    fn parse_and_format() {
        let perms = p(&["n0", "r5", "w6", "b7"]);
        assert_eq!(perms.to_wire(), b"n0\0r5\0w6\0b7\0");
        for bad in ["", "x1", "r", "r-1", "r65536", "r1a"] {
            assert_eq!(
                Perms::parse([bad.as_bytes()].into_iter()),
                Err(Errno::Einval)
            );
        }
        assert_eq!(Perms::parse(core::iter::empty()), Err(Errno::Einval));
        assert_eq!(perms.with_owner(9).owner(), 9);
        assert_eq!(perms.with_owner(9).entries()[1].domid, 5);
    }
}
