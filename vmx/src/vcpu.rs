//! `VmxVcpu`: one VMCS, its bitmaps and the guest registers it does not hold, behind the `Vcpu` trait.

use crate::controls::{
    eptp, io_bitmap_pass, msr_bitmap_pass, primary, vm_entry, ControlSet, VmxMsrs, IO_BITMAPS_BYTES,
};
use crate::decode::{self, reason};
use crate::entry::{self, Gprs};
use crate::fields::{self, *};
use crate::guest::{self, EFER_LMA, RFLAGS_IF};
use crate::host::{DescriptorTables, HostState};
use crate::instr::{self, VmFail};
use crate::spec_ctrl::SpecCtrl;
use crate::syscall_msrs::SyscallMsrs;
use alloc::boxed::Box;
use alloc::vec::Vec;
use vcpu::{
    EntryMitigations, Event, Exit, FrameAlloc, Gpr, GuestCode, InitialState, Paging, Segment, Vcpu,
    VcpuConfig,
};

const PAGE_SIZE: usize = 4096;
/// Frames per vCPU: the VMCS, I/O bitmaps A and B, the MSR bitmap.
const CONTROL_FRAMES: usize = 4;

/// A virtual CPU on VT-x. It must run on the CPU whose backend created it:
/// a VMCS launched on one CPU needs a VMCLEAR before another may load it
/// (SDM Vol. 3C 25.1), and this backend does not migrate vCPUs.
pub struct VmxVcpu {
    gprs: Gprs,
    /// Physical address of the VMCS region.
    vmcs: u64,
    eptp: u64,
    vpid: u16,
    controls: ControlSet,
    /// The primary processor-based controls in the VMCS now.
    primary: u32,
    /// The VM-entry controls in the VMCS now.
    entry: u32,
    launched: bool,
    /// The basic reason of the last exit, while its instruction may be skipped.
    skippable: Option<u16>,
    /// IA32_VMX_CR0_FIXED0/1 and CR4_FIXED0/1, for emulated CR writes.
    cr_fixed: [u64; 4],
    /// The CR4 bits the host owns (crate::cr_access::cr4_host_owned).
    cr4_owned: u64,
    /// The pass-through syscall MSRs the VMCS does not switch.
    syscall_msrs: SyscallMsrs,
    /// Delivering a queued exception raised another one that cannot be
    /// delivered (a triple fault): the next `run` reports shutdown.
    triple_fault: bool,
    /// The guest's SPEC_CTRL and the entry mitigations (spec_ctrl.rs).
    spec_ctrl: SpecCtrl,
}

/// #DB and #AC always exit (XSA-156, CVE-2015-5307 and CVE-2015-8104): a
/// guest can make their delivery raise them again, forever, inside the CPU
/// with no exit; intercepted, each one is an exit, and the core reflects it.
const EXCEPTION_EXITS: u64 = (1 << 1) | (1 << 17);

/// #GP(0), for emulated instructions that fault.
const GP0: Event = Event::Exception {
    vector: 13,
    error_code: Some(0),
};

/// VMX reports instruction lengths, so skipping never reads guest code.
struct NoCode;

impl GuestCode for NoCode {
    fn fetch(&self, _: &vcpu::Paging, _: u64, _: &mut [u8]) -> bool {
        false
    }
}

/// `count` zeroed, page-aligned frames where the CPU can use them.
fn frames(alloc: &mut dyn FrameAlloc, count: usize, limit_4g: bool) -> Result<u64, &'static str> {
    let phys = alloc
        .alloc_zeroed(count)
        .ok_or("out of frames for VMX structures")?;
    let why = if phys & 0xfff != 0 {
        "frame allocator returned an unaligned frame"
    } else if limit_4g && phys + (count * PAGE_SIZE) as u64 > 1 << 32 {
        // IA32_VMX_BASIC bit 48 (SDM Vol. 3D A.1).
        "VMX structures must lie below 4 GiB on this CPU"
    } else {
        return Ok(phys);
    };
    alloc.free(phys, count);
    Err(why)
}

/// The bytes of a fresh run of frames.
///
/// # Safety
/// `phys` starts `N` bytes of frames the caller owns, identity-mapped.
unsafe fn bytes<'a, const N: usize>(phys: u64) -> &'a mut [u8; N] {
    // SAFETY: per the caller's contract.
    unsafe { &mut *(phys as *mut [u8; N]) }
}

fn write(field: u32, value: u64) -> Result<(), &'static str> {
    // SAFETY: only called with this vCPU's VMCS current (see `VmxVcpu::load`);
    // every value written is checked by the next VM entry, and the host-state
    // and address fields come from `VmxVcpu::new`.
    unsafe { instr::vmwrite(field, value) }.map_err(VmFail::name)
}

fn read(field: u32) -> Result<u64, &'static str> {
    // SAFETY: VMREAD of the current VMCS has no side effects.
    unsafe { instr::vmread(field) }.map_err(VmFail::name)
}

impl VmxVcpu {
    pub(crate) fn new(
        alloc: &mut dyn FrameAlloc,
        msrs: &VmxMsrs,
        controls: &ControlSet,
        mitigations: EntryMitigations,
        config: &VcpuConfig,
        initial: &InitialState,
    ) -> Result<VmxVcpu, &'static str> {
        if config.tag == 0 {
            // VPID 0 is the host's (SDM Vol. 3C 27.2.1.1).
            return Err("VPID 0 belongs to the host");
        }
        if config.second_level_root & 0xfff != 0 {
            return Err("EPT root is not page-aligned");
        }
        let cr4_owned =
            crate::cr_access::cr4_host_owned(config.cr4_valid, msrs.cr4_fixed0, msrs.cr4_fixed1);
        let guest_state = guest::initial_writes(initial, msrs, cr4_owned)?;
        // One run of frames: the VMCS, I/O bitmaps A and B, the MSR bitmap.
        let base = frames(alloc, CONTROL_FRAMES, msrs.addresses_32_bit())?;
        let (vmcs, io_bitmaps, msr_bitmap) = (base, base + 0x1000, base + 0x3000);
        // SAFETY: fresh frames, owned here, identity-mapped.
        unsafe {
            // The revision identifier heads the VMCS region; bit 31 clear
            // means an ordinary VMCS (SDM Vol. 3C 25.2).
            (vmcs as *mut u32).write(msrs.revision());
            let io = bytes::<IO_BITMAPS_BYTES>(io_bitmaps);
            io.fill(0xff);
            for &port in config.passthrough_ports {
                io_bitmap_pass(io, port);
            }
            // Every RDMSR and WRMSR exits but the pass-through ones (SDM Vol. 3C 25.6.9).
            let bitmap = bytes::<PAGE_SIZE>(msr_bitmap);
            bitmap.fill(0xff);
            for &msr in config.passthrough_msrs {
                msr_bitmap_pass(bitmap, msr)?;
            }
        }
        let vcpu = VmxVcpu {
            gprs: initial.gprs,
            vmcs,
            eptp: eptp(config.second_level_root),
            vpid: config.tag,
            controls: *controls,
            primary: controls.primary,
            entry: controls.entry,
            launched: false,
            skippable: None,
            cr_fixed: [
                msrs.cr0_fixed0,
                msrs.cr0_fixed1,
                msrs.cr4_fixed0,
                msrs.cr4_fixed1,
            ],
            cr4_owned,
            syscall_msrs: SyscallMsrs::default(),
            triple_fault: false,
            spec_ctrl: SpecCtrl::new(mitigations),
        };
        vcpu.setup(io_bitmaps, msr_bitmap, guest_state)
            .inspect_err(|_| {
                // SAFETY: VMX root operation; VMCLEAR makes sure the CPU
                // holds nothing of the VMCS before its frame is reused.
                let _ = unsafe { instr::vmclear(vmcs) };
                alloc.free(base, CONTROL_FRAMES);
            })
    }

    /// Fills in a fresh VMCS: controls, host state, guest state; then drops
    /// whatever an earlier user of this EPTP or VPID left in the TLBs.
    fn setup(
        mut self,
        io_bitmaps: u64,
        msr_bitmap: u64,
        guest_state: Vec<(u32, u64)>,
    ) -> Result<VmxVcpu, &'static str> {
        // SAFETY: VMX root operation (the backend exists); the region is ours.
        unsafe { instr::vmclear(self.vmcs) }.map_err(VmFail::name)?;
        self.load()?;
        // SAFETY: reading the host state of this CPU, in 64-bit ring 0 with
        // TR loaded and memory identity-mapped (the hypervisor's environment).
        let host = unsafe { HostState::read() };
        for (field, value) in self
            .control_writes(io_bitmaps, msr_bitmap)
            .into_iter()
            .chain(host_writes(&host)?)
            .chain(guest_state)
        {
            write(field, value)?;
        }
        self.entry = self.entry_controls()?;
        write(VM_ENTRY_CONTROLS, u64::from(self.entry))?;
        self.flush_second_level();
        let (kind, vpid) = if self.controls.invvpid_single {
            (instr::INVVPID_SINGLE_CONTEXT, self.vpid)
        } else {
            (instr::INVVPID_ALL_CONTEXT, 0)
        };
        // SAFETY: the type is supported (`controls::choose`).
        unsafe { instr::invvpid(kind, vpid) }.map_err(VmFail::name)?;
        Ok(self)
    }

    /// The VM-execution, VM-exit and VM-entry control fields (SDM Vol. 3C 25.6-25.8).
    fn control_writes(&self, io_bitmaps: u64, msr_bitmap: u64) -> [(u32, u64); 20] {
        let c = &self.controls;
        [
            (PIN_BASED_VM_EXECUTION_CONTROLS, u64::from(c.pin)),
            (
                PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS,
                u64::from(self.primary),
            ),
            (
                SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS,
                u64::from(c.secondary),
            ),
            (PRIMARY_VM_EXIT_CONTROLS, u64::from(c.exit)),
            (VM_ENTRY_CONTROLS, u64::from(self.entry)),
            // #PF follows the bitmap: mask = match = 0.
            (EXCEPTION_BITMAP, EXCEPTION_EXITS),
            (PAGE_FAULT_ERROR_CODE_MASK, 0),
            (PAGE_FAULT_ERROR_CODE_MATCH, 0),
            (CR3_TARGET_COUNT, 0),
            (VM_EXIT_MSR_STORE_COUNT, 0),
            (VM_EXIT_MSR_LOAD_COUNT, 0),
            (VM_ENTRY_MSR_LOAD_COUNT, 0),
            (VM_ENTRY_INTERRUPTION_INFORMATION, 0),
            (VM_ENTRY_EXCEPTION_ERROR_CODE, 0),
            (VM_ENTRY_INSTRUCTION_LENGTH, 0),
            (IO_BITMAP_A, io_bitmaps),
            (IO_BITMAP_B, io_bitmaps + PAGE_SIZE as u64),
            (MSR_BITMAP, msr_bitmap),
            (VIRTUAL_PROCESSOR_ID, u64::from(self.vpid)),
            (EPT_POINTER, self.eptp),
        ]
    }

    /// Makes this vCPU's VMCS the current one on this CPU.
    fn load(&self) -> Result<(), &'static str> {
        // SAFETY: VMX root operation holds while the backend exists; the
        // VMCS belongs to this vCPU and is not active on another CPU.
        unsafe {
            if instr::vmptrst() != self.vmcs {
                instr::vmptrld(self.vmcs).map_err(VmFail::name)?;
            }
        }
        Ok(())
    }

    /// Reads a field for a trait method that cannot fail: a failure here is
    /// a bug in this backend (an unsupported field or a lost VMCS).
    fn get(&self, field: u32) -> u64 {
        match self.load().and_then(|()| read(field)) {
            Ok(v) => v,
            Err(e) => panic!("VMREAD of {} failed: {}", fields::name(field), e),
        }
    }

    fn set(&self, field: u32, value: u64) {
        if let Err(e) = self.load().and_then(|()| write(field, value)) {
            panic!("VMWRITE of {} failed: {}", fields::name(field), e);
        }
    }

    /// The entry controls with "IA-32e mode guest" equal to the guest's
    /// EFER.LMA, which the guest sets itself when it turns on paging with
    /// EFER.LME (SDM Vol. 3C 27.3.1.1 requires them equal).
    fn entry_controls(&self) -> Result<u32, &'static str> {
        let lma = read(GUEST_IA32_EFER)? & EFER_LMA != 0;
        let ia32e = vm_entry::IA32E_MODE_GUEST.mask();
        Ok(if lma {
            self.controls.entry | ia32e
        } else {
            self.controls.entry & !ia32e
        })
    }

    /// Enters the guest once; `Err` names why the entry failed.
    fn enter(&mut self) -> Result<(), &'static str> {
        self.load()?;
        self.syscall_msrs.switch_to();
        let entry = self.entry_controls()?;
        if entry != self.entry {
            write(VM_ENTRY_CONTROLS, u64::from(entry))?;
            self.entry = entry;
        }
        let tables = DescriptorTables::save();
        // The guest's SPEC_CTRL and the L1D flush right before the entry,
        // the host's SPEC_CTRL right after the exit (spec_ctrl.rs).
        self.spec_ctrl.before_entry();
        let verw = self.spec_ctrl.verw();
        // SAFETY: the VMCS is current, its host state is this CPU's (set in
        // `new`), the guest reaches memory only through EPT, and `launched`
        // tracks its launch state.
        let status = unsafe { entry::run_guest(&mut self.gprs, self.launched, verw) };
        self.spec_ctrl.after_exit();
        // SAFETY: the tables saved just above, unchanged.
        unsafe { tables.restore() };
        match status {
            entry::ENTERED => {
                self.launched = true;
                Ok(())
            }
            entry::FAIL_INVALID => Err(VmFail::Invalid.name()),
            _ => Err(VmFail::Valid.name()),
        }
    }

    /// A control-register-access exit (reason 28) for CR0 is emulated here
    /// (crate::cr_access); `Ok(false)` for every other exit. CR4 writes go
    /// to the core, which checks them against the guest's CPUID.
    fn emulated_cr_access(&mut self) -> Result<bool, &'static str> {
        use crate::cr_access::{clts, decode, lmsw, loads_pdptes, write_cr0, CrAccess};
        const CR_ACCESS: u16 = 28;
        let exit_reason = read(EXIT_REASON)? as u32;
        if exit_reason & decode::EXIT_REASON_ENTRY_FAILURE != 0 || exit_reason as u16 != CR_ACCESS {
            return Ok(false);
        }
        let [cr0_fixed0, cr0_fixed1, _, _] = self.cr_fixed;
        let shadow = read(CR0_READ_SHADOW)?;
        let new_cr0 = match decode(read(EXIT_QUALIFICATION)?) {
            CrAccess::MovTo { cr: 0, gpr } => self.gpr(Gpr::ALL[usize::from(gpr)]),
            CrAccess::Clts => clts(shadow),
            CrAccess::Lmsw { source } => lmsw(shadow, source),
            // MOV to CR4 goes to the core; CR3/CR8 and reads never exit.
            _ => return Ok(false),
        };
        let cr4 = self.paging().cr4;
        let efer = read(GUEST_IA32_EFER)?;
        let old_cr0 = read(GUEST_CR0)?;
        match write_cr0(new_cr0, shadow, cr4, efer, cr0_fixed0, cr0_fixed1) {
            Ok(w)
                if loads_pdptes(old_cr0, w.actual, cr4, cr4, w.efer) && !self.load_pdptes()? =>
            {
                self.inject(GP0);
            }
            Ok(w) => {
                write(GUEST_CR0, w.actual)?;
                write(CR0_READ_SHADOW, w.shadow)?;
                write(GUEST_IA32_EFER, w.efer)?;
                self.step_over(CR_ACCESS)?;
            }
            Err(_) => self.inject(GP0),
        }
        Ok(true)
    }

    /// Loads the PAE PDPTEs at the guest's CR3[31:5] into the VMCS, as the
    /// emulated instruction would into the CPU (SDM Vol. 3A 4.4.1). `false`
    /// (nothing written) when the instruction must raise #GP instead: a
    /// present PDPTE with a reserved bit, or a PDPT that is not the
    /// domain's write-back RAM (real hardware would read all-ones there,
    /// which is present with reserved bits).
    fn load_pdptes(&mut self) -> Result<bool, &'static str> {
        const GUEST_PDPTES: [u32; 4] = [GUEST_PDPTE0, GUEST_PDPTE1, GUEST_PDPTE2, GUEST_PDPTE3];
        // The walker's MAXPHYADDR (kernel guest_memory.rs): the architectural
        // maximum, so no valid entry is refused.
        const MAX_PHYS_BITS: u8 = 52;
        let pdpt = ept::pae_pdpt(read(GUEST_CR3)?);
        let tables = ept::EptTable::with_root(ept::Hpa(self.eptp & !0xfff));
        let Some(t) = tables.translate(&vcpu::IdentityTables::read_only(), pdpt) else {
            return Ok(false);
        };
        if !t.perms.read || t.mem_type != ept::MemType::WriteBack {
            return Ok(false);
        }
        let mut pdptes = [0u64; 4];
        for (i, pdpte) in pdptes.iter_mut().enumerate() {
            // SAFETY: the 32 bytes at CR3[31:5] lie in one page, which the
            // domain's EPT maps readable and write-back: RAM the hypervisor
            // identity-maps. The guest may change it meanwhile, so each
            // entry is read once, volatile, and checked after the read.
            *pdpte = unsafe { ((t.hpa.0 as *const u64).add(i)).read_volatile() };
        }
        if pdptes
            .iter()
            .any(|&e| ept::pae_pdpte_invalid(e, MAX_PHYS_BITS))
        {
            return Ok(false);
        }
        for (field, pdpte) in GUEST_PDPTES.into_iter().zip(pdptes) {
            write(field, pdpte)?;
        }
        Ok(true)
    }

    /// The source register of the MOV to CR4 that caused the last exit, if it was one.
    fn cr4_write_source(&self) -> Result<Option<Gpr>, &'static str> {
        use crate::cr_access::CrAccess;
        let exit_reason = read(EXIT_REASON)? as u32;
        if exit_reason & decode::EXIT_REASON_ENTRY_FAILURE != 0
            || exit_reason as u16 != reason::CR_ACCESS
        {
            return Ok(None);
        }
        Ok(match crate::cr_access::decode(read(EXIT_QUALIFICATION)?) {
            CrAccess::MovTo { cr: 4, gpr } => Some(Gpr::ALL[usize::from(gpr)]),
            _ => None,
        })
    }

    /// Moves RIP past the instruction of an exit handled inside the backend.
    fn step_over(&mut self, reason: u16) -> Result<(), &'static str> {
        self.skippable = Some(reason);
        self.skip_instruction(&NoCode)
    }

    /// Decodes the exit that just happened (SDM Vol. 3C 28.2).
    fn exit(&mut self) -> Result<Exit, &'static str> {
        let exit_reason = read(EXIT_REASON)? as u32;
        let basic = exit_reason as u16;
        self.skippable = None;
        if exit_reason & decode::EXIT_REASON_ENTRY_FAILURE != 0 {
            // SDM Vol. 3C 27.8: 33 invalid guest state, 34 MSR loading, 41 machine check.
            return Ok(Exit::Invalid(decode::exit_reason_name(basic)));
        }
        self.reinject()?;
        if decode::reports_instruction_length(basic) {
            self.skippable = Some(basic);
        }
        Ok(match basic {
            reason::EXCEPTION_OR_NMI => {
                let info = read(VM_EXIT_INTERRUPTION_INFORMATION)? as u32;
                let code = read(VM_EXIT_INTERRUPTION_ERROR_CODE)? as u32;
                let (vector, error_code) = decode::exit_exception(info, code);
                if vector == 1 {
                    self.debug_exit(info)?;
                }
                Exit::Exception { vector, error_code }
            }
            reason::EXTERNAL_INTERRUPT => Exit::ExternalInterrupt,
            reason::TRIPLE_FAULT => Exit::Shutdown,
            reason::INIT_SIGNAL => Exit::Init,
            reason::SIPI => Exit::Sipi {
                vector: read(EXIT_QUALIFICATION)? as u8,
            },
            reason::INTERRUPT_WINDOW => Exit::InterruptWindow,
            reason::CPUID => Exit::Cpuid,
            reason::HLT => Exit::Hlt,
            reason::VMCALL => Exit::Hypercall,
            reason::IO_INSTRUCTION => Exit::Io(decode::io_qualification(read(EXIT_QUALIFICATION)?)),
            reason::RDMSR => Exit::MsrRead {
                msr: self.gprs[Gpr::Rcx as usize] as u32,
            },
            reason::WRMSR => Exit::MsrWrite {
                msr: self.gprs[Gpr::Rcx as usize] as u32,
                value: (self.gprs[Gpr::Rdx as usize] << 32)
                    | (self.gprs[Gpr::Rax as usize] & 0xffff_ffff),
            },
            reason::EPT_VIOLATION => {
                let (access, present) =
                    decode::ept_violation_qualification(read(EXIT_QUALIFICATION)?);
                Exit::NestedPageFault {
                    gpa: read(GUEST_PHYSICAL_ADDRESS)?,
                    access,
                    present,
                }
            }
            reason::GETSEC
            | reason::VMCLEAR..=reason::VMXON
            | reason::INVEPT
            | reason::INVVPID
            | reason::MWAIT
            | reason::MONITOR => Exit::Undefined,
            reason::INVD | reason::WBINVD => Exit::CacheFlush,
            reason::XSETBV => Exit::Xsetbv {
                xcr: self.gprs[Gpr::Rcx as usize] as u32,
                value: (self.gprs[Gpr::Rdx as usize] << 32)
                    | (self.gprs[Gpr::Rax as usize] & 0xffff_ffff),
            },
            reason::CR_ACCESS if self.cr4_write_source()?.is_some() => Exit::Cr4Write,
            other => Exit::Unhandled {
                code: u64::from(other),
                name: decode::exit_reason_name(other),
            },
        })
    }

    /// A #DB exit: the CPU reported in the qualification what it would have
    /// put in DR6 (SDM Vol. 3C 28.2.1); put it there for the guest's
    /// handler. ICEBP (INT1) exits as a privileged software exception
    /// before it completes: step over it, so the reflected #DB returns past
    /// it as INT1's trap does (SDM Vol. 3C 28.2.5).
    fn debug_exit(&mut self, info: u32) -> Result<(), &'static str> {
        // SAFETY: the CPU holds this guest's debug registers while it runs.
        unsafe { instr::write_dr6(decode::debug_exit_dr6(read(EXIT_QUALIFICATION)?)) };
        if decode::intr_type(info) == decode::INTR_TYPE_PRIVILEGED_SOFTWARE_EXCEPTION {
            let rip = read(GUEST_RIP)?.wrapping_add(read(VM_EXIT_INSTRUCTION_LENGTH)?);
            write(GUEST_RIP, rip)?;
        }
        Ok(())
    }

    /// An exit in the middle of delivering an event (say, an EPT violation
    /// on the guest's IDT or stack) leaves it in the IDT-vectoring
    /// information field; it is delivered again at the next entry (SDM Vol.
    /// 3C 28.2.4, 27.6). Every VM exit clears the valid bit of the entry
    /// field (SDM Vol. 3C 28.2), so nothing queued earlier is lost here.
    fn reinject(&self) -> Result<(), &'static str> {
        let Some(info) = decode::reinjection(read(IDT_VECTORING_INFORMATION)? as u32) else {
            return Ok(());
        };
        if info & decode::INTR_INFO_DELIVER_ERROR_CODE != 0 {
            write(
                VM_ENTRY_EXCEPTION_ERROR_CODE,
                read(IDT_VECTORING_ERROR_CODE)?,
            )?;
        }
        if decode::needs_instruction_length(info) {
            write(
                VM_ENTRY_INSTRUCTION_LENGTH,
                read(VM_EXIT_INSTRUCTION_LENGTH)?,
            )?;
        }
        write(VM_ENTRY_INTERRUPTION_INFORMATION, u64::from(info))
    }
}

/// The host-state area (SDM Vol. 3C 25.5): where and how a VM exit returns.
/// EFER and PAT are loaded from here on exit, the guest's saved and loaded
/// from the guest-state area, so each side keeps its own.
fn host_writes(h: &HostState) -> Result<[(u32, u64); 22], &'static str> {
    // Selectors need RPL = 0 and TI = 0 (SDM Vol. 3C 27.2.3).
    if [h.cs, h.ss, h.ds, h.es, h.fs, h.gs, h.tr]
        .iter()
        .any(|s| s & 7 != 0)
    {
        return Err("a host segment selector has RPL or TI set");
    }
    if h.tr == 0 || h.cs == 0 {
        return Err("host CS or TR is the null selector");
    }
    Ok([
        (HOST_CR0, h.cr0),
        (HOST_CR3, h.cr3),
        (HOST_CR4, h.cr4),
        (HOST_CS_SELECTOR, u64::from(h.cs)),
        (HOST_SS_SELECTOR, u64::from(h.ss)),
        (HOST_DS_SELECTOR, u64::from(h.ds)),
        (HOST_ES_SELECTOR, u64::from(h.es)),
        (HOST_FS_SELECTOR, u64::from(h.fs)),
        (HOST_GS_SELECTOR, u64::from(h.gs)),
        (HOST_TR_SELECTOR, u64::from(h.tr)),
        (HOST_FS_BASE, h.fs_base),
        (HOST_GS_BASE, h.gs_base),
        (HOST_TR_BASE, h.tr_base),
        (HOST_GDTR_BASE, h.gdtr_base),
        (HOST_IDTR_BASE, h.idtr_base),
        (HOST_IA32_SYSENTER_CS, h.sysenter_cs),
        (HOST_IA32_SYSENTER_ESP, h.sysenter_esp),
        (HOST_IA32_SYSENTER_EIP, h.sysenter_eip),
        (HOST_IA32_EFER, h.efer),
        (HOST_IA32_PAT, h.pat),
        (HOST_RIP, entry::host_rip()),
        // `vmx_run_guest` sets HOST_RSP before every entry.
        (HOST_RSP, 0),
    ])
}

impl Vcpu for VmxVcpu {
    fn run(&mut self) -> Exit {
        if core::mem::take(&mut self.triple_fault) {
            return Exit::Shutdown;
        }
        loop {
            let result = self.enter().and_then(|()| self.emulated_cr_access());
            match result {
                // Handled here, invisible to the core: enter again.
                Ok(true) => continue,
                Ok(false) => {}
                Err(why) => return Exit::Invalid(why),
            }
            return match self.exit() {
                Ok(exit) => exit,
                Err(why) => Exit::Invalid(why),
            };
        }
    }

    fn gpr(&self, reg: Gpr) -> u64 {
        match reg {
            Gpr::Rsp => self.get(GUEST_RSP),
            _ => self.gprs[reg as usize],
        }
    }

    fn set_gpr(&mut self, reg: Gpr, value: u64) {
        match reg {
            Gpr::Rsp => self.set(GUEST_RSP, value),
            _ => self.gprs[reg as usize] = value,
        }
    }

    fn rip(&self) -> u64 {
        self.get(GUEST_RIP)
    }

    fn set_rip(&mut self, rip: u64) {
        self.set(GUEST_RIP, rip);
    }

    fn paging(&self) -> Paging {
        let cr4 = self.get(GUEST_CR4);
        let shadow = self.get(CR4_READ_SHADOW);
        let owned = crate::cr_access::cr0_host_owned(self.cr_fixed[0], self.cr_fixed[1]);
        Paging {
            // The guest's view: host-owned bits from the read shadow.
            cr0: (self.get(GUEST_CR0) & !owned) | (self.get(CR0_READ_SHADOW) & owned),
            cr3: self.get(GUEST_CR3),
            // What the guest sees: host-owned bits from the read shadow.
            cr4: (cr4 & !self.cr4_owned) | (shadow & self.cr4_owned),
            efer: self.get(GUEST_IA32_EFER),
        }
    }

    fn set_efer(&mut self, value: u64) {
        // As WRMSR: EFER.LMA is read-only (SDM Vol. 3A 2.2.1); the CPU sets
        // it when paging turns on with LME. `run` keeps "IA-32e mode guest"
        // in step with it before each entry.
        let lma = self.get(GUEST_IA32_EFER) & EFER_LMA;
        self.set(GUEST_IA32_EFER, (value & !EFER_LMA) | lma);
    }

    fn cr4_write_value(&self, _code: &dyn GuestCode) -> Result<u64, &'static str> {
        // The exit qualification names the source register (SDM Vol. 3C table 28-3).
        self.load()?;
        let gpr = self
            .cr4_write_source()?
            .ok_or("the last exit was not a MOV to CR4")?;
        Ok(self.gpr(gpr))
    }

    fn set_cr4(&mut self, value: u64) -> bool {
        let [_, _, fixed0, fixed1] = self.cr_fixed;
        let old = self.paging().cr4;
        let actual = crate::cr_access::cr4_actual(value, fixed0, fixed1);
        let (cr0, efer) = (self.get(GUEST_CR0), self.get(GUEST_IA32_EFER));
        if crate::cr_access::loads_pdptes(cr0, cr0, old, actual, efer) {
            match self.load_pdptes() {
                Ok(true) => {}
                Ok(false) => return false,
                Err(e) => panic!("loading the guest PDPTEs: {e}"),
            }
        }
        self.set(GUEST_CR4, actual);
        self.set(CR4_READ_SHADOW, value & self.cr4_owned);
        // The guest's own MOV would have flushed its TLB; a VMWRITE does
        // not, and with VPIDs its translations outlive the exit (SDM Vol.
        // 3C 29.4.3.3): drop them.
        if vcpu::cr4_change_flushes_tlb(old, value) {
            let (kind, vpid) = if self.controls.invvpid_single {
                (instr::INVVPID_SINGLE_CONTEXT, self.vpid)
            } else {
                (instr::INVVPID_ALL_CONTEXT, 0)
            };
            // SAFETY: the type is supported (`controls::choose`).
            if let Err(e) = unsafe { instr::invvpid(kind, vpid) } {
                panic!("INVVPID failed: {}", e.name());
            }
        }
        true
    }

    fn cpl(&self) -> u8 {
        decode::access_rights_dpl(self.get(GUEST_SS_ACCESS_RIGHTS) as u32)
    }

    fn in_64bit_mode(&self) -> bool {
        // The guest may have entered or left long mode since the last entry:
        // ask its saved EFER, not the entry controls.
        self.get(GUEST_IA32_EFER) & EFER_LMA != 0
            && self.get(GUEST_CS_ACCESS_RIGHTS) as u32 & guest::access_rights::LONG != 0
    }

    fn code_bits(&self) -> u32 {
        let cs = self.get(GUEST_CS_ACCESS_RIGHTS) as u32;
        if self.in_64bit_mode() {
            64
        } else if cs & guest::access_rights::DEFAULT_BIG != 0 {
            32
        } else {
            16
        }
    }

    fn segment_base(&self, seg: Segment) -> u64 {
        self.get(match seg {
            Segment::Es => GUEST_ES_BASE,
            Segment::Cs => GUEST_CS_BASE,
            Segment::Ss => GUEST_SS_BASE,
            Segment::Ds => GUEST_DS_BASE,
            Segment::Fs => GUEST_FS_BASE,
            Segment::Gs => GUEST_GS_BASE,
        })
    }

    fn rflags(&self) -> u64 {
        self.get(GUEST_RFLAGS)
    }

    fn set_rflags(&mut self, value: u64) {
        self.set(GUEST_RFLAGS, value | 0x2);
    }

    fn complete_emulated(&mut self, len: u64) {
        let rip = self.get(GUEST_RIP).wrapping_add(len);
        let rip = match self.code_bits() {
            64 => rip,
            32 => rip & 0xffff_ffff,
            _ => rip & 0xffff,
        };
        self.set(GUEST_RIP, rip);
        // As `skip_instruction`: the instruction's completion ends a shadow.
        let state = self.get(GUEST_INTERRUPTIBILITY_STATE) as u32;
        let cleared = state & !(decode::BLOCKING_BY_STI | decode::BLOCKING_BY_MOV_SS);
        if cleared != state {
            self.set(GUEST_INTERRUPTIBILITY_STATE, u64::from(cleared));
        }
    }

    fn skip_instruction(&mut self, _code: &dyn GuestCode) -> Result<(), &'static str> {
        // VM exits due to instructions report their length (SDM Vol. 3C 28.2.5).
        if self.skippable.take().is_none() {
            return Err("the last exit was not caused by an instruction");
        }
        let len = self.get(VM_EXIT_INSTRUCTION_LENGTH);
        let mut rip = self.get(GUEST_RIP).wrapping_add(len);
        if !self.in_64bit_mode() {
            rip &= 0xffff_ffff;
        }
        self.set(GUEST_RIP, rip);
        // Completing an instruction ends the STI or MOV SS shadow it may sit
        // in (SDM Vol. 3C 25.4.2, table 25-3).
        let state = self.get(GUEST_INTERRUPTIBILITY_STATE) as u32;
        let cleared = state & !(decode::BLOCKING_BY_STI | decode::BLOCKING_BY_MOV_SS);
        if cleared != state {
            self.set(GUEST_INTERRUPTIBILITY_STATE, u64::from(cleared));
        }
        Ok(())
    }

    fn inject(&mut self, event: Event) {
        // An exception raised while a re-delivered one is queued: the two
        // combine as the CPU would (double fault, or shutdown).
        let queued = self.get(VM_ENTRY_INTERRUPTION_INFORMATION) as u32;
        let queued_exception = (queued & decode::INTR_INFO_VALID != 0
            && decode::intr_type(queued) == decode::INTR_TYPE_HARDWARE_EXCEPTION)
            .then_some(queued as u8);
        let Some(event) = vcpu::queue_on_top(queued_exception, event) else {
            self.set(VM_ENTRY_INTERRUPTION_INFORMATION, 0);
            self.triple_fault = true;
            return;
        };
        let protected_mode = self.get(GUEST_CR0) & guest::CR0_PE != 0;
        let (info, error_code) = decode::entry_interruption(event, protected_mode);
        if let Some(code) = error_code {
            self.set(VM_ENTRY_EXCEPTION_ERROR_CODE, u64::from(code));
        }
        self.set(VM_ENTRY_INTERRUPTION_INFORMATION, u64::from(info));
    }

    fn set_interrupt_window(&mut self, wanted: bool) {
        let bit = primary::INTERRUPT_WINDOW_EXITING.mask();
        let primary = if wanted {
            self.primary | bit
        } else {
            self.primary & !bit
        };
        if primary != self.primary {
            self.set(
                PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS,
                u64::from(primary),
            );
            self.primary = primary;
        }
    }

    fn interruptible(&self) -> bool {
        let blocking = decode::BLOCKING_BY_STI | decode::BLOCKING_BY_MOV_SS;
        self.get(GUEST_RFLAGS) & RFLAGS_IF != 0
            && self.get(GUEST_INTERRUPTIBILITY_STATE) as u32 & blocking == 0
            // One event per entry: none may be queued already.
            && self.get(VM_ENTRY_INTERRUPTION_INFORMATION) as u32 & decode::INTR_INFO_VALID == 0
    }

    fn flush_second_level(&mut self) {
        let single = self.controls.invept_single
            // SAFETY: `invept_single` says the CPU supports this type.
            && unsafe { instr::invept(instr::INVEPT_SINGLE_CONTEXT, self.eptp) }.is_ok();
        if !single {
            // SAFETY: `controls::choose` ensured one of the two types exists.
            if let Err(e) = unsafe { instr::invept(instr::INVEPT_ALL_CONTEXT, 0) } {
                panic!("INVEPT failed: {}", e.name());
            }
        }
    }

    fn spec_ctrl(&self) -> u64 {
        self.spec_ctrl.guest()
    }

    fn set_spec_ctrl(&mut self, value: u64) {
        self.spec_ctrl.set_guest(value);
    }

    fn destroy(mut self: Box<Self>, frames: &mut dyn FrameAlloc) {
        self.syscall_msrs.release();
        // SAFETY: VMCLEAR writes the VMCS back to memory and makes it inactive
        // (SDM 25.11.3), after which the frames may be reused.
        let _ = unsafe { instr::vmclear(self.vmcs) };
        frames.free(self.vmcs, CONTROL_FRAMES);
    }
}

impl Drop for VmxVcpu {
    fn drop(&mut self) {
        // Leave the VMCS inactive and its data in memory (SDM Vol. 3C 25.1);
        // the frames themselves are not returned (FrameAlloc cannot free).
        // SAFETY: VMX root operation; the VMCS is this vCPU's.
        let _ = unsafe { instr::vmclear(self.vmcs) };
    }
}
