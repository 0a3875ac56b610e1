//! `SvmVcpu`: one guest vCPU on AMD-V, its VMCB, I/O and MSR permission maps.

use crate::decode::{self, Expected};
use crate::exits;
use crate::run::{world_switch, Gprs};
use crate::spec_ctrl::SpecCtrl;
use crate::vmcb::{misc1, misc2, Segment, Vmcb, TLB_FLUSH_GUEST, V_IGN_TPR, V_INTR_MASKING, V_IRQ};
use alloc::boxed::Box;
use vcpu::{
    EntryMitigations, Event, Exit, FrameAlloc, Gpr, GuestCode, InitialState, Paging,
    Segment as SegReg, Vcpu, VcpuConfig,
};

/// EFER.SVME (APM 15.4): must stay set in the guest's EFER for VMRUN.
const EFER_SVME: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;
/// The power-on PAT (APM Vol. 2 7.8.2).
const DEFAULT_PAT: u64 = 0x0007_0406_0007_0406;
/// The I/O permission map covers 64K ports plus 3 bytes: 12 KiB (APM 15.10.1).
const IOPM_PAGES: usize = 3;
/// The MSR permission map: 8 KiB, every bit set = every MSR intercepted (APM 15.11).
const MSRPM_PAGES: usize = 2;
const PAGE: usize = 4096;

// Flat segments in VMCB attribute format: type|S|DPL|P in bits 0-7, AVL|L|D|G in bits 8-11.
const CODE32: u16 = 0xc9b;
const CODE64: u16 = 0xa9b;
const DATA: u16 = 0xc93;
const TSS_BUSY: u16 = 0x08b;
/// The L bit of a code segment in VMCB attribute format.
const ATTRIB_L: u16 = 1 << 9;
/// The D/B bit of a segment in VMCB attribute format (APM Vol. 2 15.5.1).
const ATTRIB_D: u16 = 1 << 10;
/// The intercept-CR-writes half of VMCB offset 0: bit 16 + n for CRn (APM 15.9).
const CR4_WRITE_INTERCEPT: u32 = 1 << (16 + 4);
/// EXITINFO1 of a CR access with decode assists: bit 63 set for MOV, the
/// GPR number in bits 3:0 (APM 15.33.1). Zero without decode assists.
const DECODE_ASSIST_MOV: u64 = 1 << 63;

pub struct SvmVcpu {
    vmcb_pa: u64,
    host_vmcb_pa: u64,
    gprs: Gprs,
    nrips: bool,
    /// Delivering a queued exception raised another one that cannot be
    /// delivered (a triple fault): the next `run` reports shutdown.
    triple_fault: bool,
    /// The guest's SPEC_CTRL and how it is switched (spec_ctrl.rs).
    spec_ctrl: SpecCtrl,
}

/// EVENTINJ and EXITINTINFO share one format (APM 15.20, 15.7.2): vector
/// 7:0, type 10:8, error code valid 11, valid 31, error code 63:32.
const EVENT_VALID: u64 = 1 << 31;
const EVENT_TYPE_EXCEPTION: u64 = 3;
const EVENT_TYPE_SOFTWARE_INTERRUPT: u64 = 4;

/// The event to deliver again after an exit that interrupted its delivery
/// (EXITINTINFO), or 0. Software interrupts (INTn) and the soft exceptions
/// #BP and #OF (INT3, INTO) are not re-injected: RIP still points at their
/// instruction, which runs again (KVM's svm_complete_interrupts).
fn redelivery(exit_int_info: u64) -> u64 {
    let kind = (exit_int_info >> 8) & 7;
    let vector = exit_int_info as u8;
    let soft = kind == EVENT_TYPE_SOFTWARE_INTERRUPT
        || (kind == EVENT_TYPE_EXCEPTION && matches!(vector, 3 | 4));
    if exit_int_info & EVENT_VALID == 0 || soft {
        0
    } else {
        exit_int_info
    }
}

/// Clears both intercept bits of `msr` in the MSR permission map: two bits
/// per MSR (read, then write) in three 2 KiB ranges (APM 15.11, table 15-7).
pub fn msrpm_pass(map: &mut [u8; MSRPM_PAGES * PAGE], msr: u32) -> Result<(), &'static str> {
    let (range, base) = match msr {
        0..=0x1fff => (0, 0),
        0xc000_0000..=0xc000_1fff => (1, 0xc000_0000),
        0xc001_0000..=0xc001_1fff => (2, 0xc001_0000),
        _ => return Err("MSR outside the MSR permission map's ranges"),
    };
    let bit = (msr - base) as usize * 2;
    map[range * 0x800 + bit / 8] &= !(0b11 << (bit % 8));
    Ok(())
}

fn fill(pa: u64, pages: usize, byte: u8) {
    // SAFETY: a fresh, identity-mapped allocation of `pages` frames owned by the vCPU.
    unsafe { core::ptr::write_bytes(pa as *mut u8, byte, pages * PAGE) }
}

fn flat(selector: u16, attrib: u16) -> Segment {
    Segment {
        selector,
        attrib,
        limit: 0xffff_ffff,
        base: 0,
    }
}

impl SvmVcpu {
    pub fn new(
        frames: &mut dyn FrameAlloc,
        host_vmcb_pa: u64,
        nrips: bool,
        mitigations: EntryMitigations,
        config: &VcpuConfig,
        initial: &InitialState,
    ) -> Result<Self, &'static str> {
        let vmcb_pa = frames.alloc_zeroed(1).ok_or("no memory for a VMCB")?;
        let iopm = frames
            .alloc_zeroed(IOPM_PAGES)
            .ok_or("no memory for an IOPM")?;
        let msrpm = frames
            .alloc_zeroed(MSRPM_PAGES)
            .ok_or("no memory for an MSRPM")?;
        fill(iopm, IOPM_PAGES, 0xff);
        fill(msrpm, MSRPM_PAGES, 0xff);
        for &msr in config.passthrough_msrs {
            // SAFETY: the MSRPM was just allocated, MSRPM_PAGES frames long.
            let map = unsafe { &mut *(msrpm as *mut [u8; MSRPM_PAGES * PAGE]) };
            msrpm_pass(map, msr)?;
        }
        for &port in config.passthrough_ports {
            // SAFETY: the byte lies inside the IOPM just allocated.
            unsafe { *((iopm + u64::from(port / 8)) as *mut u8) &= !(1 << (port % 8)) };
        }
        let mut vcpu = SvmVcpu {
            vmcb_pa,
            host_vmcb_pa,
            gprs: initial.gprs,
            nrips,
            triple_fault: false,
            spec_ctrl: SpecCtrl::new(mitigations),
        };
        let vmcb = vcpu.vmcb();
        let c = &mut vmcb.control;
        // The list Xen's construct_vmcb and KVM's init_vmcb keep: INVD would
        // discard cache lines other domains dirtied, WBINVD flushes every
        // cache, MONITOR/MWAIT would idle the host CPU, INVLPGA flushes
        // other ASIDs' translations.
        c.intercept_misc1 = misc1::INTR
            | misc1::NMI
            | misc1::INIT
            | misc1::CPUID
            | misc1::INVD
            | misc1::HLT
            | misc1::INVLPGA
            | misc1::IOIO_PROT
            | misc1::MSR_PROT
            | misc1::SHUTDOWN;
        // VMRUN must be intercepted (APM 15.5.1); the rest of SVM is not offered.
        c.intercept_misc2 = misc2::VMRUN
            | misc2::VMMCALL
            | misc2::VMLOAD
            | misc2::VMSAVE
            | misc2::STGI
            | misc2::CLGI
            | misc2::SKINIT
            | misc2::WBINVD
            | misc2::MONITOR
            | misc2::MWAIT
            | misc2::MWAIT_CONDITIONAL;
        // #DB and #AC, always (XSA-156, CVE-2015-5307 and CVE-2015-8104):
        // a guest can make their delivery raise them again, forever, inside
        // the CPU with no exit; intercepted, each one is an exit, and the
        // core reflects it into the guest.
        c.intercept_exceptions = (1 << 1) | (1 << 17);
        // CR4 writes (APM 15.9): the core checks each against the bits the
        // guest's CPUID offers. Unintercepted, a bit the CPU lacks would be
        // the CPU's to refuse, and QEMU refuses it with #VMEXIT(ERR) rather
        // than #GP; a bit it has but the guest was not offered would stick.
        c.intercept_cr = CR4_WRITE_INTERCEPT;
        c.iopm_base_pa = iopm;
        c.msrpm_base_pa = msrpm;
        c.asid = u32::from(config.tag);
        // A reused ASID may still have the previous guest's translations.
        c.tlb_control = TLB_FLUSH_GUEST;
        // The guest's IF masks only virtual interrupts; physical ones stay the host's.
        c.int_control = V_INTR_MASKING;
        c.np_control = 1;
        c.n_cr3 = config.second_level_root;

        let s = &mut vmcb.state;
        let code = if initial.long_mode { CODE64 } else { CODE32 };
        s.cs = flat(0x08, code);
        for seg in [&mut s.ds, &mut s.es, &mut s.ss, &mut s.fs, &mut s.gs] {
            *seg = flat(0x10, DATA);
        }
        s.tr = Segment {
            selector: 0x18,
            attrib: TSS_BUSY,
            limit: 0x67,
            base: 0,
        };
        s.ldtr = Segment::default();
        s.gdtr = Segment::default();
        s.idtr = Segment::default();
        s.cr0 = initial.paging.cr0;
        s.cr3 = initial.paging.cr3;
        s.cr4 = initial.paging.cr4;
        s.efer = initial.paging.efer | EFER_SVME;
        s.dr6 = 0xffff_0ff0;
        s.dr7 = 0x400;
        s.rflags = initial.rflags | 0x2;
        s.rip = initial.rip;
        s.rsp = initial.gprs[Gpr::Rsp as usize];
        s.rax = initial.gprs[Gpr::Rax as usize];
        s.g_pat = DEFAULT_PAT;
        s.cpl = 0;
        Ok(vcpu)
    }

    fn vmcb(&mut self) -> &mut Vmcb {
        // SAFETY: `vmcb_pa` is this vCPU's own identity-mapped VMCB page.
        unsafe { &mut *(self.vmcb_pa as *mut Vmcb) }
    }

    fn vmcb_ref(&self) -> &Vmcb {
        // SAFETY: as above, shared access.
        unsafe { &*(self.vmcb_pa as *const Vmcb) }
    }

    fn event_inj(event: Event) -> u64 {
        // EVENTINJ (APM 15.20): vector, type in bits 10:8, EV bit 11, V bit 31, error code in 63:32.
        const VALID: u64 = 1 << 31;
        match event {
            Event::Interrupt(v) => VALID | u64::from(v),
            Event::Nmi => VALID | (2 << 8) | 2,
            Event::Exception { vector, error_code } => {
                let ev = error_code.map_or(0, |e| (1 << 11) | (u64::from(e) << 32));
                VALID | (3 << 8) | ev | u64::from(vector)
            }
        }
    }
}

impl SvmVcpu {
    /// The bytes at the guest's CS:RIP (up to 15), through the guest's own
    /// page tables: for exits whose instruction the hardware did not describe.
    fn fetch_instruction(&self, code: &dyn GuestCode) -> Result<([u8; 15], usize), &'static str> {
        let linear = decode::code_address(
            self.in_64bit_mode(),
            self.vmcb_ref().state.cs.base,
            self.rip(),
        );
        let mut bytes = [0u8; 15];
        // An instruction may end before the next page; fetch only this page if needed.
        let to_page_end = (0x1000 - (linear & 0xfff)) as usize;
        let paging = self.paging();
        let n = if code.fetch(&paging, linear, &mut bytes) {
            15
        } else if to_page_end < 15 && code.fetch(&paging, linear, &mut bytes[..to_page_end]) {
            to_page_end
        } else {
            return Err("instruction bytes not readable");
        };
        Ok((bytes, n))
    }
}

impl Vcpu for SvmVcpu {
    fn run(&mut self) -> Exit {
        if core::mem::take(&mut self.triple_fault) {
            return Exit::Shutdown;
        }
        // EVENTINJ holds what `inject` queued and what the last exit
        // interrupted: it is this vCPU's one-event queue, as the VMCS
        // entry field is on VMX.
        let (vmcb_pa, host) = (self.vmcb_pa, self.host_vmcb_pa);
        // SAFETY: both VMCBs are set up by `new`/`backend`, SVM is enabled on this CPU.
        unsafe { world_switch(&mut self.gprs, vmcb_pa, host, &self.spec_ctrl) };
        let vmcb = self.vmcb();
        vmcb.control.tlb_control = 0;
        // An event whose delivery the exit interrupted is delivered again
        // (APM 15.7.2); VMRUN consumed whatever EVENTINJ held.
        vmcb.control.event_inj = redelivery(vmcb.control.exit_int_info);
        let c = &self.vmcb_ref().control;
        exits::decode(
            c.exit_code,
            c.exit_info1,
            c.exit_info2,
            self.gprs[Gpr::Rcx as usize],
            self.gprs[Gpr::Rdx as usize],
            self.vmcb_ref().state.rax,
        )
    }

    fn gpr(&self, reg: Gpr) -> u64 {
        match reg {
            Gpr::Rax => self.vmcb_ref().state.rax,
            Gpr::Rsp => self.vmcb_ref().state.rsp,
            r => self.gprs[r as usize],
        }
    }

    fn set_gpr(&mut self, reg: Gpr, value: u64) {
        match reg {
            Gpr::Rax => self.vmcb().state.rax = value,
            Gpr::Rsp => self.vmcb().state.rsp = value,
            r => self.gprs[r as usize] = value,
        }
    }

    fn rip(&self) -> u64 {
        self.vmcb_ref().state.rip
    }

    fn set_rip(&mut self, rip: u64) {
        self.vmcb().state.rip = rip;
    }

    fn paging(&self) -> Paging {
        let s = &self.vmcb_ref().state;
        Paging {
            cr0: s.cr0,
            cr3: s.cr3,
            cr4: s.cr4,
            efer: s.efer & !EFER_SVME,
        }
    }

    fn set_efer(&mut self, value: u64) {
        self.vmcb().state.efer = value | EFER_SVME;
    }

    fn cr4_write_value(&self, code: &dyn GuestCode) -> Result<u64, &'static str> {
        let c = &self.vmcb_ref().control;
        if c.exit_code != exits::WRITE_CR4 {
            return Err("the last exit was not a CR4 write");
        }
        let gpr = if c.exit_info1 & DECODE_ASSIST_MOV != 0 {
            (c.exit_info1 & 0xf) as u8
        } else {
            let (bytes, n) = self.fetch_instruction(code)?;
            decode::mov_to_cr4(&bytes[..n], self.in_64bit_mode())
                .ok_or("bytes at RIP are not MOV to CR4")?
                .0
        };
        Ok(self.gpr(Gpr::ALL[usize::from(gpr)]))
    }

    fn set_cr4(&mut self, value: u64) -> bool {
        let old = self.vmcb_ref().state.cr4;
        self.vmcb().state.cr4 = value;
        // The guest's MOV would have flushed its TLB; loading CR4 through
        // the VMCB does not, so flush the guest's ASID (APM 15.16.1).
        if vcpu::cr4_change_flushes_tlb(old, value) {
            self.vmcb().control.tlb_control = TLB_FLUSH_GUEST;
        }
        // Under nested paging a PAE guest's PDPTEs are read with each walk,
        // not loaded by the MOV (APM Vol. 2 15.25.10): nothing can fault here.
        true
    }

    fn cpl(&self) -> u8 {
        self.vmcb_ref().state.cpl
    }

    fn in_64bit_mode(&self) -> bool {
        let s = &self.vmcb_ref().state;
        s.efer & EFER_LMA != 0 && s.cs.attrib & ATTRIB_L != 0
    }

    fn code_bits(&self) -> u32 {
        let cs = self.vmcb_ref().state.cs.attrib;
        if self.in_64bit_mode() {
            64
        } else if cs & ATTRIB_D != 0 {
            32
        } else {
            16
        }
    }

    fn segment_base(&self, seg: SegReg) -> u64 {
        // VMRUN's exit saves ES, CS, SS and DS; the world switch's VMSAVE
        // saves FS and GS (APM 15.5.1, 15.5.2), so all six are current.
        let s = &self.vmcb_ref().state;
        match seg {
            SegReg::Es => s.es.base,
            SegReg::Cs => s.cs.base,
            SegReg::Ss => s.ss.base,
            SegReg::Ds => s.ds.base,
            SegReg::Fs => s.fs.base,
            SegReg::Gs => s.gs.base,
        }
    }

    fn rflags(&self) -> u64 {
        self.vmcb_ref().state.rflags
    }

    fn set_rflags(&mut self, value: u64) {
        self.vmcb().state.rflags = value | 0x2;
    }

    fn complete_emulated(&mut self, len: u64) {
        let rip = self.rip().wrapping_add(len);
        let rip = match self.code_bits() {
            64 => rip,
            32 => rip & 0xffff_ffff,
            _ => rip & 0xffff,
        };
        self.set_rip(rip);
        self.vmcb().control.int_state &= !1;
    }

    fn skip_instruction(&mut self, code: &dyn GuestCode) -> Result<(), &'static str> {
        let c = &self.vmcb_ref().control;
        let next = match c.exit_code {
            // IOIO exits always carry the next RIP in EXITINFO2 (APM 15.10.2).
            exits::IOIO => c.exit_info2,
            _ if self.nrips => c.next_rip,
            exit => {
                let expected = match exit {
                    exits::CPUID => Expected::Cpuid,
                    exits::MSR if c.exit_info1 == 0 => Expected::Rdmsr,
                    exits::MSR => Expected::Wrmsr,
                    exits::VMMCALL => Expected::Vmmcall,
                    exits::HLT => Expected::Hlt,
                    exits::INVD | exits::WBINVD => Expected::CacheFlush,
                    exits::WRITE_CR4 => Expected::MovToCr4,
                    _ => return Err("no instruction to skip for this exit"),
                };
                let rip = self.rip();
                let long_mode = self.in_64bit_mode();
                let (bytes, n) = self.fetch_instruction(code)?;
                let len = decode::length(&bytes[..n], expected, long_mode)
                    .ok_or("bytes at RIP are not the intercepted instruction")?;
                decode::next_rip(long_mode, rip, len)
            }
        };
        self.set_rip(next);
        // Skipping an instruction ends any STI/MOV SS shadow it began.
        self.vmcb().control.int_state &= !1;
        Ok(())
    }

    fn inject(&mut self, event: Event) {
        let queued = self.vmcb_ref().control.event_inj;
        let queued_exception = (queued & EVENT_VALID != 0
            && (queued >> 8) & 7 == EVENT_TYPE_EXCEPTION)
            .then_some(queued as u8);
        let Some(event) = vcpu::queue_on_top(queued_exception, event) else {
            self.triple_fault = true;
            return;
        };
        self.vmcb().control.event_inj = Self::event_inj(event);
    }

    fn set_interrupt_window(&mut self, wanted: bool) {
        // A virtual interrupt that ignores the TPR becomes deliverable exactly
        // when the guest can take one; intercepting VINTR turns that into an exit (APM 15.21.4).
        let c = &mut self.vmcb().control;
        if wanted {
            c.int_control |= V_IRQ | V_IGN_TPR;
            c.intercept_misc1 |= misc1::VINTR;
        } else {
            c.int_control &= !(V_IRQ | V_IGN_TPR);
            c.intercept_misc1 &= !misc1::VINTR;
        }
    }

    fn interruptible(&self) -> bool {
        let v = self.vmcb_ref();
        v.state.rflags & (1 << 9) != 0
            && v.control.int_state & 1 == 0
            // One event per entry: none may be queued already.
            && v.control.event_inj & EVENT_VALID == 0
    }

    fn flush_second_level(&mut self) {
        self.vmcb().control.tlb_control = TLB_FLUSH_GUEST;
    }

    fn spec_ctrl(&self) -> u64 {
        self.spec_ctrl.guest()
    }

    fn set_spec_ctrl(&mut self, value: u64) {
        self.spec_ctrl.set_guest(value);
    }

    fn destroy(self: Box<Self>, frames: &mut dyn FrameAlloc) {
        let c = &self.vmcb_ref().control;
        let (iopm, msrpm) = (c.iopm_base_pa, c.msrpm_base_pa);
        frames.free(iopm, IOPM_PAGES);
        frames.free(msrpm, MSRPM_PAGES);
        frames.free(self.vmcb_pa, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redelivery_keeps_hardware_events_only() {
        // A #PF (type 3, error code valid) and an external interrupt come back.
        let pf = EVENT_VALID | (1 << 11) | (3 << 8) | 14 | (2 << 32);
        assert_eq!(redelivery(pf), pf);
        let irq = EVENT_VALID | 0xf3;
        assert_eq!(redelivery(irq), irq);
        // INT 0x80, INT3 and INTO run again instead.
        assert_eq!(redelivery(EVENT_VALID | (4 << 8) | 0x80), 0);
        assert_eq!(redelivery(EVENT_VALID | (3 << 8) | 3), 0);
        assert_eq!(redelivery(EVENT_VALID | (3 << 8) | 4), 0);
        assert_eq!(redelivery(0xf3), 0, "not valid");
    }

    #[test]
    fn msrpm_bits() {
        let mut map = [0xffu8; MSRPM_PAGES * PAGE];
        msrpm_pass(&mut map, 0x277).unwrap(); // PAT: byte 0x9d, bits 6-7
        assert_eq!(map[0x9d], 0b0011_1111);
        msrpm_pass(&mut map, 0xc000_0100).unwrap(); // FS_BASE: 0x800 + 0x40
        assert_eq!(map[0x840], 0b1111_1100);
        msrpm_pass(&mut map, 0xc001_0117).unwrap();
        assert_eq!(map[0x1000 + 0x45], 0b0011_1111); // bit 2 * 0x117 = byte 0x45, bits 6-7
        assert!(msrpm_pass(&mut map, 0x4000_0000).is_err());
        assert_eq!(map.iter().filter(|&&b| b != 0xff).count(), 3);
    }
}
