//! Minimal hardware-reduced ACPI for a PVH guest: RSDP, XSDT, FADT, empty DSDT and a MADT of local APICs.
//!
//! What Linux 6.1 needs (../shared/spec/xen-pvh-abi.md 1.6): an RSDP (revision
//! 2) leading to an XSDT, a FADT pointing to a DSDT so ACPICA's namespace load
//! succeeds, and a MADT with one enabled processor entry per vCPU whose ACPI
//! processor UID is the Xen vCPU id (Linux uses it as the vCPU id for
//! `VCPUOP_*` and event channels on APs) and whose APIC ID is the one the
//! emulated local APIC reports.
//!
//! Unlike Xen's tools/libacpi for PVH (FADT revision 5 with PM1a blocks that
//! nothing emulates, FACS, a DSDT of processor objects, `PCAT_COMPAT`), the
//! FADT sets `HW_REDUCED_ACPI` (ACPI 6.5 table 5.10, flags bit 20): ACPICA
//! then installs no SCI handler and wants no FACS, and Linux replaces the 8259
//! with the null legacy PIC and skips the PIT/HPET timer setup
//! (arch/x86/kernel/acpi/boot.c `acpi_generic_reduced_hw_init`).

use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::madt::{EnabledStatus, LocalInterruptController, ProcessorLocalApic, MADT};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{Aml, AmlSink};
use alloc::vec::Vec;
use static_assertions::{assert_eq_size, const_assert_eq};
use zerocopy::byteorder::little_endian::U32;
use zerocopy::{Immutable, IntoBytes};

/// Guest-physical base of every local APIC (MADT "Local Interrupt Controller
/// Address"; Xen tools/libs/light/libxl_arch.h `LAPIC_BASE_ADDRESS`).
pub const LAPIC_BASE: u32 = 0xFEE0_0000;
/// The most vCPUs the tables describe (one MADT entry each).
pub const MAX_VCPUS: u32 = 512;
/// Highest APIC ID a type-0 Local APIC entry may carry: 0xFF means "invalid"
/// to Linux and ACPI 6.5 5.2.12.12 wants x2APIC entries from 255 up.
const MAX_XAPIC_ID: u32 = 254;

pub const OEM_ID: [u8; 6] = *b"XENOLT";
pub const OEM_TABLE_ID: [u8; 8] = *b"XENOLITH";
pub const OEM_REVISION: u32 = 1;

/// FADT "IA-PC Boot Architecture Flags" (ACPI 6.5 table 5.11): no VGA
/// (bit 2) and no CMOS RTC (bit 5). Bit 1 (8042) clear: no keyboard
/// controller; bit 0 (LEGACY_DEVICES) clear: no ISA devices.
pub const IAPC_BOOT_ARCH: u16 = (1 << 2) | (1 << 5);
/// DSDT revision 2: AML integers are 64 bits (ACPI 6.5 5.2.11.1).
const DSDT_REVISION: u8 = 2;
const HEADER_SIZE: u64 = 36;
/// MADT header: the ACPI header, Local Interrupt Controller Address, Flags.
const MADT_HEADER_SIZE: u64 = 44;
/// Tables start 16-byte aligned, as Xen's libxl ACPI allocator places them.
const TABLE_ALIGN: u64 = 16;
const PAGE: u64 = 4096;

/// ACPI 6.5 5.2.12.12 "Processor Local x2APIC Structure" (type 9, 16 bytes),
/// which acpi_tables 0.2.1 does not provide.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, IntoBytes, Immutable)]
struct LocalX2Apic {
    kind: u8,
    length: u8,
    reserved: [u8; 2],
    x2apic_id: U32,
    flags: U32,
    acpi_processor_uid: U32,
}

impl Aml for LocalX2Apic {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(self.as_bytes());
    }
}

// Layouts from ACPI 6.5 section 5.2, checked against the crate's structures so
// a change of acpi_tables' version cannot silently move a field.
assert_eq_size!(LocalX2Apic, [u8; 16]);
const_assert_eq!(core::mem::offset_of!(LocalX2Apic, x2apic_id), 4);
const_assert_eq!(core::mem::offset_of!(LocalX2Apic, flags), 8);
const_assert_eq!(core::mem::offset_of!(LocalX2Apic, acpi_processor_uid), 12);
assert_eq_size!(ProcessorLocalApic, [u8; 8]);
// 5.2.5.3: the revision-2 RSDP is 36 bytes, the XSDT address at 24.
assert_eq_size!(Rsdp, [u8; 36]);
const_assert_eq!(core::mem::offset_of!(Rsdp, length), 20);
const_assert_eq!(core::mem::offset_of!(Rsdp, xsdt_addr), 24);
// 5.2.9 table 5.9: the ACPI 6.x FADT is 276 bytes.
assert_eq_size!(FADTBuilder, [u8; 276]);
const_assert_eq!(core::mem::offset_of!(FADTBuilder, dsdt), 40);
const_assert_eq!(core::mem::offset_of!(FADTBuilder, sci_int), 46);
const_assert_eq!(core::mem::offset_of!(FADTBuilder, iapc_boot_arch), 109);
const_assert_eq!(core::mem::offset_of!(FADTBuilder, flags), 112);
const_assert_eq!(core::mem::offset_of!(FADTBuilder, fadt_minor_version), 131);
const_assert_eq!(core::mem::offset_of!(FADTBuilder, x_firmware_ctrl), 132);
const_assert_eq!(core::mem::offset_of!(FADTBuilder, x_dsdt), 140);
const_assert_eq!(core::mem::offset_of!(FADTBuilder, x_pm_tmr_blk), 208);
const_assert_eq!(
    core::mem::offset_of!(FADTBuilder, hypervisor_vendor_identity),
    268
);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// `vcpus` is 0 or above [`MAX_VCPUS`].
    BadVcpuCount(u32),
    /// The tables do not fit in `ram` at the requested base.
    NoRoom,
}

impl core::fmt::Display for AcpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AcpiError::BadVcpuCount(n) => {
                write!(f, "{n} vCPUs: the ACPI tables describe 1 to {MAX_VCPUS}")
            }
            AcpiError::NoRoom => write!(f, "the ACPI tables do not fit in guest RAM"),
        }
    }
}

/// Where each table lies (GPAs), tables 16-byte aligned from `base` in this
/// order; `end` is the end of the last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiLayout {
    pub rsdp: u64,
    pub xsdt: u64,
    pub fadt: u64,
    pub dsdt: u64,
    pub madt: u64,
    pub end: u64,
}

/// The APIC ID of vCPU `vcpu`: the vCPU id, as the hypervisor's CPUID leaf 1
/// reports it (EBX[31:24]) and its local APIC emulation uses. (Xen's libxl
/// uses 2 × vcpu_id, `acpi_lapic_id` in tools/libs/light/libxl_x86_acpi.c.)
pub fn apic_id(vcpu: u32) -> u32 {
    vcpu
}

fn madt_size(vcpus: u32) -> u64 {
    let xapic = u64::from(vcpus.min(MAX_XAPIC_ID + 1));
    let x2apic = u64::from(vcpus) - xapic;
    MADT_HEADER_SIZE + 8 * xapic + 16 * x2apic
}

fn align(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}

fn check_vcpus(vcpus: u32) -> Result<(), AcpiError> {
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(AcpiError::BadVcpuCount(vcpus));
    }
    Ok(())
}

/// The layout of the tables for `vcpus` vCPUs from GPA `base` (no overflow
/// for any `base` below 2^63).
pub fn layout(base: u64, vcpus: u32) -> Result<AcpiLayout, AcpiError> {
    check_vcpus(vcpus)?;
    if base >= 1 << 63 {
        return Err(AcpiError::NoRoom);
    }
    let mut at = base;
    let mut next = |size: u64| {
        let here = align(at, TABLE_ALIGN);
        at = here + size;
        here
    };
    let rsdp = next(Rsdp::len() as u64);
    // XSDT: the header and two entries, FADT and MADT.
    let xsdt = next(HEADER_SIZE + 2 * 8);
    let fadt = next(acpi_tables::fadt::FADT::len() as u64);
    let dsdt = next(HEADER_SIZE);
    let madt = next(madt_size(vcpus));
    Ok(AcpiLayout {
        rsdp,
        xsdt,
        fadt,
        dsdt,
        madt,
        end: at,
    })
}

/// Bytes of whole pages the tables need for `vcpus` vCPUs from a page-aligned base.
pub fn region_size(vcpus: u32) -> Result<u64, AcpiError> {
    Ok(align(layout(0, vcpus)?.end, PAGE))
}

fn put(ram: &mut [u8], at: u64, table: &dyn Aml) -> Result<(), AcpiError> {
    let mut bytes = Vec::new();
    table.to_aml_bytes(&mut bytes);
    let at = usize::try_from(at).map_err(|_| AcpiError::NoRoom)?;
    let end = at.checked_add(bytes.len()).ok_or(AcpiError::NoRoom)?;
    ram.get_mut(at..end)
        .ok_or(AcpiError::NoRoom)?
        .copy_from_slice(&bytes);
    Ok(())
}

fn fadt(dsdt: u64) -> FADTBuilder {
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        // X_DSDT only; ACPICA takes the 64-bit address when the 32-bit one is 0.
        .dsdt_64(dsdt)
        .flag(Flags::HwReducedAcpi)
        // "No fixed-feature power/sleep button" (bits 4, 5), as Xen sets.
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    // Everything else stays 0: no FACS (optional when hardware-reduced),
    // SCI_INT 0, no PM1/PM2/GPE blocks, no PM timer (Linux's
    // acpi_parse_fadt takes X_PM_TMR_BLK only in SystemIO space, and space 0
    // is SystemMemory), no reset register.
    fadt.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    fadt
}

fn madt(vcpus: u32) -> MADT {
    // Flags 0: no PCAT_COMPAT, there are no 8259s.
    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(LAPIC_BASE),
    );
    for vcpu in 0..vcpus {
        let id = apic_id(vcpu);
        match (u8::try_from(vcpu), u8::try_from(id)) {
            (Ok(uid), Ok(id8)) if id <= MAX_XAPIC_ID => {
                madt.add_structure(ProcessorLocalApic::new(uid, id8, EnabledStatus::Enabled));
            }
            _ => madt.add_structure(LocalX2Apic {
                kind: 9,
                length: 16,
                reserved: [0; 2],
                x2apic_id: id.into(),
                flags: 1.into(), // Enabled
                acpi_processor_uid: vcpu.into(),
            }),
        }
    }
    madt
}

/// Writes the tables for `vcpus` vCPUs into `ram` (index = GPA) from GPA
/// `base`, zeroing the gaps between them. Returns where each one went; the
/// RSDP's address is what `hvm_start_info.rsdp_paddr` takes.
pub fn write_tables(ram: &mut [u8], base: u64, vcpus: u32) -> Result<AcpiLayout, AcpiError> {
    let l = layout(base, vcpus)?;
    let (start, end) = (
        usize::try_from(base).map_err(|_| AcpiError::NoRoom)?,
        usize::try_from(l.end).map_err(|_| AcpiError::NoRoom)?,
    );
    ram.get_mut(start..end).ok_or(AcpiError::NoRoom)?.fill(0);

    put(ram, l.rsdp, &Rsdp::new(OEM_ID, l.xsdt))?;
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(l.fadt);
    xsdt.add_entry(l.madt);
    put(ram, l.xsdt, &xsdt)?;
    put(ram, l.fadt, &fadt(l.dsdt).finalize())?;
    // An empty definition block: ACPICA loads a namespace with nothing in it.
    let dsdt = Sdt::new(
        *b"DSDT",
        HEADER_SIZE as u32,
        DSDT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    put(ram, l.dsdt, &dsdt)?;
    put(ram, l.madt, &madt(vcpus))?;
    Ok(l)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    extern crate std;

    pub fn u16_at(ram: &[u8], at: u64) -> u16 {
        u16::from_le_bytes(ram[at as usize..at as usize + 2].try_into().unwrap())
    }
    pub fn u32_at(ram: &[u8], at: u64) -> u32 {
        u32::from_le_bytes(ram[at as usize..at as usize + 4].try_into().unwrap())
    }
    pub fn u64_at(ram: &[u8], at: u64) -> u64 {
        u64::from_le_bytes(ram[at as usize..at as usize + 8].try_into().unwrap())
    }
    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b))
    }

    /// Checks a system description table's header at `at` (ACPI 6.5
    /// 5.2.6): signature, a zero byte sum over its length, revision.
    /// Returns its bytes.
    pub fn sdt<'a>(ram: &'a [u8], at: u64, signature: &[u8; 4], revision: u8) -> &'a [u8] {
        let a = at as usize;
        assert_eq!(&ram[a..a + 4], signature);
        let len = u32_at(ram, at + 4) as usize;
        assert!(len >= 36);
        let table = &ram[a..a + len];
        assert_eq!(
            sum(table),
            0,
            "{} checksum",
            std::str::from_utf8(signature).unwrap()
        );
        assert_eq!(table[8], revision);
        assert_eq!(&table[10..16], &OEM_ID);
        assert_eq!(&table[16..24], &OEM_TABLE_ID);
        table
    }

    /// One parsed MADT processor entry: (type, ACPI UID, APIC ID, flags).
    pub fn madt_entries(madt: &[u8]) -> std::vec::Vec<(u8, u32, u32, u32)> {
        let mut out = std::vec::Vec::new();
        let mut at = 44;
        while at < madt.len() {
            let (kind, len) = (madt[at], madt[at + 1] as usize);
            assert!(len >= 2 && at + len <= madt.len(), "MADT entry overruns");
            let e = &madt[at..at + len];
            let u32_in = |o: usize| u32::from_le_bytes(e[o..o + 4].try_into().unwrap());
            match kind {
                0 => {
                    assert_eq!(len, 8);
                    out.push((0, u32::from(e[2]), u32::from(e[3]), u32_in(4)));
                }
                9 => {
                    assert_eq!(len, 16);
                    assert_eq!(&e[2..4], &[0, 0]);
                    out.push((9, u32_in(12), u32_in(4), u32_in(8)));
                }
                other => panic!("unexpected MADT entry type {other}"),
            }
            at += len;
        }
        assert_eq!(at, madt.len());
        out
    }

    /// Follows RSDP → XSDT → FADT → DSDT and XSDT → MADT, checking every
    /// checksum and the fields Linux reads; returns the MADT entries.
    pub fn check_tables(ram: &[u8], rsdp: u64, vcpus: u32) -> std::vec::Vec<(u8, u32, u32, u32)> {
        // RSDP (5.2.5.3): v1 checksum over 20 bytes, extended over 36.
        let r = rsdp as usize;
        assert_eq!(&ram[r..r + 8], b"RSD PTR ");
        assert_eq!(sum(&ram[r..r + 20]), 0);
        assert_eq!(sum(&ram[r..r + 36]), 0);
        assert_eq!(ram[r + 15], 2, "RSDP revision");
        assert_eq!(u32_at(ram, rsdp + 16), 0, "no RSDT");
        assert_eq!(u32_at(ram, rsdp + 20), 36);
        let xsdt_at = u64_at(ram, rsdp + 24);

        let xsdt = sdt(ram, xsdt_at, b"XSDT", 1);
        assert_eq!(xsdt.len(), 36 + 16);
        let fadt_at = u64_at(xsdt, 36);
        let madt_at = u64_at(xsdt, 44);

        let fadt = sdt(ram, fadt_at, b"FACP", 6);
        assert_eq!(fadt.len(), 276);
        assert_eq!(fadt[131], 5, "FADT minor version");
        let flags = u32_at(fadt, 112);
        assert_ne!(flags & (1 << 20), 0, "HW_REDUCED_ACPI");
        assert_eq!(flags & 0b11_0000, 0b11_0000, "no fixed buttons");
        assert_eq!(u16_at(fadt, 109), IAPC_BOOT_ARCH);
        assert_eq!(u32_at(fadt, 36), 0, "FIRMWARE_CTRL");
        assert_eq!(u64_at(fadt, 132), 0, "X_FIRMWARE_CTRL");
        assert_eq!(u16_at(fadt, 46), 0, "SCI_INT");
        assert!(fadt[56..96].iter().all(|&b| b == 0), "no PM/GPE blocks");
        assert!(fadt[148..268].iter().all(|&b| b == 0), "no X_ blocks");
        assert_eq!(u32_at(fadt, 40), 0, "32-bit DSDT");
        let dsdt_at = u64_at(fadt, 140);
        let dsdt = sdt(ram, dsdt_at, b"DSDT", 2);
        assert_eq!(dsdt.len(), 36, "empty AML body");

        let madt = sdt(ram, madt_at, b"APIC", 1);
        assert_eq!(u32_at(madt, 36), LAPIC_BASE);
        assert_eq!(u32_at(madt, 40), 0, "MADT flags");
        let entries = madt_entries(madt);
        assert_eq!(entries.len(), vcpus as usize);
        for (i, &(kind, uid, id, flags)) in entries.iter().enumerate() {
            assert_eq!(uid, i as u32, "ACPI UID = vCPU id");
            assert_eq!(id, apic_id(i as u32));
            assert_eq!(flags, 1, "enabled");
            assert_eq!(kind, if id < 255 { 0 } else { 9 });
        }
        // The tables lie where `layout` says and do not overlap.
        let l = layout(rsdp, vcpus).unwrap();
        assert_eq!(
            (l.xsdt, l.fadt, l.dsdt, l.madt),
            (xsdt_at, fadt_at, dsdt_at, madt_at)
        );
        let spans = [
            (rsdp, 36u64),
            (xsdt_at, xsdt.len() as u64),
            (fadt_at, 276),
            (dsdt_at, 36),
            (madt_at, madt.len() as u64),
        ];
        for w in spans.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0);
            assert_eq!(w[1].0 % 16, 0);
        }
        assert_eq!(madt_at + madt.len() as u64, l.end);
        entries
    }

    #[test]
    fn one_vcpu_tables_parse_back() {
        let mut ram = std::vec![0xaau8; 0x3000];
        let l = write_tables(&mut ram, 0x1000, 1).unwrap();
        assert_eq!(l.rsdp, 0x1000);
        assert_eq!(
            (l.xsdt, l.fadt, l.dsdt, l.madt, l.end),
            (0x1030, 0x1070, 0x1190, 0x11c0, 0x11c0 + 52)
        );
        check_tables(&ram, l.rsdp, 1);
        assert_eq!(ram[0xfff], 0xaa);
        assert_eq!(ram[l.end as usize], 0xaa);
        assert_eq!(region_size(1), Ok(0x1000));
    }

    #[test]
    fn many_vcpus_switch_to_x2apic_entries_at_255() {
        let vcpus = 300;
        let size = region_size(vcpus).unwrap();
        // 0x1c0 + 44 + 255 * 8 + 45 * 16 = 0xcb4: still one page.
        assert_eq!(size, 0x1000);
        assert_eq!(region_size(MAX_VCPUS), Ok(0x2000));
        // The most vCPUs whose tables fit one page.
        assert_eq!(region_size(352), Ok(0x1000));
        assert_eq!(region_size(353), Ok(0x2000));
        let mut ram = std::vec![0u8; 0x1000 + size as usize];
        let l = write_tables(&mut ram, 0x1000, vcpus).unwrap();
        let entries = check_tables(&ram, l.rsdp, vcpus);
        assert_eq!(entries[254], (0, 254, 254, 1));
        assert_eq!(entries[255], (9, 255, 255, 1));
        assert_eq!(entries[299], (9, 299, 299, 1));
        assert_eq!(l.end - l.madt, 44 + 255 * 8 + 45 * 16);
    }

    #[test]
    fn every_count_fits_its_region() {
        for vcpus in [1, 2, 8, 64, 254, 255, 256, MAX_VCPUS] {
            let size = region_size(vcpus).unwrap();
            let mut ram = std::vec![0u8; size as usize];
            let l = write_tables(&mut ram, 0, vcpus).unwrap();
            assert!(l.end <= size);
            check_tables(&ram, 0, vcpus);
        }
    }

    #[test]
    fn refusals() {
        let mut ram = std::vec![0u8; 0x1000];
        assert_eq!(
            write_tables(&mut ram, 0, 0),
            Err(AcpiError::BadVcpuCount(0))
        );
        assert_eq!(
            write_tables(&mut ram, 0, MAX_VCPUS + 1),
            Err(AcpiError::BadVcpuCount(MAX_VCPUS + 1))
        );
        assert_eq!(write_tables(&mut ram, 0xf00, 1), Err(AcpiError::NoRoom));
        assert_eq!(write_tables(&mut ram, u64::MAX, 1), Err(AcpiError::NoRoom));
        assert!(ram.iter().all(|&b| b == 0));
    }
}
