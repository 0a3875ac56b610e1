//! The guests the driver domain serves: the hypervisor's domain table (xen_abi::domain_table), checked as untrusted input.

use alloc::string::String;
use alloc::vec::Vec;
use xen_abi::domain_table::*;

/// One guest, as the hypervisor described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guest {
    pub domid: u16,
    pub name: String,
    pub vcpus: u16,
    pub memory_kib: u64,
    pub console_gfn: u64,
    pub console_port: u32,
    pub store_gfn: u64,
    pub store_port: u32,
}

/// Why a table was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    TooShort,
    BadMagic,
    BadVersion(u32),
    BadEntrySize(u32),
    TooMany(u32),
    /// Entry `n` is wrong: domid 0 or repeated, no vCPUs, a zero page or
    /// port, or a name that is empty, not UTF-8 or not printable.
    BadEntry(usize),
}

impl core::fmt::Display for TableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TableError::TooShort => write!(f, "shorter than its header says"),
            TableError::BadMagic => write!(f, "no XNDT magic"),
            TableError::BadVersion(v) => write!(f, "version {v}, expected {DOMAIN_TABLE_VERSION}"),
            TableError::BadEntrySize(s) => write!(f, "entry size {s}"),
            TableError::TooMany(n) => write!(f, "{n} entries, at most {DOMAIN_TABLE_MAX}"),
            TableError::BadEntry(i) => write!(f, "entry {i} is malformed"),
        }
    }
}

/// Builds a table (the hypervisor's side; here for tests and fuzzing).
pub fn encode(entries: &[DomainTableEntry]) -> Vec<u8> {
    let mut out = Vec::from(header(entries.len()).to_bytes());
    for e in entries {
        out.extend_from_slice(&e.to_bytes());
    }
    out
}

/// Parses and checks a table.
pub fn parse(bytes: &[u8]) -> Result<Vec<Guest>, TableError> {
    let head: &[u8; 16] = bytes
        .get(..16)
        .and_then(|h| h.try_into().ok())
        .ok_or(TableError::TooShort)?;
    let word = |i: usize| u32::from_le_bytes(head[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    if word(0) != DOMAIN_TABLE_MAGIC {
        return Err(TableError::BadMagic);
    }
    if word(1) != DOMAIN_TABLE_VERSION {
        return Err(TableError::BadVersion(word(1)));
    }
    let (count, size) = (word(2), word(3));
    if (size as usize) < DomainTableEntry::SIZE || size > 4096 {
        return Err(TableError::BadEntrySize(size));
    }
    if count as usize > DOMAIN_TABLE_MAX {
        return Err(TableError::TooMany(count));
    }
    let need = 16 + count as usize * size as usize;
    if bytes.len() < need {
        return Err(TableError::TooShort);
    }
    let mut guests: Vec<Guest> = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let at = 16 + i * size as usize;
        let raw: &[u8; DomainTableEntry::SIZE] = bytes[at..at + DomainTableEntry::SIZE]
            .try_into()
            .expect("sized slice");
        let e = DomainTableEntry::from_bytes(raw);
        let len = e
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(DOMAIN_NAME_MAX);
        let name = core::str::from_utf8(&e.name[..len]).map_err(|_| TableError::BadEntry(i))?;
        let printable = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic());
        let ok = printable
            && e.domid != 0
            && e.domid < 0x7ff0 // DOMID_FIRST_RESERVED (public/xen.h)
            && e.vcpus > 0
            && e.console_gfn != 0
            && e.store_gfn != 0
            && e.console_port != 0
            && e.store_port != 0
            && guests.iter().all(|g| g.domid != e.domid && g.name != name);
        if !ok {
            return Err(TableError::BadEntry(i));
        }
        guests.push(Guest {
            domid: e.domid,
            name: String::from(name),
            vcpus: e.vcpus,
            memory_kib: e.memory_kib,
            console_gfn: e.console_gfn,
            console_port: e.console_port,
            store_gfn: e.store_gfn,
            store_port: e.store_port,
        });
    }
    Ok(guests)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(domid: u16, name: &str) -> DomainTableEntry {
        DomainTableEntry {
            domid,
            vcpus: 1,
            console_port: 1,
            store_port: 2,
            reserved: 0,
            memory_kib: 262_144,
            console_gfn: 0xfeffc,
            store_gfn: 0xfeffd,
            name: name_field(name),
        }
    }

    #[test]
    fn round_trip() {
        let t = encode(&[entry(1, "linux"), entry(2, "linux-2")]);
        let g = parse(&t).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[1].name, "linux-2");
        assert_eq!(g[0].memory_kib, 262_144);
        assert_eq!(g[0].store_port, 2);
    }

    #[test]
    fn refuses_what_is_wrong() {
        assert_eq!(parse(&[0; 8]), Err(TableError::TooShort));
        let mut t = encode(&[entry(1, "a")]);
        t[0] = b'Y';
        assert_eq!(parse(&t), Err(TableError::BadMagic));
        assert_eq!(
            parse(&encode(&[entry(0, "dom0")])),
            Err(TableError::BadEntry(0))
        );
        assert_eq!(
            parse(&encode(&[entry(1, "a"), entry(1, "b")])),
            Err(TableError::BadEntry(1))
        );
        assert_eq!(
            parse(&encode(&[entry(1, "a"), entry(2, "a")])),
            Err(TableError::BadEntry(1))
        );
        assert_eq!(
            parse(&encode(&[entry(1, "a b")])),
            Err(TableError::BadEntry(0))
        );
        let t = encode(&[entry(1, "a")]);
        assert_eq!(parse(&t[..t.len() - 1]), Err(TableError::TooShort));
    }

    proptest! {
        /// Any bytes: an error or guests that pass every check, never a panic.
        #[test]
        fn any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(g) = parse(&bytes) {
                prop_assert!(g.iter().all(|g| g.domid != 0 && !g.name.is_empty()));
            }
        }

        /// A valid header over random entries.
        #[test]
        fn random_entries(raw in proptest::collection::vec(any::<u8>(), 0..(72 * 4))) {
            let n = raw.len() / 72;
            let mut t = encode(&[]);
            t[8..12].copy_from_slice(&(n as u32).to_le_bytes());
            t.extend_from_slice(&raw[..n * 72]);
            let _ = parse(&t);
        }
    }
}
