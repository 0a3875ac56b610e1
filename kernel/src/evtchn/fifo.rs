//! Event channels, FIFO ABI: the per-vCPU priority queues the hypervisor links events onto in guest memory (Xen common/event_fifo.c).
//!
//! Pure logic. Each port has a 32-bit event word in an event-array page
//! (PENDING, MASKED, LINKED, BUSY and a 17-bit LINK to the next port of its
//! queue); each vCPU has a control block (a `ready` bitmap, one bit per
//! priority, and the `head` port of each of its 16 queues). All of it is
//! guest memory: the guest consumes queues, masks and unmasks while the
//! hypervisor links, so every word is reached through [`FifoMemory`]'s
//! locked operations, and every value read from it is taken as hostile:
//! a LINK or head the guest wrote is never followed by the hypervisor (it
//! only ever follows its own `tail` record), and the one compare-exchange
//! loop (`set_link`) is bounded as Xen bounds it.
//!
//! What lives here, hypervisor-side: which guest frames hold the event
//! array and each vCPU's control block (opaque frame handles the caller
//! gave, host-physical in the hypervisor), each queue's tail, and each
//! port's priority, last queue and "pending before its array page existed".

use super::{mark_events_pending, EventBits, Notify, Port, Result, MAX_PORTS, MAX_VCPUS};
use xen_abi::event_channel::{
    EVTCHN_FIFO_BUSY, EVTCHN_FIFO_EVENT_WORDS_PER_PAGE, EVTCHN_FIFO_HEAD_OFFSET,
    EVTCHN_FIFO_LINKED, EVTCHN_FIFO_LINK_MASK, EVTCHN_FIFO_MASKED,
    EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES, EVTCHN_FIFO_MAX_QUEUES, EVTCHN_FIFO_PENDING,
    EVTCHN_FIFO_PRIORITY_DEFAULT, EVTCHN_FIFO_PRIORITY_MIN, EVTCHN_FIFO_READY_OFFSET,
};
use xen_abi::hypercall::{EINVAL, ENOSPC};

pub const PENDING: u32 = 1 << EVTCHN_FIFO_PENDING;
pub const MASKED: u32 = 1 << EVTCHN_FIFO_MASKED;
pub const LINKED: u32 = 1 << EVTCHN_FIFO_LINKED;
pub const BUSY: u32 = 1 << EVTCHN_FIFO_BUSY;
pub const LINK_MASK: u32 = EVTCHN_FIFO_LINK_MASK;

/// Size of `struct evtchn_fifo_control_block`: it may start at any 8-aligned
/// offset from which it ends inside its page (Xen `evtchn_fifo_init_control`).
pub const CONTROL_BLOCK_SIZE: u32 = 72;
/// The highest offset a control block may start at.
pub const MAX_CONTROL_OFFSET: u32 = 4096 - CONTROL_BLOCK_SIZE;
/// Compare-exchange attempts on a tail word once it is BUSY (Xen
/// `evtchn_fifo_set_link`): with BUSY set a well-behaved guest can change
/// the word at most four more ways (set MASKED, clear MASKED, clear
/// PENDING, clear LINKED), so more failures mean a hostile guest, whose
/// event is then lost rather than the hypervisor spinning.
pub const SET_LINK_TRIES: usize = 4;

const WORDS_PER_PAGE: u32 = EVTCHN_FIFO_EVENT_WORDS_PER_PAGE;
const QUEUES: usize = EVTCHN_FIFO_MAX_QUEUES;

const _: () = assert!(MAX_PORTS as u32 <= LINK_MASK + 1);

/// The guest frames of the FIFO ABI. `frame` is a handle the caller gave to
/// `init_control` or `expand_array` (in the hypervisor, the host-physical
/// address of a RAM frame of the domain, kept valid until the domain ends);
/// `offset` is always a multiple of 4 below 4096. Every operation is one
/// atomic access, as the guest writes the same words concurrently.
pub trait FifoMemory {
    fn fifo_load(&self, frame: u64, offset: u32) -> u32;
    fn fifo_store(&mut self, frame: u64, offset: u32, value: u32);
    /// Stores `new` if the word is `old`; returns what the word held.
    fn fifo_cmpxchg(&mut self, frame: u64, offset: u32, old: u32, new: u32) -> u32;
    /// ORs `bits` in; returns the old value.
    fn fifo_fetch_or(&mut self, frame: u64, offset: u32, bits: u32) -> u32;
    /// ANDs `bits` in; returns the old value.
    fn fifo_fetch_and(&mut self, frame: u64, offset: u32, bits: u32) -> u32;
}

/// A vCPU's control block, if registered, and the tail of each of its queues.
#[derive(Clone, Copy, Debug)]
struct VcpuQueues {
    /// (frame, offset of the control block in it).
    control: Option<(u64, u32)>,
    /// The last port linked onto each queue (0: none; Xen's `q->tail`).
    tails: [Port; QUEUES],
}

/// The hypervisor's view of one port.
#[derive(Clone, Copy, Debug)]
struct PortState {
    priority: u8,
    /// The queue the port was last linked onto (Xen's `fifo_lastq`).
    last_vcpu: u8,
    last_priority: u8,
    /// Raised while its event-array page did not exist (Xen's
    /// `evtchn->pending`): raised again when the page is added.
    pending: bool,
}

/// One domain's FIFO state, from its first `init_control` on.
#[derive(Clone, Debug)]
pub struct Fifo {
    array: [u64; EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES],
    pages: usize,
    vcpus: [VcpuQueues; MAX_VCPUS],
    ports: [PortState; MAX_PORTS],
}

impl Default for Fifo {
    fn default() -> Self {
        Self::new()
    }
}

impl Fifo {
    /// No event-array page, no control block, every port at the default priority.
    pub const fn new() -> Self {
        Self {
            array: [0; EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES],
            pages: 0,
            vcpus: [VcpuQueues {
                control: None,
                tails: [0; QUEUES],
            }; MAX_VCPUS],
            ports: [PortState {
                priority: EVTCHN_FIFO_PRIORITY_DEFAULT as u8,
                last_vcpu: 0,
                last_priority: 0,
                pending: false,
            }; MAX_PORTS],
        }
    }

    /// Ports the event array covers (Xen's `num_evtchns`).
    pub const fn num_evtchns(&self) -> u32 {
        self.pages as u32 * WORDS_PER_PAGE
    }

    /// Event-array pages added so far.
    pub const fn pages(&self) -> usize {
        self.pages
    }

    /// Every guest frame this state refers to (event-array pages, then
    /// control blocks): what the hypervisor must keep valid for it.
    pub fn frames(&self) -> impl Iterator<Item = u64> + '_ {
        self.array[..self.pages]
            .iter()
            .copied()
            .chain(self.vcpus.iter().filter_map(|v| v.control.map(|c| c.0)))
    }

    /// `vcpu`'s control block, if registered: (frame, offset).
    pub fn control_block(&self, vcpu: u32) -> Option<(u64, u32)> {
        self.vcpus.get(vcpu as usize)?.control
    }

    /// The tail the hypervisor keeps for queue `priority` of `vcpu`.
    pub fn tail(&self, vcpu: u32, priority: u32) -> Option<Port> {
        Some(*self.vcpus.get(vcpu as usize)?.tails.get(priority as usize)?)
    }

    /// The priority of `port` (out of range: the default).
    pub fn priority(&self, port: Port) -> u32 {
        self.ports
            .get(port as usize)
            .map_or(EVTCHN_FIFO_PRIORITY_DEFAULT, |p| u32::from(p.priority))
    }

    /// Where `port`'s event word is: (frame, offset), or `None` if no
    /// event-array page covers it (Xen `evtchn_fifo_word_from_port`).
    pub fn word(&self, port: Port) -> Option<(u64, u32)> {
        if port >= self.num_evtchns() {
            return None;
        }
        let frame = *self.array.get((port / WORDS_PER_PAGE) as usize)?;
        Some((frame, (port % WORDS_PER_PAGE) * 4))
    }

    /// Registers `vcpu`'s control block at `offset` of `frame`; the caller
    /// checked the vCPU and the offset. -EINVAL if it has one already.
    pub(super) fn set_control_block(&mut self, vcpu: u32, frame: u64, offset: u32) -> Result<()> {
        let v = self.vcpus.get_mut(vcpu as usize).ok_or(-EINVAL)?;
        if v.control.is_some() {
            return Err(-EINVAL);
        }
        v.control = Some((frame, offset & !7));
        Ok(())
    }

    /// Adds an event-array page (Xen `add_page_to_event_array`); -ENOSPC
    /// when every FIFO port is covered already. Returns the first port the
    /// new page covers; the caller raises again the ports that were raised
    /// while it was missing ([`Self::take_saved_pending`]).
    pub(super) fn add_page(&mut self, frame: Result<u64>) -> Result<Port> {
        if self.pages >= EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES {
            return Err(-ENOSPC);
        }
        let frame = frame?;
        let first = self.num_evtchns();
        self.array[self.pages] = frame;
        self.pages += 1;
        Ok(first)
    }

    /// Whether `port` was raised before its event word existed; clears it.
    pub(super) fn take_saved_pending(&mut self, port: Port) -> bool {
        match self.ports.get_mut(port as usize) {
            Some(p) => core::mem::take(&mut p.pending),
            None => false,
        }
    }

    /// Remembers that `port` was pending under the 2-level ABI (Xen
    /// `setup_ports`): it is raised once its event-array page exists.
    pub(super) fn save_pending(&mut self, port: Port) {
        if let Some(p) = self.ports.get_mut(port as usize) {
            p.pending = true;
        }
    }

    /// A port was bound (Xen `evtchn_fifo_init`): the default priority,
    /// nothing saved from an earlier binding.
    pub(super) fn bound(&mut self, port: Port) {
        if let Some(p) = self.ports.get_mut(port as usize) {
            p.priority = EVTCHN_FIFO_PRIORITY_DEFAULT as u8;
            p.pending = false;
        }
    }

    /// `EVTCHNOP_set_priority` on a valid port: -EINVAL above
    /// `EVTCHN_FIFO_PRIORITY_MIN`. Only later links use it: an event already
    /// queued stays where it is (Xen `evtchn_fifo_set_priority`).
    pub fn set_priority(&mut self, port: Port, priority: u32) -> Result<()> {
        if priority > EVTCHN_FIFO_PRIORITY_MIN {
            return Err(-EINVAL);
        }
        if let Some(p) = self.ports.get_mut(port as usize) {
            p.priority = priority as u8;
        }
        Ok(())
    }

    /// Raises `port` towards `vcpu` (Xen `evtchn_fifo_set_pending`): set
    /// PENDING; if the port is unmasked and was not LINKED, link it at the
    /// tail of queue (`vcpu`, its priority), or make it the head of that
    /// queue when the queue is empty (the old tail is no longer LINKED), and
    /// then set the queue's `ready` bit, marking events pending on a 0 → 1
    /// edge. Without its event word, only remembered; without a control
    /// block on `vcpu`, only PENDING is set (the guest must not unmask
    /// before it registered one).
    pub fn set_pending<B: EventBits + ?Sized>(
        &mut self,
        mem: &mut B,
        vcpu: u32,
        port: Port,
    ) -> Notify {
        let p = port as usize;
        if p >= MAX_PORTS {
            return Notify::default();
        }
        let Some((frame, offset)) = self.word(port) else {
            self.ports[p].pending = true;
            return Notify::default();
        };
        let newly_pending = mem.fifo_fetch_or(frame, offset, PENDING) & PENDING == 0;
        let v = vcpu as usize;
        let Some(control) = self.vcpus.get(v).and_then(|q| q.control) else {
            return Notify {
                newly_pending,
                upcall: None,
            };
        };
        let priority = usize::from(self.ports[p].priority) % QUEUES;
        let mut linked = true;
        if mem.fifo_load(frame, offset) & MASKED == 0
            && mem.fifo_fetch_or(frame, offset, LINKED) & LINKED == 0
        {
            // If it was the tail of the queue it was last on, that queue
            // is empty now: forget its tail, so that linking onto that
            // queue later does not go through this port's word.
            let last = (
                usize::from(self.ports[p].last_vcpu) % MAX_VCPUS,
                usize::from(self.ports[p].last_priority) % QUEUES,
            );
            if self.vcpus[last.0].tails[last.1] == port {
                self.vcpus[last.0].tails[last.1] = 0;
            }
            self.ports[p].last_vcpu = v as u8;
            self.ports[p].last_priority = priority as u8;
            // Link from the tail iff the tail is still LINKED; otherwise
            // the queue is empty and this port becomes its head.
            let tail = self.vcpus[v].tails[priority];
            linked = match self.word(tail) {
                Some((tf, to)) if tail != 0 => set_link(mem, tf, to, port),
                _ => false,
            };
            if !linked {
                let head = control.1 + EVTCHN_FIFO_HEAD_OFFSET + 4 * priority as u32;
                mem.fifo_store(control.0, head, port);
            }
            self.vcpus[v].tails[priority] = port;
        }
        let upcall = if !linked {
            let bit = 1 << priority;
            let ready = control.1 + EVTCHN_FIFO_READY_OFFSET;
            if mem.fifo_fetch_or(control.0, ready, bit) & bit == 0 {
                mark_events_pending(mem, vcpu)
            } else {
                None
            }
        } else {
            None
        };
        Notify {
            newly_pending,
            upcall,
        }
    }

    /// Clears PENDING (Xen `evtchn_fifo_clear_pending`); the guest unlinks
    /// the event itself and skips it as not pending.
    pub fn clear_pending<B: FifoMemory + ?Sized>(&mut self, mem: &mut B, port: Port) {
        if let Some(p) = self.ports.get_mut(port as usize) {
            p.pending = false;
        }
        if let Some((frame, offset)) = self.word(port) {
            mem.fifo_fetch_and(frame, offset, !PENDING);
        }
    }

    /// `EVTCHNOP_unmask` (Xen `evtchn_fifo_unmask`): clear MASKED, and link
    /// the event now if it is pending (the guest calls this when it found
    /// the word PENDING or BUSY, which it may not unmask itself).
    pub fn unmask<B: EventBits + ?Sized>(&mut self, mem: &mut B, vcpu: u32, port: Port) -> Option<u32> {
        let (frame, offset) = self.word(port)?;
        mem.fifo_fetch_and(frame, offset, !MASKED);
        if mem.fifo_load(frame, offset) & PENDING != 0 {
            self.set_pending(mem, vcpu, port).upcall
        } else {
            None
        }
    }

    pub fn is_pending<B: FifoMemory + ?Sized>(&self, mem: &B, port: Port) -> bool {
        self.word(port)
            .is_some_and(|(f, o)| mem.fifo_load(f, o) & PENDING != 0)
    }

    /// Masked, or without an event word (Xen `evtchn_fifo_is_masked`).
    pub fn is_masked<B: FifoMemory + ?Sized>(&self, mem: &B, port: Port) -> bool {
        self.word(port)
            .is_none_or(|(f, o)| mem.fifo_load(f, o) & MASKED != 0)
    }
}

/// One attempt to set the LINK field of the tail word (Xen `try_set_link`):
/// `Ok(false)` if it is not LINKED (the guest consumed it: the queue is
/// empty), `Ok(true)` if the compare-exchange linked it (clearing BUSY),
/// `Err(())` if the word changed meanwhile (`w` then holds what it is now).
fn try_set_link<B: FifoMemory + ?Sized>(
    mem: &mut B,
    frame: u64,
    offset: u32,
    w: &mut u32,
    link: Port,
) -> core::result::Result<bool, ()> {
    if *w & LINKED == 0 {
        return Ok(false);
    }
    let old = *w;
    let new = (old & !(BUSY | LINK_MASK)) | (link & LINK_MASK);
    *w = mem.fifo_cmpxchg(frame, offset, old, new);
    if *w == old {
        Ok(true)
    } else {
        Err(())
    }
}

/// Sets the tail word's LINK to `link` iff it is still LINKED (Xen
/// `evtchn_fifo_set_link`). One free attempt; then BUSY is set, which stops
/// a well-behaved guest unmasking it, and at most [`SET_LINK_TRIES`] more.
/// A guest that still changes the word every time loses this event (it is
/// LINKED but reachable from no head): reported as linked, as Xen does.
fn set_link<B: FifoMemory + ?Sized>(mem: &mut B, frame: u64, offset: u32, link: Port) -> bool {
    let mut w = mem.fifo_load(frame, offset);
    if let Ok(linked) = try_set_link(mem, frame, offset, &mut w, link) {
        return linked;
    }
    mem.fifo_fetch_or(frame, offset, BUSY);
    w = mem.fifo_load(frame, offset);
    for _ in 0..SET_LINK_TRIES {
        match try_set_link(mem, frame, offset, &mut w, link) {
            Ok(true) => return true,
            Ok(false) => {
                mem.fifo_fetch_and(frame, offset, !BUSY);
                return false;
            }
            Err(()) => {}
        }
    }
    mem.fifo_fetch_and(frame, offset, !BUSY);
    true
}

/// Checks `EVTCHNOP_init_control`'s offset as Xen does: the control block
/// must end inside its page and start 8-aligned (-EINVAL otherwise).
pub const fn check_control_offset(offset: u32) -> Result<()> {
    if offset > MAX_CONTROL_OFFSET || offset % 8 != 0 {
        Err(-EINVAL)
    } else {
        Ok(())
    }
}
