//! Turning a kernel file into a PVH-bootable vmlinux: as is if it is the ELF, unpacked if it is a bzImage.

use anyhow::{bail, ensure, Context, Result};

use crate::decompress::Compression;
use crate::elf_check;

/// Where the boot protocol's header keeps what we need (Documentation/arch/x86/boot.rst).
const SETUP_SECTS: usize = 0x1f1;
const HEADER_MAGIC: usize = 0x202;
const VERSION: usize = 0x206;
const PAYLOAD_OFFSET: usize = 0x248;
const PAYLOAD_LENGTH: usize = 0x24c;
/// payload_offset and payload_length came with boot protocol 2.08 (Linux
/// 2.6.26); every kernel compressed with anything but gzip is newer.
const PAYLOAD_FIELDS_SINCE: u16 = 0x0208;
/// The largest vmlinux a payload may claim to hold: Debian's whole 6.1
/// vmlinux is 65 MB; a larger size means a corrupt header.
const MAX_VMLINUX: u32 = 1 << 30;

/// Whether `bytes` carry the x86 boot protocol header ("HdrS").
pub fn is_bzimage(bytes: &[u8]) -> bool {
    bytes.get(HEADER_MAGIC..HEADER_MAGIC + 4) == Some(b"HdrS")
}

/// A bzImage's compressed kernel, as the header's payload fields delimit it.
#[derive(Debug)]
pub struct Payload<'a> {
    pub compression: Compression,
    /// The compressed stream, without the size the build appended.
    pub stream: &'a [u8],
    /// The uncompressed size: the payload's last 4 bytes, little-endian
    /// (what arch/x86/boot/compressed/mkpiggy.c reads as the output length).
    pub size: u32,
}

fn le32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Finds the compressed kernel in a bzImage: payload_offset counts from the
/// protected-mode code, which starts after the boot sector and setup_sects
/// setup sectors; the compression is told by the payload's magic.
pub fn payload(bytes: &[u8]) -> Result<Payload<'_>> {
    ensure!(is_bzimage(bytes), "not a bzImage (no \"HdrS\" boot header)");
    let version = u16::from_le_bytes([bytes[VERSION], bytes[VERSION + 1]]);
    ensure!(
        version >= PAYLOAD_FIELDS_SINCE,
        "boot protocol {}.{:02} predates payload_offset (2.08): too old a kernel to unpack",
        version >> 8,
        version & 0xff
    );
    // setup_sects of 0 means 4, for very old kernels.
    let sects = match bytes[SETUP_SECTS] {
        0 => 4,
        n => usize::from(n),
    };
    let protected = (sects + 1) * 512;
    let (offset, length) = (
        le32(bytes, PAYLOAD_OFFSET).context("header too short")? as usize,
        le32(bytes, PAYLOAD_LENGTH).context("header too short")? as usize,
    );
    let start = protected + offset;
    let Some(payload) = start
        .checked_add(length)
        .and_then(|end| bytes.get(start..end))
    else {
        bail!(
            "the header puts the payload at file offset {start:#x}, {length} bytes, \
             past the end of the {}-byte file",
            bytes.len()
        );
    };
    let Some(compression) = Compression::detect(payload) else {
        let head: Vec<String> = payload.iter().take(6).map(|b| format!("{b:02x}")).collect();
        bail!(
            "the payload at file offset {start:#x} starts with {}: not gzip, bzip2, LZMA, XZ, \
             LZO, LZ4, zstd or an ELF, the compressions Linux uses",
            head.join(" ")
        );
    };
    ensure!(
        length >= 8,
        "the {} payload is only {length} bytes",
        compression.name()
    );
    let size = le32(payload, length - 4).expect("length >= 8");
    let stream = if compression.size_appended() {
        &payload[..length - 4]
    } else {
        payload
    };
    Ok(Payload {
        compression,
        stream,
        size,
    })
}

/// The vmlinux ELF inside a bzImage, cut to its own extent (the payload
/// also carries the relocation table after it).
pub fn vmlinux_from_bzimage(bytes: &[u8]) -> Result<Vec<u8>> {
    let p = payload(bytes)?;
    let name = p.compression.name();
    ensure!(
        p.size <= MAX_VMLINUX,
        "the {name} payload says it unpacks to {} bytes, more than the {MAX_VMLINUX} accepted",
        p.size
    );
    let mut elf = p
        .compression
        .decompress(p.stream, p.size as usize)
        .with_context(|| {
            format!(
                "decompressing the bzImage's {name} payload ({} bytes)",
                p.stream.len()
            )
        })?;
    ensure!(
        elf.len() == p.size as usize,
        "the {name} payload unpacked to {} bytes, the bzImage says {}",
        elf.len(),
        p.size
    );
    let info = elf_check::inspect(&elf).with_context(|| format!("the bzImage's {name} payload"))?;
    elf.truncate(info.extent);
    Ok(elf)
}

/// A kernel file as the hypervisor's PVH loader wants it: a vmlinux ELF with
/// the PVH note is taken as it is, a bzImage (vmlinuz) is unpacked.
pub fn vmlinux_from_file(bytes: Vec<u8>) -> Result<Vec<u8>> {
    if bytes.starts_with(b"\x7fELF") {
        elf_check::inspect(&bytes)?;
        return Ok(bytes);
    }
    if is_bzimage(&bytes) {
        return vmlinux_from_bzimage(&bytes);
    }
    bail!("neither a vmlinux ELF nor a bzImage")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixtures of testdata/kernel-payload/ (made by its make.sh): a
    /// vmlinux cut down to 6.8 KiB, and each compression of it as the
    /// kernel's build makes it.
    const VMLINUX_BIN: &[u8] = include_bytes!("testdata/kernel-payload/vmlinux.bin");
    const PAYLOADS: [(Compression, &[u8]); 7] = [
        (
            Compression::Gzip,
            include_bytes!("testdata/kernel-payload/vmlinux.bin.gz"),
        ),
        (
            Compression::Bzip2,
            include_bytes!("testdata/kernel-payload/vmlinux.bin.bz2"),
        ),
        (
            Compression::Lzma,
            include_bytes!("testdata/kernel-payload/vmlinux.bin.lzma"),
        ),
        (
            Compression::Xz,
            include_bytes!("testdata/kernel-payload/vmlinux.bin.xz"),
        ),
        (
            Compression::Lzo,
            include_bytes!("testdata/kernel-payload/vmlinux.bin.lzo"),
        ),
        (
            Compression::Lz4,
            include_bytes!("testdata/kernel-payload/vmlinux.bin.lz4"),
        ),
        (
            Compression::Zstd,
            include_bytes!("testdata/kernel-payload/vmlinux.bin.zst"),
        ),
    ];
    /// The ELF's own extent in vmlinux.bin; the 256 bytes after it stand
    /// for the relocation table.
    const ELF_EXTENT: usize = 0x200 + 6144;

    /// A bzImage-shaped file: the boot sector and one setup sector of
    /// header (boot protocol 2.15), then `lead` bytes of decompressor code,
    /// the payload, and what a real bzImage has after it.
    fn fake_bzimage(lead: usize, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 2 * 512];
        b[SETUP_SECTS] = 1;
        b[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
        b[VERSION..VERSION + 2].copy_from_slice(&0x020fu16.to_le_bytes());
        b[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(&(lead as u32).to_le_bytes());
        b[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4]
            .copy_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend(std::iter::repeat_n(0x90, lead));
        b.extend_from_slice(payload);
        b.extend_from_slice(&[0xcc; 37]);
        b
    }

    #[test]
    fn each_compression_gives_the_vmlinux_back() {
        for (kind, payload) in PAYLOADS {
            assert_eq!(Compression::detect(payload), Some(kind), "{kind:?}");
            let bz = fake_bzimage(300, payload);
            let p = payload_of(&bz);
            assert_eq!(p.compression, kind);
            assert_eq!(p.size as usize, VMLINUX_BIN.len(), "{kind:?}");
            let elf = vmlinux_from_bzimage(&bz).unwrap_or_else(|e| panic!("{kind:?}: {e:#}"));
            assert_eq!(elf, VMLINUX_BIN[..ELF_EXTENT], "{kind:?}");
            assert_eq!(vmlinux_from_file(bz).unwrap(), elf, "{kind:?}");
        }
    }

    fn payload_of(bz: &[u8]) -> Payload<'_> {
        payload(bz).unwrap()
    }

    #[test]
    fn an_uncompressed_payload_is_taken_as_it_is() {
        let mut raw = VMLINUX_BIN.to_vec();
        raw.extend_from_slice(&(VMLINUX_BIN.len() as u32).to_le_bytes());
        let elf = vmlinux_from_bzimage(&fake_bzimage(0, &raw)).unwrap();
        assert_eq!(elf, VMLINUX_BIN[..ELF_EXTENT]);
    }

    #[test]
    fn failures_name_the_compression() {
        for (kind, payload) in PAYLOADS {
            let name = kind.name();
            // Cut short: the stream ends early (the size stays at the end).
            let mut short = payload[..payload.len() / 2].to_vec();
            short.extend_from_slice(&payload[payload.len() - 4..]);
            let err = format!(
                "{:#}",
                vmlinux_from_bzimage(&fake_bzimage(0, &short)).unwrap_err()
            );
            assert!(err.contains(&format!("{name} payload")), "{kind:?}: {err}");
            // A wrong size: the stream is fine but longer than the header says.
            let mut lying = payload.to_vec();
            let at = lying.len() - 4;
            lying[at..].copy_from_slice(&100u32.to_le_bytes());
            let err = format!(
                "{:#}",
                vmlinux_from_bzimage(&fake_bzimage(0, &lying)).unwrap_err()
            );
            assert!(err.contains(&format!("{name} payload")), "{kind:?}: {err}");
        }
        let err = format!(
            "{:#}",
            vmlinux_from_bzimage(&fake_bzimage(0, b"MZ\x90\x00 not compressed")).unwrap_err()
        );
        assert!(err.contains("starts with 4d 5a 90 00 20 6e"), "{err}");
    }

    #[test]
    fn the_header_must_point_inside_the_file() {
        let mut bz = fake_bzimage(0, PAYLOADS[0].1);
        bz[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = format!("{:#}", payload(&bz).unwrap_err());
        assert!(err.contains("past the end"), "{err}");
        bz[VERSION] = 0x07;
        let err = format!("{:#}", payload(&bz).unwrap_err());
        assert!(err.contains("2.07 predates"), "{err}");
    }

    #[test]
    fn payload_must_be_an_elf() {
        let mut gz = Vec::new();
        {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::best());
            enc.write_all(b"#!/bin/sh\necho not a kernel\n").unwrap();
            enc.finish().unwrap();
        }
        let err = format!(
            "{:#}",
            vmlinux_from_bzimage(&fake_bzimage(16, &gz)).unwrap_err()
        );
        assert!(err.contains("not an ELF"), "{err}");
    }

    #[test]
    fn takes_an_elf_as_is_and_rejects_other_files() {
        let elf = elf_check::tests::tiny_kernel(0x0100_0000, 0);
        assert_eq!(vmlinux_from_file(elf.clone()).unwrap(), elf);
        assert!(vmlinux_from_file(b"#!/bin/sh\n".to_vec()).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Whatever the bytes after a valid magic, unpacking ends in an
        /// error or a vmlinux, never a panic or a runaway allocation: a
        /// real payload with bytes flipped, cut or with a lying size.
        #[test]
        fn garbage_payloads_error_cleanly(
            which in 0..PAYLOADS.len(),
            flips in proptest::collection::vec((0usize..8192, 1u8..=255), 0..6),
            cut in 0usize..8192,
            size in proptest::prelude::any::<u32>(),
            lie in proptest::prelude::any::<bool>(),
        ) {
            let mut p = PAYLOADS[which].1.to_vec();
            let keep = p.len().min(cut.max(8));
            let tail: [u8; 4] = p[p.len() - 4..].try_into().unwrap();
            p.truncate(keep);
            p.extend_from_slice(&if lie { size.to_le_bytes() } else { tail });
            // Keep the magic, so the decoder and not the detection sees the damage.
            for (at, x) in flips {
                let at = 8 + at % (p.len() - 8).max(1);
                if at < p.len() {
                    p[at] ^= x;
                }
            }
            let _ = vmlinux_from_file(fake_bzimage(cut % 64, &p));
        }

        /// Random bytes under each magic.
        #[test]
        fn random_streams_error_cleanly(
            which in 0..PAYLOADS.len(),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
        ) {
            let magic = &PAYLOADS[which].1[..9];
            let mut p = magic.to_vec();
            p.extend_from_slice(&body);
            let _ = vmlinux_from_file(fake_bzimage(0, &p));
        }
    }
}
