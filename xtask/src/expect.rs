//! What the capability line must say on each emulated CPU model.

use crate::serial::Caps;
use crate::Cpu;

/// A condition on one capability value.
#[derive(Clone, Copy, Debug)]
pub enum Want {
    /// Exactly this text.
    Is(&'static str),
    /// A number greater than zero.
    Positive,
}

/// Expectations for one emulated CPU model.
pub struct CpuExpect {
    pub cpu: Cpu,
    /// Which emulator setup the expectations were written for.
    pub setup: &'static str,
    pub wants: &'static [(&'static str, Want)],
}

use Want::{Is, Positive};

/// One row per CPU model the smoke tests boot. Only what the emulator is known
/// to provide is pinned; the rest of the line just has to parse.
pub const TABLE: &[CpuExpect] = &[
    CpuExpect {
        cpu: Cpu::Epyc,
        setup: "QEMU 7.2 TCG -cpu EPYC",
        wants: &[
            ("vendor", Is("AuthenticAMD")),
            ("vmx", Is("no")),
            ("ept", Is("no")),
            ("svm", Is("yes")),
            ("npt", Is("yes")),
            ("asids", Positive),
            // TCG does not emulate next-RIP saving.
            ("nrips", Is("no")),
            // TCG offers none of IBPB, IBRS, STIBP, SSBD: only the RSB fill.
            ("spec", Is("rsb")),
        ],
    },
    CpuExpect {
        cpu: Cpu::Skylake,
        setup: "Bochs 2.7 corei7_skylake_x",
        wants: &[
            ("vendor", Is("GenuineIntel")),
            ("vmx", Is("yes")),
            ("svm", Is("no")),
            ("ept", Is("yes")),
            ("npt", Is("no")),
            ("unrestricted", Is("yes")),
            ("vpid", Positive),
            // No speculation controls in leaf 7 (no SPEC_CTRL, L1D_FLUSH,
            // MD_CLEAR): L1TF and MDS are left open, only the RSB fill.
            ("spec", Is("rsb")),
        ],
    },
    CpuExpect {
        cpu: Cpu::Ryzen,
        setup: "Bochs 2.7 ryzen",
        wants: &[
            ("vendor", Is("AuthenticAMD")),
            ("vmx", Is("no")),
            ("ept", Is("no")),
            ("svm", Is("yes")),
            ("npt", Is("yes")),
            ("asids", Positive),
            ("nrips", Is("yes")),
            // No IBPB, IBRS, STIBP or SSBD in 8000_0008h EBX.
            ("spec", Is("rsb")),
        ],
    },
];

/// The expectations for a CPU model.
pub fn for_cpu(cpu: Cpu) -> &'static CpuExpect {
    TABLE
        .iter()
        .find(|e| e.cpu == cpu)
        .expect("every CPU model has a row in expect::TABLE")
}

/// Every way `caps` differs from `expect`, as readable sentences.
pub fn mismatches(expect: &CpuExpect, caps: &Caps) -> Vec<String> {
    let mut out = Vec::new();
    for &(key, want) in expect.wants {
        let Some(got) = caps.get(key) else {
            out.push(format!("capability {key} is missing"));
            continue;
        };
        let ok = match want {
            Is(text) => got == text,
            Positive => got.parse::<u64>().is_ok_and(|n| n > 0),
        };
        if !ok {
            let wanted = match want {
                Is(text) => text.to_string(),
                Positive => "a number > 0".to_string(),
            };
            out.push(format!("{}: {key}={got}, expected {wanted}", expect.setup));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serial::{parse_caps, CAP_KEYS};

    fn caps(line: &str) -> Caps {
        parse_caps(line).unwrap()
    }

    #[test]
    fn table_keys_are_real_and_every_cpu_has_a_row() {
        for row in TABLE {
            for (key, _) in row.wants {
                assert!(CAP_KEYS.contains(key), "{key}");
            }
        }
        for cpu in [Cpu::Epyc, Cpu::Skylake, Cpu::Ryzen] {
            assert_eq!(for_cpu(cpu).cpu, cpu);
        }
    }

    #[test]
    fn epyc_tcg_line_matches() {
        let line = "cpu: vendor=AuthenticAMD vmx=no svm=yes ept=no npt=yes vpid=0 asids=16 \
            unrestricted=yes nrips=no x2apic=no xsave=yes invtsc=no tsc_khz=1 apic_timer_khz=1 \
            spec=rsb";
        assert!(mismatches(for_cpu(Cpu::Epyc), &caps(line)).is_empty());
        // The same line is wrong for Bochs' ryzen, which has NRIPS.
        let problems = mismatches(for_cpu(Cpu::Ryzen), &caps(line));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("nrips=no"), "{problems:?}");
        // A CPU model that suddenly offers IBPB is a change to look at.
        let ibpb = line.replace("spec=rsb", "spec=ibpb,rsb");
        let problems = mismatches(for_cpu(Cpu::Epyc), &caps(&ibpb));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("spec=ibpb,rsb"), "{problems:?}");
    }

    #[test]
    fn skylake_needs_vpids() {
        let line = "cpu: vendor=GenuineIntel vmx=yes svm=no ept=yes npt=no vpid=0 asids=0 \
            unrestricted=yes nrips=no x2apic=yes xsave=yes invtsc=no tsc_khz=1 apic_timer_khz=1 \
            spec=rsb";
        let problems = mismatches(for_cpu(Cpu::Skylake), &caps(line));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("vpid=0"), "{problems:?}");
    }
}
