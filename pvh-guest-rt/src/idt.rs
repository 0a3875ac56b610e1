//! The guest's IDT: 64-bit interrupt gates to the stubs a guest claims, every other vector to the fault stub.

/// One 16-byte gate descriptor.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Gate([u64; 2]);

/// A present 64-bit interrupt gate, DPL 0, code selector 0x08 (entry.S's
/// GDT) to `handler` (Intel SDM Vol. 3A 6.14.1, figure 6-8).
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn gate(handler: u64) -> Gate {
    let low = (handler & 0xffff) | (0x08 << 16) | (0x8e00 << 32) | ((handler >> 16) & 0xffff) << 48;
    Gate([low, handler >> 32])
}

#[cfg(target_os = "none")]
static mut IDT: [Gate; 256] = [Gate([0, 0]); 256];

#[cfg(target_os = "none")]
extern "C" {
    fn pvh_rt_fault_stub();
}

/// Loads the IDT: each `(vector, stub)` of `claimed` to its stub, every
/// other vector to `pvh_rt_fault`. Called once, at the start of day,
/// before interrupts are enabled.
#[cfg(target_os = "none")]
pub fn install(claimed: &[(u8, unsafe extern "C" fn())]) {
    // SAFETY: single-threaded start of the guest; the IDT is written only
    // here, before any vector can be raised through it.
    unsafe {
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        for entry in idt.iter_mut() {
            *entry = gate(pvh_rt_fault_stub as unsafe extern "C" fn() as usize as u64);
        }
        for &(vector, stub) in claimed {
            idt[usize::from(vector)] = gate(stub as usize as u64);
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
        let g = gate(0x1234_5678_9abc_def0);
        // Offset 15:0, selector, type 0xE with P set, offset 31:16, offset 63:32.
        assert_eq!(g.0[0] & 0xffff, 0xdef0);
        assert_eq!((g.0[0] >> 16) & 0xffff, 0x08);
        assert_eq!((g.0[0] >> 32) & 0xffff, 0x8e00);
        assert_eq!(g.0[0] >> 48, 0x9abc);
        assert_eq!(g.0[1], 0x1234_5678);
    }
}
