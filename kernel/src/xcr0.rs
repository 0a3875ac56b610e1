//! Which XCR0 values a guest's XSETBV may load: the CPU's own rules, checked before the host executes it.

/// XCR0 state components (Intel SDM Vol. 1 13.1, table 13-1).
pub const X87: u64 = 1 << 0;
pub const SSE: u64 = 1 << 1;
pub const AVX: u64 = 1 << 2;
pub const BNDREGS: u64 = 1 << 3;
pub const BNDCSR: u64 = 1 << 4;
pub const OPMASK: u64 = 1 << 5;
pub const ZMM_HI256: u64 = 1 << 6;
pub const HI16_ZMM: u64 = 1 << 7;
pub const TILECFG: u64 = 1 << 17;
pub const TILEDATA: u64 = 1 << 18;
const AVX512: u64 = OPMASK | ZMM_HI256 | HI16_ZMM;
const MPX: u64 = BNDREGS | BNDCSR;
const AMX: u64 = TILECFG | TILEDATA;

/// Whether XSETBV of `value` to XCR `xcr` succeeds on a CPU whose
/// CPUID.(EAX=0DH,ECX=0) EDX:EAX is `supported` (SDM Vol. 2C, XSETBV; Xen's
/// `valid_xcr0()` in xen/arch/x86/xstate.c lists the same pairings): only
/// XCR0 exists; x87 is always on; no bit the CPU lacks; AVX needs SSE; the
/// three AVX-512 components go together and need AVX; the two MPX
/// components go together; the two AMX components go together. Anything
/// else raises #GP, which must be the guest's, never the host's.
pub fn valid(xcr: u32, value: u64, supported: u64) -> bool {
    let all_or_none = |group: u64| value & group == 0 || value & group == group;
    xcr == 0
        && value & X87 != 0
        && value & !supported == 0
        && (value & AVX == 0 || value & SSE != 0)
        && all_or_none(AVX512)
        && (value & AVX512 == 0 || value & AVX != 0)
        && all_or_none(MPX)
        && all_or_none(AMX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A Sapphire Rapids-like CPU: x87 through AVX-512, MPX, PKRU (9), AMX.
    const EVERYTHING: u64 = 0x6_02ff;

    #[test]
    fn the_reviewers_values_fault() {
        // x87|SSE|opmask alone, and one MPX bit alone: these reached XSETBV
        // on the host and took it down.
        assert!(!valid(0, 0x23, EVERYTHING));
        assert!(!valid(0, 0x0b, EVERYTHING));
    }

    #[test]
    fn architectural_pairings() {
        assert!(valid(0, X87, EVERYTHING));
        assert!(valid(0, X87 | SSE | AVX, EVERYTHING));
        assert!(valid(0, X87 | SSE | AVX | AVX512, EVERYTHING));
        assert!(valid(0, X87 | MPX, EVERYTHING));
        assert!(valid(0, X87 | SSE | AMX, EVERYTHING));
        assert!(valid(0, EVERYTHING, EVERYTHING));
        assert!(!valid(0, 0, EVERYTHING), "x87 is mandatory");
        assert!(!valid(0, SSE, EVERYTHING));
        assert!(!valid(0, X87 | AVX, EVERYTHING), "AVX without SSE");
        assert!(
            !valid(0, X87 | SSE | AVX512, EVERYTHING),
            "AVX-512 without AVX"
        );
        assert!(!valid(0, X87 | SSE | AVX | OPMASK | ZMM_HI256, EVERYTHING));
        assert!(!valid(0, X87 | BNDCSR, EVERYTHING));
        assert!(!valid(0, X87 | TILEDATA, EVERYTHING));
        assert!(!valid(0, X87 | TILECFG, EVERYTHING));
        assert!(!valid(1, X87, EVERYTHING), "XCR1 is not writable");
        assert!(
            !valid(0, X87 | SSE | AVX, X87 | SSE),
            "a component the CPU lacks"
        );
    }

    proptest! {
        /// Every accepted value keeps every rule, whatever the CPU offers.
        #[test]
        fn accepted_values_keep_the_rules(value in any::<u64>(), supported in any::<u64>(), xcr in 0u32..3) {
            if valid(xcr, value, supported) {
                prop_assert_eq!(xcr, 0);
                prop_assert_eq!(value & !supported, 0);
                prop_assert!(value & X87 != 0);
                prop_assert!(value & AVX == 0 || value & SSE != 0);
                for group in [AVX512, MPX, AMX] {
                    prop_assert!(value & group == 0 || value & group == group);
                }
                prop_assert!(value & AVX512 == 0 || value & AVX != 0);
            }
        }
    }
}
