//! The test-guest check `evtchn-fifo`: this guest moves to the FIFO event-channel ABI and watches the hypervisor queue its events (public/event_channel.h, Xen event_fifo.c).
//!
//! After the check the domain stays on the FIFO ABI (there is no way back
//! but EVTCHNOP_reset); [`clear_pending`] lets the fuzzers' event waits
//! clear a port's PENDING bit in the event word from then on.

use crate::hypercall::call;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use xen_abi::event_channel::*;
use xen_abi::hypercall::*;
use xen_abi::memory::XENMEM_DECREASE_RESERVATION;

#[repr(C, align(4096))]
struct Page([AtomicU32; 1024]);

/// vCPU 0's control block (at offset 0) and event-array page 0 (ports 0-1023).
static CONTROL: Page = Page([const { AtomicU32::new(0) }; 1024]);
static ARRAY: Page = Page([const { AtomicU32::new(0) }; 1024]);
/// Whether ARRAY is this domain's event array.
static ON_FIFO: AtomicBool = AtomicBool::new(false);

const PENDING: u32 = 1 << EVTCHN_FIFO_PENDING;
const MASKED: u32 = 1 << EVTCHN_FIFO_MASKED;
const LINKED: u32 = 1 << EVTCHN_FIFO_LINKED;
const BUSY: u32 = 1 << EVTCHN_FIFO_BUSY;

fn gfn(page: &Page) -> u64 {
    // This guest is identity-mapped: its addresses are guest-physical.
    page as *const Page as u64 >> 12
}

fn ensure(ok: bool, why: &'static str) -> Result<(), &'static str> {
    if ok {
        Ok(())
    } else {
        Err(why)
    }
}

fn op<T>(cmd: u64, arg: &mut T) -> i64 {
    call(EVENT_CHANNEL_OP, cmd, arg as *mut T as u64, 0)
}

fn init_control(control_gfn: u64, offset: u32, vcpu: u32) -> (i64, u8) {
    let mut a = EvtchnInitControl {
        control_gfn,
        offset,
        vcpu,
        link_bits: 0,
        pad: [0; 7],
    };
    (op(EVTCHNOP_INIT_CONTROL, &mut a), a.link_bits)
}

fn expand_array(array_gfn: u64) -> i64 {
    op(EVTCHNOP_EXPAND_ARRAY, &mut EvtchnExpandArray { array_gfn })
}

fn set_priority(port: u32, priority: u32) -> i64 {
    op(
        EVTCHNOP_SET_PRIORITY,
        &mut EvtchnSetPriority { port, priority },
    )
}

fn bind_ipi() -> Result<u32, &'static str> {
    let mut a = EvtchnBindIpi { vcpu: 0, port: 0 };
    ensure(
        op(EVTCHNOP_BIND_IPI, &mut a) == 0,
        "EVTCHNOP_bind_ipi failed",
    )?;
    Ok(a.port)
}

fn send(port: u32) -> i64 {
    op(EVTCHNOP_SEND, &mut EvtchnSend { port })
}

fn word(port: u32) -> &'static AtomicU32 {
    &ARRAY.0[port as usize % 1024]
}

fn ready() -> u32 {
    CONTROL.0[0].load(Ordering::SeqCst)
}

fn head(priority: usize) -> u32 {
    CONTROL.0[2 + priority].load(Ordering::SeqCst)
}

/// Clears `port`'s PENDING in its event word, once this domain is on the
/// FIFO ABI (no-op before).
pub fn clear_pending(port: u32) {
    if ON_FIFO.load(Ordering::SeqCst) && port < 1024 {
        word(port).fetch_and(!PENDING, Ordering::SeqCst);
    }
}

pub fn check() -> Result<(), &'static str> {
    let control = gfn(&CONTROL);
    // XSA-188: a GFN that is no page at all is -EINVAL, and the domain
    // stays on the 2-level ABI, where expand_array is -EOPNOTSUPP.
    ensure(
        init_control(u64::MAX - 1, 0, 0).0 == -EINVAL,
        "init_control with GFN -2 is not -EINVAL (XSA-188)",
    )?;
    ensure(
        expand_array(gfn(&ARRAY)) == -EOPNOTSUPP,
        "expand_array before init_control is not -EOPNOTSUPP",
    )?;
    ensure(
        set_priority(1, 0) == -ENOSYS,
        "set_priority on the 2-level ABI is not -ENOSYS",
    )?;
    // The control block must end in its page and be 8-aligned; vCPU 1
    // does not exist.
    for bad in [4, 4096 - 64, 4096] {
        ensure(
            init_control(control, bad, 0).0 == -EINVAL,
            "a bad control-block offset is not -EINVAL",
        )?;
    }
    ensure(
        init_control(control, 0, 1).0 == -ENOENT,
        "init_control for vCPU 1 is not -ENOENT",
    )?;
    // Hypervisor pages are not guest RAM: shared_info's GFN (mapped at the
    // top of the fuzzers' area) is not tried; a GFN past RAM is.
    ensure(
        init_control(0x40000, 0, 0).0 == -EINVAL,
        "init_control on a GFN outside RAM is not -EINVAL",
    )?;
    let (rc, link_bits) = init_control(control, 0, 0);
    ensure(rc == 0, "init_control failed")?;
    ensure(link_bits == 17, "init_control did not say link_bits 17")?;
    ensure(
        init_control(control, 8, 0).0 == -EINVAL,
        "a second init_control for vCPU 0 is not -EINVAL",
    )?;
    // Event array page 0, every port masked, as Linux's init_array_page.
    for w in &ARRAY.0 {
        w.store(MASKED, Ordering::SeqCst);
    }
    ensure(
        expand_array(0x40000) == -EINVAL,
        "expand_array on a GFN outside RAM is not -EINVAL",
    )?;
    ensure(expand_array(gfn(&ARRAY)) == 0, "expand_array failed")?;
    ON_FIFO.store(true, Ordering::SeqCst);
    // The hypervisor writes these frames: ballooning them out is refused
    // (XENMEM_decrease_reservation does 0 extents).
    for page in [gfn(&CONTROL), gfn(&ARRAY)] {
        let gfns = [page];
        // struct xen_memory_reservation { extent_start; nr_extents; extent_order, mem_flags; domid }
        let r: [u64; 4] = [gfns.as_ptr() as u64, 1, 0, u64::from(DOMID_SELF)];
        ensure(
            call(MEMORY_OP, XENMEM_DECREASE_RESERVATION, r.as_ptr() as u64, 0) == 0,
            "a FIFO page was ballooned out",
        )?;
    }

    let (p, q) = (bind_ipi()?, bind_ipi()?);
    let result = queues(p, q);
    for port in [p, q] {
        let _ = op(EVTCHNOP_CLOSE, &mut EvtchnClose { port });
    }
    result
}

/// Two IPI ports on vCPU 0: p at the default priority 7, q at 0.
fn queues(p: u32, q: u32) -> Result<(), &'static str> {
    // Masked: the event is only PENDING.
    ensure(send(p) == 0, "EVTCHNOP_send failed")?;
    ensure(
        word(p).load(Ordering::SeqCst) == PENDING | MASKED,
        "a masked event's word is not PENDING|MASKED",
    )?;
    ensure(ready() == 0, "a masked event made a queue ready")?;
    // The guest may not clear MASKED of a PENDING event itself: unmask
    // through the hypervisor, which links it as the head of queue 7.
    ensure(
        op(EVTCHNOP_UNMASK, &mut EvtchnUnmask { port: p }) == 0,
        "EVTCHNOP_unmask failed",
    )?;
    ensure(
        word(p).load(Ordering::SeqCst) == PENDING | LINKED,
        "the unmasked event is not PENDING|LINKED",
    )?;
    ensure(head(7) == p, "the event is not the head of queue 7")?;
    ensure(ready() == 1 << 7, "queue 7's ready bit is not set")?;
    // Raising it again while LINKED changes nothing.
    ensure(send(p) == 0, "EVTCHNOP_send failed")?;
    ensure(
        word(p).load(Ordering::SeqCst) == PENDING | LINKED,
        "a LINKED event was linked again",
    )?;
    // q at the highest priority: its own queue and ready bit.
    ensure(set_priority(q, 16) == -EINVAL, "priority 16 is not -EINVAL")?;
    ensure(
        set_priority(5000, 0) == -EINVAL,
        "set_priority on a bad port is not -EINVAL",
    )?;
    ensure(set_priority(q, 0) == 0, "set_priority failed")?;
    word(q).fetch_and(!MASKED, Ordering::SeqCst);
    ensure(send(q) == 0, "EVTCHNOP_send failed")?;
    ensure(
        head(0) == q && ready() == (1 << 7) | 1,
        "the priority-0 event is not queue 0's head",
    )?;
    ensure(
        word(p).load(Ordering::SeqCst) & 0x1_ffff == 0,
        "events of two priorities were linked together",
    )?;
    // Consume p as Linux does (LINKED and LINK off, then PENDING), then
    // raise q's twin on queue 7: with p gone the queue is empty, so the
    // new event becomes its head again.
    word(p).fetch_and(!(LINKED | 0x1_ffff | PENDING), Ordering::SeqCst);
    CONTROL.0[0].fetch_and(!(1 << 7), Ordering::SeqCst);
    ensure(set_priority(q, 7) == 0, "set_priority failed")?;
    word(q).fetch_and(!(LINKED | 0x1_ffff | PENDING), Ordering::SeqCst);
    ensure(send(q) == 0, "EVTCHNOP_send failed")?;
    ensure(
        head(7) == q && ready() & (1 << 7) != 0,
        "an event on an emptied queue is not its new head",
    )?;
    ensure(word(q).load(Ordering::SeqCst) & BUSY == 0, "BUSY left set")?;
    // SCHEDOP_poll sees FIFO pending state.
    ensure(send(p) == 0, "EVTCHNOP_send failed")?;
    let ports = [p];
    let poll: [u64; 3] = [ports.as_ptr() as u64, 1, 0];
    ensure(
        call(SCHED_OP, SCHEDOP_POLL, poll.as_ptr() as u64, 0) == 0,
        "SCHEDOP_poll on a pending FIFO event failed",
    )?;
    // Closing clears PENDING.
    ensure(
        op(EVTCHNOP_CLOSE, &mut EvtchnClose { port: p }) == 0,
        "EVTCHNOP_close failed",
    )?;
    ensure(
        word(p).load(Ordering::SeqCst) & PENDING == 0,
        "closing left the event PENDING",
    )
}
