//! The guest kit's initramfs: a newc cpio holding busybox, the /init script and the Xen front-end modules.

use std::io::Write;

use anyhow::{Context, Result};

use crate::guest_init::INIT_SCRIPT;

/// Where the kernel modules go; busybox insmod takes them from there by hand.
pub const MODULE_DIR: &str = "lib/modules";

/// What one archive member is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    /// A character device node (major, minor).
    CharDev(u32, u32),
}

/// One archive member: a path without a leading "/", its permission bits and kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub perm: u32,
    pub kind: Kind,
}

impl Entry {
    fn dir(path: &str, perm: u32) -> Entry {
        Entry {
            path: path.into(),
            perm,
            kind: Kind::Dir,
        }
    }

    fn file(path: &str, perm: u32, data: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            perm,
            kind: Kind::File(data.to_vec()),
        }
    }

    /// The full st_mode: file type bits and permissions.
    fn mode(&self) -> u32 {
        let kind = match self.kind {
            Kind::Dir => 0o040_000,
            Kind::File(_) => 0o100_000,
            Kind::CharDev(..) => 0o020_000,
        };
        kind | self.perm
    }
}

/// The members, parents before children (the kernel's unpacker makes no
/// missing directories). `modules` are (file name, bytes).
pub fn entries(busybox: &[u8], modules: &[(String, Vec<u8>)]) -> Vec<Entry> {
    let mut out: Vec<Entry> = [
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr", 0o755),
        // busybox --install -s puts links in all four bin directories.
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("dev", 0o755),
        ("proc", 0o755),
        ("sys", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("lib", 0o755),
        (MODULE_DIR, 0o755),
    ]
    .iter()
    .map(|&(path, perm)| Entry::dir(path, perm))
    .collect();
    // The kernel opens /dev/console for init's output before /init can mount devtmpfs.
    out.push(Entry {
        path: "dev/console".into(),
        perm: 0o600,
        kind: Kind::CharDev(5, 1),
    });
    out.push(Entry::file("init", 0o755, INIT_SCRIPT.as_bytes()));
    out.push(Entry::file("bin/busybox", 0o755, busybox));
    for (name, data) in modules {
        out.push(Entry::file(&format!("{MODULE_DIR}/{name}"), 0o644, data));
    }
    out
}

/// Packs `entries` as a newc cpio. Owner root, mtime 0: the same inputs
/// always give the same bytes.
pub fn pack(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for (ino, entry) in entries.iter().enumerate() {
        let mut builder = cpio::newc::Builder::new(&entry.path)
            .ino(ino as u32 + 1)
            .mode(entry.mode())
            .nlink(if entry.kind == Kind::Dir { 2 } else { 1 });
        let data: &[u8] = match &entry.kind {
            Kind::File(data) => data,
            Kind::CharDev(major, minor) => {
                builder = builder.rdev_major(*major).rdev_minor(*minor);
                &[]
            }
            Kind::Dir => &[],
        };
        let size = u32::try_from(data.len())
            .with_context(|| format!("{} is too large for cpio", entry.path))?;
        let mut writer = builder.write(&mut out, size);
        writer.write_all(data)?;
        writer.finish()?;
    }
    cpio::newc::trailer(&mut out)?;
    Ok(out)
}

/// One line per member, as `ls -l` would hint at it, for people.
pub fn listing(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| match &e.kind {
            Kind::Dir => format!("/{}/", e.path),
            Kind::File(data) => format!("/{} ({} bytes, mode {:o})", e.path, data.len(), e.perm),
            Kind::CharDev(major, minor) => format!("/{} (char {major}:{minor})", e.path),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> Vec<Entry> {
        let modules = vec![
            ("xen-blkfront.ko".to_string(), b"\x7fELF blk".to_vec()),
            ("xen-netfront.ko".to_string(), b"\x7fELF net".to_vec()),
        ];
        entries(b"\x7fELF busybox", &modules)
    }

    /// One member read back: name, mode, (rdev major, minor), data.
    type Member = (String, u32, (u32, u32), Vec<u8>);

    fn unpack(bytes: &[u8]) -> Vec<Member> {
        let mut rest = bytes;
        let mut out = Vec::new();
        loop {
            let mut reader = cpio::newc::Reader::new(rest).unwrap();
            let e = reader.entry();
            if e.is_trailer() {
                return out;
            }
            let (name, mode, rdev) = (
                e.name().to_string(),
                e.mode(),
                (e.rdev_major(), e.rdev_minor()),
            );
            let mut data = Vec::new();
            reader.read_to_end(&mut data).unwrap();
            out.push((name, mode, rdev, data));
            rest = reader.finish().unwrap();
        }
    }

    #[test]
    fn archive_round_trips_with_modes() {
        let entries = sample();
        let bytes = pack(&entries).unwrap();
        assert_eq!(bytes, pack(&entries).unwrap(), "deterministic");
        let got = unpack(&bytes);
        assert_eq!(got.len(), entries.len());
        let find = |name: &str| got.iter().find(|g| g.0 == name).unwrap();
        assert_eq!(find("init").1, 0o100_755);
        assert_eq!(find("init").3, INIT_SCRIPT.as_bytes());
        assert_eq!(find("bin/busybox").3, b"\x7fELF busybox");
        assert_eq!(find("dev/console").1, 0o020_600);
        assert_eq!(find("dev/console").2, (5, 1));
        assert_eq!(find("tmp").1, 0o041_777);
        assert_eq!(find("lib/modules/xen-netfront.ko").1, 0o100_644);
        for dir in ["proc", "sys", "dev", "tmp", "root"] {
            assert_eq!(find(dir).1 & 0o170_000, 0o040_000, "{dir}");
        }
    }

    #[test]
    fn parents_come_first() {
        let entries = sample();
        for (i, e) in entries.iter().enumerate() {
            if let Some((parent, _)) = e.path.rsplit_once('/') {
                let at = entries.iter().position(|p| p.path == parent);
                assert!(at.is_some_and(|at| at < i), "{} before its parent", e.path);
            }
        }
    }

    #[test]
    fn listing_names_everything() {
        let lines = listing(&sample());
        assert!(lines.contains(&"/dev/console (char 5:1)".to_string()));
        assert!(lines.iter().any(|l| l.starts_with("/init (")));
        assert!(lines.contains(&"/lib/modules/".to_string()));
    }
}
