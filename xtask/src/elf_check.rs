//! Checks a guest kernel ELF: x86 (ELF64 or ELF32), a Xen PVH entry note, and where its bytes really end.

use anyhow::{bail, ensure, Context, Result};

/// The note naming the 32-bit PVH entry point (xen/include/public/elfnote.h).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

const PT_NOTE: u32 = 4;
const SHT_NOBITS: u32 = 8;
const EM_X86_64: u16 = 62;
/// i386: XTF's hvm32 tests. Xen's loader takes both classes and both
/// machines for a PVH guest, which is entered in 32-bit mode either way.
const EM_386: u16 = 3;

/// Where one ELF class keeps the fields read here (the System V ABI's
/// ELF32 and ELF64 header, program header and section header layouts).
struct Layout {
    /// Bytes of an address or offset: 4 or 8.
    word: u64,
    /// Offsets in the file header.
    phoff: u64,
    shoff: u64,
    phentsize: u64,
    /// Offsets in a program header.
    p_offset: u64,
    p_filesz: u64,
    /// Offsets in a section header.
    sh_offset: u64,
    sh_size: u64,
    /// The file header's size.
    ehsize: u64,
}

const ELF64: Layout = Layout {
    word: 8,
    phoff: 0x20,
    shoff: 0x28,
    phentsize: 0x36,
    p_offset: 8,
    p_filesz: 32,
    sh_offset: 24,
    sh_size: 32,
    ehsize: 64,
};

const ELF32: Layout = Layout {
    word: 4,
    phoff: 0x1c,
    shoff: 0x20,
    phentsize: 0x2a,
    p_offset: 4,
    p_filesz: 16,
    sh_offset: 16,
    sh_size: 20,
    ehsize: 52,
};

impl Layout {
    /// An address-sized field at `off`.
    fn word_at(&self, b: &[u8], off: u64) -> Result<u64> {
        if self.word == 8 {
            u64_at(b, off)
        } else {
            u32_at(b, off).map(u64::from)
        }
    }
}

/// What the host needs to know about a kernel ELF.
#[derive(Debug, PartialEq, Eq)]
pub struct KernelElf {
    /// Physical address of the PVH entry point.
    pub pvh_entry: u64,
    /// Bytes up to the end of the last header, segment or section; anything
    /// after (a bzImage payload appends the relocation table) is not ELF.
    pub extent: usize,
}

fn u16_at(b: &[u8], off: u64) -> Result<u16> {
    let off = usize::try_from(off)?;
    let bytes = b.get(off..off + 2).context("ELF is truncated")?;
    Ok(u16::from_le_bytes(bytes.try_into()?))
}

fn u32_at(b: &[u8], off: u64) -> Result<u32> {
    let off = usize::try_from(off)?;
    let bytes = b.get(off..off + 4).context("ELF is truncated")?;
    Ok(u32::from_le_bytes(bytes.try_into()?))
}

fn u64_at(b: &[u8], off: u64) -> Result<u64> {
    let off = usize::try_from(off)?;
    let bytes = b.get(off..off + 8).context("ELF is truncated")?;
    Ok(u64::from_le_bytes(bytes.try_into()?))
}

/// A table of `count` entries of `size` bytes at `offset`, as its end offset.
fn table_end(offset: u64, count: u16, size: u16) -> Result<u64> {
    offset
        .checked_add(u64::from(count) * u64::from(size))
        .context("ELF table runs past 2^64")
}

/// Checks `bytes` is a little-endian x86 ELF (ELF64, or ELF32 as XTF ships
/// its tests) with a PVH entry note.
pub fn inspect(bytes: &[u8]) -> Result<KernelElf> {
    ensure!(bytes.starts_with(b"\x7fELF"), "not an ELF file");
    ensure!(bytes.get(5) == Some(&1), "not a little-endian ELF");
    let l = match bytes.get(4) {
        Some(2) => &ELF64,
        Some(1) => &ELF32,
        _ => bail!("not an ELF32 or ELF64 file"),
    };
    ensure!(
        matches!(u16_at(bytes, 0x12)?, EM_X86_64 | EM_386),
        "not an x86 (x86-64 or i386) ELF"
    );
    let phoff = l.word_at(bytes, l.phoff)?;
    let shoff = l.word_at(bytes, l.shoff)?;
    let (phentsize, phnum) = (u16_at(bytes, l.phentsize)?, u16_at(bytes, l.phentsize + 2)?);
    let (shentsize, shnum) = (
        u16_at(bytes, l.phentsize + 4)?,
        u16_at(bytes, l.phentsize + 6)?,
    );
    let mut extent = l.ehsize.max(table_end(phoff, phnum, phentsize)?);
    if shnum > 0 {
        extent = extent.max(table_end(shoff, shnum, shentsize)?);
    }
    let mut pvh_entry = None;
    for i in 0..u64::from(phnum) {
        let ph = phoff + i * u64::from(phentsize);
        let (kind, offset, size) = (
            u32_at(bytes, ph)?,
            l.word_at(bytes, ph + l.p_offset)?,
            l.word_at(bytes, ph + l.p_filesz)?,
        );
        let end = offset.checked_add(size).context("segment runs past 2^64")?;
        extent = extent.max(end);
        if kind == PT_NOTE && pvh_entry.is_none() {
            pvh_entry = find_pvh_note(bytes, offset, end)?;
        }
    }
    for i in 0..u64::from(shnum) {
        let sh = shoff + i * u64::from(shentsize);
        if u32_at(bytes, sh + 4)? != SHT_NOBITS {
            let (offset, size) = (
                l.word_at(bytes, sh + l.sh_offset)?,
                l.word_at(bytes, sh + l.sh_size)?,
            );
            extent = extent.max(offset.checked_add(size).context("section runs past 2^64")?);
        }
    }
    let extent = usize::try_from(extent)?;
    ensure!(
        extent <= bytes.len(),
        "ELF is truncated: its headers reach byte {extent} of {}",
        bytes.len()
    );
    let Some(pvh_entry) = pvh_entry else {
        bail!("ELF has no Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); the kernel needs CONFIG_PVH=y")
    };
    Ok(KernelElf { pvh_entry, extent })
}

/// Walks the notes in `start..end` for Xen's PHYS32_ENTRY and returns its address.
fn find_pvh_note(bytes: &[u8], start: u64, end: u64) -> Result<Option<u64>> {
    let align4 = |n: u64| (n + 3) & !3;
    let mut at = start;
    while at + 12 <= end {
        let namesz = u64::from(u32_at(bytes, at)?);
        let descsz = u64::from(u32_at(bytes, at + 4)?);
        let kind = u32_at(bytes, at + 8)?;
        let name_at = usize::try_from(at + 12)?;
        let desc_at = at + 12 + align4(namesz);
        let name = bytes
            .get(name_at..name_at + usize::try_from(namesz)?)
            .context("ELF note is truncated")?;
        if name == b"Xen\0" && kind == XEN_ELFNOTE_PHYS32_ENTRY {
            // Linux stores it as a pointer-sized value, Xenolith as 32 bits.
            let entry = match descsz {
                4 => u64::from(u32_at(bytes, desc_at)?),
                8 => u64_at(bytes, desc_at)?,
                n => bail!("PVH entry note has a {n}-byte value"),
            };
            return Ok(Some(entry));
        }
        at = desc_at + align4(descsz);
    }
    Ok(None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal x86-64 ELF: header, one PT_NOTE segment holding a GNU note
    /// and the PVH note, and one section header, then `tail` junk bytes.
    pub fn tiny_kernel(entry: u32, tail: usize) -> Vec<u8> {
        let mut notes = Vec::new();
        for (name, kind, desc) in [
            (&b"GNU\0"[..], 3u32, &[1u8, 2, 3, 4, 5][..]),
            (
                &b"Xen\0"[..],
                XEN_ELFNOTE_PHYS32_ENTRY,
                &entry.to_le_bytes()[..],
            ),
        ] {
            notes.extend_from_slice(&(name.len() as u32).to_le_bytes());
            notes.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            notes.extend_from_slice(&kind.to_le_bytes());
            notes.extend_from_slice(name);
            notes.extend_from_slice(desc);
            notes.resize(notes.len().next_multiple_of(4), 0);
        }
        let phoff = 64u64;
        let notes_at = phoff + 56;
        let shoff = notes_at + notes.len() as u64;
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[0x12..0x14].copy_from_slice(&EM_X86_64.to_le_bytes());
        elf[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
        elf[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&1u16.to_le_bytes());
        let mut ph = vec![0u8; 56];
        ph[..4].copy_from_slice(&PT_NOTE.to_le_bytes());
        ph[8..16].copy_from_slice(&notes_at.to_le_bytes());
        ph[32..40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        elf.extend_from_slice(&ph);
        elf.extend_from_slice(&notes);
        // One PROGBITS section covering the notes.
        let mut sh = vec![0u8; 64];
        sh[4..8].copy_from_slice(&1u32.to_le_bytes());
        sh[24..32].copy_from_slice(&notes_at.to_le_bytes());
        sh[32..40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        elf.extend_from_slice(&sh);
        elf.extend(std::iter::repeat_n(0xee, tail));
        elf
    }

    #[test]
    fn finds_the_pvh_entry_and_the_extent() {
        let elf = tiny_kernel(0x0100_0850, 0);
        let info = inspect(&elf).unwrap();
        assert_eq!(info.pvh_entry, 0x0100_0850);
        assert_eq!(info.extent, elf.len());
        let padded = tiny_kernel(0x0100_0850, 1000);
        assert_eq!(inspect(&padded).unwrap().extent, elf.len());
    }

    #[test]
    fn rejects_what_is_not_a_pvh_kernel() {
        let elf = tiny_kernel(0x0100_0000, 0);
        assert!(inspect(b"MZ not an elf").is_err());
        let mut class3 = elf.clone();
        class3[4] = 3;
        assert!(inspect(&class3).is_err());
        let mut big = elf.clone();
        big[5] = 2;
        assert!(inspect(&big).is_err());
        let mut arm = elf.clone();
        arm[0x12] = 183;
        assert!(inspect(&arm).is_err());
        // Renaming the Xen note leaves no PVH entry.
        let mut no_note = elf.clone();
        let at = no_note.windows(4).position(|w| w == b"Xen\0").unwrap();
        no_note[at] = b'Q';
        let err = inspect(&no_note).unwrap_err().to_string();
        assert!(err.contains("CONFIG_PVH"), "{err}");
        assert!(inspect(&elf[..elf.len() - 10]).is_err());
    }

    /// The same kernel as [`tiny_kernel`] in ELF32 (as `objcopy -O
    /// elf32-x86-64` or an i386 link makes it): 52-byte header, 32-byte
    /// program header, 40-byte section header.
    fn tiny_kernel32(entry: u32, machine: u16) -> Vec<u8> {
        let elf64 = tiny_kernel(entry, 0);
        let notes = &elf64[64 + 56..elf64.len() - 64];
        let (phoff, notes_at) = (52u32, 52 + 32);
        let shoff = notes_at + notes.len() as u32;
        let mut elf = vec![0u8; 52];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 1;
        elf[5] = 1;
        elf[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
        elf[0x1c..0x20].copy_from_slice(&phoff.to_le_bytes());
        elf[0x20..0x24].copy_from_slice(&shoff.to_le_bytes());
        elf[0x2a..0x2c].copy_from_slice(&32u16.to_le_bytes());
        elf[0x2c..0x2e].copy_from_slice(&1u16.to_le_bytes());
        elf[0x2e..0x30].copy_from_slice(&40u16.to_le_bytes());
        elf[0x30..0x32].copy_from_slice(&1u16.to_le_bytes());
        let mut ph = vec![0u8; 32];
        ph[..4].copy_from_slice(&PT_NOTE.to_le_bytes());
        ph[4..8].copy_from_slice(&notes_at.to_le_bytes());
        ph[16..20].copy_from_slice(&(notes.len() as u32).to_le_bytes());
        elf.extend_from_slice(&ph);
        elf.extend_from_slice(notes);
        let mut sh = vec![0u8; 40];
        sh[4..8].copy_from_slice(&1u32.to_le_bytes());
        sh[16..20].copy_from_slice(&notes_at.to_le_bytes());
        sh[20..24].copy_from_slice(&(notes.len() as u32).to_le_bytes());
        elf.extend_from_slice(&sh);
        elf
    }

    #[test]
    fn takes_elf32_of_both_machines() {
        for machine in [EM_X86_64, EM_386] {
            let elf = tiny_kernel32(0x0010_0000, machine);
            let info = inspect(&elf).unwrap();
            assert_eq!(info.pvh_entry, 0x0010_0000);
            assert_eq!(info.extent, elf.len());
            assert!(inspect(&elf[..elf.len() - 1]).is_err());
        }
        let mut arm = tiny_kernel32(0x0010_0000, 40);
        assert!(inspect(&arm).is_err());
        arm[0x12] = 3;
        assert!(inspect(&arm).is_ok());
    }
}
