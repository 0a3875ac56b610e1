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
    /// `memory/target` at start of day, KiB.
    pub memory_kib: u64,
    /// `memory/static-max`: the most it may balloon up to, KiB.
    pub static_max_kib: u64,
    pub console_gfn: u64,
    pub console_port: u32,
    pub store_gfn: u64,
    pub store_port: u32,
}

/// A RAM disk the hypervisor put in module 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RamDisk {
    pub name: String,
    /// Bytes from the start of module 0; page-aligned.
    pub offset: u64,
    pub size: u64,
}

/// What the driver domain was given besides the guests to serve.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// The identity-mapped DMA pool: (base, size), page-aligned.
    pub dma: Option<(u64, u64)>,
    pub devices: Vec<PciDeviceEntry>,
    pub ramdisks: Vec<RamDisk>,
}

/// The whole table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub guests: Vec<Guest>,
    pub resources: Resources,
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
    /// The resources record is wrong: too many devices or RAM disks, a RAM
    /// disk outside the module or unaligned, a DMA pool unaligned.
    BadResources,
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
            TableError::BadResources => write!(f, "the resources record is malformed"),
        }
    }
}

/// Builds a table without resources (the hypervisor's side; here for tests
/// and fuzzing).
pub fn encode(entries: &[DomainTableEntry]) -> Vec<u8> {
    encode_with(entries, &DriverResources::default())
}

/// Builds a table with a resources record.
pub fn encode_with(entries: &[DomainTableEntry], res: &DriverResources) -> Vec<u8> {
    let mut out = Vec::from(header(entries.len()).to_bytes());
    for e in entries {
        out.extend_from_slice(&e.to_bytes());
    }
    out.extend_from_slice(&res.to_bytes());
    out
}

/// Parses and checks a table.
pub fn parse(bytes: &[u8]) -> Result<Table, TableError> {
    let guests = parse_guests(bytes)?;
    let head = 16 + guests.len() * entry_size(bytes);
    let raw: &[u8; DriverResources::SIZE] = bytes
        .get(head..head + DriverResources::SIZE)
        .and_then(|r| r.try_into().ok())
        .ok_or(TableError::TooShort)?;
    let r = DriverResources::from_bytes(raw);
    let (nd, nr) = (r.nr_devices as usize, r.nr_ramdisks as usize);
    if nd > MAX_DEVICES || nr > MAX_RAMDISKS {
        return Err(TableError::BadResources);
    }
    let dma = match (r.dma_base, r.dma_size) {
        (_, 0) => None,
        (b, s) if b % 4096 == 0 && s % 4096 == 0 && b.checked_add(s).is_some() => Some((b, s)),
        _ => return Err(TableError::BadResources),
    };
    let mut ramdisks: Vec<RamDisk> = Vec::new();
    for d in &r.ramdisks[..nr] {
        let end = d
            .offset
            .checked_add(d.size)
            .ok_or(TableError::BadResources)?;
        let len = d
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(DOMAIN_NAME_MAX);
        let name = core::str::from_utf8(&d.name[..len]).map_err(|_| TableError::BadResources)?;
        let ok = d.offset % 4096 == 0
            && (d.offset as usize) >= head + DriverResources::SIZE
            && end <= bytes.len() as u64
            && !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_graphic())
            && ramdisks
                .iter()
                .all(|o| o.name != name && (end <= o.offset || o.offset + o.size <= d.offset));
        if !ok {
            return Err(TableError::BadResources);
        }
        ramdisks.push(RamDisk {
            name: String::from(name),
            offset: d.offset,
            size: d.size,
        });
    }
    Ok(Table {
        guests,
        resources: Resources {
            dma,
            devices: r.devices[..nd].to_vec(),
            ramdisks,
        },
    })
}

fn entry_size(bytes: &[u8]) -> usize {
    u32::from_le_bytes(bytes[12..16].try_into().expect("checked header")) as usize
}

/// The header and the guest entries.
fn parse_guests(bytes: &[u8]) -> Result<Vec<Guest>, TableError> {
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
            && e.static_max_kib >= e.memory_kib
            && guests.iter().all(|g| g.domid != e.domid && g.name != name);
        if !ok {
            return Err(TableError::BadEntry(i));
        }
        guests.push(Guest {
            domid: e.domid,
            name: String::from(name),
            vcpus: e.vcpus,
            memory_kib: e.memory_kib,
            static_max_kib: e.static_max_kib,
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
            static_max_kib: 262_144,
        }
    }

    #[test]
    fn round_trip() {
        let t = encode(&[entry(1, "linux"), entry(2, "linux-2")]);
        let g = parse(&t).unwrap().guests;
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

    fn with_ramdisk(offset: u64, size: u64, extra: usize) -> Vec<u8> {
        let mut r = DriverResources {
            nr_ramdisks: 1,
            ..Default::default()
        };
        r.ramdisks[0] = RamDiskEntry {
            offset,
            size,
            name: name_field("disk.img"),
        };
        let mut t = encode_with(&[entry(1, "a")], &r);
        t.resize(t.len() + extra, 0);
        t
    }

    #[test]
    fn ramdisks_must_lie_inside_the_module() {
        let t = with_ramdisk(4096, 8192, 12288);
        let r = parse(&t).unwrap().resources;
        assert_eq!(r.ramdisks[0].name, "disk.img");
        assert_eq!((r.ramdisks[0].offset, r.ramdisks[0].size), (4096, 8192));
        assert_eq!(
            parse(&with_ramdisk(4096, 1 << 20, 12288)),
            Err(TableError::BadResources)
        );
        assert_eq!(
            parse(&with_ramdisk(100, 10, 12288)),
            Err(TableError::BadResources)
        );
        assert_eq!(
            parse(&with_ramdisk(u64::MAX - 4095, 8192, 12288)),
            Err(TableError::BadResources)
        );
        // Over the table itself.
        assert_eq!(
            parse(&with_ramdisk(0, 4096, 12288)),
            Err(TableError::BadResources)
        );
    }

    proptest! {
        /// Any bytes: an error or guests that pass every check, never a panic.
        #[test]
        fn any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(t) = parse(&bytes) {
                prop_assert!(t.guests.iter().all(|g| g.domid != 0 && !g.name.is_empty()));
                prop_assert!(t.resources.ramdisks.iter().all(|d| d.offset + d.size <= bytes.len() as u64));
            }
        }

        /// A valid header over random entries.
        #[test]
        fn random_entries(raw in proptest::collection::vec(any::<u8>(), 0..(72 * 4))) {
            let n = raw.len() / 72;
            let mut t = encode(&[]);
            t.truncate(16);
            t[8..12].copy_from_slice(&(n as u32).to_le_bytes());
            t.extend_from_slice(&raw[..n * 72]);
            t.extend_from_slice(&DriverResources::default().to_bytes());
            let _ = parse(&t);
        }
    }
}
