//! Hypercall dispatch: the Xen calling convention, the CPL check, one module per hypercall family.

mod console_io;
mod sched_op;
mod test_op;
mod xen_version;

use crate::domain::Domain;
use crate::guest_memory::{Fault, GuestMemory};
use vcpu::Gpr;
use xen_abi::hypercall::*;

/// The arguments of one hypercall, read from the registers of the calling vCPU.
pub struct Call {
    pub nr: u64,
    pub args: [u64; 5],
}

/// What a handler returns: the value for RAX (negative Xen errno on failure).
pub type Ret = i64;

impl From<Fault> for Ret {
    fn from(_: Fault) -> Ret {
        -EFAULT
    }
}

/// Reads the call from the vCPU: 64-bit guests pass RDI, RSI, RDX, R10, R8;
/// 32-bit ones EBX, ECX, EDX, ESI, EDI (../shared/spec/xen-pvh-abi.md 2.4).
fn read_call(dom: &Domain) -> Call {
    let v = &dom.vcpu;
    let long_mode = v.paging().efer & (1 << 10) != 0;
    let regs = if long_mode {
        [Gpr::Rdi, Gpr::Rsi, Gpr::Rdx, Gpr::R10, Gpr::R8]
    } else {
        [Gpr::Rbx, Gpr::Rcx, Gpr::Rdx, Gpr::Rsi, Gpr::Rdi]
    };
    let narrow = |x: u64| if long_mode { x } else { x & 0xffff_ffff };
    Call {
        nr: narrow(v.gpr(Gpr::Rax)),
        args: regs.map(|r| narrow(v.gpr(r))),
    }
}

/// Handles the hypercall the vCPU just made and puts the result in RAX.
pub fn dispatch(dom: &mut Domain) {
    let call = read_call(dom);
    let ret = if dom.vcpu.cpl() > 0 {
        // Xen refuses hypercalls from guest user mode.
        -EPERM
    } else {
        match call.nr {
            XEN_VERSION => xen_version::call(dom, &call),
            CONSOLE_IO => console_io::call(dom, &call),
            SCHED_OP => sched_op::call(dom, &call),
            ARCH_7 => test_op::call(dom, &call),
            _ => {
                dom.unknown_hypercalls += 1;
                defmt::debug!("d{=u16}: hypercall {=u64} -> -ENOSYS", dom.id, call.nr);
                -ENOSYS
            }
        }
    };
    defmt::trace!(
        "d{=u16}: hypercall {=u64}({=u64:#x}, {=u64:#x}) = {=i64}",
        dom.id,
        call.nr,
        call.args[0],
        call.args[1],
        ret
    );
    dom.vcpu.set_gpr(Gpr::Rax, ret as u64);
}

/// Guest memory as seen by the calling vCPU (user accesses when at CPL 3).
pub fn memory(dom: &Domain) -> GuestMemory<'_> {
    GuestMemory::new(dom.space.as_ref())
}
