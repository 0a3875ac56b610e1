//! Decoding one XZ stream that may be followed by unrelated bytes.

use anyhow::{bail, Result};
use xz4rust::{XzDecoder, XzNextBlockResult};

/// The magic every XZ stream starts with.
pub const MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0x00];

/// The largest dictionary accepted: xz -9 uses 64 MiB, the kernel's own
/// compression far less; more would only mean a corrupt header.
const MAX_DICT: usize = 1 << 27;

/// Decodes the XZ stream at the start of `input` and returns its contents and
/// how many input bytes it took. What follows the stream is left alone: a
/// bzImage puts the uncompressed size and more after its payload. More than
/// `limit` bytes of output is an error, so a hostile stream cannot make the
/// host allocate without bound.
pub fn decode_stream(input: &[u8], limit: usize) -> Result<(Vec<u8>, usize)> {
    if !input.starts_with(&MAGIC) {
        bail!("no XZ stream magic (fd 37 7a 58 5a 00)");
    }
    let mut decoder = XzDecoder::in_heap_with_alloc_dict_size(xz4rust::DICT_SIZE_MIN, MAX_DICT);
    let mut out = Vec::with_capacity(limit.min(input.len().saturating_mul(4)));
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0;
    loop {
        let step = match decoder.decode(&input[pos..], &mut buf) {
            Ok(step) => step,
            Err(err) => bail!("XZ data is corrupt at input offset {pos}: {err:?}"),
        };
        pos += step.input_consumed();
        if out.len() + step.output_produced() > limit {
            bail!("XZ stream holds more than {limit} bytes");
        }
        out.extend_from_slice(&buf[..step.output_produced()]);
        match step {
            XzNextBlockResult::EndOfStream(..) => return Ok((out, pos)),
            // With the whole rest of the input offered, no progress means it ran out.
            XzNextBlockResult::NeedMoreData(..) if !step.made_progress() => {
                bail!("XZ stream is truncated after {pos} bytes")
            }
            XzNextBlockResult::NeedMoreData(..) => {}
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `printf 'Xenolith\n' | xz --check=crc32 --x86 --lzma2=dict=64KiB`: the
    /// kernel's own recipe (x86 BCJ filter, CRC32 check).
    pub const HELLO_XZ: [u8; 64] = [
        0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00, 0x01, 0x69, 0x22, 0xde, 0x36, 0x02, 0x01, 0x04,
        0x00, 0x21, 0x01, 0x08, 0x00, 0xd2, 0xb9, 0x74, 0xcb, 0x01, 0x00, 0x08, 0x58, 0x65, 0x6e,
        0x6f, 0x6c, 0x69, 0x74, 0x68, 0x0a, 0x00, 0x00, 0x00, 0x00, 0xd0, 0x39, 0x46, 0x91, 0x00,
        0x01, 0x1d, 0x09, 0x93, 0x61, 0x36, 0xa6, 0x90, 0x42, 0x99, 0x0d, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x59, 0x5a,
    ];

    #[test]
    fn decodes_a_bcj_stream() {
        let (out, used) = decode_stream(&HELLO_XZ, 100).unwrap();
        assert_eq!(out, b"Xenolith\n");
        assert_eq!(used, HELLO_XZ.len());
    }

    #[test]
    fn ignores_trailing_bytes() {
        let mut input = HELLO_XZ.to_vec();
        input.extend_from_slice(&[0x09, 0, 0, 0, 0xaa, 0xbb]);
        let (out, used) = decode_stream(&input, 100).unwrap();
        assert_eq!(out, b"Xenolith\n");
        assert_eq!(used, HELLO_XZ.len());
    }

    #[test]
    fn rejects_truncated_corrupt_and_foreign_input() {
        assert!(decode_stream(&HELLO_XZ[..40], 100).is_err());
        let mut bad = HELLO_XZ;
        bad[30] ^= 0xff;
        assert!(decode_stream(&bad, 100).is_err());
        assert!(decode_stream(b"\x1f\x8b gzip", 100).is_err());
        assert!(decode_stream(&HELLO_XZ, 8).is_err());
    }
}
