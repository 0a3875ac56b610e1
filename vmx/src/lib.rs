//! Intel VT-x backend: VMXON, VMCS, EPT and VPID behind the vCPU interface.
//!
//! Section numbers cite the Intel SDM editions in which VMX spans Vol. 3C
//! chapters 24-31 (24 introduction, 25 VMCS, 26 VMX non-root operation,
//! 27 VM entries, 28 VM exits, 29 VMX support for address translation,
//! 31 VMX instruction reference) and Vol. 3D appendices A-C.
#![no_std]

extern crate alloc;

pub mod address_space;
pub mod caps;
pub mod controls;
pub mod cr_access;
pub mod decode;
mod entry;
pub mod fields;
mod guest;
pub mod host;
pub mod instr;
mod spec_ctrl;
mod syscall_msrs;
mod vcpu;

pub use crate::vcpu::VmxVcpu;

use crate::address_space::{EptFeatures, EptSpace};
use crate::controls::{fix, msr, ControlSet, VmxMsrs};
use crate::instr::VmFail;
use ::vcpu::{
    AddressSpace, Backend, EntryMitigations, FrameAlloc, IdentityTables, InitialState, Vcpu,
    VcpuConfig, VirtCaps,
};
use alloc::boxed::Box;
use core::arch::asm;
use ept::EptTable;
use x86::msr::{rdmsr, wrmsr};

// IA32_FEATURE_CONTROL bits (SDM Vol. 3C 24.7; Vol. 4 table 2-2).
const FEATURE_CONTROL_LOCKED: u64 = 1 << 0;
const FEATURE_CONTROL_VMX_OUTSIDE_SMX: u64 = 1 << 2;

/// VMX switched on for the CPU that called [`backend`].
pub struct Vmx {
    caps: VirtCaps,
    msrs: VmxMsrs,
    controls: ControlSet,
    /// Physical address of this CPU's VMXON region.
    vmxon_region: u64,
    mitigations: EntryMitigations,
}

/// `None` if this CPU has no VMX; otherwise VMX enabled on the calling CPU
/// (VMXON done), or why it could not be. Call it once on each CPU: the
/// backend and the vCPUs it creates belong to that CPU. Every vCPU applies
/// `mitigations` around its VM entries.
pub fn backend(
    frames: &mut dyn FrameAlloc,
    mitigations: EntryMitigations,
) -> Option<Result<Box<dyn Backend>, &'static str>> {
    let caps = caps::probe()?;
    Some(enable(frames, caps, mitigations).map(|b| Box::new(b) as Box<dyn Backend>))
}

fn read_cr0_cr4() -> (u64, u64) {
    let (cr0, cr4): (u64, u64);
    // SAFETY: reading CR0 and CR4 has no side effects at CPL 0.
    unsafe {
        asm!("mov {}, cr0", "mov {}, cr4", out(reg) cr0, out(reg) cr4, options(nomem, nostack, preserves_flags));
    }
    (cr0, cr4)
}

/// # Safety
/// The new values keep paging, protection and the host's mappings as they
/// are (only CR0.NE and CR4.VMXE-class bits change).
unsafe fn write_cr0_cr4(cr0: u64, cr4: u64) {
    // SAFETY: per the caller's contract.
    unsafe {
        asm!("mov cr0, {}", "mov cr4, {}", in(reg) cr0, in(reg) cr4, options(nostack, preserves_flags));
    }
}

/// Enables and enters VMX operation (SDM Vol. 3C 24.7, 24.8).
fn enable(
    frames: &mut dyn FrameAlloc,
    caps: VirtCaps,
    mitigations: EntryMitigations,
) -> Result<Vmx, &'static str> {
    // SAFETY: `caps::probe` found CPUID.1:ECX.VMX set.
    let msrs = unsafe { VmxMsrs::read() };
    // Every missing feature is found before the CPU state changes.
    let controls = controls::choose(&msrs)?;

    // SAFETY: IA32_FEATURE_CONTROL exists on every CPU with VMX.
    let feature_control = unsafe { rdmsr(msr::IA32_FEATURE_CONTROL) };
    if feature_control & FEATURE_CONTROL_LOCKED == 0 {
        // SAFETY: unlocked, so writable: allow VMXON outside SMX and lock.
        unsafe {
            wrmsr(
                msr::IA32_FEATURE_CONTROL,
                feature_control | FEATURE_CONTROL_VMX_OUTSIDE_SMX | FEATURE_CONTROL_LOCKED,
            );
        }
    } else if feature_control & FEATURE_CONTROL_VMX_OUTSIDE_SMX == 0 {
        return Err(
            "VMX is disabled by firmware (IA32_FEATURE_CONTROL locked without VMXON outside SMX)",
        );
    }

    // CR0 and CR4 must respect the fixed bits in VMX operation, and CR4.VMXE
    // must be set before VMXON (SDM Vol. 3C 24.8; Vol. 3D A.7, A.8).
    let (cr0, cr4) = read_cr0_cr4();
    let new_cr0 = fix(cr0, msrs.cr0_fixed0, msrs.cr0_fixed1);
    let new_cr4 = fix(cr4 | guest::CR4_VMXE, msrs.cr4_fixed0, msrs.cr4_fixed1);
    if new_cr4 & guest::CR4_VMXE == 0 {
        return Err("IA32_VMX_CR4_FIXED1 does not allow CR4.VMXE");
    }
    let region = frames
        .alloc_zeroed(1)
        .ok_or("out of frames for the VMXON region")?;
    if msrs.addresses_32_bit() && region >= 1 << 32 {
        frames.free(region, 1);
        return Err("the VMXON region must lie below 4 GiB on this CPU");
    }
    // SAFETY: a fresh, identity-mapped frame; the revision identifier
    // heads the VMXON region (SDM Vol. 3C 25.11.5).
    unsafe { (region as *mut u32).write(msrs.revision()) };

    // SAFETY: fixing only adds bits the CPU requires (CR0.NE, CR4.VMXE on
    // any real CPU) to a state already in paged 64-bit mode.
    unsafe { write_cr0_cr4(new_cr0, new_cr4) };

    // SAFETY: every precondition of VMXON is established above.
    if let Err(fail) = unsafe { instr::vmxon(region) } {
        // CR4.VMXE stays set: clearing it would fault if VMX was already on.
        frames.free(region, 1);
        return Err(match fail {
            VmFail::Invalid => "VMXON failed: VMfailInvalid (bad VMXON region, or VMX already on)",
            VmFail::Valid => fail.name(),
        });
    }
    Ok(Vmx {
        caps: VirtCaps {
            usable: true,
            ..caps
        },
        msrs,
        controls,
        vmxon_region: region,
        mitigations,
    })
}

impl Vmx {
    /// The physical address of this CPU's VMXON region.
    pub fn vmxon_region(&self) -> u64 {
        self.vmxon_region
    }
}

impl Backend for Vmx {
    fn caps(&self) -> VirtCaps {
        self.caps
    }

    fn new_address_space(
        &mut self,
        frames: &mut dyn FrameAlloc,
    ) -> Result<Box<dyn AddressSpace>, &'static str> {
        let tables = EptTable::new(&mut IdentityTables::new(frames))
            .map_err(|_| "out of frames for EPT tables")?;
        let features = EptFeatures::from_capability(self.msrs.ept_vpid);
        Ok(Box::new(EptSpace::new(tables, features)))
    }

    fn hypercall_instruction(&self) -> [u8; 3] {
        [0x0f, 0x01, 0xc1] // VMCALL (SDM Vol. 3C 31.3)
    }

    fn create_vcpu(
        &mut self,
        frames: &mut dyn FrameAlloc,
        config: &VcpuConfig,
        initial: &InitialState,
    ) -> Result<Box<dyn Vcpu>, &'static str> {
        let vcpu = VmxVcpu::new(
            frames,
            &self.msrs,
            &self.controls,
            self.mitigations,
            config,
            initial,
        )?;
        Ok(Box::new(vcpu))
    }
}
