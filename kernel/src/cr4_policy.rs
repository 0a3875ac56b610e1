//! Which CR4 values a guest may load: the bits its CPUID offers, checked as MOV to CR4 checks them.
//!
//! As Xen's `hvm_cr4_guest_valid_bits` and `hvm_set_cr4`: a bit is
//! settable only when the feature behind it is in the guest's CPUID, so a
//! feature hidden from the guest cannot be switched on behind CPUID's back
//! (and on SVM a bit the CPU lacks never reaches VMRUN's consistency
//! checks, which QEMU answers with `#VMEXIT(ERR)`). VMXE and SMXE are never
//! settable: VMX and SMX are not offered (no nested virtualization).

use crate::cpuid_policy::{self, Regs};

// CR4 bits (Intel SDM Vol. 3A 2.5, figure 2-7; AMD APM Vol. 2 3.1.3).
pub const VME: u64 = 1 << 0;
pub const PVI: u64 = 1 << 1;
pub const TSD: u64 = 1 << 2;
pub const DE: u64 = 1 << 3;
pub const PSE: u64 = 1 << 4;
pub const PAE: u64 = 1 << 5;
pub const MCE: u64 = 1 << 6;
pub const PGE: u64 = 1 << 7;
pub const PCE: u64 = 1 << 8;
pub const OSFXSR: u64 = 1 << 9;
pub const OSXMMEXCPT: u64 = 1 << 10;
pub const UMIP: u64 = 1 << 11;
pub const LA57: u64 = 1 << 12;
pub const VMXE: u64 = 1 << 13;
pub const SMXE: u64 = 1 << 14;
pub const FSGSBASE: u64 = 1 << 16;
pub const PCIDE: u64 = 1 << 17;
pub const OSXSAVE: u64 = 1 << 18;
pub const SMEP: u64 = 1 << 20;
pub const SMAP: u64 = 1 << 21;
pub const PKE: u64 = 1 << 22;
pub const CET: u64 = 1 << 23;
pub const PKS: u64 = 1 << 24;

/// The CR4 bits a guest whose CPUID answers `leaf1` (leaf 1) and `leaf7`
/// (leaf 7 subleaf 0) may set. Each comes from the CPUID bit that
/// enumerates it (SDM Vol. 2A, CPUID tables 3-10, 3-11, 3-13); PCE has no
/// feature bit and is always allowed. MCE needs MCE or MCA, CET needs
/// CET_SS or CET_IBT (all hidden by `cpuid_policy` today).
pub fn valid_bits(leaf1: Regs, leaf7: Regs) -> u64 {
    let [_, _, ecx1, edx1] = leaf1;
    let [_, ebx7, ecx7, edx7] = leaf7;
    let has = |reg: u32, bit: u32| reg & (1 << bit) != 0;
    [
        (has(edx1, 1), VME | PVI),
        (has(edx1, 4), TSD),
        (has(edx1, 2), DE),
        (has(edx1, 3), PSE),
        (has(edx1, 6), PAE),
        (has(edx1, 7) || has(edx1, 14), MCE),
        (has(edx1, 13), PGE),
        (true, PCE),
        (has(edx1, 24), OSFXSR),
        (has(edx1, 25), OSXMMEXCPT),
        (has(ecx7, 2), UMIP),
        (has(ecx7, 16), LA57),
        (has(ebx7, 0), FSGSBASE),
        (has(ecx1, 17), PCIDE),
        (has(ecx1, 26), OSXSAVE),
        (has(ebx7, 7), SMEP),
        (has(ebx7, 20), SMAP),
        (has(ecx7, 3), PKE),
        (has(ecx7, 7) || has(edx7, 20), CET),
        (has(ecx7, 31), PKS),
    ]
    .into_iter()
    .filter(|&(offered, _)| offered)
    .fold(0, |bits, (_, bit)| bits | bit)
}

/// The valid bits for a guest on a host whose CPUID is `host` (leaf,
/// subleaf → registers), through the guest's filtered view.
pub fn guest_valid_bits(host: impl Fn(u32, u32) -> Regs) -> u64 {
    let view = |leaf| cpuid_policy::guest_view(leaf, 0, host(leaf, 0), 0, 0, 0);
    let max = host(0, 0)[0];
    let leaf1 = if max >= 1 { view(1) } else { [0; 4] };
    let leaf7 = if max >= 7 { view(7) } else { [0; 4] };
    valid_bits(leaf1, leaf7)
}

/// What the guest's state says about a MOV to CR4.
#[derive(Clone, Copy, Debug)]
pub struct Cr4Context {
    /// The guest's CR4 now.
    pub current: u64,
    /// IA-32e mode is active (EFER.LMA).
    pub long_mode: bool,
    pub cr3: u64,
    /// `valid_bits` for this guest.
    pub valid: u64,
}

/// A guest `MOV CR4, value`: `Some(value)` to load, `None` for #GP(0), as
/// the instruction checks it (SDM Vol. 2B, MOV-Move to/from Control
/// Registers, and Vol. 3A 4.10.1 for PCIDE): a bit not offered (reserved,
/// or a feature hidden from the guest); PAE cleared or LA57 changed in
/// IA-32e mode; PCIDE set outside IA-32e mode or with CR3[11:0] not zero.
pub fn write(ctx: &Cr4Context, value: u64) -> Option<u64> {
    let changed = ctx.current ^ value;
    let fault = value & !ctx.valid != 0
        || (ctx.long_mode && value & PAE == 0)
        || (ctx.long_mode && changed & LA57 != 0)
        || (value & PCIDE != 0
            && ctx.current & PCIDE == 0
            && (!ctx.long_mode || ctx.cr3 & 0xfff != 0));
    (!fault).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An EPYC-like guest view: leaf 1 EDX with VME, DE, PSE, TSC, PAE,
    /// PGE, FXSR, SSE (MCE/MCA hidden), ECX with PCID and XSAVE; leaf 7
    /// with FSGSBASE, SMEP, SMAP, UMIP.
    const LEAF1: Regs = [0, 0, (1 << 17) | (1 << 26), 0x0780_2b7e & !(1 << 7)];
    const LEAF7: Regs = [0, 1 | (1 << 7) | (1 << 20), 1 << 2, 0];

    fn ctx(current: u64, long_mode: bool) -> Cr4Context {
        Cr4Context {
            current,
            long_mode,
            cr3: 0x1000,
            valid: valid_bits(LEAF1, LEAF7),
        }
    }

    #[test]
    fn offered_bits() {
        let valid = valid_bits(LEAF1, LEAF7);
        for bit in [VME, PVI, TSD, DE, PSE, PAE, PGE, PCE, OSFXSR, OSXMMEXCPT] {
            assert_ne!(valid & bit, 0, "{bit:#x}");
        }
        for bit in [UMIP, FSGSBASE, PCIDE, OSXSAVE, SMEP, SMAP] {
            assert_ne!(valid & bit, 0, "{bit:#x}");
        }
        for bit in [MCE, LA57, VMXE, SMXE, PKE, CET, PKS, 1 << 15, 1 << 32] {
            assert_eq!(valid & bit, 0, "{bit:#x}");
        }
        // Nothing offered: only PCE.
        assert_eq!(valid_bits([0; 4], [0; 4]), PCE);
        assert_eq!(valid_bits([0, 0, 0, 1 << 14], [0; 4]), PCE | MCE);
    }

    #[test]
    fn through_the_guest_view() {
        // A host with VMX (1:ECX[5]) and MCE/MCA: neither reaches the guest.
        let host = |leaf: u32, _sub: u32| match leaf {
            0 => [7, 0, 0, 0],
            1 => [0, 0, (1 << 5) | (1 << 26), (1 << 7) | (1 << 14) | (1 << 6)],
            7 => [0, 1, 0, 0],
            _ => [0; 4],
        };
        assert_eq!(guest_valid_bits(host), PAE | PCE | OSXSAVE | FSGSBASE);
        // Leaf 7 absent: none of its bits.
        let old = |leaf: u32, _sub: u32| match leaf {
            0 => [1, 0, 0, 0],
            _ => [u32::MAX; 4],
        };
        assert_eq!(guest_valid_bits(old) & (FSGSBASE | SMEP | UMIP), 0);
    }

    #[test]
    fn reserved_and_hidden_bits_fault() {
        let c = ctx(PAE | PGE | OSFXSR, true);
        for bad in [VMXE, SMXE, MCE, 1 << 15, 1 << 25, 1 << 32, 1 << 63] {
            assert_eq!(write(&c, c.current | bad), None, "{bad:#x}");
        }
        // Offered bits round-trip.
        assert_eq!(write(&c, c.current | PCE), Some(c.current | PCE));
        assert_eq!(write(&c, c.current & !PGE), Some(c.current & !PGE));
    }

    #[test]
    fn long_mode_rules() {
        let c = ctx(PAE, true);
        assert_eq!(write(&c, 0), None, "PAE cleared in IA-32e mode");
        let mut with_la57 = c;
        with_la57.valid |= LA57;
        assert_eq!(write(&with_la57, PAE | LA57), None, "LA57 changed");
        let legacy = Cr4Context {
            valid: c.valid | LA57,
            ..ctx(0, false)
        };
        assert_eq!(write(&legacy, LA57 | PAE), Some(LA57 | PAE));
        assert_eq!(write(&ctx(PAE, false), 0), Some(0));
    }

    #[test]
    fn pcide() {
        assert_eq!(write(&ctx(PAE, false), PAE | PCIDE), None);
        let mut c = ctx(PAE, true);
        assert_eq!(write(&c, PAE | PCIDE), Some(PAE | PCIDE));
        c.cr3 = 0x1005;
        assert_eq!(write(&c, PAE | PCIDE), None, "CR3[11:0] not zero");
        // Already set: keeping it is no change.
        c.current |= PCIDE;
        assert_eq!(write(&c, PAE | PCIDE | PCE), Some(PAE | PCIDE | PCE));
    }

    #[test]
    fn any_value_has_an_answer() {
        // A hostile guest's value: never a bit outside the valid set.
        let c = ctx(PAE | OSFXSR, true);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if let Some(v) = write(&c, x) {
                assert_eq!(v & !c.valid, 0);
                assert_ne!(v & PAE, 0);
            }
        }
    }
}
