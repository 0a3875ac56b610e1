//! A PVH kernel image (ELF64 or ELF32): its ELF segments and the 32-bit entry from `XEN_ELFNOTE_PHYS32_ENTRY`.

use elf::endian::LittleEndian;
use elf::ElfBytes;

/// `XEN_ELFNOTE_PHYS32_ENTRY` (xen/include/public/elfnote.h).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u64 = 18;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const EM_X86_64: u16 = 62;
/// i386: XTF's hvm32 tests (`elf32-i386`). Xen's loader (xen/common/libelf)
/// takes either class and either machine for an HVM/PVH guest: the image is
/// entered in 32-bit protected mode all the same.
const EM_386: u16 = 3;
const ET_EXEC: u16 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// Not a little-endian ELF (64- or 32-bit), or its headers are malformed.
    NotElf,
    /// An ELF for another machine or not an executable.
    NotX86_64Executable,
    /// No `XEN_ELFNOTE_PHYS32_ENTRY` note: not a PVH kernel.
    NoPvhEntry,
    /// A segment's file bytes lie outside the file.
    BadSegment,
    /// A segment does not fit in guest RAM.
    SegmentOutsideRam { paddr: u64, size: u64 },
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::NotElf => write!(f, "not a little-endian ELF image"),
            LoadError::NotX86_64Executable => {
                write!(f, "not an x86 (x86-64 or i386) executable ELF")
            }
            LoadError::NoPvhEntry => write!(
                f,
                "no XEN_ELFNOTE_PHYS32_ENTRY note: the kernel does not support PVH boot"
            ),
            LoadError::BadSegment => write!(f, "a segment lies outside the file"),
            LoadError::SegmentOutsideRam { paddr, size } => write!(
                f,
                "segment at {paddr:#x} ({size} bytes) does not fit in guest RAM"
            ),
        }
    }
}

/// A parsed PVH kernel: the bytes stay in the caller's buffer.
pub struct KernelImage<'a> {
    elf: ElfBytes<'a, LittleEndian>,
    /// Guest-physical 32-bit entry point.
    pub entry: u32,
}

/// The numeric value of a Xen note: Linux emits 8-byte descriptors, others 4.
fn note_value(desc: &[u8]) -> Option<u64> {
    match desc.len() {
        4 => Some(u64::from(u32::from_le_bytes(desc.try_into().ok()?))),
        8 => Some(u64::from_le_bytes(desc.try_into().ok()?)),
        _ => None,
    }
}

impl<'a> KernelImage<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, LoadError> {
        // Both classes: XTF links its hvm64 tests as ELF64 and ships them
        // converted to ELF32 (`elf32-x86-64`); the `elf` crate widens an
        // ELF32's headers to the same 64-bit fields.
        let elf = ElfBytes::<LittleEndian>::minimal_parse(bytes).map_err(|_| LoadError::NotElf)?;
        if !matches!(elf.ehdr.e_machine, EM_X86_64 | EM_386) || elf.ehdr.e_type != ET_EXEC {
            return Err(LoadError::NotX86_64Executable);
        }
        let segments = elf.segments().ok_or(LoadError::NoPvhEntry)?;
        let mut entry = None;
        for phdr in segments.iter().filter(|p| p.p_type == PT_NOTE) {
            let notes = elf
                .segment_data_as_notes(&phdr)
                .map_err(|_| LoadError::BadSegment)?;
            for note in notes {
                if let elf::note::Note::Unknown(n) = note {
                    if n.name.strip_suffix(b"\0").unwrap_or(n.name) == b"Xen"
                        && n.n_type == XEN_ELFNOTE_PHYS32_ENTRY
                    {
                        entry = note_value(n.desc);
                    }
                }
            }
        }
        let entry = entry
            .and_then(|e| u32::try_from(e).ok())
            .ok_or(LoadError::NoPvhEntry)?;
        Ok(KernelImage { elf, entry })
    }

    /// Calls `each(paddr, file_bytes, mem_size)` for every PT_LOAD segment.
    pub fn for_each_segment(
        &self,
        mut each: impl FnMut(u64, &'a [u8], u64) -> Result<(), LoadError>,
    ) -> Result<(), LoadError> {
        let segments = self.elf.segments().ok_or(LoadError::BadSegment)?;
        for phdr in segments.iter().filter(|p| p.p_type == PT_LOAD) {
            let data = self
                .elf
                .segment_data(&phdr)
                .map_err(|_| LoadError::BadSegment)?;
            if phdr.p_memsz < phdr.p_filesz {
                return Err(LoadError::BadSegment);
            }
            each(phdr.p_paddr, data, phdr.p_memsz)?;
        }
        Ok(())
    }

    /// Copies every PT_LOAD segment to its physical address in `ram` (guest
    /// RAM starting at GPA 0) and zeroes the rest of its memory size. Returns
    /// the end of the highest segment. Nothing is written unless all fit.
    pub fn load(&self, ram: &mut [u8]) -> Result<u64, LoadError> {
        let mut end = 0;
        self.for_each_segment(|paddr, _, size| {
            let last = paddr.checked_add(size).filter(|&e| e <= ram.len() as u64);
            end = end.max(last.ok_or(LoadError::SegmentOutsideRam { paddr, size })?);
            Ok(())
        })?;
        self.for_each_segment(|paddr, data, size| {
            let at = paddr as usize;
            ram[at..at + data.len()].copy_from_slice(data);
            ram[at + data.len()..at + size as usize].fill(0);
            Ok(())
        })?;
        Ok(end)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    /// A minimal ELF64 executable: one PT_LOAD of `code` at `paddr`
    /// (memsz = filesz + 16) and, if `entry` is set, one PT_NOTE with a
    /// PHYS32_ENTRY note of `note_size` bytes.
    pub fn tiny_elf(paddr: u64, code: &[u8], entry: Option<u64>, note_size: usize) -> Vec<u8> {
        sized_elf(paddr, code, code.len() as u64 + 16, entry, note_size)
    }

    /// As [`tiny_elf`], with the PT_LOAD's memory size `memsz` (≥ the code).
    pub fn sized_elf(
        paddr: u64,
        code: &[u8],
        memsz: u64,
        entry: Option<u64>,
        note_size: usize,
    ) -> Vec<u8> {
        let phnum: u16 = if entry.is_some() { 2 } else { 1 };
        let mut note = Vec::new();
        if let Some(e) = entry {
            note.extend_from_slice(&4u32.to_le_bytes());
            note.extend_from_slice(&(note_size as u32).to_le_bytes());
            note.extend_from_slice(&18u32.to_le_bytes());
            note.extend_from_slice(b"Xen\0");
            note.extend_from_slice(&e.to_le_bytes()[..note_size]);
        }
        let code_off = 64 + 56 * u64::from(phnum);
        let note_off = code_off + code.len() as u64;
        let mut f = Vec::new();
        f.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&paddr.to_le_bytes()); // e_entry
        f.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
        f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&64u16.to_le_bytes());
        f.extend_from_slice(&56u16.to_le_bytes());
        f.extend_from_slice(&phnum.to_le_bytes());
        f.extend_from_slice(&64u16.to_le_bytes());
        f.extend_from_slice(&0u16.to_le_bytes());
        f.extend_from_slice(&0u16.to_le_bytes());
        let mut phdr = |ty: u32, off: u64, addr: u64, filesz: u64, memsz: u64, align: u64| {
            f.extend_from_slice(&ty.to_le_bytes());
            f.extend_from_slice(&5u32.to_le_bytes());
            for v in [off, addr, addr, filesz, memsz, align] {
                f.extend_from_slice(&v.to_le_bytes());
            }
        };
        phdr(1, code_off, paddr, code.len() as u64, memsz, 4096);
        if entry.is_some() {
            phdr(4, note_off, 0, note.len() as u64, note.len() as u64, 4);
        }
        f.extend_from_slice(code);
        f.extend_from_slice(&note);
        f
    }

    #[test]
    fn parses_entry_and_loads() {
        for size in [4, 8] {
            let elf = tiny_elf(0x1000, b"\xf4\xf4\xf4\xf4", Some(0x1002), size);
            let image = KernelImage::parse(&elf).unwrap();
            assert_eq!(image.entry, 0x1002);
            let mut ram = std::vec![0xaau8; 0x2000];
            assert_eq!(image.load(&mut ram).unwrap(), 0x1000 + 4 + 16);
            assert_eq!(&ram[0x1000..0x1004], b"\xf4\xf4\xf4\xf4");
            assert!(ram[0x1004..0x1014].iter().all(|&b| b == 0));
            assert_eq!(ram[0x1014], 0xaa);
        }
    }

    #[test]
    fn refuses_non_pvh_and_garbage() {
        let elf = tiny_elf(0x1000, b"\xf4", None, 8);
        assert_eq!(KernelImage::parse(&elf).err(), Some(LoadError::NoPvhEntry));
        assert_eq!(KernelImage::parse(b"MZ\0\0").err(), Some(LoadError::NotElf));
        let elf = tiny_elf(0x1000, b"\xf4", Some(0x1000), 8);
        assert_eq!(
            KernelImage::parse(&elf[..40]).err(),
            Some(LoadError::NotElf)
        );
        let mut other = elf.clone();
        other[18] = 40; // EM_ARM
        assert_eq!(
            KernelImage::parse(&other).err(),
            Some(LoadError::NotX86_64Executable)
        );
    }

    /// An ELF32 executable for `machine`: one PT_LOAD of `code` at `paddr`
    /// and one PT_NOTE with a 4-byte PHYS32_ENTRY note, as XTF ships them.
    fn tiny_elf32(machine: u16, paddr: u32, code: &[u8], entry: u32) -> Vec<u8> {
        let mut note = Vec::new();
        for v in [4u32, 4, 18] {
            note.extend_from_slice(&v.to_le_bytes());
        }
        note.extend_from_slice(b"Xen\0");
        note.extend_from_slice(&entry.to_le_bytes());
        let code_off = 52 + 32 * 2;
        let note_off = code_off + code.len() as u32;
        let mut f = Vec::new();
        f.extend_from_slice(b"\x7fELF\x01\x01\x01\0\0\0\0\0\0\0\0\0");
        f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f.extend_from_slice(&machine.to_le_bytes());
        f.extend_from_slice(&1u32.to_le_bytes());
        for v in [paddr, 52, 0, 0] {
            f.extend_from_slice(&v.to_le_bytes()); // entry, phoff, shoff, flags
        }
        for v in [52u16, 32, 2, 40, 0, 0] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        let mut phdr = |ty: u32, off: u32, addr: u32, filesz: u32, memsz: u32| {
            for v in [ty, off, addr, addr, filesz, memsz, 5, 4] {
                f.extend_from_slice(&v.to_le_bytes());
            }
        };
        phdr(1, code_off, paddr, code.len() as u32, code.len() as u32 + 8);
        phdr(4, note_off, 0, note.len() as u32, note.len() as u32);
        f.extend_from_slice(code);
        f.extend_from_slice(&note);
        f
    }

    #[test]
    fn parses_and_loads_elf32() {
        for machine in [62, 3] {
            let elf = tiny_elf32(machine, 0x1000, b"\xf4\xf4", 0x1001);
            let image = KernelImage::parse(&elf).unwrap();
            assert_eq!(image.entry, 0x1001);
            let mut ram = std::vec![0xaau8; 0x2000];
            assert_eq!(image.load(&mut ram).unwrap(), 0x1000 + 2 + 8);
            assert_eq!(&ram[0x1000..0x1002], b"\xf4\xf4");
            assert!(ram[0x1002..0x100a].iter().all(|&b| b == 0));
        }
        let arm = tiny_elf32(40, 0x1000, b"\xf4", 0x1000);
        assert_eq!(
            KernelImage::parse(&arm).err(),
            Some(LoadError::NotX86_64Executable)
        );
    }

    #[test]
    fn segment_outside_ram_writes_nothing() {
        let elf = tiny_elf(0x1ff0, b"\xf4\xf4\xf4\xf4", Some(0x1ff0), 8);
        let image = KernelImage::parse(&elf).unwrap();
        let mut ram = std::vec![0u8; 0x2000];
        assert_eq!(
            image.load(&mut ram),
            Err(LoadError::SegmentOutsideRam {
                paddr: 0x1ff0,
                size: 20
            })
        );
        assert!(ram.iter().all(|&b| b == 0));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_mutations(flips in proptest::collection::vec((0usize..400, proptest::prelude::any::<u8>()), 1..6)) {
            let mut elf = tiny_elf(0x1000, &[0x90; 64], Some(0x1000), 8);
            for (at, b) in flips {
                let len = elf.len();
                elf[at % len] = b;
            }
            if let Ok(image) = KernelImage::parse(&elf) {
                let mut ram = std::vec![0u8; 0x4000];
                let _ = image.load(&mut ram);
            }
        }
    }
}
