//! The VMCB: control area and state-save area, laid out as AMD APM Vol. 2 appendix B, tables B-1 and B-2.

use core::mem::offset_of;
use static_assertions::{assert_eq_size, const_assert_eq};

/// A segment register in the state-save area. `attrib` packs descriptor
/// bits 40-47 (type, S, DPL, P) into bits 0-7 and bits 52-55 (AVL, L, D/B, G)
/// into bits 8-11 (APM 15.5.1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Segment {
    pub selector: u16,
    pub attrib: u16,
    pub limit: u32,
    pub base: u64,
}

#[repr(C)]
pub struct Control {
    pub intercept_cr: u32,
    pub intercept_dr: u32,
    pub intercept_exceptions: u32,
    pub intercept_misc1: u32,
    pub intercept_misc2: u32,
    pub intercept_misc3: u32,
    _reserved0: [u8; 0x3c - 0x18],
    pub pause_filter_threshold: u16,
    pub pause_filter_count: u16,
    pub iopm_base_pa: u64,
    pub msrpm_base_pa: u64,
    pub tsc_offset: u64,
    pub asid: u32,
    pub tlb_control: u8,
    _reserved1: [u8; 3],
    /// V_TPR, V_IRQ (bit 8), V_INTR_PRIO, V_IGN_TPR (bit 20), V_INTR_MASKING (bit 24), V_INTR_VECTOR (39:32).
    pub int_control: u64,
    /// Bit 0: the guest is in an interrupt shadow.
    pub int_state: u64,
    pub exit_code: u64,
    pub exit_info1: u64,
    pub exit_info2: u64,
    pub exit_int_info: u64,
    /// Bit 0: nested paging enable.
    pub np_control: u64,
    pub avic_apic_bar: u64,
    pub ghcb_pa: u64,
    pub event_inj: u64,
    pub n_cr3: u64,
    pub virt_ext: u64,
    pub clean_bits: u32,
    _reserved2: u32,
    pub next_rip: u64,
    pub insn_len: u8,
    pub insn_bytes: [u8; 15],
    _reserved3: [u8; 0x400 - 0xe0],
}

#[repr(C)]
pub struct StateSave {
    pub es: Segment,
    pub cs: Segment,
    pub ss: Segment,
    pub ds: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub gdtr: Segment,
    pub ldtr: Segment,
    pub idtr: Segment,
    pub tr: Segment,
    _reserved0: [u8; 0xcb - 0xa0],
    pub cpl: u8,
    _reserved1: u32,
    pub efer: u64,
    _reserved2: [u8; 0x148 - 0xd8],
    pub cr4: u64,
    pub cr3: u64,
    pub cr0: u64,
    pub dr7: u64,
    pub dr6: u64,
    pub rflags: u64,
    pub rip: u64,
    _reserved3: [u8; 0x1d8 - 0x180],
    pub rsp: u64,
    pub s_cet: u64,
    pub ssp: u64,
    pub isst_addr: u64,
    pub rax: u64,
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub cr2: u64,
    _reserved4: [u8; 0x268 - 0x248],
    pub g_pat: u64,
    _reserved5: [u8; 0xc00 - 0x270],
}

/// One 4 KiB VMCB, page-aligned as VMRUN requires (APM 15.5.1).
#[repr(C, align(4096))]
pub struct Vmcb {
    pub control: Control,
    pub state: StateSave,
}

assert_eq_size!(Vmcb, [u8; 4096]);
assert_eq_size!(Segment, [u8; 16]);
// Table B-1, control area.
const_assert_eq!(offset_of!(Control, intercept_misc1), 0x00c);
const_assert_eq!(offset_of!(Control, intercept_misc2), 0x010);
const_assert_eq!(offset_of!(Control, pause_filter_threshold), 0x03c);
const_assert_eq!(offset_of!(Control, iopm_base_pa), 0x040);
const_assert_eq!(offset_of!(Control, msrpm_base_pa), 0x048);
const_assert_eq!(offset_of!(Control, tsc_offset), 0x050);
const_assert_eq!(offset_of!(Control, asid), 0x058);
const_assert_eq!(offset_of!(Control, tlb_control), 0x05c);
const_assert_eq!(offset_of!(Control, int_control), 0x060);
const_assert_eq!(offset_of!(Control, int_state), 0x068);
const_assert_eq!(offset_of!(Control, exit_code), 0x070);
const_assert_eq!(offset_of!(Control, exit_info1), 0x078);
const_assert_eq!(offset_of!(Control, exit_info2), 0x080);
const_assert_eq!(offset_of!(Control, exit_int_info), 0x088);
const_assert_eq!(offset_of!(Control, np_control), 0x090);
const_assert_eq!(offset_of!(Control, event_inj), 0x0a8);
const_assert_eq!(offset_of!(Control, n_cr3), 0x0b0);
const_assert_eq!(offset_of!(Control, clean_bits), 0x0c0);
const_assert_eq!(offset_of!(Control, next_rip), 0x0c8);
const_assert_eq!(offset_of!(Control, insn_len), 0x0d0);
const_assert_eq!(core::mem::size_of::<Control>(), 0x400);
// Table B-2, state-save area (offsets from 0x400).
const_assert_eq!(offset_of!(StateSave, cs), 0x010);
const_assert_eq!(offset_of!(StateSave, tr), 0x090);
const_assert_eq!(offset_of!(StateSave, cpl), 0x0cb);
const_assert_eq!(offset_of!(StateSave, efer), 0x0d0);
const_assert_eq!(offset_of!(StateSave, cr4), 0x148);
const_assert_eq!(offset_of!(StateSave, cr0), 0x158);
const_assert_eq!(offset_of!(StateSave, rflags), 0x170);
const_assert_eq!(offset_of!(StateSave, rip), 0x178);
const_assert_eq!(offset_of!(StateSave, rsp), 0x1d8);
const_assert_eq!(offset_of!(StateSave, rax), 0x1f8);
const_assert_eq!(offset_of!(StateSave, star), 0x200);
const_assert_eq!(offset_of!(StateSave, cr2), 0x240);
const_assert_eq!(offset_of!(StateSave, g_pat), 0x268);
const_assert_eq!(offset_of!(Vmcb, state), 0x400);

// Intercept bits, APM table B-1.
/// Word 3 (offset 0x00c).
pub mod misc1 {
    pub const INTR: u32 = 1 << 0;
    pub const NMI: u32 = 1 << 1;
    pub const INIT: u32 = 1 << 3;
    pub const VINTR: u32 = 1 << 4;
    pub const CPUID: u32 = 1 << 18;
    pub const INVD: u32 = 1 << 22;
    pub const HLT: u32 = 1 << 24;
    pub const INVLPGA: u32 = 1 << 26;
    pub const IOIO_PROT: u32 = 1 << 27;
    pub const MSR_PROT: u32 = 1 << 28;
    pub const SHUTDOWN: u32 = 1 << 31;
}
/// Word 4 (offset 0x010).
pub mod misc2 {
    pub const VMRUN: u32 = 1 << 0;
    pub const VMMCALL: u32 = 1 << 1;
    pub const VMLOAD: u32 = 1 << 2;
    pub const VMSAVE: u32 = 1 << 3;
    pub const STGI: u32 = 1 << 4;
    pub const CLGI: u32 = 1 << 5;
    pub const SKINIT: u32 = 1 << 6;
    pub const WBINVD: u32 = 1 << 9;
    pub const MONITOR: u32 = 1 << 10;
    pub const MWAIT: u32 = 1 << 11;
    pub const MWAIT_CONDITIONAL: u32 = 1 << 12;
}

/// `int_control` bits (APM 15.21.1, table B-1 offset 0x060).
pub const V_IRQ: u64 = 1 << 8;
pub const V_IGN_TPR: u64 = 1 << 20;
pub const V_INTR_MASKING: u64 = 1 << 24;
/// `tlb_control` values (APM 15.16.1).
pub const TLB_FLUSH_GUEST: u8 = 3;
