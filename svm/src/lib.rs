//! AMD-V backend: VMCB, VMRUN, NPT and ASIDs behind the vCPU interface.
#![no_std]

extern crate alloc;

pub mod caps;
pub mod decode;
pub mod exits;
mod run;
mod spec_ctrl;
mod vcpu;
pub mod vmcb;

pub use crate::vcpu::SvmVcpu;

use ::vcpu::{
    AddressSpace, Backend, EntryMitigations, FrameAlloc, IdentityTables, InitialState, Vcpu,
    VcpuConfig, VirtCaps,
};
use alloc::boxed::Box;
use ept::NptTable;
use x86::msr::{rdmsr, wrmsr};

const IA32_EFER: u32 = 0xc000_0080;
const EFER_SVME: u64 = 1 << 12;
/// VM_HSAVE_PA (APM 15.30.4): where VMRUN keeps the host's state.
const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;

/// SVM switched on for this CPU.
pub struct Svm {
    caps: VirtCaps,
    host_vmcb_pa: u64,
    mitigations: EntryMitigations,
}

/// `None` if this CPU has no SVM; otherwise SVM enabled (EFER.SVME and the
/// host save area set), or why it could not be. Every vCPU applies
/// `mitigations` around its world switch.
pub fn backend(
    frames: &mut dyn FrameAlloc,
    mitigations: EntryMitigations,
) -> Option<Result<Box<dyn Backend>, &'static str>> {
    let caps = caps::probe()?;
    Some(enable(frames, caps, mitigations).map(|b| Box::new(b) as Box<dyn Backend>))
}

fn enable(
    frames: &mut dyn FrameAlloc,
    caps: VirtCaps,
    mitigations: EntryMitigations,
) -> Result<Svm, &'static str> {
    if !caps.usable {
        return Err("SVM is disabled by firmware (VM_CR.SVMDIS)");
    }
    if !caps.second_level {
        return Err("SVM without nested paging is not supported");
    }
    let hsave = frames
        .alloc_zeroed(1)
        .ok_or("no memory for the host save area")?;
    let host_vmcb_pa = frames
        .alloc_zeroed(1)
        .ok_or("no memory for the host VMCB")?;
    // SAFETY: SVM is present and allowed (checked above); the host save
    // area is a fresh page that only the CPU will use.
    unsafe {
        wrmsr(IA32_EFER, rdmsr(IA32_EFER) | EFER_SVME);
        wrmsr(MSR_VM_HSAVE_PA, hsave);
    }
    Ok(Svm {
        caps,
        host_vmcb_pa,
        mitigations,
    })
}

impl Backend for Svm {
    fn caps(&self) -> VirtCaps {
        self.caps
    }

    fn new_address_space(
        &mut self,
        frames: &mut dyn FrameAlloc,
    ) -> Result<Box<dyn AddressSpace>, &'static str> {
        let table = NptTable::new(&mut IdentityTables::new(frames))
            .map_err(|_| "no memory for nested page tables")?;
        Ok(Box::new(table))
    }

    fn hypercall_instruction(&self) -> [u8; 3] {
        [0x0f, 0x01, 0xd9] // VMMCALL (APM Vol. 3)
    }

    fn create_vcpu(
        &mut self,
        frames: &mut dyn FrameAlloc,
        config: &VcpuConfig,
        initial: &InitialState,
    ) -> Result<Box<dyn Vcpu>, &'static str> {
        if config.tag == 0 || u32::from(config.tag) >= self.caps.tags {
            return Err("ASID out of range (ASID 0 is the host's, APM 15.16)");
        }
        let vcpu = SvmVcpu::new(
            frames,
            self.host_vmcb_pa,
            self.caps.exit_length,
            self.mitigations,
            config,
            initial,
        )?;
        Ok(Box::new(vcpu))
    }
}
