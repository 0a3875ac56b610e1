//! Hypercall dispatch: the Xen calling convention, the CPL check, one module per hypercall family.

mod console_io;
mod event_channel_op;
mod grant_table_op;
mod hvm_op;
mod memory_op;
mod privileged;
mod sched_op;
pub mod test_op;
mod vcpu_op;
pub mod xen_version;

use crate::domain::{Domain, Others};
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

/// A hypercall that did part of its work and must be entered again with
/// these first three arguments (Xen's hypercall_create_continuation): the
/// guest's argument registers are rewritten and RIP stays on the hypercall
/// instruction, so the vCPU can be preempted between the parts.
pub struct Continue(pub [u64; 3]);

/// Whether the hypercall finished (RIP moves past it) or continues.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Continued,
}

impl From<Fault> for Ret {
    fn from(_: Fault) -> Ret {
        -EFAULT
    }
}

/// The argument registers: 64-bit code passes RDI, RSI, RDX, R10, R8;
/// 32-bit code (protected mode, or compatibility mode under a 64-bit
/// kernel) EBX, ECX, EDX, ESI, EDI (../shared/spec/xen-pvh-abi.md 2.4).
/// Which one is the code segment's: CS.L, not EFER.LMA (Xen's
/// hvm_hypercall uses hvm_guest_x86_mode).
fn arg_regs(long_mode: bool) -> [Gpr; 5] {
    if long_mode {
        [Gpr::Rdi, Gpr::Rsi, Gpr::Rdx, Gpr::R10, Gpr::R8]
    } else {
        [Gpr::Rbx, Gpr::Rcx, Gpr::Rdx, Gpr::Rsi, Gpr::Rdi]
    }
}

/// Reads the call from the vCPU.
fn read_call(dom: &Domain) -> Call {
    let v = &dom.vcpu;
    let long_mode = v.in_64bit_mode();
    let narrow = |x: u64| if long_mode { x } else { x & 0xffff_ffff };
    Call {
        nr: narrow(v.gpr(Gpr::Rax)),
        args: arg_regs(long_mode).map(|r| narrow(v.gpr(r))),
    }
}

/// Handles the hypercall the vCPU just made and puts the result in RAX, or
/// sets it up to be entered again.
pub fn dispatch(dom: &mut Domain, others: &mut Others) -> Outcome {
    let call = read_call(dom);
    let ret = if dom.vcpu.cpl() > 0 {
        // Xen refuses hypercalls from guest user mode.
        -EPERM
    } else {
        match call.nr {
            XEN_VERSION => xen_version::call(dom, &call),
            CONSOLE_IO => match console_io::call(dom, &call) {
                Ok(ret) => ret,
                Err(more) => return continued(dom, more),
            },
            SCHED_OP => sched_op::call(dom, &call),
            MEMORY_OP => match memory_op::call(dom, others, &call) {
                Ok(ret) => ret,
                Err(more) => return continued(dom, more),
            },
            HVM_OP => hvm_op::call(dom, &call),
            VCPU_OP => vcpu_op::call(dom, &call),
            EVENT_CHANNEL_OP => event_channel_op::call(dom, others, &call),
            GRANT_TABLE_OP => grant_table_op::call(dom, others, &call),
            ARCH_7 => test_op::call(dom, &call),
            SYSCTL | DOMCTL | PLATFORM_OP | HYPFS_OP => privileged::call(dom, &call),
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
    Outcome::Done
}

/// Sets the vCPU up to enter the hypercall again with these first three
/// arguments (RIP stays on the instruction).
fn continued(dom: &mut Domain, Continue(args): Continue) -> Outcome {
    let long_mode = dom.vcpu.in_64bit_mode();
    for (reg, value) in arg_regs(long_mode).into_iter().zip(args) {
        dom.vcpu.set_gpr(reg, value);
    }
    Outcome::Continued
}

/// Ends whatever domain console line is unfinished on COM1.
pub fn end_console_line() {
    console_io::end_line();
}

/// A domain's console output (console_io or its ring).
pub fn console_output(dom: &mut Domain, bytes: &[u8]) {
    console_io::emit(dom, bytes);
}

/// Guest memory as seen by the calling vCPU (user accesses when at CPL 3).
pub fn memory(dom: &Domain) -> GuestMemory<'_> {
    GuestMemory::new(dom.space.as_ref())
}

/// A Xen ABI argument structure (xen-abi): `repr(C)`, integers and explicit
/// padding fields only, so every bit pattern is a valid value and it has no
/// implicit padding.
pub trait Abi: Copy + Default {}

macro_rules! abi {
    ($($t:ty),* $(,)?) => { $(impl Abi for $t {})* };
}

abi!(
    u16,
    u32,
    u64,
    xen_abi::memory::XenAddToPhysmap,
    xen_abi::memory::XenMemoryReservation,
    xen_abi::memory::XenMemoryMap,
    xen_abi::hvm::XenHvmParam,
    xen_abi::vcpu::VcpuRegisterVcpuInfo,
    xen_abi::vcpu::VcpuRegisterRunstateMemoryArea,
    xen_abi::vcpu::VcpuSetSingleshotTimer,
    xen_abi::vcpu::VcpuRunstateInfo,
    xen_abi::event_channel::EvtchnAllocUnbound,
    xen_abi::event_channel::EvtchnBindInterdomain,
    xen_abi::event_channel::EvtchnBindVirq,
    xen_abi::event_channel::EvtchnBindIpi,
    xen_abi::event_channel::EvtchnClose,
    xen_abi::event_channel::EvtchnSend,
    xen_abi::event_channel::EvtchnStatus,
    xen_abi::event_channel::EvtchnBindVcpu,
    xen_abi::event_channel::EvtchnUnmask,
    xen_abi::grant_table::GnttabQuerySize,
    xen_abi::grant_table::GnttabSetupTable,
    xen_abi::grant_table::GnttabSetVersion,
    xen_abi::grant_table::GnttabGetVersion,
    xen_abi::grant_table::GnttabCopy,
    xen_abi::grant_table::GnttabMapGrantRef,
    xen_abi::grant_table::GnttabUnmapGrantRef,
    xen_abi::sched::SchedPoll,
    xen_abi::features::XenFeatureInfo,
);

fn as_bytes_mut<T: Abi>(value: &mut T) -> &mut [u8] {
    // SAFETY: `T: Abi` is plain data: any bytes make a valid value.
    unsafe {
        core::slice::from_raw_parts_mut((value as *mut T).cast::<u8>(), core::mem::size_of::<T>())
    }
}

fn as_bytes<T: Abi>(value: &T) -> &[u8] {
    // SAFETY: `T: Abi` has no implicit padding, so every byte is initialised.
    unsafe {
        core::slice::from_raw_parts((value as *const T).cast::<u8>(), core::mem::size_of::<T>())
    }
}

fn slice_bytes_mut<T: Abi>(values: &mut [T]) -> &mut [u8] {
    // SAFETY: as `as_bytes_mut`, for each element of a contiguous array.
    unsafe {
        core::slice::from_raw_parts_mut(
            values.as_mut_ptr().cast::<u8>(),
            core::mem::size_of_val(values),
        )
    }
}

fn slice_bytes<T: Abi>(values: &[T]) -> &[u8] {
    // SAFETY: as `as_bytes`, for each element of a contiguous array.
    unsafe {
        core::slice::from_raw_parts(values.as_ptr().cast::<u8>(), core::mem::size_of_val(values))
    }
}

/// Copies an argument structure in from guest-virtual `gva`.
pub fn read_arg<T: Abi>(dom: &Domain, gva: u64) -> Result<T, Fault> {
    let mut value = T::default();
    let paging = dom.vcpu.paging();
    let user = dom.vcpu.cpl() == 3;
    memory(dom).read_gva(&paging, user, gva, as_bytes_mut(&mut value))?;
    Ok(value)
}

/// Copies an array of argument structures in from guest-virtual `gva`:
/// one walk of the guest's tables per page, not one per element (a grant
/// batch has up to 512).
pub fn read_args<T: Abi>(dom: &Domain, gva: u64, out: &mut [T]) -> Result<(), Fault> {
    let paging = dom.vcpu.paging();
    let user = dom.vcpu.cpl() == 3;
    memory(dom).read_gva(&paging, user, gva, slice_bytes_mut(out))
}

/// Copies an array of argument structures out to guest-virtual `gva`.
pub fn write_args<T: Abi>(dom: &Domain, gva: u64, values: &[T]) -> Result<(), Fault> {
    let paging = dom.vcpu.paging();
    let user = dom.vcpu.cpl() == 3;
    memory(dom).write_gva(&paging, user, gva, slice_bytes(values))
}

/// Copies an argument structure out to guest-virtual `gva`.
pub fn write_arg<T: Abi>(dom: &Domain, gva: u64, value: &T) -> Result<(), Fault> {
    let paging = dom.vcpu.paging();
    let user = dom.vcpu.cpl() == 3;
    memory(dom).write_gva(&paging, user, gva, as_bytes(value))
}

/// `DOMID_SELF` or the caller's own id; anything else is not allowed to a domU.
pub fn is_self(dom: &Domain, domid: u16) -> bool {
    domid == xen_abi::event_channel::DOMID_SELF || domid == dom.id
}
