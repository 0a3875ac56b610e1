//! A guest access to guest-physical space that is not its RAM: the faulting instruction emulated against the domain (its vCPU, memory, xAPIC page, and all-ones for nothing).
//!
//! The bare-metal half of `xenolith::emulate`, declared by main.rs. What
//! is decided here, after Xen's `hvm_hap_nested_page_fault` (hvm.c) and its
//! emulator (emulate.c), is documented in docs/security.md and
//! docs/xen-abi.md ("Guest-physical space that is not RAM").

use crate::domain::Domain;
use crate::guest_memory::GuestMemory;
use alloc::format;
use ept::Gpa;
use vcpu::{Access, Event, Gpr, GuestCode, Segment};
use xenolith::emulate::{self, Machine, Outcome, Stop, MAX_INSTRUCTION};

const PAGE: u64 = 4096;

/// #GP(0): Xen's answer when its emulator cannot fetch the instruction
/// (hvm_hap_nested_page_fault: `handle_mmio_with_translation` failed).
const GP0: Event = Event::Exception {
    vector: 13,
    error_code: Some(0),
};

/// Handles a nested page fault at `gpa` that no one else claimed.
pub fn nested_page_fault(dom: &mut Domain, gpa: u64, access: Access, present: bool) {
    match (access, present) {
        // A fetch from a page mapped without execute (a grant mapping):
        // Xen finds no handler for it and crashes the domain.
        (Access::Execute, true) => {
            dom.crash(format!("execute access not allowed at GPA {gpa:#x}"));
        }
        // A fetch from nothing: Xen's emulator cannot fetch the bytes and
        // the guest gets #GP(0).
        (Access::Execute, false) => {
            defmt::debug!("d{=u16}: fetch from GPA {=u64:#x} -> #GP", dom.id, gpa);
            dom.vcpu.inject(GP0);
        }
        // A data access to nothing, to the xAPIC page, or a write to a
        // read-only mapping: emulated.
        (_, _) => emulate_data_access(dom, gpa, access),
    }
}

fn emulate_data_access(dom: &mut Domain, gpa: u64, access: Access) {
    let kind = if access == Access::Write {
        "write"
    } else {
        "read"
    };
    let rip = dom.vcpu.rip();
    let bits = dom.vcpu.code_bits();
    let mut linear = dom.vcpu.segment_base(Segment::Cs).wrapping_add(rip);
    if bits != 64 {
        linear &= 0xffff_ffff;
    }
    let paging = dom.vcpu.paging();
    let mut bytes = [0u8; MAX_INSTRUCTION];
    let memory = GuestMemory::new(dom.space.as_ref());
    // An instruction may end before the next page, which may be unmapped.
    let to_page_end = (PAGE - linear % PAGE) as usize;
    let n = if memory.fetch(&paging, linear, &mut bytes) {
        MAX_INSTRUCTION
    } else if to_page_end < MAX_INSTRUCTION
        && memory.fetch(&paging, linear, &mut bytes[..to_page_end])
    {
        to_page_end
    } else {
        dom.crash(format!(
            "{kind} access at GPA {gpa:#x} (not RAM): the instruction at rip {rip:#x} cannot be read back"
        ));
        return;
    };
    let insn = emulate::decode(&bytes[..n], bits, rip);
    let mut machine = DomainMachine {
        dom,
        fault_page: gpa & !(PAGE - 1),
        touched: false,
    };
    let outcome = emulate::execute(&insn, &mut machine);
    let touched = machine.touched;
    let shown = &bytes[..insn.len().clamp(1, n)];
    match outcome {
        // The instruction at RIP never reached the page that faulted: the
        // fault came from delivering an event (an IDT or stack that is
        // not RAM) or from the guest's own page walk, neither of which is
        // emulated. The domain ends; what the instruction did dies with it.
        Ok(_) if !touched => dom.crash(format!(
            "{kind} access at GPA {gpa:#x} (not RAM) at rip {rip:#x}: the instruction there \
             ({:?} {shown:02x?}) does not make it (event delivery or a page walk is not emulated)",
            insn.mnemonic()
        )),
        Ok(Outcome::Done { len }) => dom.vcpu.complete_emulated(len),
        Ok(Outcome::Again) => {}
        Err(stop) => {
            let why = match stop {
                Stop::Undecodable => format!("undecodable instruction {shown:02x?}"),
                Stop::Unsupported(m) => {
                    format!("instruction not emulated: {m:?} {shown:02x?}")
                }
                Stop::Memory { linear, why } => {
                    format!("its access at linear {linear:#x} failed: {why}")
                }
            };
            dom.crash(format!(
                "{kind} access at GPA {gpa:#x} (not RAM) at rip {rip:#x}: {why}"
            ));
        }
    }
}

/// The domain as the emulator's machine: guest-linear accesses walk the
/// guest's page tables, then go to RAM, the xAPIC page, or nothing.
struct DomainMachine<'a> {
    dom: &'a mut Domain,
    /// The guest-physical page of the nested page fault being handled.
    fault_page: u64,
    /// Whether an access of the instruction reached `fault_page`.
    touched: bool,
}

/// Where a guest-physical page leads.
enum Target {
    /// Mapped memory (RAM, a grant mapping): writable or not.
    Mapped { writable: bool },
    /// The xAPIC register page, in xAPIC mode.
    Apic,
    /// Nothing: reads give all ones, writes are dropped (Xen's null ioreq
    /// handler for an unpopulated GFN, `null_read`/`null_write`).
    Nothing,
}

impl DomainMachine<'_> {
    fn target(&mut self, gpa: u64) -> Target {
        self.touched |= gpa & !(PAGE - 1) == self.fault_page;
        if let Some(t) = self.dom.space.translate(Gpa(gpa)) {
            return Target::Mapped {
                writable: t.perms.write,
            };
        }
        if self.dom.vlapic.xapic_page() == Some(gpa & !(PAGE - 1)) {
            return Target::Apic;
        }
        Target::Nothing
    }

    fn gpa(&self, linear: u64, write: bool) -> Result<u64, Stop> {
        let paging = self.dom.vcpu.paging();
        let user = self.dom.vcpu.cpl() == 3;
        GuestMemory::new(self.dom.space.as_ref())
            .gpa_of_data(&paging, linear, write, user)
            .ok_or(Stop::Memory {
                linear,
                why: "the guest's page tables do not allow it (a page fault is not emulated)",
            })
    }

    /// Splits `[linear, linear + size)` at page boundaries: `each(linear, offset, len)`.
    fn pieces(
        linear: u64,
        size: u8,
        mut each: impl FnMut(u64, usize, usize) -> Result<(), Stop>,
    ) -> Result<(), Stop> {
        let size = usize::from(size);
        let mut off = 0;
        while off < size {
            let at = linear.wrapping_add(off as u64);
            let n = ((PAGE - at % PAGE) as usize).min(size - off);
            each(at, off, n)?;
            off += n;
        }
        Ok(())
    }
}

impl Machine for DomainMachine<'_> {
    fn gpr(&self, reg: Gpr) -> u64 {
        self.dom.vcpu.gpr(reg)
    }

    fn set_gpr(&mut self, reg: Gpr, value: u64) {
        self.dom.vcpu.set_gpr(reg, value);
    }

    fn rflags(&self) -> u64 {
        self.dom.vcpu.rflags()
    }

    fn set_rflags(&mut self, value: u64) {
        self.dom.vcpu.set_rflags(value);
    }

    fn segment_base(&self, seg: Segment) -> u64 {
        self.dom.vcpu.segment_base(seg)
    }

    fn read(&mut self, linear: u64, size: u8) -> Result<u64, Stop> {
        let mut buf = [0u8; 8];
        Self::pieces(linear, size, |at, off, n| {
            let gpa = self.gpa(at, false)?;
            let part = &mut buf[off..off + n];
            match self.target(gpa) {
                Target::Mapped { .. } => GuestMemory::new(self.dom.space.as_ref())
                    .read_gpa(gpa, part)
                    .map_err(|_| Stop::Memory {
                        linear: at,
                        why: "mapped memory not readable",
                    }),
                Target::Apic => {
                    // An 8-byte access straddles registers: it reads 0.
                    let v = u64::from(self.dom.vlapic.mmio_read((gpa % PAGE) as u32, n as u8));
                    part.copy_from_slice(&v.to_le_bytes()[..n]);
                    Ok(())
                }
                Target::Nothing => {
                    part.fill(0xff);
                    Ok(())
                }
            }
        })?;
        Ok(u64::from_le_bytes(buf))
    }

    fn write(&mut self, linear: u64, size: u8, value: u64) -> Result<(), Stop> {
        let bytes = value.to_le_bytes();
        Self::pieces(linear, size, |at, off, n| {
            let gpa = self.gpa(at, true)?;
            let part = &bytes[off..off + n];
            match self.target(gpa) {
                Target::Mapped { writable: true } => GuestMemory::new(self.dom.space.as_ref())
                    .write_gpa(gpa, part)
                    .map_err(|_| Stop::Memory {
                        linear: at,
                        why: "mapped memory not writable",
                    }),
                // Xen discards writes to read-only RAM and grant mappings
                // (p2m_ram_ro, p2m_grant_map_ro: P2M_DISCARD_WRITE_TYPES).
                Target::Mapped { writable: false } | Target::Nothing => Ok(()),
                Target::Apic => {
                    let mut word = [0u8; 4];
                    let k = n.min(4);
                    word[..k].copy_from_slice(&part[..k]);
                    let effect = self.dom.vlapic.mmio_write(
                        (gpa % PAGE) as u32,
                        n as u8,
                        u32::from_le_bytes(word),
                    );
                    crate::vmexit::apic_effect(self.dom, effect);
                    Ok(())
                }
            }
        })
    }
}
