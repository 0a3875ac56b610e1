//! `sched_op` (public/sched.h): yield and shutdown; block and poll come with event channels.

use super::{memory, Call, Ret};
use crate::domain::{Domain, Ending};
use xen_abi::hypercall::*;

pub fn call(dom: &mut Domain, call: &Call) -> Ret {
    match call.args[0] {
        SCHEDOP_YIELD => 0,
        SCHEDOP_SHUTDOWN => {
            // struct sched_shutdown { unsigned int reason; }
            let mut reason = [0u8; 4];
            let paging = dom.vcpu.paging();
            if let Err(fault) = memory(dom).read_gva(&paging, false, call.args[1], &mut reason) {
                return fault.into();
            }
            let reason = u32::from_le_bytes(reason);
            if reason > SHUTDOWN_WATCHDOG {
                return -EINVAL;
            }
            dom.ending = Some(Ending::Shutdown(reason));
            0
        }
        _ => -ENOSYS,
    }
}
