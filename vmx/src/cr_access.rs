//! Control-register accesses the VMM emulates: writes that touch host-owned CR0/CR4 bits (SDM Vol. 3C 26.1.3, 28.2.1).
//!
//! With unrestricted guest, CR0.PE and CR0.PG are the guest's, but the
//! other CR0_FIXED0 bits (NE on every CPU seen so far) must stay set while
//! the guest runs. The host owns them through the CR0 guest/host mask and
//! the guest sees its own value in the read shadow; a write that changes an
//! owned bit exits here. Linux's PVH entry does exactly that: it loads CR0
//! with PG|PE only, clearing NE.

use crate::controls::fix;
use crate::guest::{CR0_PE, CR0_PG, CR4_PAE, CR4_VMXE, EFER_LMA, EFER_LME};

const CR0_TS: u64 = 1 << 3;
pub const CR0_NW: u64 = 1 << 29;
pub const CR0_CD: u64 = 1 << 30;
const CR4_PSE: u64 = 1 << 4;
const CR4_PGE: u64 = 1 << 7;
const CR4_SMEP: u64 = 1 << 20;

/// Whether a guest CR0 or CR4 write (`old` to `new` actual values of both)
/// leaves the vCPU in PAE paging after an instruction that loads the PDPTEs:
/// one that sets CR0.PG, changes CR0.CD or NW, or changes CR4.PAE, PGE, PSE
/// or SMEP (SDM Vol. 3A 4.4.1). With EPT, VM entry takes them from the
/// VMCS (SDM Vol. 3C 27.3.2.4), so an emulated write must put them there.
pub fn loads_pdptes(old_cr0: u64, new_cr0: u64, old_cr4: u64, new_cr4: u64, efer: u64) -> bool {
    let pae = new_cr0 & CR0_PG != 0 && new_cr4 & CR4_PAE != 0 && efer & EFER_LMA == 0;
    let cr0 = (old_cr0 ^ new_cr0) & (CR0_PG | CR0_CD | CR0_NW) != 0;
    let cr4 = (old_cr4 ^ new_cr4) & (CR4_PAE | CR4_PGE | CR4_PSE | CR4_SMEP) != 0;
    pae && (cr0 || cr4)
}

/// The emulated instruction raises #GP(0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeneralProtection;

/// One control-register access, from the exit qualification (SDM table 28-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrAccess {
    MovTo {
        cr: u8,
        gpr: u8,
    },
    MovFrom {
        cr: u8,
        gpr: u8,
    },
    Clts,
    /// LMSW with its 16-bit source operand.
    Lmsw {
        source: u16,
    },
}

pub fn decode(qualification: u64) -> CrAccess {
    let cr = (qualification & 0xf) as u8;
    let gpr = ((qualification >> 8) & 0xf) as u8;
    match (qualification >> 4) & 0b11 {
        0 => CrAccess::MovTo { cr, gpr },
        1 => CrAccess::MovFrom { cr, gpr },
        2 => CrAccess::Clts,
        _ => CrAccess::Lmsw {
            source: (qualification >> 16) as u16,
        },
    }
}

/// CR0 bits the host keeps: the FIXED0 bits other than PE and PG (exempt
/// under unrestricted guest, SDM 27.3.1.1) and the FIXED1 zero bits.
pub fn cr0_host_owned(fixed0: u64, fixed1: u64) -> u64 {
    (fixed0 & !(CR0_PE | CR0_PG)) | (!fixed1 & 0xffff_ffff)
}

/// The CPU's state after a guest CR0 write that is architecturally valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cr0Write {
    /// What the CPU runs with.
    pub actual: u64,
    /// What the guest reads back.
    pub shadow: u64,
    pub efer: u64,
}

/// A guest `MOV CR0, value`: the #GP checks of MOV to CR0 (SDM Vol. 2B,
/// MOV-Move to/from Control Registers; Vol. 3A 10.8.5 for IA-32e mode entry
/// and exit), then the effect. `Err(())` means #GP(0).
pub fn write_cr0(
    value: u64,
    old_shadow: u64,
    cr4: u64,
    efer: u64,
    fixed0: u64,
    fixed1: u64,
) -> Result<Cr0Write, GeneralProtection> {
    let paging_on = value & CR0_PG != 0;
    let was_on = old_shadow & CR0_PG != 0;
    if value >> 32 != 0
        || (paging_on && value & CR0_PE == 0)
        || (value & CR0_NW != 0 && value & CR0_CD == 0)
    {
        return Err(GeneralProtection);
    }
    let mut efer = efer;
    if paging_on && !was_on && efer & EFER_LME != 0 {
        if cr4 & CR4_PAE == 0 {
            return Err(GeneralProtection);
        }
        efer |= EFER_LMA;
    }
    if !paging_on && was_on {
        efer &= !EFER_LMA;
    }
    Ok(Cr0Write {
        actual: fix(value, fixed0 & !(CR0_PE | CR0_PG), fixed1),
        shadow: value,
        efer,
    })
}

/// CLTS: clears TS.
pub fn clts(shadow: u64) -> u64 {
    shadow & !CR0_TS
}

/// LMSW: loads CR0 bits 0-3 but cannot clear PE (SDM Vol. 2A, LMSW).
pub fn lmsw(shadow: u64, source: u16) -> u64 {
    (shadow & !0xe) | u64::from(source & 0xf) | (shadow & CR0_PE)
}

/// The CR4 bits the host owns (SDM Vol. 3C 25.6.6): VMXE and the other
/// FIXED0 bits, which VMX operation needs set but the guest must see as it
/// left them; every bit the CPU cannot set in VMX operation (FIXED1 zero);
/// every bit the guest is not offered (`valid`, from its CPUID). A MOV to
/// CR4 that changes an owned bit away from the read shadow exits, and the
/// core checks it (`Exit::Cr4Write`); one that keeps to the offered bits
/// runs natively.
pub fn cr4_host_owned(valid: u64, fixed0: u64, fixed1: u64) -> u64 {
    CR4_VMXE | fixed0 | !fixed1 | !valid
}

/// What the CPU runs with for a guest CR4 of `value`: VMXE and the other
/// FIXED0 bits set, FIXED1 zero bits clear.
pub fn cr4_actual(value: u64, fixed0: u64, fixed1: u64) -> u64 {
    fix(value | CR4_VMXE, fixed0, fixed1)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Bochs corei7_skylake_x and most CPUs: FIXED0 = PE|NE|PG, FIXED1 = all low 32 bits.
    const F0: u64 = 0x8000_0021;
    const F1: u64 = 0xffff_ffff;

    #[test]
    fn pdptes_load_on_entering_pae_paging() {
        let pae_on = 0x8000_0011;
        // Setting PG with PAE outside long mode loads them; in long mode not.
        assert!(loads_pdptes(0x11, pae_on, CR4_PAE, CR4_PAE, 0));
        assert!(!loads_pdptes(
            0x11,
            pae_on,
            CR4_PAE,
            CR4_PAE,
            EFER_LME | EFER_LMA
        ));
        // 32-bit paging has none; a write changing only NE loads nothing.
        assert!(!loads_pdptes(0x11, pae_on, 0, 0, 0));
        assert!(!loads_pdptes(pae_on, pae_on | 1 << 5, CR4_PAE, CR4_PAE, 0));
        // CD, or CR4.PGE, under PAE paging does.
        assert!(loads_pdptes(pae_on, pae_on | CR0_CD, CR4_PAE, CR4_PAE, 0));
        assert!(loads_pdptes(pae_on, pae_on, CR4_PAE, CR4_PAE | CR4_PGE, 0));
    }

    #[test]
    fn decodes_qualification() {
        assert_eq!(decode(0x0000_0300), CrAccess::MovTo { cr: 0, gpr: 3 });
        assert_eq!(decode(0x0000_0014), CrAccess::MovFrom { cr: 4, gpr: 0 });
        assert_eq!(decode(0x0000_0020), CrAccess::Clts);
        assert_eq!(decode(0x0001_0030), CrAccess::Lmsw { source: 1 });
    }

    #[test]
    fn owns_ne_only() {
        assert_eq!(cr0_host_owned(F0, F1), 1 << 5);
    }

    #[test]
    fn linux_pvh_entry_enters_long_mode_keeping_ne() {
        // pvh_start_xen: CR4.PAE set, EFER.LME set, then CR0 = PG|PE.
        let w = write_cr0(0x8000_0001, 0x11, CR4_PAE, EFER_LME, F0, F1).unwrap();
        assert_eq!(w.actual, 0x8000_0021);
        assert_eq!(w.shadow, 0x8000_0001);
        assert_eq!(w.efer, EFER_LME | EFER_LMA);
        // Paging off again leaves IA-32e mode.
        let off = write_cr0(0x11, w.shadow, CR4_PAE, w.efer, F0, F1).unwrap();
        assert_eq!(off.efer, EFER_LME);
    }

    #[test]
    fn invalid_writes_fault() {
        assert!(write_cr0(0x8000_0000, 0x11, 0, 0, F0, F1).is_err()); // PG without PE
        assert!(write_cr0(0x2000_0001, 0x11, 0, 0, F0, F1).is_err()); // NW without CD
        assert!(write_cr0(1 << 32 | 1, 0x11, 0, 0, F0, F1).is_err());
        assert!(write_cr0(0x8000_0001, 0x11, 0, EFER_LME, F0, F1).is_err()); // long mode without PAE
    }

    #[test]
    fn cr4_ownership() {
        // Bochs skylake: FIXED0 = VMXE, FIXED1 = 0x3727ff. A guest offered
        // PAE, PSE and PCE owns nothing else.
        let valid = CR4_PAE | (1 << 4) | (1 << 8);
        let owned = cr4_host_owned(valid, 0x2000, 0x0037_27ff);
        assert_eq!(owned & valid, 0);
        assert_ne!(owned & CR4_VMXE, 0);
        assert_ne!(owned & (1 << 6), 0, "MCE not offered: owned");
        assert_ne!(owned & (1 << 15), 0, "reserved: owned");
        assert_ne!(owned & (1 << 40), 0);
        // Even if VMXE were in `valid`, the host keeps it.
        assert_ne!(cr4_host_owned(u64::MAX, 0x2000, u64::MAX) & CR4_VMXE, 0);
        assert_eq!(cr4_actual(CR4_PAE, 0x2000, 0x0037_27ff), CR4_PAE | CR4_VMXE);
    }

    #[test]
    fn clts_and_lmsw() {
        assert_eq!(clts(0x8000_0039), 0x8000_0031);
        assert_eq!(lmsw(0x11, 0), 0x11); // PE stays
        assert_eq!(lmsw(0x10, 0xf), 0x1f);
    }
}
