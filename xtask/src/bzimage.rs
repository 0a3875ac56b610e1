//! Turning a kernel file into a PVH-bootable vmlinux: as is if it is the ELF, unpacked if it is a bzImage.

use anyhow::{bail, ensure, Context, Result};

use crate::elf_check;
use crate::xz;

/// Where the boot protocol's header keeps what we need (Documentation/arch/x86/boot.rst).
const SETUP_SECTS: usize = 0x1f1;
const HEADER_MAGIC: usize = 0x202;
const PAYLOAD_OFFSET: usize = 0x248;
const PAYLOAD_LENGTH: usize = 0x24c;

/// Whether `bytes` carry the x86 boot protocol header ("HdrS").
pub fn is_bzimage(bytes: &[u8]) -> bool {
    bytes.get(HEADER_MAGIC..HEADER_MAGIC + 4) == Some(b"HdrS")
}

/// The compressed kernel inside a bzImage, from its XZ magic to the end of the
/// file. The header's payload_offset says where it is (boot protocol 2.08+);
/// without a usable one, the first XZ magic after the setup code is taken.
pub fn xz_payload(bytes: &[u8]) -> Result<&[u8]> {
    ensure!(is_bzimage(bytes), "not a bzImage (no \"HdrS\" boot header)");
    // setup_sects of 0 means 4, for very old kernels.
    let sects = match bytes[SETUP_SECTS] {
        0 => 4,
        n => usize::from(n),
    };
    let protected = (sects + 1) * 512;
    let word = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes(b.try_into().ok()?) as usize)
    };
    if let (Some(offset), Some(length)) = (word(PAYLOAD_OFFSET), word(PAYLOAD_LENGTH)) {
        let start = protected + offset;
        if length > 0
            && bytes
                .get(start..)
                .is_some_and(|p| p.starts_with(&xz::MAGIC))
        {
            return Ok(&bytes[start..]);
        }
    }
    let tail = bytes.get(protected..).unwrap_or_default();
    let Some(at) = tail.windows(xz::MAGIC.len()).position(|w| w == xz::MAGIC) else {
        bail!("bzImage has no XZ payload (is the kernel compressed with something else?)")
    };
    Ok(&tail[at..])
}

/// The vmlinux ELF inside a bzImage, cut to its own extent (the payload
/// also carries the relocation table after it).
pub fn vmlinux_from_bzimage(bytes: &[u8]) -> Result<Vec<u8>> {
    let payload = xz_payload(bytes)?;
    let (mut elf, _) = xz::decode_stream(payload).context("decompressing the bzImage payload")?;
    let info = elf_check::inspect(&elf).context("the bzImage payload")?;
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
    use crate::xz::tests::HELLO_XZ;

    /// A bzImage-shaped file: 2 setup sectors of header, then `lead` filler
    /// bytes, the payload, and the 4-byte size a real bzImage appends.
    fn fake_bzimage(lead: usize, payload: &[u8], header_says: bool) -> Vec<u8> {
        let mut b = vec![0u8; 2 * 512];
        b[SETUP_SECTS] = 1;
        b[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
        if header_says {
            b[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(&(lead as u32).to_le_bytes());
            let len = payload.len() as u32 + 4;
            b[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&len.to_le_bytes());
        }
        b.extend(std::iter::repeat_n(0x90, lead));
        b.extend_from_slice(payload);
        b.extend_from_slice(&9u32.to_le_bytes());
        b
    }

    #[test]
    fn finds_the_payload_by_header_or_by_magic() {
        for header_says in [true, false] {
            let bz = fake_bzimage(300, &HELLO_XZ, header_says);
            let payload = xz_payload(&bz).unwrap();
            assert!(payload.starts_with(&HELLO_XZ));
            let (out, _) = xz::decode_stream(payload).unwrap();
            assert_eq!(out, b"Xenolith\n");
        }
    }

    #[test]
    fn payload_must_be_an_elf() {
        let bz = fake_bzimage(16, &HELLO_XZ, true);
        let err = format!("{:#}", vmlinux_from_bzimage(&bz).unwrap_err());
        assert!(err.contains("not an ELF"), "{err}");
    }

    #[test]
    fn takes_an_elf_as_is_and_rejects_other_files() {
        let elf = elf_check::tests::tiny_kernel(0x0100_0000, 0);
        assert_eq!(vmlinux_from_file(elf.clone()).unwrap(), elf);
        assert!(vmlinux_from_file(b"#!/bin/sh\n".to_vec()).is_err());
        let gzip = fake_bzimage(0, b"\x1f\x8b\x08gzip", true);
        assert!(vmlinux_from_file(gzip).is_err());
    }
}
