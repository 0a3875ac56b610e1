//! The exit handler: runs a domain's vCPU and answers each exit through the vendor-neutral interface.

use crate::domain::{Domain, Ending};
use crate::guest_memory::GuestMemory;
use crate::hypercall;
use alloc::format;
use vcpu::{Access, Event, Exit, Gpr, IoAccess};
use xenolith::{cpuid_policy, msr_policy, vlapic};

/// #GP, with error code 0 (SDM Vol. 3A 6.15).
const GP: Event = Event::Exception {
    vector: 13,
    error_code: Some(0),
};
/// Port 0x80: the POST-code latch, readable back.
const POST_PORT: u16 = 0x80;

/// Runs the domain until it ends.
pub fn run(dom: &mut Domain) {
    while dom.ending.is_none() {
        deliver_interrupt(dom);
        let exit = dom.vcpu.run();
        dom.exits[exit.reason()] += 1;
        defmt::trace!(
            "d{=u16}: exit {} at rip {=u64:#x}",
            dom.id,
            exit,
            dom.vcpu.rip()
        );
        handle(dom, exit);
    }
}

/// Injects the highest-priority pending interrupt if the guest can take it
/// now, else asks for an interrupt-window exit.
fn deliver_interrupt(dom: &mut Domain) {
    if let Some(deadline) = dom.lapic_timer_deadline {
        if crate::time::rdtsc() >= deadline {
            dom.lapic_timer_deadline = None;
            dom.vlapic.timer_expired();
        }
    }
    let apic = dom.vlapic.deliverable();
    if dom.pending_irq.is_none() && apic.is_none() {
        dom.vcpu.set_interrupt_window(false);
        return;
    }
    if !dom.vcpu.interruptible() {
        dom.vcpu.set_interrupt_window(true);
        return;
    }
    dom.vcpu.set_interrupt_window(false);
    if let Some(vector) = dom.pending_irq.take() {
        dom.vcpu.inject(Event::Interrupt(vector));
    } else if let Some(vector) = apic {
        dom.vlapic.take(vector);
        dom.vcpu.inject(Event::Interrupt(vector));
    }
}

fn handle(dom: &mut Domain, exit: Exit) {
    match exit {
        Exit::Cpuid => cpuid(dom),
        Exit::MsrRead { msr } => msr_read(dom, msr),
        Exit::MsrWrite { msr, value } => msr_write(dom, msr, value),
        Exit::Io(io) => port_io(dom, io),
        Exit::Hypercall => {
            hypercall::dispatch(dom);
            if dom.ending.is_none() {
                skip(dom);
            }
        }
        Exit::Hlt => {
            skip(dom);
            halt(dom);
        }
        Exit::NestedPageFault {
            gpa,
            access,
            present,
        } => {
            let kind = match access {
                Access::Read => "read",
                Access::Write => "write",
                Access::Execute => "execute",
            };
            let what = if present {
                "not allowed"
            } else {
                "outside its memory"
            };
            dom.crash(format!("{kind} access {what} at GPA {gpa:#x}"));
        }
        // A host interrupt ended the run; it is still pending: take it now.
        Exit::ExternalInterrupt => crate::timer::take_pending_interrupts(),
        Exit::InterruptWindow => {}
        Exit::Exception { vector, .. } => {
            dom.crash(format!("unexpected intercepted exception {vector}"))
        }
        Exit::Shutdown => dom.crash(format!("triple fault at rip {:#x}", dom.vcpu.rip())),
        Exit::Init | Exit::Sipi { .. } => dom.crash(format!("{exit:?} on a single-vCPU domain")),
        Exit::Invalid(why) => dom.crash(format!("invalid guest state: {why}")),
        Exit::Xsetbv { xcr, value } => xsetbv(dom, xcr, value),
    }
}

/// Moves past the exiting instruction; a vCPU whose instruction cannot be
/// read back (it rewrote or unmapped it) is ended rather than guessed at.
fn skip(dom: &mut Domain) {
    let memory = GuestMemory::new(dom.space.as_ref());
    if let Err(why) = dom.vcpu.skip_instruction(&memory) {
        dom.crash(format!(
            "cannot skip instruction at rip {:#x}: {why}",
            dom.vcpu.rip()
        ));
    }
}

/// HLT: wakes on a pending interrupt; with interrupts off nothing can wake
/// it, and with no event source yet (timers come with the Xen ABI) neither.
fn halt(dom: &mut Domain) {
    if dom.pending_irq.is_some() || dom.vlapic.deliverable().is_some() {
        return;
    }
    if dom.vcpu.interruptible() {
        dom.crash(format!(
            "halted at rip {:#x} with nothing to wake it",
            dom.vcpu.rip()
        ));
    } else {
        dom.ending = Some(Ending::Halted);
    }
}

/// XSETBV, checked as the CPU checks it (SDM Vol. 2C, XSETBV: #GP for an
/// XCR other than 0, x87 off, AVX without SSE, or bits the CPU lacks), then
/// done on the host: XCR0 is not switched on VM entry or exit, so the value
/// stays the guest's, and the hypervisor itself never uses extended state.
fn xsetbv(dom: &mut Domain, xcr: u32, value: u64) {
    let leaf = core::arch::x86_64::__cpuid_count(0xd, 0);
    let supported = u64::from(leaf.eax) | (u64::from(leaf.edx) << 32);
    let valid = xcr == 0 && value & 1 != 0 && value & !supported == 0 && (value & 0b110 != 0b100);
    if valid && crate::cpu::set_xcr0(value) {
        skip(dom);
    } else {
        dom.vcpu.inject(GP);
    }
}

fn set_edx_eax(dom: &mut Domain, value: u64) {
    dom.vcpu.set_gpr(Gpr::Rax, value & 0xffff_ffff);
    dom.vcpu.set_gpr(Gpr::Rdx, value >> 32);
}

fn cpuid(dom: &mut Domain) {
    let leaf = dom.vcpu.gpr(Gpr::Rax) as u32;
    let subleaf = dom.vcpu.gpr(Gpr::Rcx) as u32;
    let host = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    let regs = cpuid_policy::guest_view(
        leaf,
        subleaf,
        [host.eax, host.ebx, host.ecx, host.edx],
        0,
        u32::from(dom.id),
    );
    for (reg, value) in [Gpr::Rax, Gpr::Rbx, Gpr::Rcx, Gpr::Rdx]
        .into_iter()
        .zip(regs)
    {
        dom.vcpu.set_gpr(reg, u64::from(value));
    }
    skip(dom);
}

fn msr_read(dom: &mut Domain, msr: u32) {
    let value = match msr {
        msr_policy::IA32_EFER => Ok(dom.vcpu.paging().efer),
        msr_policy::IA32_APIC_BASE => Ok(vlapic::APIC_BASE_VALUE),
        msr_policy::X2APIC_FIRST..=msr_policy::X2APIC_LAST => dom.vlapic.read(msr).map_err(|_| ()),
        msr_policy::IA32_TSC => Ok(crate::time::rdtsc()),
        msr_policy::IA32_MTRRCAP => Ok(msr_policy::MTRRCAP_VALUE),
        msr_policy::IA32_MTRR_DEF_TYPE => Ok(dom.mtrr_def_type),
        msr_policy::IA32_MISC_ENABLE => Ok(msr_policy::MISC_ENABLE_VALUE),
        _ => Err(()),
    };
    match value {
        Ok(value) => {
            set_edx_eax(dom, value);
            skip(dom);
        }
        Err(()) => {
            defmt::debug!("d{=u16}: rdmsr {=u32:#x} -> #GP", dom.id, msr);
            dom.vcpu.inject(GP);
        }
    }
}

fn msr_write(dom: &mut Domain, msr: u32, value: u64) {
    let ok = match msr {
        msr_policy::IA32_EFER => msr_policy::efer_write(dom.vcpu.paging().efer, value)
            .map(|efer| dom.vcpu.set_efer(efer))
            .is_some(),
        // x2APIC mode cannot be left (SDM 12.12.5): only the same value is taken.
        msr_policy::IA32_APIC_BASE => value == vlapic::APIC_BASE_VALUE,
        msr_policy::X2APIC_FIRST..=msr_policy::X2APIC_LAST => match dom.vlapic.write(msr, value) {
            Ok(effect) => {
                apic_effect(dom, effect);
                true
            }
            Err(_) => false,
        },
        msr_policy::IA32_MTRR_DEF_TYPE if msr_policy::mtrr_def_type_valid(value) => {
            dom.mtrr_def_type = value;
            true
        }
        msr_policy::IA32_MISC_ENABLE => value == msr_policy::MISC_ENABLE_VALUE,
        _ => false,
    };
    if ok {
        skip(dom);
    } else {
        defmt::debug!(
            "d{=u16}: wrmsr {=u32:#x} <- {=u64:#x} -> #GP",
            dom.id,
            msr,
            value
        );
        dom.vcpu.inject(GP);
    }
}

/// What a local APIC register write sets in motion.
fn apic_effect(dom: &mut Domain, effect: vlapic::Effect) {
    match effect {
        vlapic::Effect::None => {}
        vlapic::Effect::Timer(ns) => {
            dom.lapic_timer_deadline =
                ns.map(|ns| crate::time::rdtsc() + ns * crate::time::tsc_khz() / 1_000_000);
        }
        // A single-vCPU domain has no one else to interrupt.
        vlapic::Effect::IpiToOthers => {}
    }
}

/// Port I/O: the POST latch; other ports read as all ones (nothing there)
/// and drop writes. String I/O is not emulated.
fn port_io(dom: &mut Domain, io: IoAccess) {
    if io.string {
        dom.crash(format!("string I/O on port {:#x} is not emulated", io.port));
        return;
    }
    let mask = match io.size {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    };
    if io.write {
        if io.port == POST_PORT {
            dom.port80 = dom.vcpu.gpr(Gpr::Rax) as u8;
        }
    } else {
        let value = if io.port == POST_PORT {
            u64::from(dom.port80)
        } else {
            mask
        };
        let rax = dom.vcpu.gpr(Gpr::Rax);
        // A 32-bit IN zero-extends into RAX; narrower ones merge (SDM Vol. 1 3.4.1.1).
        let merged = if io.size == 4 {
            value
        } else {
            (rax & !mask) | (value & mask)
        };
        dom.vcpu.set_gpr(Gpr::Rax, merged);
    }
    skip(dom);
}
