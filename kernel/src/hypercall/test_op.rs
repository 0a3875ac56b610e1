//! Xenolith's test operation on `__HYPERVISOR_arch_7`: raise an interrupt at the caller (a stand-in for event channels).

use super::{Call, Ret};
use crate::domain::Domain;
use xen_abi::hypercall::*;

pub fn call(dom: &mut Domain, call: &Call) -> Ret {
    match call.args[0] {
        TEST_OP_RAISE_IRQ => match u8::try_from(call.args[1]) {
            // Vectors below 32 are exceptions, not interrupts.
            Ok(vector) if vector >= 32 => {
                dom.pending_irq = Some(vector);
                0
            }
            _ => -EINVAL,
        },
        _ => -ENOSYS,
    }
}
