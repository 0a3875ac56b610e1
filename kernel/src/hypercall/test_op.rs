//! Xenolith's test operations on `__HYPERVISOR_arch_7`: raise an interrupt at the caller; take one of its pages away until it touches it.

use super::{Call, Ret};
use crate::domain::Domain;
use crate::memory::HostFrames;
use ept::{Gpa, Hpa, PageSize};
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
        TEST_OP_UNMAP_ONCE => unmap_once(dom, call.args[1]),
        _ => -ENOSYS,
    }
}

/// Unmaps the guest's own RAM page `gfn` (one at a time; not a special
/// page or a grant mapping, which are not RAM) until `refault` puts it back.
/// Not a page holding the calling hypercall instruction: without NRIPS the
/// hypervisor reads it back to step over it (found by the hypercall fuzzer).
fn unmap_once(dom: &mut Domain, gfn: u64) -> Ret {
    let Some(gpa) = gfn.checked_mul(4096) else {
        return -EINVAL;
    };
    if dom.unmapped_once.is_some() || !dom.owns_ram_gpa(gpa) || holds_the_call(dom, gpa) {
        return -EINVAL;
    }
    let Some(t) = dom.space.translate(Gpa(gpa)) else {
        return -EINVAL;
    };
    if dom
        .space
        .unmap(&mut HostFrames, Gpa(gpa), PageSize::Size4K)
        .is_err()
    {
        return -ENOMEM;
    }
    dom.vcpu.flush_second_level();
    dom.unmapped_once = Some((gpa, t.hpa.0, t.perms, t.mem_type));
    0
}

/// Whether the page at `gpa` holds a byte of the hypercall instruction the
/// vCPU is executing (at most 15 bytes from RIP, SDM Vol. 2A 2.3.11).
fn holds_the_call(dom: &Domain, gpa: u64) -> bool {
    let paging = dom.vcpu.paging();
    let rip = dom.vcpu.rip();
    let memory = super::memory(dom);
    [rip, rip.wrapping_add(14)]
        .into_iter()
        .filter_map(|at| memory.gpa_of_code(&paging, at))
        .any(|code| code & !0xfff == gpa)
}

/// A nested page fault at `gpa`: true if it was the page `unmap_once` took
/// away, which is now back (the guest runs on); false otherwise.
pub fn refault(dom: &mut Domain, gpa: u64) -> bool {
    match dom.unmapped_once {
        Some((page, hpa, perms, mem_type)) if gpa & !0xfff == page => {
            dom.unmapped_once = None;
            let mapped = dom.space.map(
                &mut HostFrames,
                Gpa(page),
                Hpa(hpa),
                PageSize::Size4K,
                perms,
                mem_type,
            );
            // Filling an empty entry needs no flush.
            mapped.is_ok()
        }
        _ => false,
    }
}
