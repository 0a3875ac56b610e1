//! `vcpu_op` (public/vcpu.h): vcpu_info and runstate registration, the singleshot timer.

use super::{memory, read_arg, Call, Ret};
use crate::domain::Domain;
use crate::xen::time;
use xen_abi::hypercall::*;
use xen_abi::shared_info::{vcpu_info_offset, VcpuInfo, PENDING_SEL_OFFSET, UPCALL_PENDING_OFFSET};
use xen_abi::vcpu::*;

pub fn call(dom: &mut Domain, call: &Call) -> Ret {
    let (cmd, vcpu, arg) = (call.args[0], call.args[1], call.args[2]);
    // One vCPU per domain for now: every other id does not exist.
    if vcpu != 0 {
        return -ENOENT;
    }
    match cmd {
        VCPUOP_REGISTER_VCPU_INFO => match read_arg::<VcpuRegisterVcpuInfo>(dom, arg) {
            Ok(a) => register_vcpu_info(dom, &a),
            Err(f) => f.into(),
        },
        VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA => {
            match read_arg::<VcpuRegisterRunstateMemoryArea>(dom, arg) {
                Ok(a) => register_runstate(dom, a.addr),
                Err(f) => f.into(),
            }
        }
        VCPUOP_SET_SINGLESHOT_TIMER => match read_arg::<VcpuSetSingleshotTimer>(dom, arg) {
            Ok(t) => {
                if t.flags & VCPU_SSHOTTMR_FUTURE != 0 && t.timeout_abs_ns < time::now_ns() {
                    return -ETIME;
                }
                // A deadline already past fires at once (spec 3.2).
                dom.xen.timer_deadline_ns = Some(t.timeout_abs_ns);
                0
            }
            Err(f) => f.into(),
        },
        VCPUOP_STOP_SINGLESHOT_TIMER => {
            dom.xen.timer_deadline_ns = None;
            0
        }
        // No periodic timer is ever running; 0 selects Linux's vcpuop clockevent.
        VCPUOP_STOP_PERIODIC_TIMER => 0,
        VCPUOP_IS_UP => 1,
        _ => -ENOSYS,
    }
}

/// Moves vCPU 0's vcpu_info into guest memory (once; Xen's `map_vcpu_info`):
/// 64 bytes, 8-aligned, inside one writable page of the domain.
fn register_vcpu_info(dom: &mut Domain, a: &VcpuRegisterVcpuInfo) -> Ret {
    if dom.xen.vcpu_info_gpa.is_some() {
        return -EBUSY;
    }
    let size = core::mem::size_of::<VcpuInfo>() as u64;
    if !a.offset.is_multiple_of(8) || u64::from(a.offset) + size > 4096 || a.mfn >= 1 << 36 {
        return -EINVAL;
    }
    let gpa = a.mfn * 4096 + u64::from(a.offset);
    // Copy the current contents (mask, pending bits, time) across, then point there.
    let mut old = [0u8; 64];
    // SAFETY: the legacy slot lies inside the owned shared_info frame.
    unsafe {
        core::ptr::copy_nonoverlapping(
            (dom.xen.shared_info + vcpu_info_offset(0) as u64) as *const u8,
            old.as_mut_ptr(),
            64,
        )
    };
    if memory(dom).write_gpa(gpa, &old).is_err() {
        return -EINVAL;
    }
    dom.xen.vcpu_info_gpa = Some(gpa);
    // Xen then marks everything pending so no event is lost in the move.
    let mem = memory(dom);
    let _ = mem.write_gpa(gpa + PENDING_SEL_OFFSET as u64, &u64::MAX.to_le_bytes());
    let _ = mem.write_gpa(gpa + UPCALL_PENDING_OFFSET as u64, &[1]);
    time::publish_vcpu_info(&dom.xen, dom.space.as_ref());
    0
}

/// Remembers where the guest wants its runstate, and writes it once. The
/// address is guest-virtual; it is translated now, since with PTI the user
/// page tables do not map it later (spec 4.4).
fn register_runstate(dom: &mut Domain, gva: u64) -> Ret {
    let paging = dom.vcpu.paging();
    let info = VcpuRunstateInfo {
        state: RUNSTATE_RUNNING,
        state_entry_time: time::now_ns(),
        time: [time::now_ns(), 0, 0, 0],
        ..VcpuRunstateInfo::default()
    };
    match super::write_arg(dom, gva, &info) {
        Ok(()) => {
            dom.xen.runstate_gpa = memory(dom).gpa_of(&paging, gva);
            0
        }
        Err(f) => f.into(),
    }
}
