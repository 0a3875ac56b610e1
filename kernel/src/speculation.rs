//! The host side of speculative-execution isolation: reads the CPU's speculation controls, applies xenolith::spec_ctrl's choice, and carries out IBPB and L1D flushes.

use core::arch::x86_64::{__cpuid, __cpuid_count};
use spin::Once;
use vcpu::EntryMitigations;
use x86::msr::{rdmsr, wrmsr};
use xenolith::msr_policy::{self, IA32_ARCH_CAPABILITIES, IA32_FLUSH_CMD, IA32_PRED_CMD};
use xenolith::spec_ctrl::{
    self, GuestOffer, HostCpu, Mitigations, Vendor, FLUSH_CMD_L1D, L7_EDX_ARCH_CAPS, PRED_CMD_IBPB,
};

struct Choice {
    mitigations: Mitigations,
    entry: EntryMitigations,
    offer: GuestOffer,
    /// The host's vendor: the vendor the guest's CPUID shows, which some
    /// MSRs exist for only (msr_policy::constant_read).
    vendor: Vendor,
}

static CHOICE: Once<Choice> = Once::new();

/// The host's CPUID words and ARCH_CAPABILITIES (Intel SDM Vol. 2A CPUID;
/// AMD APM Vol. 3 appendix E).
fn read_host() -> HostCpu {
    let leaf0 = __cpuid(0);
    let mut vendor_id = [0u8; 12];
    for (chunk, reg) in vendor_id
        .chunks_exact_mut(4)
        .zip([leaf0.ebx, leaf0.edx, leaf0.ecx])
    {
        chunk.copy_from_slice(&reg.to_le_bytes());
    }
    let mut host = HostCpu {
        vendor: match &vendor_id {
            b"GenuineIntel" => Vendor::Intel,
            b"AuthenticAMD" => Vendor::Amd,
            _ => Vendor::Other,
        },
        ..HostCpu::default()
    };
    host.set_signature(__cpuid(1).eax);
    if leaf0.eax >= 7 {
        let leaf7 = __cpuid_count(7, 0);
        host.l7_ebx = leaf7.ebx;
        host.l7_edx = leaf7.edx;
    }
    if __cpuid(0x8000_0000).eax >= 0x8000_0008 {
        host.e8_ebx = __cpuid(0x8000_0008).ebx;
    }
    if host.l7_edx & L7_EDX_ARCH_CAPS != 0 {
        // SAFETY: CPUID.7.0:EDX[29] enumerates IA32_ARCH_CAPABILITIES.
        host.arch_caps = unsafe { rdmsr(IA32_ARCH_CAPABILITIES) };
    }
    host
}

fn write_spec_ctrl(value: u64) {
    // SAFETY: called only where `host_spec_ctrl` is Some, i.e. CPUID
    // enumerates SPEC_CTRL, with IBRS only where it is enumerated.
    unsafe { wrmsr(msr_policy::IA32_SPEC_CTRL, value) };
}

/// Reads the CPU, chooses the mitigations and puts the host's SPEC_CTRL in
/// place (Xen discards firmware settings the same way). Start of day, once,
/// before any guest runs; returns the choice for the capability line.
pub fn init() -> Mitigations {
    let host = read_host();
    let mitigations = spec_ctrl::choose(&host);
    let offer = spec_ctrl::guest_offer(&host, &mitigations);
    let entry = mitigations.entry(&host);
    if let Some(value) = entry.host_spec_ctrl {
        write_spec_ctrl(value);
    }
    defmt::info!(
        "speculation: cpuid 7.ebx {=u32:#x} 7.edx {=u32:#x} 8000_0008.ebx {=u32:#x} arch_caps {=u64:#x}; l1tf open {=bool}, mds open {=bool}; backends {}; guests: spec_ctrl {=u64:#x} ibpb {=bool} flush_cmd {=bool} arch_caps {}",
        host.l7_ebx,
        host.l7_edx,
        host.e8_ebx,
        host.arch_caps,
        mitigations.l1tf_open,
        mitigations.mds_open,
        entry,
        offer.spec_ctrl,
        offer.ibpb,
        offer.flush_cmd,
        offer.arch_caps
    );
    CHOICE.call_once(|| Choice {
        mitigations,
        entry,
        offer,
        vendor: host.vendor,
    });
    mitigations
}

/// What the backends do at every entry and exit (nothing before `init`).
pub fn entry() -> EntryMitigations {
    CHOICE.get().map(|c| c.entry).unwrap_or_default()
}

/// The CPU vendor guests see (`Other` before `init`).
pub fn vendor() -> Vendor {
    CHOICE.get().map(|c| c.vendor).unwrap_or_default()
}

/// What guests are offered (nothing before `init`).
pub fn offer() -> GuestOffer {
    CHOICE.get().map(|c| c.offer).unwrap_or_default()
}

fn ibpb() {
    // SAFETY: called only where PRED_CMD is enumerated (the mitigations'
    // `ibpb` or the guest offer's); IBPB only discards predictions.
    unsafe { wrmsr(IA32_PRED_CMD, PRED_CMD_IBPB) };
}

fn flush_l1d() {
    // SAFETY: called only where CPUID enumerates IA32_FLUSH_CMD (the guest
    // offer's `flush_cmd`); the flush writes back and invalidates L1D.
    unsafe { wrmsr(IA32_FLUSH_CMD, FLUSH_CMD_L1D) };
}

/// The CPU goes from one domain's vCPU to another's: IBPB, so the next
/// one cannot steer indirect branches with what the last one trained
/// (Xen's context_switch, KVM's kvm_arch_vcpu_load).
pub fn switch_domain() {
    if CHOICE.get().is_some_and(|c| c.mitigations.ibpb) {
        ibpb();
    }
}

/// A guest's WRMSR to PRED_CMD or FLUSH_CMD: carried out on the host if
/// offered and well-formed; false means #GP.
pub fn guest_command(msr: u32, value: u64) -> bool {
    let offer = offer();
    let offered = match msr {
        IA32_PRED_CMD => offer.ibpb,
        IA32_FLUSH_CMD => offer.flush_cmd,
        _ => false,
    };
    let Some(run) = msr_policy::command_write(offered, value) else {
        return false;
    };
    match (run, msr) {
        (true, IA32_PRED_CMD) => ibpb(),
        (true, _) => flush_l1d(),
        (false, _) => {}
    }
    true
}
