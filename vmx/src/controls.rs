//! VM-execution, VM-exit and VM-entry controls: their bits, and the choice of settings against the capability MSRs.
//!
//! Everything here is pure: the capability MSRs arrive as a [`VmxMsrs`]
//! value, so the choice can be tested on the host with any CPU's numbers.

use core::fmt;

/// One control bit, with its SDM name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    pub bit: u32,
    pub name: &'static str,
    /// The message when the CPU cannot set it (allowed-1 bit clear).
    pub missing: &'static str,
    /// The message when the CPU will not clear it (allowed-0 bit set).
    pub forced: &'static str,
}

impl Control {
    pub const fn mask(&self) -> u32 {
        1 << self.bit
    }
}

macro_rules! controls {
    ($kind:literal; $( $id:ident = $bit:literal, $name:literal; )*) => {
        $(
            #[doc = concat!("\"", $name, "\" (bit ", stringify!($bit), ").")]
            pub const $id: Control = Control {
                bit: $bit,
                name: $name,
                missing: concat!("this CPU's VMX lacks the ", $kind, " control \"", $name, "\""),
                forced: concat!("this CPU's VMX forces the ", $kind, " control \"", $name, "\" on"),
            };
        )*
    };
}

/// Pin-based VM-execution controls (SDM Vol. 3C 25.6.1).
pub mod pin {
    use super::Control;
    controls! { "pin-based";
        EXTERNAL_INTERRUPT_EXITING = 0, "external-interrupt exiting";
        NMI_EXITING = 3, "NMI exiting";
        VIRTUAL_NMIS = 5, "virtual NMIs";
        ACTIVATE_VMX_PREEMPTION_TIMER = 6, "activate VMX-preemption timer";
        PROCESS_POSTED_INTERRUPTS = 7, "process posted interrupts";
    }
}

/// Primary processor-based VM-execution controls (SDM Vol. 3C 25.6.2).
pub mod primary {
    use super::Control;
    controls! { "primary processor-based";
        INTERRUPT_WINDOW_EXITING = 2, "interrupt-window exiting";
        USE_TSC_OFFSETTING = 3, "use TSC offsetting";
        HLT_EXITING = 7, "HLT exiting";
        INVLPG_EXITING = 9, "INVLPG exiting";
        MWAIT_EXITING = 10, "MWAIT exiting";
        RDPMC_EXITING = 11, "RDPMC exiting";
        RDTSC_EXITING = 12, "RDTSC exiting";
        CR3_LOAD_EXITING = 15, "CR3-load exiting";
        CR3_STORE_EXITING = 16, "CR3-store exiting";
        ACTIVATE_TERTIARY_CONTROLS = 17, "activate tertiary controls";
        CR8_LOAD_EXITING = 19, "CR8-load exiting";
        CR8_STORE_EXITING = 20, "CR8-store exiting";
        USE_TPR_SHADOW = 21, "use TPR shadow";
        NMI_WINDOW_EXITING = 22, "NMI-window exiting";
        MOV_DR_EXITING = 23, "MOV-DR exiting";
        UNCONDITIONAL_IO_EXITING = 24, "unconditional I/O exiting";
        USE_IO_BITMAPS = 25, "use I/O bitmaps";
        MONITOR_TRAP_FLAG = 27, "monitor trap flag";
        USE_MSR_BITMAPS = 28, "use MSR bitmaps";
        MONITOR_EXITING = 29, "MONITOR exiting";
        PAUSE_EXITING = 30, "PAUSE exiting";
        ACTIVATE_SECONDARY_CONTROLS = 31, "activate secondary controls";
    }
}

/// Secondary processor-based VM-execution controls (SDM Vol. 3C 25.6.2).
pub mod secondary {
    use super::Control;
    controls! { "secondary processor-based";
        VIRTUALIZE_APIC_ACCESSES = 0, "virtualize APIC accesses";
        ENABLE_EPT = 1, "enable EPT";
        DESCRIPTOR_TABLE_EXITING = 2, "descriptor-table exiting";
        ENABLE_RDTSCP = 3, "enable RDTSCP";
        VIRTUALIZE_X2APIC_MODE = 4, "virtualize x2APIC mode";
        ENABLE_VPID = 5, "enable VPID";
        WBINVD_EXITING = 6, "WBINVD exiting";
        UNRESTRICTED_GUEST = 7, "unrestricted guest";
        ENABLE_INVPCID = 12, "enable INVPCID";
        ENABLE_VM_FUNCTIONS = 13, "enable VM functions";
        VMCS_SHADOWING = 14, "VMCS shadowing";
        ENABLE_PML = 17, "enable PML";
        EPT_VIOLATION_VE = 18, "EPT-violation #VE";
        ENABLE_XSAVES_XRSTORS = 20, "enable XSAVES/XRSTORS";
        MODE_BASED_EXECUTE_CONTROL_FOR_EPT = 22, "mode-based execute control for EPT";
        USE_TSC_SCALING = 25, "use TSC scaling";
    }
}

/// Primary VM-exit controls (SDM Vol. 3C 25.7.1).
pub mod vm_exit {
    use super::Control;
    controls! { "VM-exit";
        SAVE_DEBUG_CONTROLS = 2, "save debug controls";
        HOST_ADDRESS_SPACE_SIZE = 9, "host address-space size";
        LOAD_IA32_PERF_GLOBAL_CTRL = 12, "load IA32_PERF_GLOBAL_CTRL";
        ACKNOWLEDGE_INTERRUPT_ON_EXIT = 15, "acknowledge interrupt on exit";
        SAVE_IA32_PAT = 18, "save IA32_PAT";
        LOAD_IA32_PAT = 19, "load IA32_PAT";
        SAVE_IA32_EFER = 20, "save IA32_EFER";
        LOAD_IA32_EFER = 21, "load IA32_EFER";
        SAVE_VMX_PREEMPTION_TIMER_VALUE = 22, "save VMX-preemption timer value";
    }
}

/// VM-entry controls (SDM Vol. 3C 25.8.1).
pub mod vm_entry {
    use super::Control;
    controls! { "VM-entry";
        LOAD_DEBUG_CONTROLS = 2, "load debug controls";
        IA32E_MODE_GUEST = 9, "IA-32e mode guest";
        ENTRY_TO_SMM = 10, "entry to SMM";
        DEACTIVATE_DUAL_MONITOR_TREATMENT = 11, "deactivate dual-monitor treatment";
        LOAD_IA32_PERF_GLOBAL_CTRL = 13, "load IA32_PERF_GLOBAL_CTRL";
        LOAD_IA32_PAT = 14, "load IA32_PAT";
        LOAD_IA32_EFER = 15, "load IA32_EFER";
    }
}

/// Why a wanted set of controls cannot be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdjustError {
    /// A required control's allowed-1 bit is clear.
    Unsupported(Control),
    /// A control that must stay 0 has its allowed-0 bit set.
    Forced(Control),
}

impl AdjustError {
    pub fn message(&self) -> &'static str {
        match self {
            AdjustError::Unsupported(c) => c.missing,
            AdjustError::Forced(c) => c.forced,
        }
    }
}

impl fmt::Display for AdjustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// Settles one 32-bit control field against its capability MSR (SDM Vol. 3D
/// A.3.1): bits 31:0 are the allowed 0-settings (a 1 forces the control on),
/// bits 63:32 the allowed 1-settings (a 0 forces it off).
///
/// `required` must be settable, `optional` is set where the CPU allows it,
/// `forbidden` must be clearable; every other bit takes its forced value or 0.
pub fn adjust(
    capability: u64,
    required: &[Control],
    optional: &[Control],
    forbidden: &[Control],
) -> Result<u32, AdjustError> {
    let must_be_one = capability as u32;
    let may_be_one = (capability >> 32) as u32;
    if let Some(c) = required.iter().find(|c| may_be_one & c.mask() == 0) {
        return Err(AdjustError::Unsupported(*c));
    }
    if let Some(c) = forbidden.iter().find(|c| must_be_one & c.mask() != 0) {
        return Err(AdjustError::Forced(*c));
    }
    let wanted = required
        .iter()
        .chain(optional)
        .fold(0, |bits, c| bits | c.mask());
    Ok((wanted | must_be_one) & may_be_one)
}

/// The VMX capability MSRs (SDM Vol. 3D appendix A; numbers in Vol. 4 table 2-2).
pub mod msr {
    pub const IA32_FEATURE_CONTROL: u32 = 0x3a;
    pub const IA32_VMX_BASIC: u32 = 0x480;
    pub const IA32_VMX_PINBASED_CTLS: u32 = 0x481;
    pub const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
    pub const IA32_VMX_EXIT_CTLS: u32 = 0x483;
    pub const IA32_VMX_ENTRY_CTLS: u32 = 0x484;
    pub const IA32_VMX_MISC: u32 = 0x485;
    pub const IA32_VMX_CR0_FIXED0: u32 = 0x486;
    pub const IA32_VMX_CR0_FIXED1: u32 = 0x487;
    pub const IA32_VMX_CR4_FIXED0: u32 = 0x488;
    pub const IA32_VMX_CR4_FIXED1: u32 = 0x489;
    pub const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48b;
    pub const IA32_VMX_EPT_VPID_CAP: u32 = 0x48c;
    pub const IA32_VMX_TRUE_PINBASED_CTLS: u32 = 0x48d;
    pub const IA32_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48e;
    pub const IA32_VMX_TRUE_EXIT_CTLS: u32 = 0x48f;
    pub const IA32_VMX_TRUE_ENTRY_CTLS: u32 = 0x490;
    pub const IA32_SYSENTER_CS: u32 = 0x174;
    pub const IA32_SYSENTER_ESP: u32 = 0x175;
    pub const IA32_SYSENTER_EIP: u32 = 0x176;
    pub const IA32_PAT: u32 = 0x277;
    pub const IA32_EFER: u32 = 0xc000_0080;
    pub const IA32_FS_BASE: u32 = 0xc000_0100;
    pub const IA32_GS_BASE: u32 = 0xc000_0101;
}

// IA32_VMX_BASIC bits (SDM Vol. 3D A.1).
const BASIC_REVISION_MASK: u64 = 0x7fff_ffff;
const BASIC_ADDRESSES_32_BIT: u64 = 1 << 48;
const BASIC_TRUE_CONTROLS: u64 = 1 << 55;

// IA32_VMX_EPT_VPID_CAP bits (SDM Vol. 3D A.10).
pub const EPT_EXECUTE_ONLY: u64 = 1 << 0;
pub const EPT_WALK_4: u64 = 1 << 6;
pub const EPT_WB: u64 = 1 << 14;
pub const EPT_PAGES_2M: u64 = 1 << 16;
pub const EPT_PAGES_1G: u64 = 1 << 17;
pub const EPT_INVEPT: u64 = 1 << 20;
pub const EPT_INVEPT_SINGLE: u64 = 1 << 25;
pub const EPT_INVEPT_ALL: u64 = 1 << 26;
pub const VPID_INVVPID: u64 = 1 << 32;
pub const VPID_INVVPID_SINGLE: u64 = 1 << 41;
pub const VPID_INVVPID_ALL: u64 = 1 << 42;

/// The capability MSRs that decide the controls, as read on this CPU. The
/// four control MSRs hold the TRUE variants when IA32_VMX_BASIC bit 55 says
/// they exist (SDM Vol. 3D A.3-A.5), else the plain ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmxMsrs {
    pub basic: u64,
    pub pinbased: u64,
    pub procbased: u64,
    /// 0 when the CPU cannot activate secondary controls.
    pub procbased2: u64,
    pub exit: u64,
    pub entry: u64,
    pub misc: u64,
    pub cr0_fixed0: u64,
    pub cr0_fixed1: u64,
    pub cr4_fixed0: u64,
    pub cr4_fixed1: u64,
    /// 0 unless both EPT and VPID may be enabled.
    pub ept_vpid: u64,
}

impl VmxMsrs {
    /// Reads the MSRs of the running CPU.
    ///
    /// # Safety
    /// CPL 0 on a CPU with VMX (CPUID.1:ECX.VMX = 1).
    pub unsafe fn read() -> VmxMsrs {
        use msr::*;
        use x86::msr::rdmsr;
        // SAFETY: the caller guarantees VMX, which implies these MSRs
        // (SDM Vol. 3D A.1); the TRUE and secondary ones are read only where
        // IA32_VMX_BASIC and the primary controls say they exist.
        unsafe {
            let basic = rdmsr(IA32_VMX_BASIC);
            let true_msrs = basic & BASIC_TRUE_CONTROLS != 0;
            let pick = |plain, true_msr| rdmsr(if true_msrs { true_msr } else { plain });
            let procbased = pick(IA32_VMX_PROCBASED_CTLS, IA32_VMX_TRUE_PROCBASED_CTLS);
            let procbased2 = if procbased
                & (u64::from(primary::ACTIVATE_SECONDARY_CONTROLS.mask()) << 32)
                != 0
            {
                rdmsr(IA32_VMX_PROCBASED_CTLS2)
            } else {
                0
            };
            let either =
                u64::from(secondary::ENABLE_EPT.mask() | secondary::ENABLE_VPID.mask()) << 32;
            let ept_vpid = if procbased2 & either != 0 {
                rdmsr(IA32_VMX_EPT_VPID_CAP)
            } else {
                0
            };
            VmxMsrs {
                basic,
                pinbased: pick(IA32_VMX_PINBASED_CTLS, IA32_VMX_TRUE_PINBASED_CTLS),
                procbased,
                procbased2,
                exit: pick(IA32_VMX_EXIT_CTLS, IA32_VMX_TRUE_EXIT_CTLS),
                entry: pick(IA32_VMX_ENTRY_CTLS, IA32_VMX_TRUE_ENTRY_CTLS),
                misc: rdmsr(IA32_VMX_MISC),
                cr0_fixed0: rdmsr(IA32_VMX_CR0_FIXED0),
                cr0_fixed1: rdmsr(IA32_VMX_CR0_FIXED1),
                cr4_fixed0: rdmsr(IA32_VMX_CR4_FIXED0),
                cr4_fixed1: rdmsr(IA32_VMX_CR4_FIXED1),
                ept_vpid,
            }
        }
    }

    /// The VMCS revision identifier for VMXON and VMCS regions (SDM Vol. 3D A.1).
    pub fn revision(&self) -> u32 {
        (self.basic & BASIC_REVISION_MASK) as u32
    }

    /// Whether VMXON, VMCS and bitmap addresses must lie below 4 GiB (SDM Vol. 3D A.1).
    pub fn addresses_32_bit(&self) -> bool {
        self.basic & BASIC_ADDRESSES_32_BIT != 0
    }
}

/// The control settings this backend runs every guest with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlSet {
    pub pin: u32,
    /// Without "interrupt-window exiting", which is set on request.
    pub primary: u32,
    pub secondary: u32,
    pub exit: u32,
    /// Without "IA-32e mode guest", which follows the guest's EFER.LMA.
    pub entry: u32,
    /// INVEPT single-context is available (else all-context is).
    pub invept_single: bool,
    /// INVVPID single-context is available (else all-context is).
    pub invvpid_single: bool,
}

/// Chooses every control field from the CPU's capabilities, or names the
/// first missing feature.
pub fn choose(msrs: &VmxMsrs) -> Result<ControlSet, &'static str> {
    let pin = adjust(
        msrs.pinbased,
        &[pin::EXTERNAL_INTERRUPT_EXITING],
        &[],
        &[pin::ACTIVATE_VMX_PREEMPTION_TIMER],
    );
    let primary = adjust(
        msrs.procbased,
        &[
            // Dynamic, but must be available: checked here, cleared below.
            primary::INTERRUPT_WINDOW_EXITING,
            primary::HLT_EXITING,
            primary::USE_IO_BITMAPS,
            primary::USE_MSR_BITMAPS,
            primary::ACTIVATE_SECONDARY_CONTROLS,
        ],
        // Keep the guest away from the host's PMCs and from the real TPR
        // (MOV CR8 writes it unless CR8 accesses exit; SDM Vol. 3C 26.3).
        // MONITOR/MWAIT are hidden from CPUID: exiting turns them into the
        // #UD a guest without them gets, instead of idling the host CPU.
        &[
            primary::RDPMC_EXITING,
            primary::CR8_LOAD_EXITING,
            primary::CR8_STORE_EXITING,
            primary::MWAIT_EXITING,
            primary::MONITOR_EXITING,
        ],
        // The guest changes CR3 and TLB entries freely: no exit is handled for these.
        &[
            primary::CR3_LOAD_EXITING,
            primary::CR3_STORE_EXITING,
            primary::INVLPG_EXITING,
            primary::RDTSC_EXITING,
            primary::MOV_DR_EXITING,
            primary::USE_TPR_SHADOW,
        ],
    );
    let secondary = adjust(
        msrs.procbased2,
        &[
            secondary::ENABLE_EPT,
            secondary::ENABLE_VPID,
            secondary::UNRESTRICTED_GUEST,
        ],
        // Without the first three the instructions raise #UD in the guest
        // (SDM Vol. 3C 26.3); WBINVD would flush every core's caches.
        &[
            secondary::ENABLE_RDTSCP,
            secondary::ENABLE_INVPCID,
            secondary::ENABLE_XSAVES_XRSTORS,
            secondary::WBINVD_EXITING,
        ],
        &[],
    );
    let exit = adjust(
        msrs.exit,
        &[
            vm_exit::SAVE_DEBUG_CONTROLS,
            vm_exit::HOST_ADDRESS_SPACE_SIZE,
            vm_exit::SAVE_IA32_PAT,
            vm_exit::LOAD_IA32_PAT,
            vm_exit::SAVE_IA32_EFER,
            vm_exit::LOAD_IA32_EFER,
        ],
        &[],
        // The host takes pending interrupts itself, from its own APIC.
        &[vm_exit::ACKNOWLEDGE_INTERRUPT_ON_EXIT],
    );
    let entry = adjust(
        msrs.entry,
        &[
            vm_entry::LOAD_DEBUG_CONTROLS,
            vm_entry::IA32E_MODE_GUEST,
            vm_entry::LOAD_IA32_PAT,
            vm_entry::LOAD_IA32_EFER,
        ],
        &[],
        &[
            vm_entry::ENTRY_TO_SMM,
            vm_entry::DEACTIVATE_DUAL_MONITOR_TREATMENT,
        ],
    );
    let ept = msrs.ept_vpid;
    let need = |bit: u64, what: &'static str| if ept & bit != 0 { Ok(()) } else { Err(what) };
    need(EPT_WALK_4, "this CPU's EPT lacks 4-level page walks")?;
    need(EPT_WB, "this CPU's EPT lacks the write-back memory type")?;
    need(EPT_INVEPT, "this CPU lacks INVEPT")?;
    need(VPID_INVVPID, "this CPU lacks INVVPID")?;
    if ept & (EPT_INVEPT_SINGLE | EPT_INVEPT_ALL) == 0 {
        return Err("this CPU's INVEPT has neither single- nor all-context invalidation");
    }
    if ept & (VPID_INVVPID_SINGLE | VPID_INVVPID_ALL) == 0 {
        return Err("this CPU's INVVPID has neither single- nor all-context invalidation");
    }
    let err = |e: AdjustError| e.message();
    Ok(ControlSet {
        pin: pin.map_err(err)?,
        primary: primary.map_err(err)? & !primary::INTERRUPT_WINDOW_EXITING.mask(),
        secondary: secondary.map_err(err)?,
        exit: exit.map_err(err)?,
        entry: entry.map_err(err)? & !vm_entry::IA32E_MODE_GUEST.mask(),
        invept_single: ept & EPT_INVEPT_SINGLE != 0,
        invvpid_single: ept & VPID_INVVPID_SINGLE != 0,
    })
}

/// A control register value made acceptable in VMX operation: bits set in
/// `fixed0` forced on, bits clear in `fixed1` forced off (SDM Vol. 3D A.7, A.8).
pub const fn fix(value: u64, fixed0: u64, fixed1: u64) -> u64 {
    (value | fixed0) & fixed1
}

/// The EPT pointer for a 4-level, write-back hierarchy at `root`, accessed
/// and dirty flags off (SDM Vol. 3C 25.6.11).
pub const fn eptp(root: u64) -> u64 {
    const WRITE_BACK: u64 = 6;
    const WALK_LENGTH_MINUS_ONE: u64 = 3 << 3;
    (root & !0xfff) | WALK_LENGTH_MINUS_ONE | WRITE_BACK
}

/// Bytes in the I/O bitmaps A and B together: one bit per port (SDM Vol. 3C 25.6.4).
pub const IO_BITMAPS_BYTES: usize = 8192;

/// Lets `port` through without an exit: clears its bit in the 8 KiB formed
/// by bitmap A (ports 0-7FFFh) followed by bitmap B (8000h-FFFFh).
/// Clears the read and write exiting bits of `msr` in the 4 KiB MSR bitmap:
/// read-low at 0, read-high at 1 KiB, write-low at 2 KiB, write-high at 3 KiB,
/// one bit per MSR 0-0x1FFF and 0xC0000000-0xC0001FFF (SDM 25.6.9).
pub fn msr_bitmap_pass(bitmap: &mut [u8; 4096], msr: u32) -> Result<(), &'static str> {
    let high = match msr {
        0..=0x1fff => 0,
        0xc000_0000..=0xc000_1fff => 0x400,
        _ => return Err("MSR outside the MSR bitmap's ranges"),
    };
    let bit = (msr & 0x1fff) as usize;
    for area in [0, 0x800] {
        bitmap[area + high + bit / 8] &= !(1 << (bit % 8));
    }
    Ok(())
}

pub fn io_bitmap_pass(bitmaps: &mut [u8; IO_BITMAPS_BYTES], port: u16) {
    bitmaps[usize::from(port / 8)] &= !(1 << (port % 8));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(must_be_one: u32, may_be_one: u32) -> u64 {
        u64::from(must_be_one) | u64::from(may_be_one) << 32
    }

    #[test]
    fn adjust_sets_required_and_forced_bits() {
        let c = cap(0b0001_0000, 0b1111_0011);
        let wanted = adjust(c, &[pin::EXTERNAL_INTERRUPT_EXITING], &[], &[]);
        assert_eq!(wanted, Ok(0b0001_0001));
    }

    #[test]
    fn adjust_reports_unsupported_required_bit() {
        let c = cap(0, !pin::VIRTUAL_NMIS.mask());
        let got = adjust(
            c,
            &[pin::EXTERNAL_INTERRUPT_EXITING, pin::VIRTUAL_NMIS],
            &[],
            &[],
        );
        assert_eq!(got, Err(AdjustError::Unsupported(pin::VIRTUAL_NMIS)));
        assert_eq!(
            got.unwrap_err().message(),
            "this CPU's VMX lacks the pin-based control \"virtual NMIs\""
        );
    }

    #[test]
    fn adjust_skips_unsupported_optional_bit() {
        let c = cap(0, secondary::ENABLE_EPT.mask());
        let got = adjust(
            c,
            &[secondary::ENABLE_EPT],
            &[secondary::ENABLE_RDTSCP],
            &[],
        );
        assert_eq!(got, Ok(secondary::ENABLE_EPT.mask()));
    }

    #[test]
    fn adjust_reports_forced_forbidden_bit() {
        // The non-TRUE primary MSR forces CR3-load exiting (SDM Vol. 3D A.3.2).
        let c = cap(primary::CR3_LOAD_EXITING.mask(), u32::MAX);
        let got = adjust(c, &[], &[], &[primary::CR3_LOAD_EXITING]);
        assert_eq!(got, Err(AdjustError::Forced(primary::CR3_LOAD_EXITING)));
    }

    #[test]
    fn adjust_clears_bits_not_allowed() {
        // Optional bits never exceed allowed-1; nothing outside it is set.
        let c = cap(0, 0x0000_00f0);
        assert_eq!(adjust(c, &[], &[pin::NMI_EXITING], &[]), Ok(0));
    }

    /// Capabilities like a Skylake-X's: everything the backend uses, TRUE MSRs.
    fn skylake_like() -> VmxMsrs {
        VmxMsrs {
            basic: 0x00da_0400_0000_002b,
            // Default-1 bits (SDM Vol. 3D A.2) cleared in the TRUE MSRs where allowed.
            pinbased: cap(0x16, 0xff),
            procbased: cap(0x0400_6172, 0xfff9_fffe),
            procbased2: cap(0, 0x0055_50ff),
            exit: cap(0x0003_6dfb, 0x007f_ffff),
            entry: cap(0x0000_11fb, 0x0000_ffff),
            misc: 0,
            cr0_fixed0: 0x8000_0021,
            cr0_fixed1: 0xffff_ffff,
            cr4_fixed0: 0x2000,
            cr4_fixed1: 0x0037_27ff,
            ept_vpid: 0x0f01_0633_4141,
        }
    }

    #[test]
    fn choose_on_a_capable_cpu() {
        let set = choose(&skylake_like()).unwrap();
        assert_ne!(set.pin & pin::EXTERNAL_INTERRUPT_EXITING.mask(), 0);
        assert_eq!(set.primary & primary::INTERRUPT_WINDOW_EXITING.mask(), 0);
        assert_ne!(set.primary & primary::HLT_EXITING.mask(), 0);
        assert_ne!(set.primary & primary::ACTIVATE_SECONDARY_CONTROLS.mask(), 0);
        let s = secondary::ENABLE_EPT.mask()
            | secondary::ENABLE_VPID.mask()
            | secondary::UNRESTRICTED_GUEST.mask();
        assert_eq!(set.secondary & s, s);
        assert_ne!(set.exit & vm_exit::HOST_ADDRESS_SPACE_SIZE.mask(), 0);
        assert_eq!(set.exit & vm_exit::ACKNOWLEDGE_INTERRUPT_ON_EXIT.mask(), 0);
        assert_eq!(set.entry & vm_entry::IA32E_MODE_GUEST.mask(), 0);
        assert_ne!(set.entry & vm_entry::LOAD_IA32_EFER.mask(), 0);
        assert!(set.invept_single && set.invvpid_single);
        // The forced bits of each MSR survive.
        let m = skylake_like();
        assert_eq!(set.pin & m.pinbased as u32, m.pinbased as u32);
        assert_eq!(set.exit & m.exit as u32, m.exit as u32);
    }

    #[test]
    fn choose_names_missing_unrestricted_guest() {
        let mut m = skylake_like();
        m.procbased2 &= !(u64::from(secondary::UNRESTRICTED_GUEST.mask()) << 32);
        assert_eq!(
            choose(&m),
            Err(
                "this CPU's VMX lacks the secondary processor-based control \"unrestricted guest\""
            )
        );
    }

    #[test]
    fn choose_names_missing_ept_capability() {
        let mut m = skylake_like();
        m.ept_vpid &= !EPT_WB;
        assert_eq!(
            choose(&m),
            Err("this CPU's EPT lacks the write-back memory type")
        );
        let mut m = skylake_like();
        m.ept_vpid &= !EPT_INVEPT_SINGLE;
        assert!(!choose(&m).unwrap().invept_single);
    }

    #[test]
    fn choose_without_true_msrs_refuses_forced_cr3_exiting() {
        let mut m = skylake_like();
        m.procbased |= u64::from(primary::CR3_LOAD_EXITING.mask());
        assert_eq!(
            choose(&m),
            Err(
                "this CPU's VMX forces the primary processor-based control \"CR3-load exiting\" on"
            )
        );
    }

    #[test]
    fn revision_and_fixed_bits() {
        let m = skylake_like();
        assert_eq!(m.revision(), 0x2b);
        assert!(!m.addresses_32_bit());
        // CR0.NE is forced on, CR4.VMXE too.
        assert_eq!(fix(0x11, m.cr0_fixed0, m.cr0_fixed1), 0x8000_0031);
        assert_eq!(fix(0x20, m.cr4_fixed0, m.cr4_fixed1), 0x2020);
    }

    #[test]
    fn eptp_layout() {
        assert_eq!(eptp(0x12_3000), 0x12_301e);
    }

    #[test]
    fn msr_bitmap_pass_clears_read_and_write() {
        let mut b = [0xffu8; 4096];
        msr_bitmap_pass(&mut b, 0x277).unwrap();
        assert_eq!(b[0x277 / 8], !(1 << 7));
        assert_eq!(b[0x800 + 0x277 / 8], !(1 << 7));
        msr_bitmap_pass(&mut b, 0xc000_0102).unwrap();
        assert_eq!(b[0x400 + 0x20], !(1 << 2));
        assert_eq!(b[0xc00 + 0x20], !(1 << 2));
        assert!(msr_bitmap_pass(&mut b, 0xc001_0000).is_err());
        assert_eq!(b.iter().filter(|&&x| x != 0xff).count(), 4);
    }

    #[test]
    fn io_bitmap_pass_clears_one_bit() {
        let mut b = [0xff; IO_BITMAPS_BYTES];
        io_bitmap_pass(&mut b, 0x3f8);
        io_bitmap_pass(&mut b, 0xffff);
        assert_eq!(b[0x3f8 / 8], 0xfe);
        assert_eq!(b[IO_BITMAPS_BYTES - 1], 0x7f);
        assert_eq!(b.iter().filter(|&&x| x != 0xff).count(), 2);
        // Port 8000h is the first bit of bitmap B.
        io_bitmap_pass(&mut b, 0x8000);
        assert_eq!(b[4096], 0xfe);
    }
}
