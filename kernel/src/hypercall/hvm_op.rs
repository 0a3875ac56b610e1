//! `hvm_op` (public/hvm/hvm_op.h, params.h): the callback vector and the console and XenStore parameters.

use super::{is_self, read_arg, write_arg, Call, Ret};
use crate::domain::Domain;
use xen_abi::hvm::*;
use xen_abi::hypercall::*;

pub fn call(dom: &mut Domain, call: &Call) -> Ret {
    match call.args[0] {
        HVMOP_SET_PARAM | HVMOP_GET_PARAM => {
            let mut p: XenHvmParam = match read_arg(dom, call.args[1]) {
                Ok(p) => p,
                Err(f) => return f.into(),
            };
            if !is_self(dom, p.domid) {
                return -EPERM;
            }
            let ret = if call.args[0] == HVMOP_SET_PARAM {
                set(dom, &p)
            } else {
                get(dom, &mut p)
            };
            if ret == 0 && call.args[0] == HVMOP_GET_PARAM {
                if let Err(f) = write_arg(dom, call.args[1], &p) {
                    return f.into();
                }
            }
            ret
        }
        // Returning -ENOSYS makes Linux stop calling it (spec 3.1 step 7).
        _ => -ENOSYS,
    }
}

fn set(dom: &mut Domain, p: &XenHvmParam) -> Ret {
    match p.index {
        HVM_PARAM_CALLBACK_IRQ => {
            // Only the vector type makes sense without an emulated IOAPIC (spec 3.2).
            dom.xen.callback_irq = p.value;
            dom.xen.callback_vector = match callback_irq_decode(p.value) {
                CallbackVia::Vector(v) if v >= 0x10 => Some(v),
                _ => None,
            };
            0
        }
        _ => -EPERM,
    }
}

fn get(dom: &mut Domain, p: &mut XenHvmParam) -> Ret {
    p.value = match p.index {
        HVM_PARAM_CALLBACK_IRQ => dom.xen.callback_irq,
        HVM_PARAM_CONSOLE_PFN => dom.xen.console_gfn,
        HVM_PARAM_CONSOLE_EVTCHN => u64::from(dom.xen.console_port),
        // Without a driver domain there is no XenStore: an unset parameter
        // reads as 0, which Linux's xenbus takes as "no XenStore".
        HVM_PARAM_STORE_PFN if dom.xen.served_by_driver => dom.xen.store_gfn,
        HVM_PARAM_STORE_EVTCHN if dom.xen.served_by_driver => u64::from(dom.xen.store_port),
        HVM_PARAM_STORE_PFN | HVM_PARAM_STORE_EVTCHN => 0,
        _ => return -EPERM,
    };
    0
}
