//! `event_channel_op` (public/event_channel.h): the port operations and the FIFO ABI's set-up over `xenolith::evtchn`.

use super::{is_self, read_arg, write_arg, Call, Ret};
use crate::domain::{Domain, Others};
use xen_abi::event_channel::*;
use xen_abi::hypercall::*;
use xenolith::evtchn::{Delivery, Remote};

/// Reads `$t` from the argument, runs `$body` with it mutable, writes it back if the result is 0.
macro_rules! with_arg {
    ($dom:expr, $gva:expr, $t:ty, |$a:ident| $body:expr) => {{
        let mut $a: $t = match read_arg($dom, $gva) {
            Ok(a) => a,
            Err(f) => return f.into(),
        };
        let ret: Ret = $body;
        if ret == 0 {
            if let Err(f) = write_arg($dom, $gva, &$a) {
                return f.into();
            }
        }
        ret
    }};
}

fn to_ret(r: Result<u32, i64>, out: &mut u32) -> Ret {
    match r {
        Ok(port) => {
            *out = port;
            0
        }
        Err(e) => e,
    }
}

pub fn call(dom: &mut Domain, others: &mut Others, call: &Call) -> Ret {
    let gva = call.args[1];
    match call.args[0] {
        // Xen copies link_bits back only on success.
        EVTCHNOP_INIT_CONTROL => with_arg!(dom, gva, EvtchnInitControl, |a| {
            let frame = fifo_frame(dom, a.control_gfn);
            let space = dom.space.as_ref();
            let xen = &mut dom.xen;
            let bits = crate::xen::event_bits_of(xen.shared_info, xen.vcpu_info_gpa, space);
            match xen.evtchn.init_control(&bits, a.vcpu, a.offset, frame) {
                Ok(link_bits) => {
                    a.link_bits = link_bits;
                    defmt::debug!(
                        "d{=u16}: FIFO event channels, vCPU {=u32} control block at GFN {=u64:#x} + {=u32:#x}",
                        dom.id,
                        a.vcpu,
                        a.control_gfn,
                        a.offset
                    );
                    0
                }
                Err(e) => e,
            }
        }),
        EVTCHNOP_EXPAND_ARRAY => match read_arg::<EvtchnExpandArray>(dom, gva) {
            Ok(a) => {
                let frame = fifo_frame(dom, a.array_gfn);
                let space = dom.space.as_ref();
                let xen = &mut dom.xen;
                let mut bits = crate::xen::event_bits_of(xen.shared_info, xen.vcpu_info_gpa, space);
                match xen.evtchn.expand_array(&mut bits, frame) {
                    Ok(()) => 0,
                    Err(e) => e,
                }
            }
            Err(f) => f.into(),
        },
        EVTCHNOP_ALLOC_UNBOUND => with_arg!(dom, gva, EvtchnAllocUnbound, |a| {
            if !is_self(dom, a.dom) {
                -EPERM
            } else {
                let r = dom.xen.evtchn.alloc_unbound(a.remote_dom);
                to_ret(r, &mut a.port)
            }
        }),
        EVTCHNOP_BIND_INTERDOMAIN => with_arg!(dom, gva, EvtchnBindInterdomain, |a| {
            let space = dom.space.as_ref();
            let xen = &mut dom.xen;
            let mut bits = crate::xen::event_bits_of(xen.shared_info, xen.vcpu_info_gpa, space);
            let r = if a.remote_dom == DOMID_SELF || a.remote_dom == dom.id {
                xen.evtchn
                    .bind_interdomain(&mut bits, Remote::Loopback, a.remote_port)
            } else {
                match others.find(a.remote_dom) {
                    // Xen: -ESRCH for a domain that does not exist.
                    None => Err(-ESRCH),
                    Some(peer) => xen.evtchn.bind_interdomain(
                        &mut bits,
                        Remote::Domain(&mut peer.xen.evtchn),
                        a.remote_port,
                    ),
                }
            };
            to_ret(r.map(|(port, _)| port), &mut a.local_port)
        }),
        EVTCHNOP_BIND_VIRQ => with_arg!(dom, gva, EvtchnBindVirq, |a| {
            let r = dom.xen.evtchn.bind_virq(a.virq, a.vcpu);
            to_ret(r, &mut a.port)
        }),
        EVTCHNOP_BIND_IPI => with_arg!(dom, gva, EvtchnBindIpi, |a| {
            let r = dom.xen.evtchn.bind_ipi(a.vcpu);
            to_ret(r, &mut a.port)
        }),
        EVTCHNOP_CLOSE => match read_arg::<EvtchnClose>(dom, gva) {
            Ok(a) => {
                let space = dom.space.as_ref();
                let xen = &mut dom.xen;
                let mut bits = crate::xen::event_bits_of(xen.shared_info, xen.vcpu_info_gpa, space);
                match xen.evtchn.close(&mut bits, a.port) {
                    Ok(peer) => {
                        // The other end goes back to unbound, waiting for us.
                        if let Some(peer) = peer {
                            let closer = dom.id;
                            if let Some(d) = others.find(peer.domid) {
                                d.xen.evtchn.peer_closed(peer.port, closer, a.port);
                            }
                        }
                        0
                    }
                    Err(e) => e,
                }
            }
            Err(f) => f.into(),
        },
        EVTCHNOP_SEND => match read_arg::<EvtchnSend>(dom, gva) {
            Ok(a) => {
                dom.evtchn_sends += 1;
                send(dom, others, a.port)
            }
            Err(f) => f.into(),
        },
        EVTCHNOP_STATUS => with_arg!(dom, gva, EvtchnStatus, |a| {
            if !is_self(dom, a.dom) {
                -EPERM
            } else {
                match dom.xen.evtchn.status(a.port) {
                    Ok(ch) => {
                        a = ch.to_evtchn_status(a.dom, a.port);
                        0
                    }
                    Err(e) => e,
                }
            }
        }),
        EVTCHNOP_BIND_VCPU => match read_arg::<EvtchnBindVcpu>(dom, gva) {
            Ok(a) => match dom.xen.evtchn.bind_vcpu(a.port, a.vcpu) {
                Ok(()) => 0,
                Err(e) => e,
            },
            Err(f) => f.into(),
        },
        EVTCHNOP_UNMASK => match read_arg::<EvtchnUnmask>(dom, gva) {
            Ok(a) => {
                let space = dom.space.as_ref();
                let xen = &mut dom.xen;
                let mut bits = crate::xen::event_bits_of(xen.shared_info, xen.vcpu_info_gpa, space);
                match xen.evtchn.unmask(&mut bits, a.port) {
                    Ok(_) => 0,
                    Err(e) => e,
                }
            }
            Err(f) => f.into(),
        },
        EVTCHNOP_SET_PRIORITY => match read_arg::<EvtchnSetPriority>(dom, gva) {
            Ok(a) => match dom.xen.evtchn.set_priority(a.port, a.priority) {
                Ok(()) => 0,
                Err(e) => e,
            },
            Err(f) => f.into(),
        },
        _ => -ENOSYS,
    }
}

/// EVTCHNOP_send: without a driver domain the console port is served here
/// (the hypervisor is its backend); other ports follow the channel table.
fn send(dom: &mut Domain, others: &mut Others, port: u32) -> Ret {
    if port == dom.xen.console_port && port != 0 && !dom.xen.served_by_driver {
        crate::vmexit::serve_console(dom);
        return 0;
    }
    let space = dom.space.as_ref();
    let xen = &mut dom.xen;
    let mut bits = crate::xen::event_bits_of(xen.shared_info, xen.vcpu_info_gpa, space);
    match xen.evtchn.send(&mut bits, port) {
        Ok(Delivery::Dropped) | Ok(Delivery::Local(_)) => 0,
        // The peer's port goes pending in its own shared_info; if it waits,
        // the scheduler finds it wakeable on its next pass.
        Ok(Delivery::Remote { domid, port }) => {
            if let Some(peer) = others.find(domid) {
                let mut peer_bits = peer.xen.bits(peer.space.as_ref());
                peer.xen.evtchn.raise(&mut peer_bits, port);
                // A waiting peer (a backend, or a frontend waiting for its
                // reply) runs next: the sender's slice ends now.
                if peer.blocked.is_some() && !peer.woken {
                    peer.woken = true;
                    dom.yield_slice = true;
                }
            }
            0
        }
        Err(e) => e,
    }
}

/// The host frame behind guest frame `gfn` for the FIFO ABI (Xen
/// `map_guest_page`: a writable page of the domain's). Only RAM the domain
/// holds is taken, and it stays the domain's while the FIFO ABI uses it:
/// `XENMEM_decrease_reservation` refuses it (memory_op.rs), and putting
/// something else at `gfn` (add_to_physmap) frees nothing, so the
/// hypervisor keeps using the frame whatever the guest later maps there;
/// the domain's end drops the FIFO state before its RAM is freed.
/// Anything else — a GFN past the address space (XSA-188 uses -2), a hole,
/// a device, shared_info or a grant frame, a read-only or foreign mapping
/// — is -EINVAL, as Xen.
fn fifo_frame(dom: &Domain, gfn: u64) -> Result<u64, i64> {
    let gpa = gfn.checked_mul(4096).ok_or(-EINVAL)?;
    let t = dom.space.translate(ept::Gpa(gpa)).ok_or(-EINVAL)?;
    let frame = t.hpa.0 & !0xfff;
    if t.perms.write && dom.ram.owns(frame) {
        Ok(frame)
    } else {
        Err(-EINVAL)
    }
}
