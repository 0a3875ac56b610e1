//! The guest's IDT and TSS: 64-bit interrupt gates to the stubs a guest claims, every other vector to the fault stub on its own stack (IST 1).

/// One 16-byte gate descriptor.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Gate([u64; 2]);

/// The IST slot the fault stub's gates use: entry.S's fault stack.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const FAULT_IST: u64 = 1;

/// The TSS's selector in entry.S's GDT.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const TSS_SELECTOR: u16 = 0x18;

/// A present 64-bit interrupt gate, DPL 0, code selector 0x08 (entry.S's
/// GDT) to `handler`, on stack `ist` of the TSS (0: the current stack)
/// (Intel SDM Vol. 3A 6.14.1, figure 6-8).
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn gate(handler: u64, ist: u64) -> Gate {
    let low = (handler & 0xffff)
        | (0x08 << 16)
        | ((ist & 7) << 32)
        | (0x8e00 << 32)
        | ((handler >> 16) & 0xffff) << 48;
    Gate([low, handler >> 32])
}

/// The 64-bit TSS (SDM Vol. 3A 8.7, figure 8-11): only the IST matters
/// here; no I/O bitmap (its offset is past the limit).
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
#[repr(C, packed(4))]
struct Tss {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const TSS_BYTES: u64 = core::mem::size_of::<Tss>() as u64;

/// The 16-byte GDT descriptor of an available 64-bit TSS (type 9), present,
/// DPL 0, at `base` (SDM Vol. 3A 8.2.3, figure 8-4).
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn tss_descriptor(base: u64) -> [u64; 2] {
    let limit = TSS_BYTES - 1;
    let low = (limit & 0xffff)
        | (base & 0xff_ffff) << 16
        | 0x89 << 40
        | ((limit >> 16) & 0xf) << 48
        | ((base >> 24) & 0xff) << 56;
    [low, base >> 32]
}

#[cfg(target_os = "none")]
static mut IDT: [Gate; 256] = [Gate([0, 0]); 256];

#[cfg(target_os = "none")]
static mut TSS: Tss = Tss {
    reserved0: 0,
    rsp: [0; 3],
    reserved1: 0,
    ist: [0; 7],
    reserved2: 0,
    reserved3: 0,
    iomap_base: TSS_BYTES as u16,
};

#[cfg(target_os = "none")]
extern "C" {
    fn pvh_rt_fault_stub();
    static mut pvh_rt_gdt: [u64; 5];
    static pvh_rt_fault_stack_top: u8;
}

/// Loads the TSS and the IDT: each `(vector, stub)` of `claimed` to its
/// stub on the current stack, every other vector to `pvh_rt_fault` on the
/// fault stack, so that a stack overflow's page fault (entry.S's guard
/// pages) has a stack to be delivered on. Called at the start of day,
/// before interrupts are enabled.
#[cfg(target_os = "none")]
pub fn install(claimed: &[(u8, unsafe extern "C" fn())]) {
    // SAFETY: single-threaded start of the guest; the TSS, the GDT's TSS
    // slot and the IDT are written only here, before any vector can be
    // raised through them. Writing the descriptor anew clears the busy
    // bit a previous LTR set, so LTR may run again.
    unsafe {
        let tss = &mut *core::ptr::addr_of_mut!(TSS);
        tss.ist[FAULT_IST as usize - 1] = core::ptr::addr_of!(pvh_rt_fault_stack_top) as u64;
        let gdt = &mut *core::ptr::addr_of_mut!(pvh_rt_gdt);
        let slot = usize::from(TSS_SELECTOR / 8);
        gdt[slot..slot + 2].copy_from_slice(&tss_descriptor(tss as *mut Tss as u64));
        core::arch::asm!("ltr {0:x}", in(reg) TSS_SELECTOR, options(nostack));
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        let fault = pvh_rt_fault_stub as unsafe extern "C" fn() as usize as u64;
        for entry in idt.iter_mut() {
            *entry = gate(fault, FAULT_IST);
        }
        for &(vector, stub) in claimed {
            idt[usize::from(vector)] = gate(stub as usize as u64, 0);
        }
        let pointer: [u64; 2] = [
            (256 * 16 - 1) | ((idt.as_ptr() as u64) << 16),
            (idt.as_ptr() as u64) >> 48,
        ];
        core::arch::asm!("lidt [{}]", in(reg) pointer.as_ptr().cast::<u8>());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_splits_the_handler_address() {
        let g = gate(0x1234_5678_9abc_def0, 0);
        // Offset 15:0, selector, type 0xE with P set, offset 31:16, offset 63:32.
        assert_eq!(g.0[0] & 0xffff, 0xdef0);
        assert_eq!((g.0[0] >> 16) & 0xffff, 0x08);
        assert_eq!((g.0[0] >> 32) & 0xffff, 0x8e00);
        assert_eq!(g.0[0] >> 48, 0x9abc);
        assert_eq!(g.0[1], 0x1234_5678);
        // The IST index is bits 34:32, under the type.
        assert_eq!((gate(0, FAULT_IST).0[0] >> 32) & 0xffff, 0x8e01);
    }

    #[test]
    fn the_tss_descriptor_splits_its_base() {
        assert_eq!(TSS_BYTES, 104);
        let d = tss_descriptor(0x1234_5678_9abc_def0);
        // Limit 15:0, base 23:0, type 9 with P set, limit 19:16, base 31:24, base 63:32.
        assert_eq!(d[0] & 0xffff, 103);
        assert_eq!((d[0] >> 16) & 0xff_ffff, 0xbc_def0);
        assert_eq!((d[0] >> 40) & 0xff, 0x89);
        assert_eq!((d[0] >> 48) & 0xf, 0);
        assert_eq!(d[0] >> 56, 0x9a);
        assert_eq!(d[1], 0x1234_5678);
    }
}
