//! The exit handler: runs a domain's vCPU and answers each exit through the vendor-neutral interface.

use crate::domain::{Block, Domain, Ending, Others};
use crate::guest_memory::GuestMemory;
use crate::hypercall;
use crate::xen::console_ring;
use crate::xen::time as xen_time;
use alloc::format;
use vcpu::{Event, Exit, Gpr, IoAccess};
use xen_abi::event_channel::VIRQ_TIMER;
use xenolith::{cpuid_policy, cr4_policy, msr_policy, vlapic};

/// #GP, with error code 0 (SDM Vol. 3A 6.15).
const GP: Event = Event::Exception {
    vector: 13,
    error_code: Some(0),
};
/// #UD (SDM Vol. 3A 6.15): no error code.
const UD: Event = Event::Exception {
    vector: 6,
    error_code: None,
};
/// Port 0x80: the POST-code latch, readable back.
const POST_PORT: u16 = 0x80;
/// The 8254 PIT's counter ports. There is no PIT (as in a Xen PVH domain),
/// but where other absent ports read as all ones, these read as 0: Linux's
/// quick PIT calibration (arch/x86/kernel/tsc.c, pit_expect_msb) waits for
/// the counter's MSB to leave 0xff and would spin 50,000 times reading
/// 0xff, two exits each, before giving up; 0 makes it give up at once.
const PIT_COUNTERS: core::ops::RangeInclusive<u16> = 0x40..=0x42;

/// How a slice of a domain's time ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SliceEnd {
    Ended,
    /// The vCPU waits for an event (HLT, SCHEDOP_block/poll) and none is due.
    Blocked,
    /// The slice ran out.
    Expired,
}

/// Runs the domain's vCPU until it ends, blocks, or the host TSC passes
/// `until` (the host timer is armed for it, so a running guest is stopped).
pub fn run_slice(dom: &mut Domain, others: &mut Others, until: u64) -> SliceEnd {
    let started = crate::time::rdtsc();
    let end = loop {
        if dom.ending.is_some() {
            break SliceEnd::Ended;
        }
        service_timers(dom);
        if dom.console_input {
            service_console_input(dom);
        }
        if dom.blocked.is_some() {
            if can_wake(dom) {
                dom.blocked = None;
            } else {
                break SliceEnd::Blocked;
            }
        }
        if crate::time::rdtsc() >= until || core::mem::take(&mut dom.yield_slice) {
            break SliceEnd::Expired;
        }
        crate::console::pump();
        deliver_interrupt(dom);
        // A guest deadline (or the slice end) passing while the guest runs must end its run.
        crate::timer::arm(next_deadline(dom).map_or(until, |d| d.min(until)));
        let exit = dom.vcpu.run();
        dom.exits[exit.reason()] += 1;
        defmt::trace!(
            "d{=u16}: exit {} at rip {=u64:#x}",
            dom.id,
            exit,
            dom.vcpu.rip()
        );
        handle(dom, others, exit);
    };
    crate::timer::disarm();
    dom.cpu_tsc += crate::time::rdtsc() - started;
    end
}

/// Whether a blocked domain has something to do now.
pub fn wakeable(dom: &mut Domain) -> bool {
    service_timers(dom);
    if dom.console_input {
        service_console_input(dom);
    }
    can_wake(dom)
}

/// The earliest host TSC at which something is due for the guest.
pub fn next_deadline(dom: &Domain) -> Option<u64> {
    let xen_timer = dom.xen.timer_deadline_ns.map(xen_time::tsc_at);
    let poll = match dom.blocked {
        Some(Block::Poll {
            timeout_ns: Some(ns),
            ..
        }) => Some(xen_time::tsc_at(ns)),
        _ => None,
    };
    [xen_timer, dom.lapic_timer_deadline, poll]
        .into_iter()
        .flatten()
        .min()
}

/// Fires the timers whose time has come.
fn service_timers(dom: &mut Domain) {
    if crate::timer::take_fired() {
        defmt::trace!("d{=u16}: host timer", dom.id);
    }
    if let Some(deadline) = dom.xen.timer_deadline_ns {
        if xen_time::now_ns() >= deadline {
            dom.xen.timer_deadline_ns = None;
            dom.xen.raise_virq(dom.space.as_ref(), VIRQ_TIMER);
        }
    }
    if let Some(deadline) = dom.lapic_timer_deadline {
        if crate::time::rdtsc() >= deadline {
            dom.lapic_timer_deadline = None;
            dom.vlapic.timer_expired();
        }
    }
}

/// Whether the callback vector can be injected: configured and
/// `evtchn_upcall_pending` set in vCPU 0's vcpu_info.
fn upcall_due(dom: &Domain) -> bool {
    dom.xen.callback_vector.is_some() && dom.xen.upcall_pending(dom.space.as_ref())
}

fn can_wake(dom: &Domain) -> bool {
    let interrupt =
        upcall_due(dom) || dom.vlapic.deliverable().is_some() || dom.pending_irq.is_some();
    match dom.blocked {
        None => true,
        Some(Block::Halt) | Some(Block::Events) => interrupt,
        Some(Block::Poll { timeout_ns }) => {
            let bits = dom.xen.bits(dom.space.as_ref());
            interrupt
                || dom.xen.evtchn.poll(&bits, &dom.poll_ports).unwrap_or(true)
                || timeout_ns.is_some_and(|t| xen_time::now_ns() >= t)
        }
    }
}

/// Typed input goes to the guest's console ring, and its console port is raised.
fn service_console_input(dom: &mut Domain) {
    let page = dom.xen.console_gfn * 4096;
    let mut any = false;
    while let Some(byte) = crate::console::try_read() {
        let memory = GuestMemory::new(dom.space.as_ref());
        match console_ring::push_input(&memory, page, byte) {
            Ok(true) => any = true,
            _ => break,
        }
    }
    if any {
        let mut bits = dom.xen.bits(dom.space.as_ref());
        dom.xen.evtchn.raise(&mut bits, dom.xen.console_port);
    }
}

/// The guest sent on its console port: print what it wrote (as `(dN) line`).
pub fn serve_console(dom: &mut Domain) {
    let page = dom.xen.console_gfn * 4096;
    let mut out = alloc::vec::Vec::new();
    let memory = GuestMemory::new(dom.space.as_ref());
    if console_ring::drain_output(&memory, page, |b| out.push(b)).is_err() {
        dom.crash(format!(
            "console ring at GFN {:#x} is broken",
            dom.xen.console_gfn
        ));
        return;
    }
    crate::hypercall::console_output(dom, &out);
    // Tell the guest there is room again.
    let mut bits = dom.xen.bits(dom.space.as_ref());
    dom.xen.evtchn.raise(&mut bits, dom.xen.console_port);
}

/// Injects the highest-priority pending interrupt if the guest can take it
/// now, else asks for an interrupt-window exit.
fn deliver_interrupt(dom: &mut Domain) {
    let apic = dom.vlapic.deliverable();
    let upcall = upcall_due(dom);
    if dom.pending_irq.is_none() && apic.is_none() && !upcall {
        dom.vcpu.set_interrupt_window(false);
        return;
    }
    if !dom.vcpu.interruptible() {
        dom.vcpu.set_interrupt_window(true);
        return;
    }
    dom.vcpu.set_interrupt_window(false);
    if let (true, Some(vector)) = (upcall, dom.xen.callback_vector) {
        // The Xen callback bypasses the local APIC and is never EOI'd (spec 10, item 10).
        dom.vcpu.inject(Event::Interrupt(vector));
    } else if let Some(vector) = dom.pending_irq.take() {
        dom.vcpu.inject(Event::Interrupt(vector));
    } else if let Some(vector) = apic {
        dom.vlapic.take(vector);
        dom.vcpu.inject(Event::Interrupt(vector));
    }
}

fn handle(dom: &mut Domain, others: &mut Others, exit: Exit) {
    match exit {
        Exit::Cpuid => cpuid(dom),
        Exit::MsrRead { msr } => msr_read(dom, msr),
        Exit::MsrWrite { msr, value } => msr_write(dom, msr, value),
        Exit::Io(io) => port_io(dom, io),
        Exit::Hypercall => {
            let outcome = hypercall::dispatch(dom, others);
            if outcome == hypercall::Outcome::Done && dom.ending.is_none() {
                skip(dom);
            }
        }
        Exit::Hlt => {
            skip(dom);
            halt(dom);
        }
        Exit::NestedPageFault { gpa, .. } if hypercall::test_op::refault(dom, gpa) => {}
        Exit::NestedPageFault {
            gpa,
            access,
            present,
        } => crate::emulate_guest::nested_page_fault(dom, gpa, access, present),
        // A host interrupt ended the run; it is still pending: take it now.
        Exit::ExternalInterrupt => crate::timer::take_pending_interrupts(),
        Exit::InterruptWindow => {}
        // #DB and #AC are intercepted only so that a guest cannot loop in
        // their delivery without exits (XSA-156): each is the guest's own,
        // handed back unchanged (its DR6 already set by the backend).
        Exit::Exception {
            vector: vector @ (1 | 17),
            error_code,
        } => dom.vcpu.inject(Event::Exception { vector, error_code }),
        Exit::Exception { vector, .. } => {
            dom.crash(format!("unexpected intercepted exception {vector}"))
        }
        Exit::Undefined => dom.vcpu.inject(UD),
        Exit::CacheFlush => skip(dom),
        Exit::Shutdown => dom.crash(format!("triple fault at rip {:#x}", dom.vcpu.rip())),
        Exit::Init | Exit::Sipi { .. } => dom.crash(format!("{exit:?} on a single-vCPU domain")),
        Exit::Invalid(why) => dom.crash(format!("invalid guest state: {why}")),
        Exit::Xsetbv { xcr, value } => xsetbv(dom, xcr, value),
        Exit::Cr4Write => cr4_write(dom),
        Exit::Unhandled { code, name } => dom.crash(format!(
            "exit code {code:#x} ({name}) not handled, at rip {:#x}",
            dom.vcpu.rip()
        )),
    }
}

/// Moves past the exiting instruction; a vCPU whose instruction cannot be
/// read back (it rewrote or unmapped it) is ended rather than guessed at.
fn skip(dom: &mut Domain) {
    let memory = GuestMemory::new(dom.space.as_ref());
    if let Err(why) = dom.vcpu.skip_instruction(&memory) {
        let p = dom.vcpu.paging();
        dom.crash(format!(
            "cannot skip instruction at rip {:#x}: {why} (CR0 {:#x} CR3 {:#x} CR4 {:#x} EFER {:#x})",
            dom.vcpu.rip(),
            p.cr0,
            p.cr3,
            p.cr4,
            p.efer
        ));
    }
}

/// HLT: with interrupts on, the vCPU blocks until something can be
/// delivered; with interrupts off nothing can wake it: that is how Linux
/// powers off a PVH domain (spec 4.8). A halt with nothing that could ever
/// wake it (no timer armed, no callback) would hang: the domain is crashed.
fn halt(dom: &mut Domain) {
    if !dom.vcpu.interruptible() {
        dom.ending = Some(Ending::Halted);
        return;
    }
    if dom.pending_irq.is_some() || dom.vlapic.deliverable().is_some() || upcall_due(dom) {
        return;
    }
    let wake_source = next_deadline(dom).is_some() || dom.xen.callback_vector.is_some();
    if !wake_source {
        dom.crash(format!(
            "halted at rip {:#x} with nothing to wake it",
            dom.vcpu.rip()
        ));
        return;
    }
    dom.blocked = Some(Block::Halt);
}

/// XSETBV, checked as the CPU checks it (`xenolith::xcr0::valid`: Xen's
/// `valid_xcr0()` pairings, and only bits the CPU offers), then done on
/// the host: XCR0 is not switched on VM entry or exit, so the value stays
/// the guest's, and the hypervisor itself never uses extended state. A
/// value the check missed faults at a fix-up site and becomes the guest's #GP.
fn xsetbv(dom: &mut Domain, xcr: u32, value: u64) {
    let leaf = core::arch::x86_64::__cpuid_count(0xd, 0);
    let supported = u64::from(leaf.eax) | (u64::from(leaf.edx) << 32);
    if xenolith::xcr0::valid(xcr, value, supported) && crate::cpu::set_xcr0(value) {
        skip(dom);
    } else {
        dom.vcpu.inject(GP);
    }
}

/// MOV to CR4: checked against the bits the guest's CPUID offers and the
/// instruction's own rules (`xenolith::cr4_policy`), then loaded; #GP
/// otherwise, CR4 unchanged. A source operand that cannot be read (the
/// guest rewrote or unmapped the instruction) ends the domain.
fn cr4_write(dom: &mut Domain) {
    let memory = GuestMemory::new(dom.space.as_ref());
    let value = match dom.vcpu.cr4_write_value(&memory) {
        Ok(value) => value,
        Err(why) => {
            dom.crash(format!(
                "MOV to CR4 at rip {:#x} not decoded: {why}",
                dom.vcpu.rip()
            ));
            return;
        }
    };
    let paging = dom.vcpu.paging();
    let ctx = cr4_policy::Cr4Context {
        current: paging.cr4,
        long_mode: paging.efer & (1 << 10) != 0,
        cr3: paging.cr3,
        valid: crate::cpu::guest_cr4_valid(),
    };
    match cr4_policy::write(&ctx, value) {
        Some(value) if dom.vcpu.set_cr4(value) => skip(dom),
        _ => {
            defmt::debug!("d{=u16}: mov cr4 <- {=u64:#x} -> #GP", dom.id, value);
            dom.vcpu.inject(GP);
        }
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
        dom.vcpu.paging().cr4,
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
        msr_policy::IA32_APIC_BASE => Ok(dom.vlapic.base_msr()),
        msr_policy::X2APIC_FIRST..=msr_policy::X2APIC_LAST => dom.vlapic.read(msr).map_err(|_| ()),
        msr_policy::IA32_TSC => Ok(crate::time::rdtsc()),
        msr_policy::IA32_MTRRCAP => Ok(msr_policy::MTRRCAP_VALUE),
        msr_policy::IA32_MTRR_DEF_TYPE => Ok(dom.mtrr_def_type),
        msr_policy::IA32_MISC_ENABLE => Ok(msr_policy::MISC_ENABLE_VALUE),
        msr_policy::AMD_NB_CFG | msr_policy::IA32_BIOS_SIGN_ID => Ok(0),
        msr_policy::AMD_HWCR => Ok(msr_policy::AMD_HWCR_VALUE),
        // Speculation controls, as offered (speculation.rs); PRED_CMD and
        // FLUSH_CMD are write-only.
        msr_policy::IA32_SPEC_CTRL if crate::speculation::offer().spec_ctrl != 0 => {
            Ok(dom.vcpu.spec_ctrl())
        }
        msr_policy::IA32_ARCH_CAPABILITIES => crate::speculation::offer().arch_caps.ok_or(()),
        // The hypercall-page MSR reads as 0 (Xen's guest_rdmsr_xen).
        cpuid_policy::HYPERCALL_PAGE_MSR => Ok(0),
        _ => msr_policy::constant_read(msr, crate::speculation::vendor()).ok_or(()),
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
        // Mode changes as SDM 12.12.5 allows them, checked as Xen does.
        msr_policy::IA32_APIC_BASE => match dom.vlapic.set_base_msr(value) {
            Ok(effect) => {
                apic_effect(dom, effect);
                true
            }
            Err(_) => false,
        },
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
        msr_policy::AMD_NB_CFG | msr_policy::IA32_BIOS_SIGN_ID => true,
        msr_policy::IA32_SPEC_CTRL => {
            msr_policy::spec_ctrl_write(&crate::speculation::offer(), value)
                .map(|v| dom.vcpu.set_spec_ctrl(v))
                .is_some()
        }
        msr_policy::IA32_PRED_CMD | msr_policy::IA32_FLUSH_CMD => {
            crate::speculation::guest_command(msr, value)
        }
        cpuid_policy::HYPERCALL_PAGE_MSR => install_hypercall_page(dom, value),
        _ => msr_policy::constant_write(msr, crate::speculation::vendor(), value),
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

/// Writes the hypercall page into the guest frame the MSR names; false
/// (#GP) for a non-zero page index or a frame that is not writable guest
/// memory (spec 2.2).
fn install_hypercall_page(dom: &mut Domain, value: u64) -> bool {
    let Some(gfn) = xenolith::hypercall_page::frame(value) else {
        return false;
    };
    let mut page = [0u8; xenolith::hypercall_page::PAGE_SIZE];
    xenolith::hypercall_page::fill(&mut page, dom.hypercall_instruction);
    gfn.checked_mul(4096).is_some_and(|gpa| {
        GuestMemory::new(dom.space.as_ref())
            .write_gpa(gpa, &page)
            .is_ok()
    })
}

/// What a local APIC register write sets in motion.
pub fn apic_effect(dom: &mut Domain, effect: vlapic::Effect) {
    match effect {
        vlapic::Effect::None => {}
        vlapic::Effect::Timer(ns) => {
            // Up to 5.5e12 ns times the TSC's kHz overflows 64 bits.
            dom.lapic_timer_deadline = ns.map(|ns| {
                let ticks = u128::from(ns) * u128::from(crate::time::tsc_khz()) / 1_000_000;
                crate::time::rdtsc().saturating_add(u64::try_from(ticks).unwrap_or(u64::MAX))
            });
        }
        // A single-vCPU domain has no one else to interrupt.
        vlapic::Effect::IpiToOthers => {}
    }
}

/// Port I/O: the POST latch; other ports read as all ones (nothing there)
/// and drop writes. String I/O is not emulated.
fn port_io(dom: &mut Domain, io: IoAccess) {
    dom.count_port(io.port);
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
        let value = match io.port {
            POST_PORT => u64::from(dom.port80),
            p if PIT_COUNTERS.contains(&p) => 0,
            _ => mask,
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
