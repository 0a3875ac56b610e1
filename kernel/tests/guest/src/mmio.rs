//! Checks of guest-physical space that is not RAM: unbacked addresses read all ones and drop writes (`mmio-unbacked`), and the local APIC's xAPIC page and mode changes (`xapic-mmio`).

use crate::idt::{FAULT_SKIP, GP_COUNT, IRQ_COUNT, TEST_VECTOR};
use core::arch::asm;
use core::sync::atomic::Ordering;

/// Where XTF probes an HPET and Linux on AMD reads the FCH reset status:
/// neither is RAM nor a device in a PVH domain (entry.S maps the low 4 GiB).
const HPET: u64 = 0xfed0_0000;
const FCH_RESET_STATUS: u64 = 0xfed8_03c0;
/// A GPA above the domain's RAM, for the instruction fetch.
const BEYOND_RAM: u64 = 0x4000_0000;

const RFLAGS_CF: u64 = 1 << 0;
const RFLAGS_ZF: u64 = 1 << 6;
const RFLAGS_SF: u64 = 1 << 7;
const RFLAGS_OF: u64 = 1 << 11;

fn ensure(ok: bool, why: &'static str) -> Result<(), &'static str> {
    if ok {
        Ok(())
    } else {
        Err(why)
    }
}

/// Reads at every width and in several instruction forms give all ones;
/// writes are dropped; read-modify-write and compare forms leave the flags
/// the CPU would; a string move from there fills RAM with all ones; and an
/// instruction fetch from beyond RAM is #GP(0), as on Xen.
pub fn mmio_unbacked() -> Result<(), &'static str> {
    let (b, w, d, q): (u64, u64, u64, u64);
    // SAFETY: loads from unbacked guest-physical space, identity-mapped by
    // entry.S; the hypervisor emulates them. The registers start non-zero
    // so that a merge or zero-extension mistake shows.
    unsafe {
        asm!(
            "mov rax, -2", "mov al, [{p}]",
            "mov rcx, -2", "mov cx, [{p}]",
            "mov rdx, -2", "mov edx, [{p}]",
            "mov r8, [{p} + 8]",
            p = in(reg) HPET,
            out("rax") b, out("rcx") w, out("rdx") d, out("r8") q,
        )
    };
    ensure(b == u64::MAX, "mov al,[mmio] did not read 0xff")?;
    ensure(w == u64::MAX, "mov cx,[mmio] did not read 0xffff")?;
    ensure(
        d == 0xffff_ffff,
        "mov edx,[mmio] did not zero-extend all ones",
    )?;
    ensure(q == u64::MAX, "mov r8,[mmio] did not read all ones")?;
    let (zx, sx): (u64, u64);
    // SAFETY: as above.
    unsafe {
        asm!(
            "movzx {zx:e}, byte ptr [{p}]",
            "movsx {sx}, word ptr [{p}]",
            p = in(reg) FCH_RESET_STATUS,
            zx = out(reg) zx, sx = out(reg) sx,
        )
    };
    ensure(zx == 0xff && sx == u64::MAX, "movzx/movsx from MMIO wrong")?;
    // Writes are dropped: what reads back is still all ones.
    // SAFETY: as above.
    let back = unsafe {
        core::ptr::write_volatile(HPET as *mut u32, 0x1234_5678);
        core::ptr::write_volatile((HPET + 0x10) as *mut u8, 0);
        core::ptr::read_volatile(HPET as *const u32)
    };
    ensure(back == 0xffff_ffff, "a write to unbacked space was kept")?;
    // RMW: or with 0 → all ones: SF, not ZF, CF and OF clear (set before).
    let (or_flags, add_flags, cmp_flags, test_flags): (u64, u64, u64, u64);
    // SAFETY: as above; PUSHF/POP read the flags each instruction left.
    unsafe {
        asm!(
            "stc",
            "or dword ptr [{p}], 0",
            "pushfq", "pop {f1}",
            "add dword ptr [{p}], 1",
            "pushfq", "pop {f2}",
            "cmp qword ptr [{p}], -1",
            "pushfq", "pop {f3}",
            "xor eax, eax",
            "test [{p}], eax",
            "pushfq", "pop {f4}",
            p = in(reg) HPET,
            f1 = out(reg) or_flags, f2 = out(reg) add_flags,
            f3 = out(reg) cmp_flags, f4 = out(reg) test_flags,
            out("rax") _,
        )
    };
    ensure(
        or_flags & (RFLAGS_SF | RFLAGS_ZF | RFLAGS_CF | RFLAGS_OF) == RFLAGS_SF,
        "or [mmio],0 left the wrong flags",
    )?;
    ensure(
        add_flags & (RFLAGS_CF | RFLAGS_ZF | RFLAGS_SF) == RFLAGS_CF | RFLAGS_ZF,
        "add [mmio],1 did not carry out to zero",
    )?;
    ensure(
        cmp_flags & (RFLAGS_ZF | RFLAGS_CF) == RFLAGS_ZF,
        "cmp [mmio],-1 not equal",
    )?;
    ensure(
        test_flags & (RFLAGS_ZF | RFLAGS_SF) == RFLAGS_ZF,
        "test [mmio],0 not zero",
    )?;
    // rep movsd from MMIO into RAM.
    let mut buf = [0u32; 3];
    let left: u64;
    // SAFETY: copies 12 bytes from unbacked space into `buf`.
    unsafe {
        asm!(
            "cld",
            "rep movsd",
            inout("rcx") 3u64 => left,
            inout("rsi") HPET => _,
            inout("rdi") buf.as_mut_ptr() => _,
        )
    };
    ensure(
        left == 0 && buf == [0xffff_ffff; 3],
        "rep movsd from MMIO did not fill RAM with all ones",
    )?;
    // A jump to beyond RAM: #GP(0) at that address, which gp_stub turns
    // back into the label after the jump (FAULT_SKIP is added to the
    // saved RIP, wrapping).
    let before = GP_COUNT.load(Ordering::SeqCst);
    // SAFETY: the fetch faults before anything runs there; gp_stub resumes
    // at label 2 with every register as it was.
    unsafe {
        asm!(
            "lea {back}, [rip + 2f]",
            "sub {back}, {target}",
            "mov [{skip}], {back}",
            "jmp {target}",
            "2:",
            back = out(reg) _,
            target = in(reg) BEYOND_RAM,
            skip = in(reg) FAULT_SKIP.as_ptr(),
        )
    };
    FAULT_SKIP.store(2, Ordering::SeqCst);
    ensure(
        GP_COUNT.load(Ordering::SeqCst) == before + 1,
        "a fetch from beyond RAM did not raise #GP",
    )
}

const APIC_BASE_MSR: u32 = 0x1b;
const APIC_PAGE: u64 = 0xfee0_0000;
const EN: u64 = 1 << 11;
const EXTD: u64 = 1 << 10;
const BSP: u64 = 1 << 8;

fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: a #GP lands in gp_stub, which skips this 2-byte instruction.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// WRMSR; whether it raised #GP.
fn wrmsr_faults(msr: u32, value: u64) -> bool {
    let before = GP_COUNT.load(Ordering::SeqCst);
    // SAFETY: as for `rdmsr`.
    unsafe { asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32) };
    GP_COUNT.load(Ordering::SeqCst) != before
}

fn apic_read(offset: u64) -> u32 {
    // SAFETY: the xAPIC page (or unbacked space outside xAPIC mode).
    unsafe { core::ptr::read_volatile((APIC_PAGE + offset) as *const u32) }
}

fn apic_write(offset: u64, value: u32) {
    // SAFETY: as for `apic_read`.
    unsafe { core::ptr::write_volatile((APIC_PAGE + offset) as *mut u32, value) }
}

/// Starts in x2APIC mode; x2APIC → xAPIC directly is #GP; disabled →
/// x2APIC is #GP; through disabled to xAPIC, the registers are the page
/// at 0xFEE00000 (version, ID, TPR, a self-IPI through the split ICR and
/// its EOI) and the x2APIC MSRs are #GP; back to x2APIC through disabled.
pub fn xapic_mmio() -> Result<(), &'static str> {
    let x2apic = APIC_PAGE | EN | EXTD | BSP;
    let xapic = APIC_PAGE | EN | BSP;
    let disabled = APIC_PAGE | BSP;
    ensure(
        rdmsr(APIC_BASE_MSR) == x2apic,
        "APIC_BASE not x2APIC at start",
    )?;
    ensure(
        wrmsr_faults(APIC_BASE_MSR, xapic),
        "x2APIC -> xAPIC did not #GP",
    )?;
    ensure(
        !wrmsr_faults(APIC_BASE_MSR, disabled),
        "x2APIC -> disabled refused",
    )?;
    ensure(
        wrmsr_faults(APIC_BASE_MSR, x2apic),
        "disabled -> x2APIC did not #GP",
    )?;
    ensure(
        wrmsr_faults(APIC_BASE_MSR, disabled | EXTD),
        "EXTD without EN did not #GP",
    )?;
    ensure(
        wrmsr_faults(APIC_BASE_MSR, 0xfed0_0000 | EN | BSP),
        "moving the xAPIC page did not #GP",
    )?;
    ensure(
        !wrmsr_faults(APIC_BASE_MSR, xapic),
        "disabled -> xAPIC refused",
    )?;
    ensure(rdmsr(APIC_BASE_MSR) == xapic, "APIC_BASE not xAPIC")?;
    let before = GP_COUNT.load(Ordering::SeqCst);
    let _ = rdmsr(0x803);
    ensure(
        GP_COUNT.load(Ordering::SeqCst) == before + 1,
        "x2APIC MSR readable in xAPIC mode",
    )?;
    ensure(
        apic_read(0x30) == 0x0005_0014,
        "xAPIC version register wrong",
    )?;
    ensure(apic_read(0x20) >> 24 == 0, "xAPIC ID not in bits 31:24")?;
    ensure(
        apic_read(0xe0) == 0xffff_ffff,
        "DFR not all ones after reset",
    )?;
    apic_write(0x80, 0x20);
    ensure(apic_read(0x80) == 0x20, "TPR did not read back")?;
    apic_write(0xf0, 0x1ff); // software-enable, spurious vector 0xff
                             // A fixed self-IPI of TEST_VECTOR: destination 0 (ours) in ICR2 31:24.
    let irqs = IRQ_COUNT.load(Ordering::SeqCst);
    let (index, bit) = (u64::from(TEST_VECTOR / 32), 1u32 << (TEST_VECTOR % 32));
    // SAFETY: TEST_VECTOR's handler only counts; interrupts stay off until STI.
    unsafe { asm!("cli") };
    apic_write(0x310, 0);
    apic_write(0x300, u32::from(TEST_VECTOR));
    ensure(apic_read(0x200 + 0x10 * index) & bit != 0, "IPI not in IRR")?;
    // SAFETY: as above; the NOPs open the window after STI's shadow.
    unsafe { asm!("sti; nop; nop; cli") };
    ensure(
        IRQ_COUNT.load(Ordering::SeqCst) == irqs + 1,
        "self-IPI through the xAPIC ICR not delivered",
    )?;
    ensure(
        apic_read(0x100 + 0x10 * index) & bit != 0,
        "vector not in ISR",
    )?;
    apic_write(0xb0, 0);
    ensure(
        apic_read(0x100 + 0x10 * index) & bit == 0,
        "EOI did not clear ISR",
    )?;
    ensure(
        !wrmsr_faults(APIC_BASE_MSR, disabled),
        "xAPIC -> disabled refused",
    )?;
    ensure(
        apic_read(0x30) == u32::MAX,
        "xAPIC page still answers with the APIC disabled",
    )?;
    ensure(
        !wrmsr_faults(APIC_BASE_MSR, xapic) && !wrmsr_faults(APIC_BASE_MSR, x2apic),
        "disabled -> xAPIC -> x2APIC refused",
    )?;
    ensure(rdmsr(0x803) == 0x0005_0014, "x2APIC version MSR wrong")?;
    ensure(
        rdmsr(APIC_BASE_MSR) == x2apic,
        "APIC_BASE not x2APIC at end",
    )
}

/// One instruction form with its memory operand at `[p]` and a register
/// operand `v`, run with RFLAGS `f`: the register and RFLAGS after.
type Form = fn(u64, u64, u64) -> (u64, u64);

macro_rules! forms {
    ($($name:ident: $insn:literal;)*) => {
        $(
            fn $name(p: u64, v: u64, f: u64) -> (u64, u64) {
                let (mut v, mut f) = (v, f);
                // SAFETY: one access at `p` (a RAM buffer of this check's
                // or unbacked space), RFLAGS set from `f` and read back.
                unsafe {
                    asm!(
                        "push {f}",
                        "popfq",
                        $insn,
                        // Names `v` for the forms with an immediate.
                        "/* {v} */",
                        "pushfq",
                        "pop {f}",
                        p = in(reg) p,
                        v = inout(reg) v,
                        f = inout(reg) f,
                    )
                };
                (v, f)
            }
        )*
    };
}

forms! {
    load8: "mov {v:l}, byte ptr [{p}]";
    load16: "mov {v:x}, word ptr [{p}]";
    load32: "mov {v:e}, dword ptr [{p}]";
    load64: "mov {v}, qword ptr [{p}]";
    movzx8: "movzx {v:e}, byte ptr [{p}]";
    movsx16: "movsx {v}, word ptr [{p}]";
    movsxd: "movsxd {v}, dword ptr [{p}]";
    add8: "add byte ptr [{p}], {v:l}";
    adc16: "adc word ptr [{p}], {v:x}";
    sub32: "sub dword ptr [{p}], {v:e}";
    sbb64: "sbb qword ptr [{p}], {v}";
    and32: "and dword ptr [{p}], {v:e}";
    or16: "or word ptr [{p}], {v:x}";
    xor64: "xor qword ptr [{p}], {v}";
    cmp_mr: "cmp dword ptr [{p}], {v:e}";
    cmp_rm: "cmp {v}, qword ptr [{p}]";
    test8: "test byte ptr [{p}], {v:l}";
    add_rm: "add {v:e}, dword ptr [{p}]";
    sub_rm: "sub {v:x}, word ptr [{p}]";
    or_imm: "or dword ptr [{p}], 0x40";
    and_imm: "and qword ptr [{p}], -3";
    add_imm8: "add word ptr [{p}], 1";
    inc32: "inc dword ptr [{p}]";
    dec8: "dec byte ptr [{p}]";
    neg64: "neg qword ptr [{p}]";
    not16: "not word ptr [{p}]";
    bt_imm: "bt dword ptr [{p}], 13";
    xchg32: "xchg dword ptr [{p}], {v:e}";
    store32: "mov dword ptr [{p}], {v:e}";
}

/// The forms, and the RFLAGS bits each must leave as the CPU does (AF
/// and, for BT, all but CF are undefined: left out).
const FORMS: [(Form, u64); 29] = {
    const ARITH: u64 = RFLAGS_CF | (1 << 2) | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF;
    [
        (load8, ARITH),
        (load16, ARITH),
        (load32, ARITH),
        (load64, ARITH),
        (movzx8, ARITH),
        (movsx16, ARITH),
        (movsxd, ARITH),
        (add8, ARITH),
        (adc16, ARITH),
        (sub32, ARITH),
        (sbb64, ARITH),
        (and32, ARITH),
        (or16, ARITH),
        (xor64, ARITH),
        (cmp_mr, ARITH),
        (cmp_rm, ARITH),
        (test8, ARITH),
        (add_rm, ARITH),
        (sub_rm, ARITH),
        (or_imm, ARITH),
        (and_imm, ARITH),
        (add_imm8, ARITH),
        (inc32, ARITH),
        (dec8, ARITH),
        (neg64, ARITH),
        (not16, ARITH),
        (bt_imm, RFLAGS_CF),
        (xchg32, ARITH),
        (store32, ARITH),
    ]
};

/// Every instruction form with every edge operand, then random forms and
/// operands, with random flags and offsets in unbacked space
/// (page-straddling ones included), each run twice: natively on a RAM
/// buffer of all ones, and on unbacked space, where the hypervisor
/// emulates it. The register and the defined flags must agree, and the
/// unbacked bytes must still read all ones after it. A fixed seed, so a
/// failure replays.
pub fn mmio_random() -> Result<(), &'static str> {
    const ROUNDS: u64 = 200;
    const EDGES: [u64; 12] = [
        0,
        1,
        u64::MAX,
        0x7f,
        0x80,
        0x7fff,
        0x8000,
        0x7fff_ffff,
        0x8000_0000,
        0x7fff_ffff_ffff_ffff,
        0x8000_0000_0000_0000,
        0x0f,
    ];
    let mut rng = crate::fuzz::Rng::new(0x6d6d_696f);
    let status = RFLAGS_CF | (1 << 2) | (1 << 4) | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF;
    let rflags: u64;
    // SAFETY: reads RFLAGS.
    unsafe { asm!("pushfq", "pop {}", out(reg) rflags) };
    let mut ram = [0xffu8; 32];
    // Every form with every edge value, then random ones.
    let rounds = FORMS.len() as u64 * EDGES.len() as u64 + ROUNDS;
    for round in 0..rounds {
        let systematic = round < FORMS.len() as u64 * EDGES.len() as u64;
        let (form, defined) = if systematic {
            FORMS[(round / EDGES.len() as u64) as usize]
        } else {
            rng.pick(&FORMS)
        };
        let v = if systematic {
            EDGES[(round % EDGES.len() as u64) as usize]
        } else {
            rng.edgy()
        };
        // DF clear; IF and the rest as they are.
        let f = (rflags & !status & !(1 << 10)) | (rng.next() & status);
        // An offset anywhere in the HPET page, or across its end.
        let offset = if rng.one_in(4) {
            0x1000 - rng.range(1, 7)
        } else {
            rng.below(0x1000 - 8)
        };
        ram.fill(0xff);
        let native = form(ram.as_mut_ptr() as u64 + 8, v, f);
        let emulated = form(HPET + offset, v, f);
        if native.0 != emulated.0 {
            crate::println!(
                "mmio-random: offset {offset:#x} v {v:#x}: register {:#x} natively, {:#x} emulated",
                native.0,
                emulated.0
            );
            return Err("an emulated form left another register value than the CPU");
        }
        if native.1 & defined != emulated.1 & defined {
            crate::println!(
                "mmio-random: offset {offset:#x} v {v:#x} flags in {f:#x}: {:#x} natively, {:#x} emulated",
                native.1,
                emulated.1
            );
            return Err("an emulated form left other flags than the CPU");
        }
        // SAFETY: unbacked space, identity-mapped by entry.S.
        let back = unsafe { core::ptr::read_volatile((HPET + (offset & !7)) as *const u64) };
        ensure(back == u64::MAX, "unbacked space kept a write")?;
    }
    Ok(())
}
