//! The host state a VM exit returns to, read from the running CPU (SDM Vol. 3C 25.5, 28.5).

use crate::controls::msr;
use core::arch::asm;
use x86::msr::rdmsr;

/// A GDTR or IDTR image, as SGDT/SIDT store it (SDM Vol. 3A 3.5.1).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, packed)]
pub struct TablePointer {
    pub limit: u16,
    pub base: u64,
}

static_assertions::assert_eq_size!(TablePointer, [u8; 10]);

/// The host's GDTR and IDTR. A VM exit sets both limits to FFFFh (SDM Vol.
/// 3C 28.5.2), so they are saved before each entry and restored after.
#[derive(Clone, Copy, Debug, Default)]
pub struct DescriptorTables {
    gdtr: TablePointer,
    idtr: TablePointer,
}

impl DescriptorTables {
    pub fn save() -> DescriptorTables {
        let mut t = DescriptorTables::default();
        // SAFETY: SGDT and SIDT only store the registers into the two images.
        unsafe {
            asm!("sgdt [{}]", "sidt [{}]", in(reg) &mut t.gdtr, in(reg) &mut t.idtr, options(nostack));
        }
        t
    }

    /// # Safety
    /// `self` must come from [`DescriptorTables::save`] on this CPU, with the
    /// tables it names still in place.
    pub unsafe fn restore(&self) {
        // SAFETY: per the caller's contract, the same tables as before the entry.
        unsafe {
            asm!("lgdt [{}]", "lidt [{}]", in(reg) &self.gdtr, in(reg) &self.idtr, options(nostack, readonly));
        }
    }
}

/// The base address in a 16-byte system-segment descriptor, such as a
/// 64-bit TSS (SDM Vol. 3A 8.2.3, figure 8-4).
pub const fn system_descriptor_base(low: u64, high: u64) -> u64 {
    ((low >> 16) & 0xff_ffff) | (((low >> 56) & 0xff) << 24) | ((high & 0xffff_ffff) << 32)
}

/// Everything the host-state area holds except RSP and RIP, which the entry
/// code sets (SDM Vol. 3C 25.5).
#[derive(Clone, Copy, Debug, Default)]
pub struct HostState {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cs: u16,
    pub ss: u16,
    pub ds: u16,
    pub es: u16,
    pub fs: u16,
    pub gs: u16,
    pub tr: u16,
    pub fs_base: u64,
    pub gs_base: u64,
    pub tr_base: u64,
    pub gdtr_base: u64,
    pub idtr_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub efer: u64,
    pub pat: u64,
}

fn selectors() -> [u16; 7] {
    let (cs, ss, ds, es, fs, gs, tr): (u16, u16, u16, u16, u16, u16, u16);
    // SAFETY: reading segment registers and TR has no side effects.
    unsafe {
        asm!(
            "mov {0:x}, cs", "mov {1:x}, ss", "mov {2:x}, ds", "mov {3:x}, es",
            "mov {4:x}, fs", "mov {5:x}, gs", "str {6:x}",
            out(reg) cs, out(reg) ss, out(reg) ds, out(reg) es, out(reg) fs, out(reg) gs, out(reg) tr,
            options(nomem, nostack, preserves_flags),
        );
    }
    [cs, ss, ds, es, fs, gs, tr]
}

fn control_registers() -> [u64; 3] {
    let (cr0, cr3, cr4): (u64, u64, u64);
    // SAFETY: reading control registers has no side effects at CPL 0.
    unsafe {
        asm!("mov {}, cr0", "mov {}, cr3", "mov {}, cr4", out(reg) cr0, out(reg) cr3, out(reg) cr4, options(nomem, nostack, preserves_flags));
    }
    [cr0, cr3, cr4]
}

impl HostState {
    /// The running CPU's state, to come back to after every exit.
    ///
    /// # Safety
    /// CPL 0, 64-bit mode, with TR loaded from the current GDT and physical
    /// memory identity-mapped (the GDT is read through its base address).
    pub unsafe fn read() -> HostState {
        let [cs, ss, ds, es, fs, gs, tr] = selectors();
        let [cr0, cr3, cr4] = control_registers();
        let tables = DescriptorTables::save();
        let gdt = tables.gdtr.base as *const u64;
        // SAFETY: TR selects a 16-byte TSS descriptor in the GDT (the
        // caller's contract), which is mapped at its base address.
        let tr_base = unsafe {
            let index = usize::from(tr >> 3);
            system_descriptor_base(gdt.add(index).read(), gdt.add(index + 1).read())
        };
        // SAFETY: architectural MSRs of every 64-bit CPU (SDM Vol. 4 table 2-2).
        let [fs_base, gs_base, sysenter_cs, sysenter_esp, sysenter_eip, efer, pat] = unsafe {
            [
                rdmsr(msr::IA32_FS_BASE),
                rdmsr(msr::IA32_GS_BASE),
                rdmsr(msr::IA32_SYSENTER_CS),
                rdmsr(msr::IA32_SYSENTER_ESP),
                rdmsr(msr::IA32_SYSENTER_EIP),
                rdmsr(msr::IA32_EFER),
                rdmsr(msr::IA32_PAT),
            ]
        };
        HostState {
            cr0,
            cr3,
            cr4,
            cs,
            ss,
            ds,
            es,
            fs,
            gs,
            tr,
            fs_base,
            gs_base,
            tr_base,
            gdtr_base: tables.gdtr.base,
            idtr_base: tables.idtr.base,
            sysenter_cs,
            sysenter_esp,
            sysenter_eip,
            efer,
            pat,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's TSS descriptor encoding (kernel/src/gdt.rs), for a round trip.
    fn tss_descriptor(base: u64, limit: u64) -> [u64; 2] {
        let low = (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (0x89 << 40)
            | (((limit >> 16) & 0xf) << 48)
            | (((base >> 24) & 0xff) << 56);
        [low, base >> 32]
    }

    #[test]
    fn tss_base_round_trip() {
        for base in [0, 0x20_5000, 0xdead_beef, 0xffff_8000_1234_5678] {
            let [low, high] = tss_descriptor(base, 0x67);
            assert_eq!(system_descriptor_base(low, high), base);
        }
    }
}
