//! The boot CPU: interrupt flag, feature discovery with raw-cpuid, and which virtualization backend fits.

use raw_cpuid::CpuId;
use vcpu::VirtCaps;

pub fn interrupts_enabled() -> bool {
    // RFLAGS.IF is bit 9 (SDM Vol. 1 3.4.3).
    x86::bits64::rflags::read().bits() & (1 << 9) != 0
}

pub fn disable_interrupts() {
    // SAFETY: CLI only masks maskable interrupts.
    unsafe { x86::irq::disable() }
}

pub fn enable_interrupts() {
    // SAFETY: only called to restore a previously enabled state.
    unsafe { x86::irq::enable() }
}

/// The CPU features start of day reports.
pub struct Features {
    pub vendor: [u8; 12],
    pub x2apic: bool,
    pub xsave: bool,
    pub invariant_tsc: bool,
    pub virt: Option<VirtCaps>,
}

impl Features {
    pub fn vendor(&self) -> &str {
        core::str::from_utf8(&self.vendor).unwrap_or("unknown")
    }
}

pub fn features() -> Features {
    let cpuid = CpuId::new();
    let mut vendor = [b'?'; 12];
    if let Some(v) = cpuid.get_vendor_info() {
        let name = v.as_str().as_bytes();
        let n = name.len().min(12);
        vendor[..n].copy_from_slice(&name[..n]);
    }
    let leaf1 = cpuid.get_feature_info();
    Features {
        vendor,
        x2apic: leaf1.as_ref().is_some_and(|f| f.has_x2apic()),
        xsave: leaf1.as_ref().is_some_and(|f| f.has_xsave()),
        invariant_tsc: cpuid
            .get_advanced_power_mgmt_info()
            .is_some_and(|p| p.has_invariant_tsc()),
        // Each backend recognises its own extension; at most one answers.
        virt: vmx::caps::probe().or_else(svm::caps::probe),
    }
}

/// CR4.OSXSAVE (bit 18), so that XSETBV works on the host (SDM Vol. 3A 2.5).
const CR4_OSXSAVE: usize = 1 << 18;

/// Turns on CR4.OSXSAVE where the CPU has XSAVE, so guests' XSETBV can be
/// carried out here. The hypervisor itself is soft-float and saves no state.
pub fn enable_xsave() {
    if raw_cpuid::CpuId::new()
        .get_feature_info()
        .is_some_and(|f| f.has_xsave())
    {
        // SAFETY: setting OSXSAVE on a CPU with XSAVE only enables instructions.
        unsafe {
            x86::controlregs::cr4_write(x86::controlregs::Cr4::from_bits_truncate(
                x86::controlregs::cr4().bits() | CR4_OSXSAVE,
            ))
        };
    }
}

extern "C" {
    /// XSETBV with an exception fix-up (kernel/src/exceptions.S): 0 when it
    /// took effect, 1 when it faulted.
    fn xenolith_safe_xsetbv(xcr: u32, lo: u32, hi: u32) -> u32;
}

/// Loads XCR0; false if the host has no XSAVE enabled or the CPU refused the
/// value with #GP. The caller checks the value first (`xenolith::xcr0`); the
/// fix-up makes a value that slips past the check the guest's #GP, not the
/// host's end.
pub fn set_xcr0(value: u64) -> bool {
    // SAFETY: reading CR4 has no side effects.
    if unsafe { x86::controlregs::cr4().bits() } & CR4_OSXSAVE == 0 {
        return false;
    }
    // SAFETY: the hypervisor uses no extended state, so any XCR0 the CPU
    // accepts is harmless to it; a #GP resumes at the fix-up.
    unsafe { xenolith_safe_xsetbv(0, value as u32, (value >> 32) as u32) == 0 }
}

/// The CR4 bits a guest may set: those its CPUID view offers
/// (`xenolith::cr4_policy`), from the host's CPUID, worked out once.
pub fn guest_cr4_valid() -> u64 {
    static VALID: spin::Once<u64> = spin::Once::new();
    *VALID.call_once(|| {
        xenolith::cr4_policy::guest_valid_bits(|leaf, subleaf| {
            let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
            [r.eax, r.ebx, r.ecx, r.edx]
        })
    })
}
