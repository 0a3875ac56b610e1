//! The interface between the arch-neutral core and a virtualization backend.

use crate::{AddressSpace, Event, Exit, Gpr, Paging, Segment, VirtCaps};
use alloc::boxed::Box;

/// Zeroed, page-aligned host memory for control structures (VMCS, VMCB,
/// bitmaps). The hypervisor identity-maps physical memory, so one address
/// serves both as the pointer and as the physical address given to hardware.
pub trait FrameAlloc {
    /// `count` contiguous zeroed 4 KiB frames; returns their physical address.
    fn alloc_zeroed(&mut self, count: usize) -> Option<u64>;
    /// Returns `count` frames from `alloc_zeroed` at `phys`.
    fn free(&mut self, phys: u64, count: usize);
}

/// Reads the bytes of the instruction at the guest's CS:RIP, for backends
/// that must decode it (SVM without NRIPS). Implemented by the core, which
/// owns the guest page-table walk.
pub trait GuestCode {
    /// Fills `buf` from guest-virtual `rip`; false if not readable.
    fn fetch(&self, paging: &Paging, rip: u64, buf: &mut [u8]) -> bool;
}

/// What a backend needs to create a vCPU for a domain.
#[derive(Clone, Copy, Debug)]
pub struct VcpuConfig {
    /// Physical address of the domain's second-level PML4 (EPT or NPT format,
    /// built by the `ept` crate in the backend's format).
    pub second_level_root: u64,
    /// The domain's tag (VPID or ASID), non-zero and unique among live domains.
    pub tag: u16,
    /// Ports the guest may access directly; every other port exits.
    pub passthrough_ports: &'static [u16],
    /// MSRs the guest reads and writes directly (both directions); every
    /// other MSR exits. Only MSRs whose guest value the hardware switches,
    /// or that the hypervisor itself never uses, belong here.
    pub passthrough_msrs: &'static [u32],
    /// The CR4 bits the guest may set: those its CPUID offers (the core's
    /// `cr4_policy`). VMX owns every other bit through the CR4 guest/host
    /// mask, so that setting one exits (`Exit::Cr4Write`) instead of
    /// reaching the hardware; SVM intercepts every CR4 write.
    pub cr4_valid: u64,
}

/// The register state a vCPU starts in.
#[derive(Clone, Copy, Debug, Default)]
pub struct InitialState {
    pub gprs: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    /// Protected mode flat 32-bit (PVH entry) when false; 64-bit long mode when true.
    pub long_mode: bool,
    pub paging: Paging,
}

/// One virtual CPU. Everything vendor-specific stays behind this trait.
pub trait Vcpu {
    /// Enters the guest and returns at the next exit the core must handle.
    fn run(&mut self) -> Exit;

    fn gpr(&self, reg: Gpr) -> u64;
    fn set_gpr(&mut self, reg: Gpr, value: u64);
    fn rip(&self) -> u64;
    fn set_rip(&mut self, rip: u64);
    fn paging(&self) -> Paging;
    /// Sets the guest's EFER as a WRMSR would. The core intercepts EFER on
    /// every backend (SVM must keep EFER.SVME set underneath the guest, APM
    /// 15.5.1; VMX must keep the "IA-32e mode guest" entry control in step).
    fn set_efer(&mut self, value: u64);
    /// The source operand of the MOV to CR4 that caused the last exit
    /// (`Exit::Cr4Write`). Backends that cannot learn the register from
    /// hardware read the instruction through `code`.
    fn cr4_write_value(&self, code: &dyn GuestCode) -> Result<u64, &'static str>;
    /// Loads the guest's CR4 with a value the core checked; the guest reads
    /// back exactly this value. Flushes the guest's TLB where the change
    /// requires it (Intel SDM Vol. 3A 4.10.4.1; AMD APM Vol. 2 5.5.2).
    /// False, with nothing changed, if the write must raise #GP after all:
    /// on VMX, entering or changing PAE paging loads the PDPTEs, and a
    /// present one with reserved bits faults the MOV (SDM Vol. 3A 4.4.1).
    fn set_cr4(&mut self, value: u64) -> bool;
    /// The current privilege level (hypercalls from CPL > 0 get -EPERM).
    fn cpl(&self) -> u8;
    /// Whether the vCPU runs 64-bit code: EFER.LMA and CS.L (Intel SDM Vol.
    /// 3A 5.2.1). A 64-bit kernel's compatibility-mode code has LMA but not L.
    fn in_64bit_mode(&self) -> bool;
    /// The default operand and address size of the code running, 16, 32 or
    /// 64: 64 in 64-bit mode (EFER.LMA and CS.L), else 32 with CS.D set and
    /// 16 without (Intel SDM Vol. 3A 3.4.5, 5.2.1; real mode reads CS.D 0).
    fn code_bits(&self) -> u32;
    /// The base of a segment register's hidden part (64-bit mode ignores
    /// it except for FS and GS; the caller applies that rule).
    fn segment_base(&self, seg: Segment) -> u64;
    fn rflags(&self) -> u64;
    /// Sets RFLAGS; bit 1 stays set as the architecture requires.
    fn set_rflags(&mut self, value: u64);
    /// Completes an instruction the core emulated, `len` bytes long: RIP
    /// moves past it (wrapping as the mode does) and any STI/MOV SS shadow
    /// ends, as after a skipped instruction.
    fn complete_emulated(&mut self, len: u64);

    /// Moves RIP past the instruction that caused the last exit. Backends
    /// that cannot learn its length from hardware read it through `code`.
    /// Err if the instruction could not be read or is not the expected one.
    fn skip_instruction(&mut self, code: &dyn GuestCode) -> Result<(), &'static str>;

    /// Queues an event for the next entry.
    fn inject(&mut self, event: Event);
    /// Asks for an `Exit::InterruptWindow` as soon as the guest can take an interrupt.
    fn set_interrupt_window(&mut self, wanted: bool);
    /// RFLAGS.IF is set and no interrupt shadow (STI/MOV SS) blocks delivery.
    fn interruptible(&self) -> bool;
    /// Tells the hardware to drop cached second-level translations for this vCPU.
    fn flush_second_level(&mut self);
    /// The guest's IA32_SPEC_CTRL. The MSR is intercepted: the core checks
    /// each WRMSR against what the guest is offered (xenolith::spec_ctrl)
    /// and the backend loads the value around every entry
    /// (`EntryMitigations::host_spec_ctrl`).
    fn spec_ctrl(&self) -> u64;
    fn set_spec_ctrl(&mut self, value: u64);
    /// Frees the vCPU's control structures; it never runs again.
    fn destroy(self: Box<Self>, frames: &mut dyn FrameAlloc);
}

/// A virtualization extension, switched on for this CPU.
pub trait Backend {
    fn caps(&self) -> VirtCaps;
    /// An empty guest-physical address space in this backend's second-level format.
    fn new_address_space(
        &mut self,
        frames: &mut dyn FrameAlloc,
    ) -> Result<Box<dyn AddressSpace>, &'static str>;
    /// The bytes of this backend's hypercall instruction (VMCALL or VMMCALL),
    /// for the Xen hypercall page.
    fn hypercall_instruction(&self) -> [u8; 3];
    /// Creates a vCPU in `initial` state for a domain described by `config`.
    fn create_vcpu(
        &mut self,
        frames: &mut dyn FrameAlloc,
        config: &VcpuConfig,
        initial: &InitialState,
    ) -> Result<Box<dyn Vcpu>, &'static str>;
}
