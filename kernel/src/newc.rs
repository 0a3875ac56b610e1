//! Reader for the SVR4 "newc" cpio archive that carries the boot modules on the PVH path.
//!
//! QEMU's `-kernel` passes exactly one `-initrd` blob, so several modules
//! travel as one archive: each regular file is a module named by its path.
//! Format: `man 5 cpio`, "New ASCII Format"; the same one Linux reads for
//! its initramfs (Documentation/driver-api/early-userspace/buffer-format.rst).

use crate::boot_info::Module;

const MAGIC: &[u8; 6] = b"070701";
const MAGIC_CRC: &[u8; 6] = b"070702";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";
/// Longest accepted member name, in bytes including the NUL (PATH_MAX).
const MAX_NAME: usize = 4096;

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;

/// Why an archive was refused. Every malformed input ends in one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveError {
    /// A header, name or file body runs past the end of the blob.
    Truncated { offset: usize },
    /// The magic is neither 070701 nor 070702.
    BadMagic { offset: usize },
    /// A header field is not 8 hex digits.
    BadField { offset: usize },
    /// A name is empty, lacks its NUL, is too long or is not UTF-8.
    BadName { offset: usize },
    /// An entry that is neither a regular file nor a directory.
    Unsupported { offset: usize },
    /// The archive ends without the `TRAILER!!!` entry.
    NoTrailer,
    /// More files than the module list holds.
    TooMany,
}

impl core::fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ArchiveError::Truncated { offset } => write!(f, "truncated entry at byte {offset}"),
            ArchiveError::BadMagic { offset } => {
                write!(f, "no newc cpio magic (070701) at byte {offset}")
            }
            ArchiveError::BadField { offset } => write!(f, "bad header field at byte {offset}"),
            ArchiveError::BadName { offset } => write!(f, "bad member name at byte {offset}"),
            ArchiveError::Unsupported { offset } => {
                write!(f, "entry at byte {offset} is not a regular file")
            }
            ArchiveError::NoTrailer => write!(f, "no TRAILER!!! entry"),
            ArchiveError::TooMany => write!(f, "too many members"),
        }
    }
}

fn hex_field(header: &[u8], index: usize, offset: usize) -> Result<u32, ArchiveError> {
    let start = 6 + index * 8;
    let text = &header[start..start + 8];
    let mut value = 0u32;
    for &c in text {
        let digit = (c as char)
            .to_digit(16)
            .ok_or(ArchiveError::BadField { offset })?;
        value = (value << 4) | digit;
    }
    Ok(value)
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Calls `found` with each regular file of `archive`, in archive order.
///
/// Directories are skipped; a leading `./` is removed from names.
/// The archive must end with `TRAILER!!!`; bytes after it (padding) are ignored.
pub fn for_each_file<'a>(
    archive: &'a [u8],
    mut found: impl FnMut(Module<'a>) -> Result<(), ArchiveError>,
) -> Result<(), ArchiveError> {
    let mut offset = 0usize;
    loop {
        let header = archive
            .get(offset..offset + HEADER_LEN)
            .ok_or(ArchiveError::Truncated { offset })?;
        if &header[..6] != MAGIC && &header[..6] != MAGIC_CRC {
            return Err(ArchiveError::BadMagic { offset });
        }
        let mode = hex_field(header, 1, offset)?;
        let file_size = hex_field(header, 6, offset)? as usize;
        let name_size = hex_field(header, 11, offset)? as usize;
        if !(2..=MAX_NAME).contains(&name_size) {
            return Err(ArchiveError::BadName { offset });
        }
        let name_start = offset + HEADER_LEN;
        let name_bytes = archive
            .get(name_start..name_start + name_size)
            .ok_or(ArchiveError::Truncated { offset })?;
        let (nul, name_bytes) = name_bytes
            .split_last()
            .ok_or(ArchiveError::BadName { offset })?;
        if *nul != 0 || name_bytes.contains(&0) {
            return Err(ArchiveError::BadName { offset });
        }
        let name =
            core::str::from_utf8(name_bytes).map_err(|_| ArchiveError::BadName { offset })?;
        let data_start = align4(name_start + name_size);
        let data = archive
            .get(data_start..data_start + file_size)
            .ok_or(ArchiveError::Truncated { offset })?;
        if name == TRAILER {
            return Ok(());
        }
        match mode & S_IFMT {
            S_IFREG => {
                let name = name.strip_prefix("./").unwrap_or(name);
                if name.is_empty() {
                    return Err(ArchiveError::BadName { offset });
                }
                found(Module { name, data })?;
            }
            S_IFDIR => {}
            _ => return Err(ArchiveError::Unsupported { offset }),
        }
        offset = align4(data_start + file_size);
        if offset >= archive.len() {
            return Err(ArchiveError::NoTrailer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A minimal newc writer, the test's own model of the format.
    fn entry(out: &mut Vec<u8>, name: &str, mode: u32, data: &[u8]) {
        let fields = [
            0,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(MAGIC);
        for f in fields {
            out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }

    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        entry(&mut out, ".", S_IFDIR | 0o755, b"");
        for (name, data) in files {
            entry(&mut out, name, S_IFREG | 0o644, data);
        }
        entry(&mut out, TRAILER, 0, b"");
        out
    }

    fn collect(blob: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ArchiveError> {
        let mut v = Vec::new();
        for_each_file(blob, |m| {
            v.push((m.name.to_string(), m.data.to_vec()));
            Ok(())
        })?;
        Ok(v)
    }

    #[test]
    fn reads_files_and_strips_dot_slash() {
        let blob = archive(&[("./a.bin", b"hello"), ("b", b"")]);
        let files = collect(&blob).unwrap();
        assert_eq!(
            files,
            vec![("a.bin".into(), b"hello".to_vec()), ("b".into(), vec![])]
        );
    }

    #[test]
    fn empty_archive_is_fine() {
        assert_eq!(collect(&archive(&[])).unwrap(), vec![]);
    }

    #[test]
    fn refuses_garbage_and_truncation() {
        assert_eq!(
            collect(&[0x5a; 4096]),
            Err(ArchiveError::BadMagic { offset: 0 })
        );
        assert_eq!(collect(&[]), Err(ArchiveError::Truncated { offset: 0 }));
        let blob = archive(&[("a", &[7u8; 100])]);
        let cut = &blob[..blob.len() - 130];
        assert!(matches!(collect(cut), Err(ArchiveError::Truncated { .. })));
        let no_trailer = &blob[..blob.len() - 124];
        assert_eq!(collect(no_trailer), Err(ArchiveError::NoTrailer));
    }

    #[test]
    fn refuses_symlinks_and_bad_names() {
        let mut out = Vec::new();
        entry(&mut out, "link", 0o120_777, b"target");
        entry(&mut out, TRAILER, 0, b"");
        assert_eq!(collect(&out), Err(ArchiveError::Unsupported { offset: 0 }));
        let mut out = archive(&[("abc", b"x")]);
        out[112 + 110 + 1] = 0; // NUL inside "abc", after the 112-byte "." entry
        assert!(matches!(collect(&out), Err(ArchiveError::BadName { .. })));
    }

    proptest! {
        #[test]
        fn never_panics(blob in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = collect(&blob);
        }

        #[test]
        fn never_panics_on_mutated_archives(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)
        ) {
            let mut blob = archive(&[("m0", &[1u8; 33]), ("m1", &[2u8; 4])]);
            for (at, byte) in flips {
                let len = blob.len();
                blob[at % len] = byte;
            }
            let _ = collect(&blob);
        }

        #[test]
        fn round_trips(files in proptest::collection::vec(
            ("[a-z][a-z0-9._-]{0,20}", proptest::collection::vec(any::<u8>(), 0..300)), 0..6)
        ) {
            let refs: Vec<(&str, &[u8])> =
                files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
            let blob = archive(&refs);
            let got = collect(&blob).unwrap();
            let want: Vec<(String, Vec<u8>)> = files.clone();
            prop_assert_eq!(got, want);
        }
    }
}
