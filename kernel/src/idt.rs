//! The IDT: a CPU exception at a fix-up site resumes there; any other prints its state on COM1 and stops the machine with a failure status.

use crate::gdt::{DOUBLE_FAULT_IST, KERNEL_CS};
use core::arch::{asm, global_asm};
use spin::Once;

global_asm!(include_str!("exceptions.S"), options(att_syntax));

global_asm!(include_str!("irq.S"), options(att_syntax));

extern "C" {
    static isr_table: [u64; 32];
    /// (faulting RIP, resume RIP) pairs, ended by (0, 0): exceptions.S.
    static fixup_table: [[u64; 2]; 2];
    fn irq_stub_0xf0();
    fn irq_stub_0xfe();
    fn irq_stub_0xff();
}

/// A 64-bit interrupt gate (SDM Vol. 3A 6.14.1, figure 6-8).
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    kind: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    const EMPTY: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        kind: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    fn interrupt(handler: u64, ist: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: KERNEL_CS,
            ist,
            kind: 0x8e, // present, DPL 0, 64-bit interrupt gate
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

static IDT: Once<[Gate; 256]> = Once::new();

#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

pub fn init() {
    let idt = IDT.call_once(|| {
        let mut idt = [Gate::EMPTY; 256];
        // SAFETY: `isr_table` is an initialised array in exceptions.S.
        let stubs = unsafe { &*core::ptr::addr_of!(isr_table) };
        for (vector, &stub) in stubs.iter().enumerate() {
            // A double fault may come from a stack overflow: give it its own stack.
            let ist = if vector == 8 { DOUBLE_FAULT_IST } else { 0 };
            idt[vector] = Gate::interrupt(stub, ist);
        }
        // The local APIC's own vectors (kernel/src/apic.rs); nothing else is unmasked.
        for (vector, stub) in [
            (
                crate::apic::TIMER_VECTOR,
                irq_stub_0xf0 as unsafe extern "C" fn(),
            ),
            (crate::apic::ERROR_VECTOR, irq_stub_0xfe),
            (crate::apic::SPURIOUS_VECTOR, irq_stub_0xff),
        ] {
            idt[vector] = Gate::interrupt(stub as usize as u64, 0);
        }
        idt
    });
    let pointer = Pointer {
        limit: (core::mem::size_of_val(idt) - 1) as u16,
        base: idt.as_ptr() as u64,
    };
    // SAFETY: the IDT is static and every present gate points at a stub.
    unsafe { asm!("lidt [{}]", in(reg) &pointer) };
}

/// The frame built by `isr_common`, lowest address first.
#[repr(C)]
pub struct ExceptionFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rbx: u64,
    rax: u64,
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// Mnemonics of SDM Vol. 3A table 6-1.
const NAMES: [&str; 32] = [
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS",
    "#GP", "#PF", "-", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "-", "-", "-", "-", "-", "-",
    "#HV", "#VC", "#SX", "-",
];

/// Where to resume after an exception at `rip`, if it is a fix-up site.
/// NMI, #DF and #MC are never fixed up: they are not caused by the
/// instruction at RIP (SDM Vol. 3A 6.15).
fn fixup(vector: u64, rip: u64) -> Option<u64> {
    if matches!(vector, 2 | 8 | 18) {
        return None;
    }
    // SAFETY: `fixup_table` is an initialised array in exceptions.S.
    let table = unsafe { &*core::ptr::addr_of!(fixup_table) };
    table
        .iter()
        .take_while(|pair| pair[0] != 0)
        .find(|pair| pair[0] == rip)
        .map(|pair| pair[1])
}

/// Returns only after pointing the frame's RIP at a fix-up; `isr_common`
/// then resumes there with IRETQ.
#[no_mangle]
extern "C" fn exception_entry(f: &mut ExceptionFrame) {
    if let Some(resume) = fixup(f.vector, f.rip) {
        defmt::warn!(
            "exception {=u64} at fix-up site {=u64:#x}: resumed",
            f.vector,
            f.rip
        );
        f.rip = resume;
        return;
    }
    // SAFETY: reading CR2 has no side effects.
    let cr2 = unsafe { x86::controlregs::cr2() } as u64;
    let name = NAMES.get(f.vector as usize).copied().unwrap_or("?");
    crate::console::emergency(format_args!(
        "xenolith: EXCEPTION vector {} {} error={:#x}\n\
         rip={:#018x} cs={:#06x} rflags={:#010x} rsp={:#018x} ss={:#06x} cr2={:#018x}\n\
         rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}\n\
         rsi={:#018x} rdi={:#018x} rbp={:#018x} r8 ={:#018x}\n\
         r9 ={:#018x} r10={:#018x} r11={:#018x} r12={:#018x}\n\
         r13={:#018x} r14={:#018x} r15={:#018x}\n",
        f.vector,
        name,
        f.error,
        f.rip,
        f.cs,
        f.rflags,
        f.rsp,
        f.ss,
        cr2,
        f.rax,
        f.rbx,
        f.rcx,
        f.rdx,
        f.rsi,
        f.rdi,
        f.rbp,
        f.r8,
        f.r9,
        f.r10,
        f.r11,
        f.r12,
        f.r13,
        f.r14,
        f.r15
    ));
    // After COM1: if the exception hit inside the logger, this panics, and the
    // panic path still ends the run.
    defmt::error!(
        "CPU exception {=u64} at rip {=u64:#x}, cr2 {=u64:#x}",
        f.vector,
        f.rip,
        cr2
    );
    crate::power::exit(crate::power::ExitStatus::Failure)
}
