//! `sched_op` (public/sched.h): yield and shutdown; block and poll come with event channels.

use super::{memory, read_arg, Call, Ret};
use crate::domain::{Block, Domain, Ending};
use xen_abi::hypercall::*;
use xen_abi::sched::SchedPoll;

pub fn call(dom: &mut Domain, call: &Call) -> Ret {
    match call.args[0] {
        // Give up the rest of the slice, as Xen does: another domain runs.
        SCHEDOP_YIELD => {
            dom.yield_slice = true;
            0
        }
        // Block until an event is pending for the vCPU (the HLT of PV guests).
        SCHEDOP_BLOCK => {
            dom.blocked = Some(Block::Events);
            0
        }
        SCHEDOP_POLL => match read_arg::<SchedPoll>(dom, call.args[1]) {
            Ok(p) => poll(dom, &p),
            Err(f) => f.into(),
        },
        SCHEDOP_SHUTDOWN => {
            // struct sched_shutdown { unsigned int reason; }
            let mut reason = [0u8; 4];
            let paging = dom.vcpu.paging();
            if let Err(fault) = memory(dom).read_gva(&paging, false, call.args[1], &mut reason) {
                return fault.into();
            }
            // Xen takes any reason and keeps its low byte
            // (common/sched/core.c: domain_shutdown(d, (u8)reason)); the
            // toolstack decides what an unknown one means.
            let reason = u32::from_le_bytes(reason) & 0xff;
            dom.ending = Some(Ending::Shutdown(reason));
            0
        }
        _ => -ENOSYS,
    }
}

/// SCHEDOP_poll: returns at once if a listed port is pending (masked or
/// not); otherwise blocks until one is, an upcall is due, or the timeout
/// (absolute system time, 0 = none) passes (public/sched.h).
fn poll(dom: &mut Domain, p: &SchedPoll) -> Ret {
    if p.nr_ports as usize > xenolith::evtchn::POLL_MAX_PORTS {
        return -EINVAL;
    }
    let mut ports = [0u32; xenolith::evtchn::POLL_MAX_PORTS];
    let n = p.nr_ports as usize;
    // The array may not run past the top of the address space.
    if p.ports.checked_add(4 * n as u64).is_none() {
        return -EFAULT;
    }
    for (i, slot) in ports[..n].iter_mut().enumerate() {
        match read_arg::<u32>(dom, p.ports + 4 * i as u64) {
            Ok(port) => *slot = port,
            Err(f) => return f.into(),
        }
    }
    let bits = dom.xen.bits(dom.space.as_ref());
    match dom.xen.evtchn.poll(&bits, &ports[..n]) {
        Ok(true) => 0,
        Ok(false) => {
            dom.poll_ports = ports[..n].iter().copied().collect();
            dom.blocked = Some(Block::Poll {
                timeout_ns: (p.timeout != 0).then_some(p.timeout),
            });
            0
        }
        Err(e) => e,
    }
}
