//! A domain: its RAM (host frames), its second-level address space, its vCPU, and how it ended.

use crate::memory::{self, HostFrames};
use crate::xen::XenState;
use alloc::boxed::Box;
use alloc::string::String;
use arrayvec::ArrayVec;
use ept::{Gpa, Hpa, MemType, PageSize, Perms};
use pvh_boot::{BootPlan, KernelImage, LinuxBoot};
use vcpu::{AddressSpace, Backend, Exit, Gpr, InitialState, Paging, Vcpu, VcpuConfig};
use xenolith::memory_map::PAGE_SIZE;

/// Why a vCPU is not running until something happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// HLT with interrupts on: until an interrupt or upcall can be delivered.
    Halt,
    /// SCHEDOP_block: until an event is pending.
    Events,
    /// SCHEDOP_poll: until one of `Domain::poll_ports` is pending, an upcall
    /// is due, or the timeout (system time, ns).
    Poll { timeout_ns: Option<u64> },
}

/// How a domain stopped running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// `SCHEDOP_shutdown` with this reason (public/sched.h SHUTDOWN_*).
    Shutdown(u32),
    /// Its only vCPU halted with interrupts off: nothing can wake it.
    Halted,
    /// It broke a rule; the domain is ended, nothing else is affected.
    Crashed(String),
}

pub struct Domain {
    pub id: u16,
    pub name: String,
    /// The driver domain (domain 0): serves the others' XenStore and
    /// consoles; the run ends when every other domain has ended.
    pub driver: bool,
    /// The host frames it holds as RAM: the start-of-day block less what
    /// it ballooned out, plus what it populated since.
    pub ram: xenolith::reservation::Holdings,
    /// The driver domain's DMA pool, host-physical and mapped at the same
    /// guest-physical addresses: memory devices can reach on its behalf.
    dma: Option<core::ops::Range<u64>>,
    /// Where start of day put things in the guest (special pages, memory map).
    pub plan: BootPlan,
    pub space: Box<dyn AddressSpace>,
    pub vcpu: Box<dyn Vcpu>,
    pub ending: Option<Ending>,
    /// Exits per `Exit::REASONS` entry.
    pub exits: [u64; Exit::REASONS.len()],
    /// Hypercalls answered -ENOSYS.
    pub unknown_hypercalls: u64,
    /// EVTCHNOP_send calls: the notifications this domain sent.
    pub evtchn_sends: u64,
    /// An interrupt vector waiting to be injected (test operation).
    pub pending_irq: Option<u8>,
    /// The guest's local APIC (x2APIC mode).
    pub vlapic: xenolith::vlapic::VLapic,
    /// When the guest's APIC timer expires, in host TSC.
    pub lapic_timer_deadline: Option<u64>,
    /// The guest's view of IA32_MTRR_DEF_TYPE.
    pub mtrr_def_type: u64,
    /// The POST-code latch at port 0x80.
    pub port80: u8,
    /// The vCPU's x87/SSE/AVX state and XCR0 while another domain runs.
    pub fpu: crate::fpu::FpuState,
    /// The vCPU's DR0–DR3 and DR6 while another domain runs.
    pub debug: crate::debug_regs::DebugRegs,
    /// What this domain may still print through `console_io`.
    pub console_quota: xenolith::console_quota::ConsoleQuota,
    /// A RAM page `TEST_OP_UNMAP_ONCE` took away: its GPA, HPA and mapping.
    pub unmapped_once: Option<(u64, u64, Perms, MemType)>,
    /// Host TSC ticks this domain's vCPU has run.
    pub cpu_tsc: u64,
    /// Whether COM1 input goes to this domain's console.
    pub console_input: bool,
    /// VMCALL or VMMCALL, for the hypercall page.
    pub hypercall_instruction: [u8; 3],
    /// The Xen ABI state: shared_info, event channels, params, grant frames, timer.
    pub xen: XenState,
    /// Set while the vCPU waits (HLT, SCHEDOP_block/poll).
    pub blocked: Option<Block>,
    /// The ports of a SCHEDOP_poll in progress.
    pub poll_ports: ArrayVec<u32, { xenolith::evtchn::POLL_MAX_PORTS }>,
    /// An event from another domain found this domain waiting: it runs
    /// next (the scheduler's wake-up boost).
    pub woken: bool,
    /// This domain woke a waiting one: its slice ends so that one runs.
    pub yield_slice: bool,
    /// The ports with the most I/O exits: (port, count), for the end-of-run report.
    pub io_ports: ArrayVec<(u16, u64), 16>,
}

/// What to build a domain from.
pub struct Spec<'a> {
    pub id: u16,
    pub name: &'a str,
    pub image: &'a [u8],
    pub cmdline: &'a str,
    pub initrd: Option<&'a [u8]>,
    pub ram_bytes: u64,
    /// The most RAM it may hold (xl.cfg `maxmem`): its `max_pages`.
    pub max_bytes: u64,
    /// I/O ports the domain reaches directly (the driver domain's COM1).
    pub passthrough_ports: &'static [u16],
}

/// Why a domain could not be built.
#[derive(Debug)]
pub enum CreateError {
    NoMemory,
    Image(pvh_boot::LoadError),
    Layout(pvh_boot::LayoutError),
    Backend(&'static str),
}

impl core::fmt::Display for CreateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CreateError::NoMemory => write!(f, "not enough free memory"),
            CreateError::Image(e) => write!(f, "kernel image: {e}"),
            CreateError::Layout(e) => write!(f, "guest layout: {e}"),
            CreateError::Backend(e) => write!(f, "{e}"),
        }
    }
}

/// Guest RAM and the PVH start of day: the image at its physical addresses,
/// `hvm_start_info` after it, the vCPU in 32-bit flat protected mode with
/// paging off and EBX = start info (xen docs/misc/pvh.pandoc).
pub fn create(backend: &mut dyn Backend, spec: &Spec) -> Result<Domain, CreateError> {
    let Spec {
        id,
        name,
        image,
        ram_bytes,
        ..
    } = *spec;
    let kernel = KernelImage::parse(image).map_err(CreateError::Image)?;
    let frames = (ram_bytes / PAGE_SIZE) as usize;
    let ram_hpa = memory::alloc_frames(frames).ok_or(CreateError::NoMemory)?;
    // Zeroed whoever had them, and whether anyone did (memory::scrub).
    memory::scrub(ram_hpa, frames);
    // SAFETY: fresh frames owned by this domain from now on, identity-mapped.
    let ram = unsafe { core::slice::from_raw_parts_mut(ram_hpa as *mut u8, ram_bytes as usize) };
    defmt::debug!("d{=u16}: RAM at {=u64:#x}, zeroed", id, ram_hpa);
    let (space, vcpu, plan) = build(backend, &kernel, ram, ram_hpa, spec)
        .inspect_err(|_| memory::free_frames(ram_hpa, frames))?;
    let (Some(xen), Some(fpu)) = (
        XenState::new(id, plan.console_gfn, plan.xenstore_gfn),
        crate::fpu::FpuState::new(),
    ) else {
        vcpu.destroy(&mut HostFrames);
        space.destroy(&mut HostFrames);
        memory::free_frames(ram_hpa, frames);
        return Err(CreateError::NoMemory);
    };
    // The allocator hands out a power of two: the rest is padding the
    // domain holds, uncounted, until it ends (memory::alloc_frames).
    let block = frames.next_power_of_two() as u64;
    let max_pages = spec.max_bytes.max(ram_bytes) / PAGE_SIZE;
    Ok(Domain {
        id,
        name: String::from(name),
        driver: false,
        ram: xenolith::reservation::Holdings::new(ram_hpa, block, frames as u64, max_pages),
        dma: None,
        plan,
        space,
        vcpu,
        ending: None,
        exits: [0; Exit::REASONS.len()],
        unknown_hypercalls: 0,
        evtchn_sends: 0,
        pending_irq: None,
        vlapic: xenolith::vlapic::VLapic::new(0),
        lapic_timer_deadline: None,
        mtrr_def_type: xenolith::msr_policy::MTRR_DEF_TYPE_RESET,
        port80: 0,
        fpu,
        debug: crate::debug_regs::DebugRegs::new(),
        console_quota: xenolith::console_quota::ConsoleQuota::new(crate::xen::time::now_ns()),
        unmapped_once: None,
        cpu_tsc: 0,
        console_input: false,
        hypercall_instruction: backend.hypercall_instruction(),
        xen,
        blocked: None,
        poll_ports: ArrayVec::new(),
        woken: false,
        yield_slice: false,
        io_ports: ArrayVec::new(),
    })
}

/// MSRs a guest owns outright: the segment bases and system-call MSRs Linux
/// rewrites on every context switch (VMLOAD/VMSAVE or the VMCS switch
/// them, or the hypervisor never uses them), and PAT, which both backends
/// keep per guest (SVM's G_PAT under NPT, VMX's load/save IA32_PAT).
const PASSTHROUGH_MSRS: &[u32] = &[
    0x174,       // IA32_SYSENTER_CS
    0x175,       // IA32_SYSENTER_ESP
    0x176,       // IA32_SYSENTER_EIP
    0x277,       // IA32_PAT
    0xc000_0081, // STAR
    0xc000_0082, // LSTAR
    0xc000_0083, // CSTAR
    0xc000_0084, // SFMASK
    0xc000_0100, // FS_BASE
    0xc000_0101, // GS_BASE
    0xc000_0102, // KERNEL_GS_BASE
    0xc000_0103, // TSC_AUX
];

/// A domain's address space, its vCPU and where start of day put things.
type Machine = (Box<dyn AddressSpace>, Box<dyn Vcpu>, BootPlan);

/// Writes the PVH start of day into `ram` (at host `ram_hpa`): the image at
/// its physical addresses, the initrd, `hvm_start_info`, the memory map, ACPI
/// tables and the special pages (`pvh_boot::prepare`); maps the RAM; creates
/// the vCPU in 32-bit flat protected mode with paging off and EBX = start
/// info (xen docs/misc/pvh.pandoc).
fn build(
    backend: &mut dyn Backend,
    kernel: &KernelImage,
    ram: &mut [u8],
    ram_hpa: u64,
    spec: &Spec,
) -> Result<Machine, CreateError> {
    let Spec {
        cmdline, initrd, ..
    } = *spec;
    let ram_bytes = ram.len() as u64;
    let t0 = crate::time::rdtsc();
    let plan = pvh_boot::prepare(
        ram,
        &LinuxBoot {
            kernel,
            cmdline,
            initrd,
            vcpus: 1,
        },
    )
    .map_err(CreateError::Layout)?;
    defmt::debug!(
        "start of day written in {=u64} us",
        (crate::time::rdtsc() - t0) * 1000 / crate::time::tsc_khz().max(1)
    );
    let mut space = backend
        .new_address_space(&mut HostFrames)
        .map_err(CreateError::Backend)?;
    map_ram(space.as_mut(), ram_hpa, ram_bytes)?;
    let mut gprs = [0u64; 16];
    gprs[Gpr::Rbx as usize] = plan.start_info;
    let initial = InitialState {
        gprs,
        rip: u64::from(plan.entry),
        rflags: 0x2,
        long_mode: false,
        // CR0.PE | CR0.ET: protected mode, paging off (pvh.pandoc).
        paging: Paging {
            cr0: 0x11,
            cr3: 0,
            cr4: 0,
            efer: 0,
        },
    };
    let config = VcpuConfig {
        second_level_root: space.root(),
        // VPID and ASID 0 belong to the host (SDM Vol. 3C 28.1; APM Vol. 2
        // 15.16): domain 0 gets tag 1.
        tag: spec.id + 1,
        passthrough_ports: spec.passthrough_ports,
        passthrough_msrs: PASSTHROUGH_MSRS,
        cr4_valid: crate::cpu::guest_cr4_valid(),
    };
    let vcpu = backend
        .create_vcpu(&mut HostFrames, &config, &initial)
        .map_err(CreateError::Backend)?;
    Ok((space, vcpu, plan))
}

/// Guest-physical 0 .. size onto the domain's frames, 2 MiB pages where aligned.
fn map_ram(space: &mut dyn AddressSpace, hpa: u64, size: u64) -> Result<(), CreateError> {
    map_ram_at(space, 0, hpa, size)
}

/// Guest-physical `base` .. `base + size` onto host frames from `hpa`.
fn map_ram_at(
    space: &mut dyn AddressSpace,
    base: u64,
    hpa: u64,
    size: u64,
) -> Result<(), CreateError> {
    let end = base + size;
    let mut gpa = base;
    while gpa < end {
        let host = hpa + (gpa - base);
        let big = PageSize::Size2M.bytes();
        let page = if gpa.is_multiple_of(big) && host.is_multiple_of(big) && end - gpa >= big {
            PageSize::Size2M
        } else {
            PageSize::Size4K
        };
        // Mapped before the vCPU first runs: nothing is cached yet, and a
        // new vCPU flushes its tag on first entry, so the Flush can be dropped.
        let _ = space
            .map(
                &mut HostFrames,
                Gpa(gpa),
                Hpa(host),
                page,
                Perms::RWX,
                MemType::WriteBack,
            )
            .map_err(|_| CreateError::NoMemory)?;
        gpa += page.bytes();
    }
    Ok(())
}

impl Ending {
    /// How the domain ended, for people, and whether that was a clean end.
    pub fn describe(ending: Option<&Ending>, driver: bool) -> (String, bool) {
        match ending {
            Some(Ending::Shutdown(0)) => (String::from("poweroff"), true),
            Some(Ending::Shutdown(reason)) => (alloc::format!("shutdown reason {reason}"), false),
            Some(Ending::Halted) => (String::from("halted with interrupts off"), true),
            Some(Ending::Crashed(why)) => (alloc::format!("crashed: {why}"), false),
            // The driver domain serves until the guests are done.
            None if driver => (String::from("still serving"), true),
            None => (String::from("still running"), false),
        }
    }
}

impl Domain {
    /// Whether `gpa` maps one of this domain's own RAM frames (not a
    /// special page, a grant mapping or a device).
    pub fn owns_ram_gpa(&self, gpa: u64) -> bool {
        self.space
            .translate(Gpa(gpa))
            .is_some_and(|t| self.ram.owns(t.hpa.0))
    }

    /// RAM in the guest's memory map, in KiB (what its XenStore
    /// `memory/static-max` and `memory/target` say).
    pub fn map_ram_kib(&self) -> u64 {
        self.plan
            .memmap
            .iter()
            .filter(|e| e.kind == xen_abi::start_info::MEMMAP_TYPE_RAM)
            .map(|e| e.size)
            .sum::<u64>()
            >> 10
    }

    /// The DMA pool's host range (empty if none).
    pub fn dma_range(&self) -> core::ops::Range<u64> {
        self.dma.clone().unwrap_or(0..0)
    }

    /// Maps `size` bytes of host frames at `base` (owned by the caller
    /// until this succeeds) at the same guest-physical addresses: the pool
    /// a device driver in this domain gives its devices for DMA. Refused
    /// where the domain already has something mapped, or above 4 GiB
    /// (the driver domain maps only the low 4 GiB).
    pub fn give_dma_pool(&mut self, base: u64, size: u64) -> Result<(), String> {
        let frames = (size / PAGE_SIZE) as usize;
        let refuse = |why: String| {
            memory::free_frames(base, frames);
            Err(why)
        };
        if base + size > 1 << 32 {
            return refuse(alloc::format!("DMA pool at {base:#x} lies above 4 GiB"));
        }
        let taken = (base..base + size)
            .step_by(PAGE_SIZE as usize)
            .any(|a| self.space.translate(Gpa(a)).is_some());
        if taken {
            return refuse(alloc::format!(
                "DMA pool at {base:#x} collides with the domain's own physical map"
            ));
        }
        memory::scrub(base, frames);
        if map_ram_at(self.space.as_mut(), base, base, size).is_err() {
            return refuse(alloc::format!("DMA pool at {base:#x} could not be mapped"));
        }
        self.dma = Some(base..base + size);
        Ok(())
    }

    /// Counts an I/O exit on `port`; once 16 ports are tracked, new ones are not.
    pub fn count_port(&mut self, port: u16) {
        match self.io_ports.iter_mut().find(|(p, _)| *p == port) {
            Some((_, n)) => *n += 1,
            None => {
                let _ = self.io_ports.try_push((port, 1));
            }
        }
    }

    pub fn crash(&mut self, why: String) {
        if self.ending.is_none() {
            self.ending = Some(Ending::Crashed(why));
        }
    }

    /// Gives the RAM of an ended domain back to the allocator once no other
    /// domain maps or pins a frame of it: every grant mapping of its frames
    /// holds a pin in its active table, so an empty table is a reference
    /// count of zero (Xen frees a dying domain's pages when their last
    /// reference goes). Called when it ends and after each unmap of its
    /// grants; again later, it does nothing. The DMA pool stays until
    /// `destroy`: a device may still write there. Its tables still map the
    /// RAM, but its vCPU never runs again and nothing reaches an ended domain.
    pub fn free_ram(&mut self) {
        if self.ending.is_none() || !self.xen.grants.active.is_empty() {
            return;
        }
        self.ram.drain(memory::free_frames);
    }

    /// Frees the domain's vCPU, tables and RAM. RAM another domain still
    /// pins (none once every domain's grant mappings were released, as the
    /// end of the run does) is kept rather than reused while mapped.
    pub fn destroy(mut self) {
        self.vcpu.destroy(&mut HostFrames);
        self.space.destroy(&mut HostFrames);
        self.xen.destroy();
        if !self.xen.grants.active.is_empty() {
            defmt::error!("d{=u16}: RAM still grant-mapped at teardown, kept", self.id);
        } else {
            let mut ram = self.ram;
            ram.drain(memory::free_frames);
        }
        if let Some(r) = self.dma {
            memory::free_frames(r.start, ((r.end - r.start) / PAGE_SIZE) as usize);
        }
    }
}

/// Every domain but the one running: what its hypercalls may reach across
/// (the other ends of interdomain event channels).
pub struct Others<'a> {
    before: &'a mut [Domain],
    after: &'a mut [Domain],
}

impl<'a> Others<'a> {
    /// Splits `domains` into domain `i` and the others.
    pub fn split(domains: &'a mut [Domain], i: usize) -> (&'a mut Domain, Others<'a>) {
        let (before, rest) = domains.split_at_mut(i);
        let (this, after) = rest.split_first_mut().expect("index in range");
        (this, Others { before, after })
    }

    /// The domain with id `domid`, ended or not: a grant mapping of an
    /// ended domain's frame stays valid until it is unmapped.
    pub fn find_any(&mut self, domid: u16) -> Option<&mut Domain> {
        self.before
            .iter_mut()
            .chain(self.after.iter_mut())
            .find(|d| d.id == domid)
    }

    /// The live domain with id `domid`.
    pub fn find(&mut self, domid: u16) -> Option<&mut Domain> {
        self.before
            .iter_mut()
            .chain(self.after.iter_mut())
            .find(|d| d.id == domid && d.ending.is_none())
    }
}
