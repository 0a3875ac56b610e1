//! The one-line CPU capability summary that people read and tests parse.

use crate::spec_ctrl::Mitigations;
use core::fmt;
use vcpu::{VirtCaps, VirtKind};

/// What start of day learned about the CPU.
#[derive(Clone, Copy, Debug)]
pub struct CpuSummary<'a> {
    pub vendor: &'a str,
    /// The usable hardware-virtualization extension, if any.
    pub virt: Option<VirtCaps>,
    pub x2apic: bool,
    pub xsave: bool,
    pub invariant_tsc: bool,
    pub tsc_khz: u64,
    pub apic_timer_khz: u64,
    /// The speculative-execution mitigations chosen (xenolith::spec_ctrl).
    pub spec: Mitigations,
}

fn yn(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Every key is always printed, in a fixed order, so a test can split on
/// spaces and `=`: `cpu: vendor=… vmx=… svm=… ept=… npt=… vpid=N asids=N
/// unrestricted=… nrips=… x2apic=… xsave=… invtsc=… tsc_khz=N apic_timer_khz=N
/// spec=…`, where `spec` is a comma-separated list (`Mitigations`' Display).
impl fmt::Display for CpuSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = |kind: VirtKind| self.virt.filter(|v| v.kind == kind && v.usable);
        let vmx = on(VirtKind::Vmx);
        let svm = on(VirtKind::Svm);
        write!(
            f,
            "cpu: vendor={} vmx={} svm={} ept={} npt={} vpid={} asids={} unrestricted={} nrips={} \
             x2apic={} xsave={} invtsc={} tsc_khz={} apic_timer_khz={} spec={}",
            self.vendor,
            yn(vmx.is_some()),
            yn(svm.is_some()),
            yn(vmx.is_some_and(|v| v.second_level)),
            yn(svm.is_some_and(|v| v.second_level)),
            vmx.map_or(0, |v| v.tags),
            svm.map_or(0, |v| v.tags),
            yn(self.virt.is_some_and(|v| v.usable && v.unrestricted_guest)),
            // NRIPS is the SVM name of "the CPU reports the next RIP"; VMX always does.
            yn(svm.is_some_and(|v| v.exit_length)),
            yn(self.x2apic),
            yn(self.xsave),
            yn(self.invariant_tsc),
            self.tsc_khz,
            self.apic_timer_khz,
            self.spec,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec_ctrl::{choose, HostCpu};

    #[test]
    fn svm_line() {
        let s = CpuSummary {
            vendor: "AuthenticAMD",
            virt: Some(VirtCaps {
                kind: VirtKind::Svm,
                usable: true,
                second_level: true,
                tags: 16,
                unrestricted_guest: true,
                exit_length: false,
            }),
            x2apic: false,
            xsave: true,
            invariant_tsc: false,
            tsc_khz: 2_000_000,
            apic_timer_khz: 1_000_000,
            spec: choose(&HostCpu::default()),
        };
        assert_eq!(
            s.to_string(),
            "cpu: vendor=AuthenticAMD vmx=no svm=yes ept=no npt=yes vpid=0 asids=16 \
             unrestricted=yes nrips=no x2apic=no xsave=yes invtsc=no tsc_khz=2000000 \
             apic_timer_khz=1000000 spec=rsb"
        );
    }

    #[test]
    fn locked_vmx_reports_no() {
        let s = CpuSummary {
            vendor: "GenuineIntel",
            virt: Some(VirtCaps {
                kind: VirtKind::Vmx,
                usable: false,
                second_level: true,
                tags: 65535,
                unrestricted_guest: true,
                exit_length: true,
            }),
            x2apic: true,
            xsave: true,
            invariant_tsc: true,
            tsc_khz: 1,
            apic_timer_khz: 1,
            spec: choose(&HostCpu::default()),
        };
        assert!(s.to_string().starts_with(
            "cpu: vendor=GenuineIntel vmx=no svm=no ept=no npt=no vpid=0 asids=0 unrestricted=no nrips=no"
        ));
    }
}
