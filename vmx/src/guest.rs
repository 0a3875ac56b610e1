//! The guest-state area a vCPU starts from, computed from `InitialState` (SDM Vol. 3C 25.4, checked as in 27.3.1).

use crate::controls::{fix, VmxMsrs};
use crate::fields::*;
use alloc::vec::Vec;
use vcpu::{Gpr, InitialState};

// Control-register and EFER bits (SDM Vol. 3A 2.5, 2.2.1).
pub const CR0_PE: u64 = 1 << 0;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4_PAE: u64 = 1 << 5;
pub const CR4_VMXE: u64 = 1 << 13;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;
pub const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS bits that may be set (SDM Vol. 3C 27.3.1.4); bit 1 must be.
const RFLAGS_DEFINED: u64 = 0x003f_7fd5;
const RFLAGS_FIXED: u64 = 1 << 1;

/// Segment access rights in the VMCS format (SDM Vol. 3C 25.4.1, table 25-2):
/// type 3:0, S 4, DPL 6:5, P 7, L 13, D/B 14, G 15, unusable 16.
pub mod access_rights {
    /// Execute/read code, accessed, 32-bit, 4 KiB granularity.
    pub const CODE32: u32 = 0xc09b;
    /// Execute/read code, accessed, 64-bit (L = 1, D = 0).
    pub const CODE64: u32 = 0xa09b;
    /// Read/write data, accessed, 32-bit, 4 KiB granularity.
    pub const DATA: u32 = 0xc093;
    /// Busy 32-bit TSS (busy 64-bit TSS in IA-32e mode), system segment.
    pub const TSS_BUSY: u32 = 0x008b;
    pub const UNUSABLE: u32 = 1 << 16;
    /// Bit 13 (L): 64-bit code segment.
    pub const LONG: u32 = 1 << 13;
    /// Bit 14 (D/B): 32-bit default operand size (SDM Vol. 3C 25.4.1).
    pub const DEFAULT_BIG: u32 = 1 << 14;
}

const CODE_SELECTOR: u64 = 0x08;
const DATA_SELECTOR: u64 = 0x10;
const TSS_SELECTOR: u64 = 0x18;
/// The power-on value of IA32_PAT (SDM Vol. 3A 13.12.4).
const PAT_DEFAULT: u64 = 0x0007_0406_0007_0406;
/// DR7 at reset: only the always-one bit 10 (SDM Vol. 3B 19.2.4).
const DR7_INIT: u64 = 0x400;

/// Every guest-state field write, in order, for a vCPU in `initial`, plus the
/// CR0/CR4 guest/host masks and read shadows that go with them. The host
/// owns the CR4 bits in `cr4_owned` (crate::cr_access::cr4_host_owned):
/// the guest sees them through the read shadow and changing them exits.
pub fn initial_writes(
    initial: &InitialState,
    msrs: &VmxMsrs,
    cr4_owned: u64,
) -> Result<Vec<(u32, u64)>, &'static str> {
    let p = initial.paging;
    let paging = p.cr0 & CR0_PG != 0;
    if paging && p.cr0 & CR0_PE == 0 {
        return Err("initial state has CR0.PG set without CR0.PE");
    }
    if initial.long_mode && !(paging && p.cr4 & CR4_PAE != 0) {
        return Err("initial long-mode state needs CR0.PG and CR4.PAE");
    }
    if !initial.long_mode && paging && p.cr4 & CR4_PAE != 0 {
        // With EPT the PDPTEs would come from the VMCS (SDM Vol. 3C 27.3.2.4).
        return Err("initial PAE paging outside long mode is not supported");
    }
    // Unrestricted guest exempts PE and PG from CR0_FIXED0 (SDM Vol. 3C 27.3.1.1).
    let cr0 = fix(p.cr0, msrs.cr0_fixed0 & !(CR0_PE | CR0_PG), msrs.cr0_fixed1);
    if p.cr4 & cr4_owned & !CR4_VMXE != 0 {
        return Err("initial CR4 has a bit the guest is not offered");
    }
    let cr4 = crate::cr_access::cr4_actual(p.cr4, msrs.cr4_fixed0, msrs.cr4_fixed1);
    let efer = if initial.long_mode {
        p.efer | EFER_LME | EFER_LMA
    } else {
        p.efer & !EFER_LMA
    };
    let code = if initial.long_mode {
        access_rights::CODE64
    } else {
        access_rights::CODE32
    };

    let mut w: Vec<(u32, u64)> = Vec::with_capacity(64);
    w.extend([
        // The fixed bits other than PE/PG are the host's; the guest reads
        // back exactly what it asked for (crate::cr_access).
        (
            CR0_GUEST_HOST_MASK,
            crate::cr_access::cr0_host_owned(msrs.cr0_fixed0, msrs.cr0_fixed1),
        ),
        (CR0_READ_SHADOW, p.cr0),
        (CR4_GUEST_HOST_MASK, cr4_owned),
        (CR4_READ_SHADOW, p.cr4 & cr4_owned),
        (GUEST_CR0, cr0),
        (GUEST_CR3, p.cr3),
        (GUEST_CR4, cr4),
        (GUEST_IA32_EFER, efer),
        (GUEST_IA32_PAT, PAT_DEFAULT),
        (GUEST_IA32_DEBUGCTL, 0),
        (GUEST_DR7, DR7_INIT),
        (GUEST_RSP, initial.gprs[Gpr::Rsp as usize]),
        (GUEST_RIP, initial.rip),
        (
            GUEST_RFLAGS,
            (initial.rflags & RFLAGS_DEFINED) | RFLAGS_FIXED,
        ),
    ]);
    // Flat segments: CS code, the rest data, all base 0 limit 4 GiB.
    let segments = [
        (
            GUEST_CS_SELECTOR,
            GUEST_CS_BASE,
            GUEST_CS_LIMIT,
            GUEST_CS_ACCESS_RIGHTS,
            CODE_SELECTOR,
            code,
        ),
        (
            GUEST_SS_SELECTOR,
            GUEST_SS_BASE,
            GUEST_SS_LIMIT,
            GUEST_SS_ACCESS_RIGHTS,
            DATA_SELECTOR,
            access_rights::DATA,
        ),
        (
            GUEST_DS_SELECTOR,
            GUEST_DS_BASE,
            GUEST_DS_LIMIT,
            GUEST_DS_ACCESS_RIGHTS,
            DATA_SELECTOR,
            access_rights::DATA,
        ),
        (
            GUEST_ES_SELECTOR,
            GUEST_ES_BASE,
            GUEST_ES_LIMIT,
            GUEST_ES_ACCESS_RIGHTS,
            DATA_SELECTOR,
            access_rights::DATA,
        ),
        (
            GUEST_FS_SELECTOR,
            GUEST_FS_BASE,
            GUEST_FS_LIMIT,
            GUEST_FS_ACCESS_RIGHTS,
            DATA_SELECTOR,
            access_rights::DATA,
        ),
        (
            GUEST_GS_SELECTOR,
            GUEST_GS_BASE,
            GUEST_GS_LIMIT,
            GUEST_GS_ACCESS_RIGHTS,
            DATA_SELECTOR,
            access_rights::DATA,
        ),
        (
            GUEST_TR_SELECTOR,
            GUEST_TR_BASE,
            GUEST_TR_LIMIT,
            GUEST_TR_ACCESS_RIGHTS,
            TSS_SELECTOR,
            access_rights::TSS_BUSY,
        ),
    ];
    for (selector, base, limit, ar, value, rights) in segments {
        let limit_value = if rights == access_rights::TSS_BUSY {
            0x67
        } else {
            0xffff_ffff
        };
        w.extend([
            (selector, value),
            (base, 0),
            (limit, limit_value),
            (ar, u64::from(rights)),
        ]);
    }
    w.extend([
        (GUEST_LDTR_SELECTOR, 0),
        (GUEST_LDTR_BASE, 0),
        (GUEST_LDTR_LIMIT, 0),
        (GUEST_LDTR_ACCESS_RIGHTS, u64::from(access_rights::UNUSABLE)),
        (GUEST_GDTR_BASE, 0),
        (GUEST_GDTR_LIMIT, 0),
        (GUEST_IDTR_BASE, 0),
        (GUEST_IDTR_LIMIT, 0),
        (GUEST_IA32_SYSENTER_CS, 0),
        (GUEST_IA32_SYSENTER_ESP, 0),
        (GUEST_IA32_SYSENTER_EIP, 0),
        // Active, nothing blocked, no pending debug exceptions (SDM Vol. 3C 25.4.2).
        (GUEST_ACTIVITY_STATE, 0),
        (GUEST_INTERRUPTIBILITY_STATE, 0),
        (GUEST_PENDING_DEBUG_EXCEPTIONS, 0),
        // No shadow VMCS: all ones (SDM Vol. 3C 27.3.1.5).
        (VMCS_LINK_POINTER, u64::MAX),
    ]);
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcpu::Paging;

    fn msrs() -> VmxMsrs {
        VmxMsrs {
            cr0_fixed0: 0x8000_0021,
            cr0_fixed1: 0xffff_ffff,
            cr4_fixed0: 0x2000,
            cr4_fixed1: 0x0037_27ff,
            ..VmxMsrs::default()
        }
    }

    fn value(w: &[(u32, u64)], field: u32) -> u64 {
        let hits: Vec<_> = w.iter().filter(|(f, _)| *f == field).collect();
        assert_eq!(hits.len(), 1, "{}", name(field));
        hits[0].1
    }

    /// The PVH entry state: 32-bit protected mode, paging off.
    fn pvh() -> InitialState {
        let mut gprs = [0; 16];
        gprs[Gpr::Rbx as usize] = 0x1000;
        gprs[Gpr::Rsp as usize] = 0x8000;
        InitialState {
            gprs,
            rip: 0x10_0000,
            rflags: 0,
            long_mode: false,
            paging: Paging {
                cr0: CR0_PE | 1 << 4,
                ..Paging::default()
            },
        }
    }

    /// VMXE and everything but PAE, PSE, PGE owned by the host.
    const OWNED: u64 = !(CR4_PAE | (1 << 4) | (1 << 7));

    #[test]
    fn pvh_entry_state() {
        let w = initial_writes(&pvh(), &msrs(), OWNED).unwrap();
        // CR0.NE forced on; PG stays off under unrestricted guest.
        assert_eq!(value(&w, GUEST_CR0), 0x31);
        assert_eq!(value(&w, GUEST_CR4), CR4_VMXE);
        assert_eq!(value(&w, CR4_GUEST_HOST_MASK), OWNED);
        assert_eq!(value(&w, CR4_READ_SHADOW), 0);
        assert_eq!(value(&w, GUEST_IA32_EFER), 0);
        assert_eq!(value(&w, GUEST_CS_SELECTOR), 8);
        assert_eq!(value(&w, GUEST_CS_ACCESS_RIGHTS), 0xc09b);
        assert_eq!(value(&w, GUEST_CS_LIMIT), 0xffff_ffff);
        for ar in [
            GUEST_SS_ACCESS_RIGHTS,
            GUEST_DS_ACCESS_RIGHTS,
            GUEST_ES_ACCESS_RIGHTS,
            GUEST_FS_ACCESS_RIGHTS,
            GUEST_GS_ACCESS_RIGHTS,
        ] {
            assert_eq!(value(&w, ar), 0xc093);
        }
        assert_eq!(value(&w, GUEST_TR_ACCESS_RIGHTS), 0x8b);
        assert_eq!(value(&w, GUEST_TR_LIMIT), 0x67);
        assert_eq!(value(&w, GUEST_LDTR_ACCESS_RIGHTS), 1 << 16);
        assert_eq!(value(&w, GUEST_DR7), 0x400);
        assert_eq!(value(&w, VMCS_LINK_POINTER), u64::MAX);
        assert_eq!(value(&w, GUEST_RFLAGS), 2);
        assert_eq!(value(&w, GUEST_RSP), 0x8000);
        assert_eq!(value(&w, GUEST_RIP), 0x10_0000);
    }

    #[test]
    fn long_mode_state() {
        let mut s = pvh();
        s.long_mode = true;
        s.rflags = 1 << 9 | 1 << 1 | 1 << 63;
        s.paging = Paging {
            cr0: CR0_PE | CR0_PG,
            cr3: 0x5000,
            cr4: CR4_PAE,
            efer: EFER_LME,
        };
        let w = initial_writes(&s, &msrs(), OWNED).unwrap();
        assert_eq!(value(&w, GUEST_IA32_EFER), EFER_LME | EFER_LMA);
        assert_eq!(value(&w, GUEST_CS_ACCESS_RIGHTS), 0xa09b);
        assert_eq!(value(&w, GUEST_CR3), 0x5000);
        assert_eq!(value(&w, GUEST_CR4), CR4_PAE | CR4_VMXE);
        // Reserved RFLAGS bits dropped.
        assert_eq!(value(&w, GUEST_RFLAGS), 0x202);
    }

    #[test]
    fn refuses_inconsistent_paging() {
        let mut s = pvh();
        s.long_mode = true;
        assert!(initial_writes(&s, &msrs(), OWNED).is_err());
        let mut s = pvh();
        s.paging.cr0 = CR0_PG;
        assert!(initial_writes(&s, &msrs(), OWNED).is_err());
        let mut s = pvh();
        s.paging.cr0 = CR0_PE | CR0_PG;
        s.paging.cr4 = CR4_PAE;
        assert!(initial_writes(&s, &msrs(), OWNED).is_err());
        // A CR4 bit the guest is not offered.
        let mut s = pvh();
        s.paging.cr4 = 1 << 6;
        assert!(initial_writes(&s, &msrs(), OWNED).is_err());
    }

    #[test]
    fn every_field_written_once() {
        let w = initial_writes(&pvh(), &msrs(), OWNED).unwrap();
        for (i, (a, _)) in w.iter().enumerate() {
            assert!(w[i + 1..].iter().all(|(b, _)| a != b), "{}", name(*a));
            assert_ne!(name(*a), "unknown field");
        }
    }
}
