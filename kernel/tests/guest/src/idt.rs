//! The guest's IDT: #GP counted and skipped, vector 0xF3 counted, anything else reported as unexpected.

use core::arch::asm;
use core::sync::atomic::AtomicU64;

/// Interrupt vector the checks ask the hypervisor to raise (Linux's Xen callback vector).
pub const TEST_VECTOR: u8 = 0xf3;

#[no_mangle]
pub static GP_COUNT: AtomicU64 = AtomicU64::new(0);
#[no_mangle]
pub static IRQ_COUNT: AtomicU64 = AtomicU64::new(0);

extern "C" {
    fn gp_stub();
    fn irq_stub();
    fn unexpected_stub();
}

#[derive(Clone, Copy)]
#[repr(C)]
struct Gate([u64; 2]);

fn gate(handler: unsafe extern "C" fn()) -> Gate {
    let h = handler as usize as u64;
    // 64-bit interrupt gate, present, DPL 0, selector 0x08 (Intel SDM Vol. 3A 6.14.1).
    let low = (h & 0xffff) | (0x08 << 16) | (0x8e00 << 32) | ((h >> 16) & 0xffff) << 48;
    Gate([low, h >> 32])
}

static mut IDT: [Gate; 256] = [Gate([0, 0]); 256];

pub fn init() {
    // SAFETY: single-threaded start of the guest; the IDT is only written here.
    unsafe {
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        for entry in idt.iter_mut() {
            *entry = gate(unexpected_stub);
        }
        idt[13] = gate(gp_stub);
        idt[usize::from(TEST_VECTOR)] = gate(irq_stub);
        let pointer: [u64; 2] = [
            (256 * 16 - 1) | ((idt.as_ptr() as u64) << 16),
            (idt.as_ptr() as u64) >> 48,
        ];
        asm!("lidt [{}]", in(reg) pointer.as_ptr().cast::<u8>().add(0));
    }
}
