//! The compressions Linux packs its bzImage payload with, told apart by magic and undone with pure-Rust crates.

use std::io::{Read, Write};

use anyhow::{bail, ensure, Context, Result};

use crate::xz;

/// How a kernel payload is compressed: the kernel's CONFIG_KERNEL_* choice
/// (init/Kconfig), each as arch/x86/boot/compressed/Makefile makes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// `gzip -n -f -9`.
    Gzip,
    /// `bzip2 -9`.
    Bzip2,
    /// `lzma -9`: the .lzma ("LZMA alone") format, 13-byte header.
    Lzma,
    /// `xz --check=crc32 --x86 --lzma2=,dict=32MiB` (scripts/xz_wrap.sh).
    Xz,
    /// `lzop -9`: lzop's container around LZO1X blocks.
    Lzo,
    /// `lz4 -l -9`: the legacy LZ4 frame, 8 MiB blocks.
    Lz4,
    /// `zstd -22 --ultra`.
    Zstd,
    /// CONFIG_KERNEL_UNCOMPRESSED: the ELF as it is.
    None,
}

/// Each compression, its magic at the payload's start (the table in the
/// kernel's lib/decompress.c, plus the ELF magic of an uncompressed payload),
/// and its name for people.
const KINDS: [(Compression, &[u8], &str); 8] = [
    (Compression::Gzip, &[0x1f, 0x8b], "gzip"),
    (Compression::Bzip2, b"BZh", "bzip2"),
    (Compression::Lzma, &[0x5d, 0x00, 0x00], "LZMA"),
    (Compression::Xz, &xz::MAGIC, "XZ"),
    (Compression::Lzo, &LZOP_MAGIC, "LZO"),
    (Compression::Lz4, &LZ4_LEGACY_MAGIC.to_le_bytes(), "LZ4"),
    (Compression::Zstd, &[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
    (Compression::None, b"\x7fELF", "uncompressed"),
];

impl Compression {
    /// The compression whose magic `payload` starts with.
    pub fn detect(payload: &[u8]) -> Option<Compression> {
        KINDS
            .iter()
            .find(|(_, magic, _)| payload.starts_with(magic))
            .map(|&(kind, _, _)| kind)
    }

    pub fn name(self) -> &'static str {
        KINDS
            .iter()
            .find(|(kind, _, _)| *kind == self)
            .map_or("?", |&(_, _, name)| name)
    }

    /// Whether the payload's last 4 bytes are the size the Makefile appended
    /// (its `*_with_size` commands) rather than part of the stream. gzip's
    /// own trailer ends in that size already (ISIZE, RFC 1952), so nothing
    /// is appended to it.
    pub fn size_appended(self) -> bool {
        self != Compression::Gzip
    }

    /// Decompresses `input`, one stream of this kind (without the appended
    /// size), into at most `limit` bytes: more is an error, so a corrupt or
    /// hostile stream cannot make the host allocate without bound.
    pub fn decompress(self, input: &[u8], limit: usize) -> Result<Vec<u8>> {
        let out = match self {
            Compression::Gzip => read_limited(flate2::read::GzDecoder::new(input), limit)?,
            Compression::Bzip2 => read_limited(bzip2::read::BzDecoder::new(input), limit)?,
            Compression::Lzma => {
                let mut out = Vec::new();
                let options = lzma_rs::decompress::Options {
                    // The header's size is all-ones: the stream ends in an end marker.
                    unpacked_size: lzma_rs::decompress::UnpackedSize::ReadFromHeader,
                    // lzma -9 uses a 64 MiB dictionary; more means a corrupt header.
                    memlimit: Some(MAX_DICT),
                    allow_incomplete: false,
                };
                // lzma-rs hands its output over a byte at a time.
                let mut sink = std::io::BufWriter::with_capacity(
                    1 << 16,
                    LimitedWriter {
                        out: &mut out,
                        limit,
                    },
                );
                lzma_rs::lzma_decompress_with_options(&mut &input[..], &mut sink, &options)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                sink.flush()?;
                drop(sink);
                out
            }
            Compression::Xz => xz::decode_stream(input, limit)?.0,
            Compression::Lzo => lzop(input, limit)?,
            Compression::Lz4 => lz4_legacy(input, limit)?,
            Compression::Zstd => {
                let decoder = ruzstd::decoding::StreamingDecoder::new(input)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                read_limited(decoder, limit)?
            }
            Compression::None => {
                ensure!(input.len() <= limit, "more than {limit} bytes");
                input.to_vec()
            }
        };
        Ok(out)
    }
}

/// The largest LZMA dictionary accepted (lzma -9 takes 64 MiB).
const MAX_DICT: usize = 1 << 27;

/// Reads `reader` to its end, failing past `limit` bytes.
fn read_limited(reader: impl Read, limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(cap).read_to_end(&mut out)?;
    ensure!(out.len() <= limit, "more than {limit} bytes");
    Ok(out)
}

/// A `Write` into a vector that refuses to grow past `limit`.
struct LimitedWriter<'a> {
    out: &'a mut Vec<u8>,
    limit: usize,
}

impl Write for LimitedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.limit {
            return Err(std::io::Error::other(format!(
                "more than {} bytes",
                self.limit
            )));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The magic of the legacy LZ4 frame `lz4 -l` writes (lib/decompress_unlz4.c
/// ARCHIVE_MAGICNUMBER), little-endian.
pub const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
/// What one legacy LZ4 block decompresses to at most (lib/decompress_unlz4.c
/// LZ4_DEFAULT_UNCOMPRESSED_CHUNK_SIZE).
const LZ4_BLOCK: usize = 8 << 20;

/// The legacy LZ4 frame: the magic, then blocks of a 4-byte little-endian
/// compressed size and an LZ4 block each, to the end of `input` (the format
/// has no end marker, so `input` must be exactly the stream). A repeated
/// magic starts a concatenated frame and is skipped, as the kernel does.
fn lz4_legacy(input: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut rest = input
        .strip_prefix(&LZ4_LEGACY_MAGIC.to_le_bytes()[..])
        .context("no legacy LZ4 frame magic (02 21 4c 18)")?;
    let mut out = Vec::new();
    let mut block = vec![0u8; LZ4_BLOCK];
    while !rest.is_empty() {
        let at = input.len() - rest.len();
        let Some((size, tail)) = rest.split_first_chunk::<4>() else {
            bail!("truncated block size at offset {at}");
        };
        let size = u32::from_le_bytes(*size);
        if size == LZ4_LEGACY_MAGIC {
            rest = tail;
            continue;
        }
        let Some(data) = tail.get(..size as usize) else {
            bail!(
                "block at offset {at} says {size} bytes, {} are left",
                tail.len()
            );
        };
        let n = lz4_flex::block::decompress_into(data, &mut block)
            .map_err(|e| anyhow::anyhow!("block at offset {at}: {e}"))?;
        ensure!(out.len() + n <= limit, "more than {limit} bytes");
        out.extend_from_slice(&block[..n]);
        rest = &tail[size as usize..];
    }
    Ok(out)
}

/// lzop's file magic (lib/decompress_unlzo.c lzop_magic).
const LZOP_MAGIC: [u8; 9] = [0x89, b'L', b'Z', b'O', 0x00, 0x0d, 0x0a, 0x1a, 0x0a];
/// lzop header flags (lzop's conf.h): block checksums and a filter field.
const F_ADLER32_D: u32 = 0x0001;
const F_ADLER32_C: u32 = 0x0002;
const F_H_EXTRA_FIELD: u32 = 0x0040;
const F_H_FILTER: u32 = 0x0800;
const F_CRC32_D: u32 = 0x0100;
const F_CRC32_C: u32 = 0x0200;
/// The largest block lzop writes (lib/decompress_unlzo.c LZO_BLOCK_SIZE).
const LZO_BLOCK: usize = 256 * 1024;

/// A cursor over big-endian header fields that fails instead of running off.
struct Cursor<'a> {
    input: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.input.len());
        let Some(end) = end else {
            bail!("truncated at offset {} (wanted {n} more bytes)", self.at);
        };
        let bytes = &self.input[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn be16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into()?))
    }

    fn be32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into()?))
    }
}

/// An lzop file: its header (the fields lib/decompress_unlzo.c parse_header
/// skips, laid out as lzop writes them), then blocks of uncompressed and
/// compressed size (big-endian), the checksums the header's flags ask for,
/// and the LZO1X data, stored as is when it would not shrink; a zero
/// uncompressed size ends it.
fn lzop(input: &[u8], limit: usize) -> Result<Vec<u8>> {
    let (flags, header_len) = lzop_header(input)?;
    let mut c = Cursor {
        input,
        at: header_len,
    };
    let d_sums = [F_ADLER32_D, F_CRC32_D]
        .iter()
        .filter(|&&f| flags & f != 0)
        .count();
    let c_sums = [F_ADLER32_C, F_CRC32_C]
        .iter()
        .filter(|&&f| flags & f != 0)
        .count();
    let mut out = Vec::new();
    loop {
        let at = c.at;
        let dst = c.be32()? as usize;
        if dst == 0 {
            return Ok(out);
        }
        ensure!(
            dst <= LZO_BLOCK,
            "block at offset {at} says {dst} bytes, more than lzop's {LZO_BLOCK}"
        );
        let src = c.be32()? as usize;
        ensure!(
            src > 0 && src <= dst,
            "block at offset {at}: compressed size {src} for {dst} bytes"
        );
        c.take(4 * d_sums)?;
        if src < dst {
            c.take(4 * c_sums)?;
        }
        let data = c.take(src)?;
        ensure!(out.len() + dst <= limit, "more than {limit} bytes");
        if src == dst {
            out.extend_from_slice(data);
        } else {
            // lzokay-native (the one LZO1X decoder on crates.io under a
            // licence this tree can take; lzo1x, rust-lzo and minilzo-rs are
            // GPL) indexes out of bounds on some corrupt blocks instead of
            // returning an error; the panic is taken back here and becomes one.
            let decoded = catch_quietly(|| lzokay_native::decompress_all(data, Some(dst)));
            let block = match decoded {
                Ok(Ok(block)) => block,
                Ok(Err(e)) => bail!("block at offset {at}: {e:?}"),
                Err(_) => bail!("block at offset {at} is corrupt (the LZO1X decoder gave up)"),
            };
            ensure!(
                block.len() == dst,
                "block at offset {at} gave {} bytes, its header says {dst}",
                block.len()
            );
            out.extend_from_slice(&block);
        }
    }
}

thread_local! {
    /// Whether a panic on this thread is one [`catch_quietly`] takes back.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning its panic into `Err` without the panic message the
/// default hook would print (a decoder's bounds check on corrupt input is
/// no crash of ours); panics elsewhere still reach the previous hook.
fn catch_quietly<R>(f: impl FnOnce() -> R + std::panic::UnwindSafe) -> std::thread::Result<R> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = std::panic::catch_unwind(f);
    QUIET.with(|q| q.set(false));
    result
}

/// The flags of an lzop header and where its first block starts.
fn lzop_header(input: &[u8]) -> Result<(u32, usize)> {
    let mut c = Cursor { input, at: 0 };
    ensure!(
        c.take(LZOP_MAGIC.len())? == LZOP_MAGIC,
        "no lzop magic (89 4c 5a 4f 00 0d 0a 1a 0a)"
    );
    let version = c.be16()?;
    c.take(2)?; // library version
    if version >= 0x0940 {
        c.take(2)?; // version needed to extract
    }
    let method = c.u8()?;
    ensure!(
        (1..=3).contains(&method),
        "lzop method {method} is not LZO1X"
    );
    if version >= 0x0940 {
        c.u8()?; // level
    }
    let flags = c.be32()?;
    if flags & F_H_FILTER != 0 {
        c.take(4)?;
    }
    c.take(8)?; // mode, mtime low
    if version >= 0x0940 {
        c.take(4)?; // mtime high
    }
    let name_len = c.u8()?;
    c.take(usize::from(name_len) + 4)?; // name, header checksum
    if flags & F_H_EXTRA_FIELD != 0 {
        let len = c.be32()? as usize;
        c.take(len.saturating_add(4))?; // the field and its checksum
    }
    Ok((flags, c.at))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VMLINUX_BIN: &[u8] = include_bytes!("testdata/kernel-payload/vmlinux.bin");
    /// The fixtures as the kernel build leaves them: the stream, then the size.
    const LZ4: &[u8] = include_bytes!("testdata/kernel-payload/vmlinux.bin.lz4");
    const LZO: &[u8] = include_bytes!("testdata/kernel-payload/vmlinux.bin.lzo");

    fn twice() -> Vec<u8> {
        [VMLINUX_BIN, VMLINUX_BIN].concat()
    }

    #[test]
    fn legacy_lz4_takes_every_block_and_a_repeated_magic() {
        // One 8 MiB block holds the fixture: magic, size, block.
        let stream = &LZ4[..LZ4.len() - 4];
        let block = &stream[4..];
        let size = u32::from_le_bytes(block[..4].try_into().unwrap()) as usize;
        assert_eq!(block.len(), 4 + size);
        let two = [stream, block].concat();
        assert_eq!(Compression::Lz4.decompress(&two, 1 << 20).unwrap(), twice());
        let concatenated = [stream, stream].concat();
        assert_eq!(
            Compression::Lz4.decompress(&concatenated, 1 << 20).unwrap(),
            twice()
        );
        assert!(Compression::Lz4
            .decompress(&two, VMLINUX_BIN.len())
            .is_err());
        // Without an end marker, a cut block is a truncated stream.
        let err = Compression::Lz4.decompress(&two[..two.len() - 1], 1 << 20);
        assert!(format!("{:#}", err.unwrap_err()).contains("are left"));
    }

    #[test]
    fn lzop_takes_every_block_stored_or_compressed() {
        let stream = &LZO[..LZO.len() - 4];
        let (flags, header) = lzop_header(stream).unwrap();
        // lzop -9 writes an Adler-32 of each block's data, nothing else.
        let sums = F_ADLER32_D | F_ADLER32_C | F_CRC32_D | F_CRC32_C;
        assert_eq!(flags & sums, F_ADLER32_D);
        let block = &stream[header..stream.len() - 4];
        assert_eq!(&stream[stream.len() - 4..], [0; 4]);
        // A stored block: its two sizes equal, its data as it is.
        let mut stored = (VMLINUX_BIN.len() as u32).to_be_bytes().repeat(2);
        stored.extend_from_slice(&[0; 4]);
        stored.extend_from_slice(VMLINUX_BIN);
        let two = [&stream[..header], block, &stored, &[0; 4]].concat();
        assert_eq!(Compression::Lzo.decompress(&two, 1 << 20).unwrap(), twice());
        let unended = [&stream[..header], block].concat();
        assert!(Compression::Lzo.decompress(&unended, 1 << 20).is_err());
    }

    #[test]
    fn corrupt_lzo_blocks_are_errors_not_panics() {
        // proptest found lzokay-native indexing out of bounds on such blocks.
        let stream = &LZO[..LZO.len() - 4];
        let (_, header) = lzop_header(stream).unwrap();
        let mut errors = 0;
        for at in header + 12..stream.len() - 4 {
            let mut bad = stream.to_vec();
            bad[at] ^= 29;
            errors += usize::from(Compression::Lzo.decompress(&bad, 1 << 20).is_err());
        }
        assert!(errors > 0);
    }

    #[test]
    fn names_and_magics_are_distinct() {
        for (i, (kind, magic, name)) in KINDS.iter().enumerate() {
            assert_eq!(Compression::detect(magic), Some(*kind));
            assert_eq!(kind.name(), *name);
            assert!(KINDS[i + 1..].iter().all(|(_, m, _)| !m.starts_with(magic)));
        }
        assert_eq!(Compression::detect(b"MZ"), None);
    }
}
