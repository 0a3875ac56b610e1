//! Speculative-execution isolation: the mitigations this CPU needs (from CPUID and ARCH_CAPABILITIES) and the speculation controls guests get.
//!
//! The choice follows Xen's `init_speculation_mitigations()`
//! (xen/arch/x86/spec_ctrl.c) for a hypervisor built without compiler
//! thunks (retpolines): IBRS is then Xen's only branch-target-injection
//! defence for itself, IBPB goes between domains, the RSB is overwritten
//! after every exit from an HVM guest, L1D_FLUSH and VERW are used where
//! `l1tf_calculations()` and `mds_calculations()` find the CPU affected.
//! docs/security.md has the table per vendor.

use core::fmt;
use vcpu::EntryMitigations;

// CPUID.(EAX=7,ECX=0):EDX and EBX (Intel SDM Vol. 2A, CPUID, table 3-8;
// Intel "Speculative Execution Side Channel Mitigations", rev. 3.0, 2.4).
pub const L7_EDX_MD_CLEAR: u32 = 1 << 10;
/// IBRS and IBPB: IA32_SPEC_CTRL.IBRS and IA32_PRED_CMD exist.
pub const L7_EDX_IBRS_IBPB: u32 = 1 << 26;
pub const L7_EDX_STIBP: u32 = 1 << 27;
/// IA32_FLUSH_CMD exists.
pub const L7_EDX_L1D_FLUSH: u32 = 1 << 28;
/// IA32_ARCH_CAPABILITIES exists.
pub const L7_EDX_ARCH_CAPS: u32 = 1 << 29;
pub const L7_EDX_SSBD: u32 = 1 << 31;
/// RTM (TSX), which makes an MDS_NO part TAA-affected (Intel TAA guidance).
pub const L7_EBX_RTM: u32 = 1 << 11;
// CPUID 8000_0008h EBX (AMD APM Vol. 3, E.4.7; AMD "Indirect Branch
// Control Extension" and "Speculative Store Bypass Disable" whitepapers).
pub const E8_EBX_IBPB: u32 = 1 << 12;
pub const E8_EBX_IBRS: u32 = 1 << 14;
pub const E8_EBX_STIBP: u32 = 1 << 15;
pub const E8_EBX_SSBD: u32 = 1 << 24;

// IA32_SPEC_CTRL (0x48), IA32_PRED_CMD (0x49), IA32_FLUSH_CMD (0x10b)
// (Intel SDM Vol. 4, table 2-2; AMD APM Vol. 2, 3.2.9).
pub const SPEC_CTRL_IBRS: u64 = 1 << 0;
pub const SPEC_CTRL_STIBP: u64 = 1 << 1;
pub const SPEC_CTRL_SSBD: u64 = 1 << 2;
pub const PRED_CMD_IBPB: u64 = 1 << 0;
pub const FLUSH_CMD_L1D: u64 = 1 << 0;

// IA32_ARCH_CAPABILITIES (0x10a; Intel SDM Vol. 4, table 2-2).
pub const ARCH_CAP_RDCL_NO: u64 = 1 << 0;
pub const ARCH_CAP_IBRS_ALL: u64 = 1 << 1;
pub const ARCH_CAP_RSBA: u64 = 1 << 2;
pub const ARCH_CAP_SKIP_L1DFL_VMENTRY: u64 = 1 << 3;
pub const ARCH_CAP_SSB_NO: u64 = 1 << 4;
pub const ARCH_CAP_MDS_NO: u64 = 1 << 5;
pub const ARCH_CAP_IF_PSCHANGE_MC_NO: u64 = 1 << 6;
pub const ARCH_CAP_TSX_CTRL: u64 = 1 << 7;
pub const ARCH_CAP_TAA_NO: u64 = 1 << 8;
pub const ARCH_CAP_SBDR_SSDP_NO: u64 = 1 << 13;
pub const ARCH_CAP_FBSDP_NO: u64 = 1 << 14;
pub const ARCH_CAP_PSDP_NO: u64 = 1 << 15;
pub const ARCH_CAP_FB_CLEAR: u64 = 1 << 17;
pub const ARCH_CAP_RRSBA: u64 = 1 << 19;
pub const ARCH_CAP_BHI_NO: u64 = 1 << 20;
pub const ARCH_CAP_PBRSB_NO: u64 = 1 << 24;
pub const ARCH_CAP_GDS_NO: u64 = 1 << 26;
pub const ARCH_CAP_RFDS_NO: u64 = 1 << 27;
pub const ARCH_CAP_RFDS_CLEAR: u64 = 1 << 28;

/// The ARCH_CAPABILITIES bits a guest sees when the host has them: the
/// "not affected" and "behaves like" hints, as KVM's KVM_SUPPORTED_ARCH_CAP.
/// Left out: every bit that announces another MSR (TSX_CTRL, MCU_CONTROL,
/// MISC_PACKAGE_CTLS, ENERGY_FILTERING, DOITM, FB_CLEAR_CTRL,
/// XAPIC_DISABLE, OVERCLOCKING_STATUS, GDS_CTRL), none of which is emulated.
const GUEST_ARCH_CAPS: u64 = ARCH_CAP_RDCL_NO
    | ARCH_CAP_IBRS_ALL
    | ARCH_CAP_RSBA
    | ARCH_CAP_SKIP_L1DFL_VMENTRY
    | ARCH_CAP_SSB_NO
    | ARCH_CAP_MDS_NO
    | ARCH_CAP_IF_PSCHANGE_MC_NO
    | ARCH_CAP_TAA_NO
    | ARCH_CAP_SBDR_SSDP_NO
    | ARCH_CAP_FBSDP_NO
    | ARCH_CAP_PSDP_NO
    | ARCH_CAP_FB_CLEAR
    | ARCH_CAP_RRSBA
    | ARCH_CAP_BHI_NO
    | ARCH_CAP_PBRSB_NO
    | ARCH_CAP_GDS_NO
    | ARCH_CAP_RFDS_NO
    | ARCH_CAP_RFDS_CLEAR;

/// Family 6 models Xen's `l1tf_calculations()` knows to be unaffected by
/// L1TF: the Atoms (Bonnell to Goldmont Plus) and Xeon Phis.
const L1TF_UNAFFECTED_MODELS: &[u32] = &[
    0x1c, 0x26, 0x27, 0x35, 0x36, 0x37, 0x4a, 0x4c, 0x4d, 0x5a, 0x5c, 0x5f, 0x7a, 0x57, 0x85,
];
/// Family 6 models Xen's `mds_calculations()` knows to be unaffected by MDS
/// (the oldest and the Goldmont Plus Atoms).
const MDS_UNAFFECTED_MODELS: &[u32] = &[0x1c, 0x26, 0x27, 0x35, 0x36, 0x7a];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Vendor {
    Intel,
    Amd,
    #[default]
    Other,
}

/// What the host CPU says about speculation: the raw CPUID words and
/// IA32_ARCH_CAPABILITIES (0 where CPUID does not enumerate it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostCpu {
    pub vendor: Vendor,
    /// Display family and model (Intel SDM Vol. 2A, CPUID leaf 1, figure 3-6).
    pub family: u32,
    pub model: u32,
    /// CPUID.(7,0):EBX and EDX; 0 if leaf 7 does not exist.
    pub l7_ebx: u32,
    pub l7_edx: u32,
    /// CPUID 8000_0008h EBX; 0 if the leaf does not exist.
    pub e8_ebx: u32,
    pub arch_caps: u64,
}

impl HostCpu {
    /// Family and model from CPUID leaf 1 EAX: the extended family is added
    /// for family 0Fh, the extended model taken for families 06h and 0Fh.
    pub fn set_signature(&mut self, eax: u32) {
        let base_family = (eax >> 8) & 0xf;
        let base_model = (eax >> 4) & 0xf;
        self.family = if base_family == 0xf {
            base_family + ((eax >> 20) & 0xff)
        } else {
            base_family
        };
        self.model = if base_family == 0x6 || base_family == 0xf {
            (((eax >> 16) & 0xf) << 4) | base_model
        } else {
            base_model
        };
    }

    fn intel_family6(&self) -> bool {
        self.vendor == Vendor::Intel && self.family == 6
    }

    /// IA32_SPEC_CTRL exists (any of its bits is enumerated).
    pub fn has_spec_ctrl(&self) -> bool {
        self.spec_ctrl_bits() != 0
    }

    /// The IA32_SPEC_CTRL bits this CPU implements, from either vendor's leaf.
    pub fn spec_ctrl_bits(&self) -> u64 {
        let has = |l7: u32, e8: u32| self.l7_edx & l7 != 0 || self.e8_ebx & e8 != 0;
        let bit = |on: bool, bit: u64| if on { bit } else { 0 };
        bit(has(L7_EDX_IBRS_IBPB, E8_EBX_IBRS), SPEC_CTRL_IBRS)
            | bit(has(L7_EDX_STIBP, E8_EBX_STIBP), SPEC_CTRL_STIBP)
            | bit(has(L7_EDX_SSBD, E8_EBX_SSBD), SPEC_CTRL_SSBD)
    }

    /// IA32_PRED_CMD.IBPB exists.
    pub fn has_ibpb(&self) -> bool {
        self.l7_edx & L7_EDX_IBRS_IBPB != 0 || self.e8_ebx & E8_EBX_IBPB != 0
    }

    /// Xen's `l1tf_calculations()`: Intel family 6 but the unaffected Atoms
    /// and Xeon Phis, unless RDCL_NO (Intel L1TF guidance, "Processors not
    /// affected").
    pub fn l1tf_affected(&self) -> bool {
        self.intel_family6()
            && !L1TF_UNAFFECTED_MODELS.contains(&self.model)
            && self.arch_caps & ARCH_CAP_RDCL_NO == 0
    }

    /// Xen's `mds_calculations()` and its TAA test: Intel family 6 but the
    /// unaffected Atoms, unless MDS_NO; or, with MDS_NO, TSX without TAA_NO
    /// (Intel "TSX Asynchronous Abort" guidance).
    pub fn mds_affected(&self) -> bool {
        let mds = self.intel_family6()
            && !MDS_UNAFFECTED_MODELS.contains(&self.model)
            && self.arch_caps & ARCH_CAP_MDS_NO == 0;
        let tsx = self.l7_ebx & L7_EBX_RTM != 0 || self.arch_caps & ARCH_CAP_TSX_CTRL != 0;
        let taa = self.vendor == Vendor::Intel
            && tsx
            && self.arch_caps & (ARCH_CAP_MDS_NO | ARCH_CAP_TAA_NO) == ARCH_CAP_MDS_NO;
        mds || taa
    }
}

/// How the hypervisor keeps guests from steering its own indirect branches
/// (Spectre v2, branch target injection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ibrs {
    /// The CPU has no IBRS.
    None,
    /// IBRS written with 1 after every exit (Intel without IBRS_ALL, AMD).
    Legacy,
    /// Enhanced IBRS (ARCH_CAPABILITIES.IBRS_ALL): set once, always on.
    Enhanced,
}

/// What the host does, chosen once at start of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mitigations {
    pub ibrs: Ibrs,
    /// IBPB when the CPU goes from one domain's vCPU to another's.
    pub ibpb: bool,
    /// Overwrite the return stack buffer after every exit.
    pub rsb_fill: bool,
    /// L1D flush before every VMX entry (L1TF).
    pub l1d_flush: bool,
    /// VERW before every VMX entry (MDS, TAA).
    pub verw: bool,
    /// Affected by L1TF or MDS/TAA but the CPU (its microcode) lacks
    /// L1D_FLUSH or MD_CLEAR: nothing can be done; reported, as Xen does.
    pub l1tf_open: bool,
    pub mds_open: bool,
}

/// Picks the mitigations for `host`.
///
/// - IBRS for the hypervisor wherever the CPU has it: Xenolith is built
///   without retpolines, and Xen without compiler thunks uses IBRS when
///   available. Enhanced where ARCH_CAPABILITIES.IBRS_ALL says so (Intel
///   "Enhanced IBRS"); on AMD legacy, rewritten after every exit.
/// - IBPB between domains wherever PRED_CMD exists (Xen's `opt_ibpb`,
///   default on; KVM's IBPB when another vCPU is loaded).
/// - RSB fill after every exit, on every CPU (Xen's `opt_rsb_hvm`, always
///   on: "HVM guests can always poison the RSB"; KVM fills it too, except
///   on eIBRS parts without the PBRSB erratum).
/// - L1D flush where L1TF-affected, L1D_FLUSH exists and no outer
///   hypervisor says SKIP_L1DFL_VMENTRY (Xen's `opt_l1d_flush`).
/// - VERW where MDS/TAA-affected with MD_CLEAR, unless the L1D flush runs
///   (MD_CLEAR microcode makes L1D_FLUSH clear the buffers as well) or an
///   outer hypervisor flushes (Xen's SC_VERW_HVM condition).
pub fn choose(host: &HostCpu) -> Mitigations {
    let ibrs = if host.spec_ctrl_bits() & SPEC_CTRL_IBRS == 0 {
        Ibrs::None
    } else if host.vendor == Vendor::Intel && host.arch_caps & ARCH_CAP_IBRS_ALL != 0 {
        Ibrs::Enhanced
    } else {
        Ibrs::Legacy
    };
    let skip_l1dfl = host.arch_caps & ARCH_CAP_SKIP_L1DFL_VMENTRY != 0;
    let l1tf = host.l1tf_affected() && !skip_l1dfl;
    let can_flush = host.l7_edx & L7_EDX_L1D_FLUSH != 0;
    let l1d_flush = l1tf && can_flush;
    let mds = host.mds_affected() && !skip_l1dfl;
    let md_clear = host.l7_edx & L7_EDX_MD_CLEAR != 0;
    Mitigations {
        ibrs,
        ibpb: host.has_ibpb(),
        rsb_fill: true,
        l1d_flush,
        verw: mds && md_clear && !l1d_flush,
        l1tf_open: l1tf && !can_flush,
        mds_open: mds && !md_clear,
    }
}

impl Mitigations {
    /// IA32_SPEC_CTRL while the hypervisor runs: IBRS where chosen, else 0;
    /// `None` when the CPU has no SPEC_CTRL.
    pub fn host_spec_ctrl(&self, host: &HostCpu) -> Option<u64> {
        host.has_spec_ctrl().then_some(if self.ibrs == Ibrs::None {
            0
        } else {
            SPEC_CTRL_IBRS
        })
    }

    /// What the backends do at each entry and exit.
    pub fn entry(&self, host: &HostCpu) -> EntryMitigations {
        EntryMitigations {
            host_spec_ctrl: self.host_spec_ctrl(host),
            spec_ctrl_every_exit: self.ibrs == Ibrs::Legacy,
            verw: self.verw,
            l1d_flush: self.l1d_flush,
        }
    }
}

/// The capability line's `spec=` value: the mitigations in use, comma
/// separated, in a fixed order (`ibrs` or `eibrs`, `ibpb`, `rsb`, `l1d`,
/// `verw`), or `none`.
impl fmt::Display for Mitigations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ibrs = match self.ibrs {
            Ibrs::None => None,
            Ibrs::Legacy => Some("ibrs"),
            Ibrs::Enhanced => Some("eibrs"),
        };
        let names = [
            ibrs,
            self.ibpb.then_some("ibpb"),
            self.rsb_fill.then_some("rsb"),
            self.l1d_flush.then_some("l1d"),
            self.verw.then_some("verw"),
        ];
        let mut first = true;
        for name in names.into_iter().flatten() {
            if !first {
                f.write_str(",")?;
            }
            f.write_str(name)?;
            first = false;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// The speculation controls a guest gets: each exactly when the host has it,
/// so a guest never sees a bit the host lacks (and with no SPEC_CTRL on the
/// host, the MSRs keep raising #GP and the CPUID bits stay clear).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestOffer {
    /// IA32_SPEC_CTRL bits the guest may set; 0: no SPEC_CTRL (#GP).
    pub spec_ctrl: u64,
    /// IA32_PRED_CMD (write-only): IBPB, done on the host.
    pub ibpb: bool,
    /// IA32_FLUSH_CMD (write-only): L1D_FLUSH, done on the host.
    pub flush_cmd: bool,
    /// IA32_ARCH_CAPABILITIES (read-only), where the host has it.
    pub arch_caps: Option<u64>,
}

/// What guests get on `host` with the mitigations `m`. ARCH_CAPABILITIES
/// passes the host's hints (GUEST_ARCH_CAPS) and, as KVM's
/// kvm_get_arch_capabilities(), sets SKIP_L1DFL_VMENTRY unless L1TF is left
/// open: Xenolith flushes on entry, or the CPU is not affected.
pub fn guest_offer(host: &HostCpu, m: &Mitigations) -> GuestOffer {
    let arch_caps = (host.l7_edx & L7_EDX_ARCH_CAPS != 0).then(|| {
        let skip = if m.l1tf_open {
            0
        } else {
            ARCH_CAP_SKIP_L1DFL_VMENTRY
        };
        (host.arch_caps & GUEST_ARCH_CAPS) | skip
    });
    GuestOffer {
        spec_ctrl: host.spec_ctrl_bits(),
        ibpb: host.has_ibpb(),
        flush_cmd: host.l7_edx & L7_EDX_L1D_FLUSH != 0,
        arch_caps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intel(signature: u32, l7_ebx: u32, l7_edx: u32, arch_caps: u64) -> HostCpu {
        let mut cpu = HostCpu {
            vendor: Vendor::Intel,
            l7_ebx,
            l7_edx,
            arch_caps,
            ..HostCpu::default()
        };
        cpu.set_signature(signature);
        cpu
    }

    fn amd(signature: u32, e8_ebx: u32) -> HostCpu {
        let mut cpu = HostCpu {
            vendor: Vendor::Amd,
            e8_ebx,
            ..HostCpu::default()
        };
        cpu.set_signature(signature);
        cpu
    }

    /// Intel's full set of microcode controls for a pre-2019 core.
    const INTEL_CONTROLS: u32 = L7_EDX_MD_CLEAR
        | L7_EDX_IBRS_IBPB
        | L7_EDX_STIBP
        | L7_EDX_L1D_FLUSH
        | L7_EDX_ARCH_CAPS
        | L7_EDX_SSBD;

    #[test]
    fn signatures() {
        let skx = intel(0x0005_0654, 0, 0, 0);
        assert_eq!((skx.family, skx.model), (6, 0x55));
        let zen = amd(0x0080_0f12, 0); // family 17h = 0xf + 8
        assert_eq!((zen.family, zen.model), (0x17, 0x01));
    }

    /// Bochs 2.7 corei7_skylake_x: family 6 model 55h stepping 4, no
    /// speculation controls at all in leaf 7 (bochs/cpu/cpudb/intel/
    /// corei7_skylake-x.cc), no ARCH_CAPABILITIES, no RTM. CPUID as booted.
    #[test]
    fn bochs_skylake_x() {
        let host = intel(0x0005_0654, 0xd19f_27eb, 0, 0);
        assert!(host.l1tf_affected() && host.mds_affected());
        let m = choose(&host);
        assert_eq!(m.to_string(), "rsb");
        assert!(
            m.l1tf_open && m.mds_open,
            "affected, but no microcode to act"
        );
        assert_eq!(m.entry(&host), EntryMitigations::default());
        assert_eq!(guest_offer(&host, &m), GuestOffer::default());
    }

    /// Bochs 2.7 ryzen (family 17h; 8000_0008h EBX = 1, CLZERO only) and
    /// QEMU 7.2 TCG `-cpu EPYC` (family 17h model 1; EBX = 0): neither has
    /// IBPB, IBRS, STIBP or SSBD (QEMU's TCG refuses them: "TCG doesn't
    /// support requested feature"). CPUID as booted.
    #[test]
    fn emulated_amd() {
        for host in [amd(0x0080_0f11, 1), amd(0x0080_0f12, 0)] {
            let m = choose(&host);
            assert_eq!(m.to_string(), "rsb");
            assert!(!m.l1tf_open && !m.mds_open);
            assert_eq!(m.entry(&host).host_spec_ctrl, None);
            assert_eq!(guest_offer(&host, &m), GuestOffer::default());
        }
    }

    /// Skylake-SP with the 2019 microcode: L1TF- and MDS-affected, no
    /// ARCH_CAPABILITIES bits that help. Legacy IBRS, and the L1D flush,
    /// which also clears the buffers, so no separate VERW.
    #[test]
    fn skylake_with_microcode() {
        let host = intel(0x0005_0654, 0, INTEL_CONTROLS, 0);
        let m = choose(&host);
        assert_eq!(m.to_string(), "ibrs,ibpb,rsb,l1d");
        let e = m.entry(&host);
        assert_eq!(e.host_spec_ctrl, Some(SPEC_CTRL_IBRS));
        assert!(e.spec_ctrl_every_exit && e.l1d_flush && !e.verw);
        let offer = guest_offer(&host, &m);
        assert_eq!(offer.spec_ctrl, 0b111);
        assert!(offer.ibpb && offer.flush_cmd);
        assert_eq!(offer.arch_caps, Some(ARCH_CAP_SKIP_L1DFL_VMENTRY));
    }

    /// Cascade Lake: RDCL_NO, IBRS_ALL, SKIP_L1DFL, MDS_NO, TSX_CTRL but not
    /// TAA_NO, with RTM: enhanced IBRS, no L1D flush, VERW for TAA.
    #[test]
    fn cascade_lake_taa() {
        let caps = ARCH_CAP_RDCL_NO
            | ARCH_CAP_IBRS_ALL
            | ARCH_CAP_SKIP_L1DFL_VMENTRY
            | ARCH_CAP_MDS_NO
            | ARCH_CAP_TSX_CTRL;
        let host = intel(0x0005_0657, L7_EBX_RTM, INTEL_CONTROLS, caps);
        assert!(!host.l1tf_affected() && host.mds_affected());
        let m = choose(&host);
        // SKIP_L1DFL_VMENTRY also says an outer hypervisor clears buffers.
        assert_eq!(m.to_string(), "eibrs,ibpb,rsb");
        let bare = intel(
            0x0005_0657,
            L7_EBX_RTM,
            INTEL_CONTROLS,
            caps & !ARCH_CAP_SKIP_L1DFL_VMENTRY,
        );
        let m = choose(&bare);
        assert_eq!(m.to_string(), "eibrs,ibpb,rsb,verw");
        let e = m.entry(&bare);
        assert!(!e.spec_ctrl_every_exit && e.verw && !e.l1d_flush);
        // TSX_CTRL announces an MSR the guest does not get.
        let offer = guest_offer(&bare, &m);
        assert_eq!(
            offer.arch_caps,
            Some(
                ARCH_CAP_RDCL_NO
                    | ARCH_CAP_IBRS_ALL
                    | ARCH_CAP_MDS_NO
                    | ARCH_CAP_SKIP_L1DFL_VMENTRY
            )
        );
    }

    /// Sapphire Rapids class: not affected by L1TF, MDS or TAA.
    #[test]
    fn unaffected_intel() {
        let caps = ARCH_CAP_RDCL_NO
            | ARCH_CAP_IBRS_ALL
            | ARCH_CAP_SKIP_L1DFL_VMENTRY
            | ARCH_CAP_MDS_NO
            | ARCH_CAP_TAA_NO
            | ARCH_CAP_PBRSB_NO
            | ARCH_CAP_GDS_NO
            | (1 << 25); // GDS_CTRL: an MSR, not for guests
        let host = intel(0x0008_06f8, L7_EBX_RTM, INTEL_CONTROLS, caps);
        let m = choose(&host);
        assert_eq!(m.to_string(), "eibrs,ibpb,rsb");
        assert_eq!(m.entry(&host).host_spec_ctrl, Some(SPEC_CTRL_IBRS));
        assert_eq!(guest_offer(&host, &m).arch_caps, Some(caps & !(1 << 25)));
    }

    /// Atoms: Goldmont (model 5Ch) is free of L1TF but, in Xen's lists, not
    /// of MDS; Gemini Lake (7Ah) is free of both.
    #[test]
    fn atom_models() {
        let host = intel(0x0005_06c9, 0, L7_EDX_MD_CLEAR, 0);
        assert!(!host.l1tf_affected());
        assert!(host.mds_affected());
        assert_eq!(choose(&host).to_string(), "rsb,verw");
        let gemini_lake = intel(0x0007_06a1, 0, L7_EDX_MD_CLEAR, 0);
        assert!(!gemini_lake.mds_affected());
        assert_eq!(choose(&gemini_lake).to_string(), "rsb");
    }

    /// L1TF-affected without the L1D_FLUSH microcode: nothing to flush with.
    #[test]
    fn l1tf_without_microcode() {
        let host = intel(0x0003_06c3, 0, L7_EDX_IBRS_IBPB, 0); // Haswell
        let m = choose(&host);
        assert_eq!(m.to_string(), "ibrs,ibpb,rsb");
        assert!(m.l1tf_open && m.mds_open);
        let offer = guest_offer(&host, &m);
        assert_eq!(offer.spec_ctrl, SPEC_CTRL_IBRS);
        assert!(!offer.flush_cmd);
        assert_eq!(offer.arch_caps, None);
    }

    /// AMD Zen 2 (EPYC Rome): IBPB, IBRS, STIBP, SSBD in 8000_0008h EBX; no
    /// L1TF, no MDS; IBRS rewritten after every exit.
    #[test]
    fn zen2() {
        let host = amd(
            0x0083_0f10,
            E8_EBX_IBPB | E8_EBX_IBRS | E8_EBX_STIBP | E8_EBX_SSBD,
        );
        let m = choose(&host);
        assert_eq!(m.to_string(), "ibrs,ibpb,rsb");
        let e = m.entry(&host);
        assert_eq!(e.host_spec_ctrl, Some(SPEC_CTRL_IBRS));
        assert!(e.spec_ctrl_every_exit && !e.verw && !e.l1d_flush);
        let offer = guest_offer(&host, &m);
        assert_eq!(offer.spec_ctrl, 0b111);
        assert!(offer.ibpb && !offer.flush_cmd);
        assert_eq!(offer.arch_caps, None);
    }

    /// AMD Zen 1 with its IBPB microcode: PRED_CMD but no SPEC_CTRL.
    #[test]
    fn zen1_ibpb_only() {
        let host = amd(0x0080_0f12, E8_EBX_IBPB);
        let m = choose(&host);
        assert_eq!(m.to_string(), "ibpb,rsb");
        assert_eq!(m.entry(&host).host_spec_ctrl, None);
        let offer = guest_offer(&host, &m);
        assert_eq!(offer.spec_ctrl, 0);
        assert!(offer.ibpb);
    }

    /// An AMD CPU with only SSBD in SPEC_CTRL: the MSR exists (host value 0).
    #[test]
    fn ssbd_only() {
        let host = amd(0x0080_0f12, E8_EBX_SSBD);
        let m = choose(&host);
        assert_eq!(m.ibrs, Ibrs::None);
        assert_eq!(m.entry(&host).host_spec_ctrl, Some(0));
        assert!(!m.entry(&host).spec_ctrl_every_exit);
        assert_eq!(guest_offer(&host, &m).spec_ctrl, SPEC_CTRL_SSBD);
    }

    #[test]
    fn display() {
        let none = Mitigations {
            ibrs: Ibrs::None,
            ibpb: false,
            rsb_fill: false,
            l1d_flush: false,
            verw: false,
            l1tf_open: false,
            mds_open: false,
        };
        assert_eq!(none.to_string(), "none");
        let all = Mitigations {
            ibrs: Ibrs::Legacy,
            ibpb: true,
            rsb_fill: true,
            l1d_flush: true,
            verw: true,
            ..none
        };
        assert_eq!(all.to_string(), "ibrs,ibpb,rsb,l1d,verw");
    }
}
