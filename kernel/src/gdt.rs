//! The hypervisor's GDT and TSS. VMX host state needs a valid TR (SDM Vol. 3C 27.2.3).

use core::arch::asm;
use spin::Once;
use x86::bits64::task::TaskStateSegment;

pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
pub const TSS_SELECTOR: u16 = 0x18;
/// The IST slot (1-based, as in the IDT gate) of the double-fault stack.
pub const DOUBLE_FAULT_IST: u8 = 1;

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<[u64; 5]> = Once::new();

extern "C" {
    static __ist_top: u8;
}

/// A 64-bit available-TSS descriptor, 16 bytes (SDM Vol. 3A 8.2.3, figure 8-4).
fn tss_descriptor(base: u64, limit: u64) -> [u64; 2] {
    let low = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x89 << 40) // present, DPL 0, type 9 = available 64-bit TSS
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    [low, base >> 32]
}

#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        // SAFETY: only the address of the linker-script symbol is taken.
        let ist_top = core::ptr::addr_of!(__ist_top) as u64;
        tss.set_ist(usize::from(DOUBLE_FAULT_IST - 1), ist_top);
        tss
    });
    let gdt = GDT.call_once(|| {
        let base = tss as *const TaskStateSegment as u64;
        let [tss_low, tss_high] =
            tss_descriptor(base, core::mem::size_of::<TaskStateSegment>() as u64 - 1);
        [
            0,
            0x00af_9a00_0000_ffff, // 64-bit code, DPL 0
            0x00cf_9200_0000_ffff, // data, DPL 0
            tss_low,
            tss_high,
        ]
    });
    let pointer = Pointer {
        limit: (core::mem::size_of_val(gdt) - 1) as u16,
        base: gdt.as_ptr() as u64,
    };
    // SAFETY: the GDT is static and its code and data descriptors match the
    // segments in use; CS is reloaded by a far return, then TR is loaded.
    unsafe {
        asm!(
            "lgdt [{ptr}]",
            "mov ds, {ds:e}",
            "mov es, {ds:e}",
            "mov ss, {ds:e}",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "ltr {tr:x}",
            ptr = in(reg) &pointer,
            ds = in(reg) u32::from(KERNEL_DS),
            cs = in(reg) u64::from(KERNEL_CS),
            tr = in(reg) TSS_SELECTOR,
            tmp = lateout(reg) _,
        );
    }
}
