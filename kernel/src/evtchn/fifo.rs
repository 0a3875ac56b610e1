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
        Some(
            *self
                .vcpus
                .get(vcpu as usize)?
                .tails
                .get(priority as usize)?,
        )
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
    pub fn unmask<B: EventBits + ?Sized>(
        &mut self,
        mem: &mut B,
        vcpu: u32,
        port: Port,
    ) -> Option<u32> {
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
    if offset > MAX_CONTROL_OFFSET || !offset.is_multiple_of(8) {
        Err(-EINVAL)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evtchn::{EventChannels, DOMID_SELF};
    use proptest::prelude::*;
    use std::collections::{BTreeMap, VecDeque};
    use xen_abi::hypercall::{ENOENT, EOPNOTSUPP};
    use xen_abi::shared_info::SharedInfo;

    const VCPUS: u32 = 3;
    /// Frame handles of the test guest: control blocks at 0x10000 + v *
    /// 0x1000, event-array pages from 0x100000.
    const CB: u64 = 0x10000;
    const ARRAY: u64 = 0x100000;

    /// A guest-memory write that "another CPU" makes before the
    /// hypervisor's next access: (frame, offset, AND mask, OR bits).
    type Scribble = (u64, u32, u32, u32);

    /// The test guest's memory: shared_info for the 2-level bits and the
    /// upcall flags, and the FIFO frames. Any access by the hypervisor to a
    /// frame it was not given, or off a 4-aligned in-page offset, panics.
    #[derive(Clone)]
    struct Guest {
        info: Box<SharedInfo>,
        frames: BTreeMap<u64, Box<[u32; 1024]>>,
        /// Applied one per hypervisor access, before it.
        scribbles: VecDeque<Option<Scribble>>,
        /// Hypervisor accesses so far.
        accesses: usize,
        /// Every port the hypervisor stored into a head or a LINK.
        links_written: Vec<u32>,
    }

    impl Guest {
        fn new() -> Self {
            let mut frames = BTreeMap::new();
            for v in 0..VCPUS as u64 {
                frames.insert(CB + v * 0x1000, Box::new([0; 1024]));
            }
            for p in 0..4 {
                // Linux's init_array_page: every event word MASKED.
                frames.insert(ARRAY + p * 0x1000, Box::new([MASKED; 1024]));
            }
            Guest {
                info: Box::new(SharedInfo::ZERO),
                frames,
                scribbles: VecDeque::new(),
                accesses: 0,
                links_written: Vec::new(),
            }
        }

        fn at(&mut self, frame: u64, offset: u32) -> &mut u32 {
            assert!(
                offset < 4096 && offset.is_multiple_of(4),
                "offset {offset:#x}"
            );
            &mut self.frames.get_mut(&frame).expect("unknown frame")[offset as usize / 4]
        }

        /// The hypervisor is about to access guest memory.
        fn access(&mut self) {
            self.accesses += 1;
            if let Some(Some((f, o, and, or))) = self.scribbles.pop_front() {
                if self.frames.contains_key(&f) {
                    let w = self.at(f, o);
                    *w = (*w & and) | or;
                }
            }
        }

        fn word(&mut self, port: Port) -> &mut u32 {
            self.at(ARRAY + u64::from(port / 1024) * 0x1000, port % 1024 * 4)
        }

        fn ready(&mut self, v: u32) -> &mut u32 {
            self.at(CB + u64::from(v) * 0x1000, 0)
        }

        fn head(&mut self, v: u32, q: u32) -> u32 {
            *self.at(CB + u64::from(v) * 0x1000, 8 + 4 * q)
        }

        fn upcall(&self, v: u32) -> bool {
            self.info.vcpu_info[v as usize].evtchn_upcall_pending != 0
        }
    }

    impl FifoMemory for Guest {
        fn fifo_load(&self, frame: u64, offset: u32) -> u32 {
            assert!(offset < 4096 && offset.is_multiple_of(4));
            self.frames.get(&frame).expect("unknown frame")[offset as usize / 4]
        }
        fn fifo_store(&mut self, frame: u64, offset: u32, value: u32) {
            self.access();
            self.links_written.push(value);
            *self.at(frame, offset) = value;
        }
        fn fifo_cmpxchg(&mut self, frame: u64, offset: u32, old: u32, new: u32) -> u32 {
            self.access();
            let w = self.at(frame, offset);
            let found = *w;
            if found == old {
                *w = new;
                self.links_written.push(new & LINK_MASK);
            }
            found
        }
        fn fifo_fetch_or(&mut self, frame: u64, offset: u32, bits: u32) -> u32 {
            self.access();
            let w = self.at(frame, offset);
            let old = *w;
            *w |= bits;
            old
        }
        fn fifo_fetch_and(&mut self, frame: u64, offset: u32, bits: u32) -> u32 {
            self.access();
            let w = self.at(frame, offset);
            let old = *w;
            *w &= bits;
            old
        }
    }

    impl EventBits for Guest {
        fn test_and_set_pending(&mut self, port: Port) -> bool {
            self.info.test_and_set_pending(port)
        }
        fn clear_pending(&mut self, port: Port) {
            self.info.clear_pending(port)
        }
        fn is_pending(&self, port: Port) -> bool {
            self.info.is_pending(port)
        }
        fn is_masked(&self, port: Port) -> bool {
            self.info.is_masked(port)
        }
        fn test_and_clear_mask(&mut self, port: Port) -> bool {
            self.info.test_and_clear_mask(port)
        }
        fn test_and_set_selector(&mut self, vcpu: u32, word: u32) -> bool {
            self.info.test_and_set_selector(vcpu, word)
        }
        fn test_and_set_upcall_pending(&mut self, vcpu: u32) -> bool {
            self.info.test_and_set_upcall_pending(vcpu)
        }
    }

    /// A domain on the FIFO ABI: every vCPU's control block, one array page.
    fn fifo_domain(g: &mut Guest) -> EventChannels {
        let mut t = EventChannels::new(1, VCPUS);
        for v in 0..VCPUS {
            assert_eq!(
                t.init_control(&*g, v, 0, Ok(CB + u64::from(v) * 0x1000)),
                Ok(17)
            );
        }
        assert_eq!(t.expand_array(g, Ok(ARRAY)), Ok(()));
        t
    }

    // --- the hypercalls' argument checks ---

    #[test]
    fn init_control_checks_in_xens_order() {
        let g = Guest::new();
        let mut t = EventChannels::new(1, 2);
        // No such vCPU first, whatever else is wrong.
        assert_eq!(t.init_control(&g, 2, 3, Err(-EINVAL)), Err(-ENOENT));
        assert_eq!(t.init_control(&g, u32::MAX, 0, Ok(CB)), Err(-ENOENT));
        // The control block must end in its page and be 8-aligned.
        for bad in [4, 4096 - 71, 4096 - 64, 4096, u32::MAX] {
            assert_eq!(t.init_control(&g, 0, bad, Ok(CB)), Err(-EINVAL), "{bad}");
        }
        // XSA-188: a bad GFN is -EINVAL and leaves the domain on 2-level,
        // where expand_array is -EOPNOTSUPP.
        assert_eq!(t.init_control(&g, 0, 0, Err(-EINVAL)), Err(-EINVAL));
        assert!(t.fifo().is_none());
        let mut g2 = g.clone();
        assert_eq!(t.expand_array(&mut g2, Ok(ARRAY)), Err(-EOPNOTSUPP));
        // The last offset that fits.
        assert_eq!(t.init_control(&g, 0, 4096 - 72, Ok(CB)), Ok(17));
        assert_eq!(t.fifo().unwrap().control_block(0), Some((CB, 4024)));
        // Twice for a vCPU: -EINVAL, before the GFN is looked at.
        assert_eq!(t.init_control(&g, 0, 0, Ok(CB + 0x1000)), Err(-EINVAL));
        assert_eq!(t.init_control(&g, 0, 0, Err(-EINVAL)), Err(-EINVAL));
        // Another vCPU still can; a bad GFN there changes nothing.
        assert_eq!(t.init_control(&g, 1, 8, Err(-EINVAL)), Err(-EINVAL));
        assert_eq!(t.fifo().unwrap().control_block(1), None);
        assert_eq!(t.init_control(&g, 1, 8, Ok(CB + 0x1000)), Ok(17));
    }

    #[test]
    fn expand_array_limits() {
        let mut g = Guest::new();
        let mut t = EventChannels::new(1, 1);
        t.init_control(&g, 0, 0, Ok(CB)).unwrap();
        assert_eq!(t.expand_array(&mut g, Err(-EINVAL)), Err(-EINVAL));
        assert_eq!(t.fifo().unwrap().pages(), 0);
        for i in 0..EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES {
            assert_eq!(t.expand_array(&mut g, Ok(ARRAY)), Ok(()), "page {i}");
        }
        // Every FIFO port is covered: -ENOSPC, even for a bad frame.
        assert_eq!(t.expand_array(&mut g, Ok(ARRAY)), Err(-ENOSPC));
        assert_eq!(t.expand_array(&mut g, Err(-EINVAL)), Err(-ENOSPC));
        assert_eq!(t.fifo().unwrap().num_evtchns(), 1 << 17);
        assert!(t.fifo_uses_frame(ARRAY) && t.fifo_uses_frame(CB));
        assert!(!t.fifo_uses_frame(CB + 0x1000));
        t.release_fifo();
        assert!(!t.fifo_uses_frame(ARRAY) && t.fifo().is_none());
    }

    #[test]
    fn set_priority_checks() {
        let mut g = Guest::new();
        let mut t = fifo_domain(&mut g);
        let p = t.bind_ipi(0).unwrap();
        assert_eq!(t.set_priority(p, 16), Err(-EINVAL));
        assert_eq!(t.set_priority(p, u32::MAX), Err(-EINVAL));
        assert_eq!(t.set_priority(5000, 0), Err(-EINVAL));
        assert_eq!(t.set_priority(p, 0), Ok(()));
        assert_eq!(t.fifo().unwrap().priority(p), 0);
        // A new binding starts at the default again.
        t.close(&mut g, p).unwrap();
        assert_eq!(t.bind_ipi(0), Ok(p));
        assert_eq!(t.fifo().unwrap().priority(p), 7);
    }

    #[test]
    fn pending_carries_over_from_two_level_and_missing_pages() {
        let mut g = Guest::new();
        let mut t = EventChannels::new(1, 1);
        let a = t.alloc_unbound(DOMID_SELF).unwrap();
        let b = t.alloc_unbound(DOMID_SELF).unwrap();
        g.info.evtchn_mask = [!0; 64];
        t.raise(&mut g, a);
        assert!(t.is_pending(&g, a));
        t.init_control(&g, 0, 0, Ok(CB)).unwrap();
        // No event word yet: not pending, masked; raising only remembers.
        assert!(!t.is_pending(&g, a) && t.is_masked(&g, a));
        assert_eq!(t.raise(&mut g, b), Notify::default());
        assert_eq!(g.accesses, 0);
        // The page arrives unmasked: both are linked, a first.
        g.frames.insert(ARRAY, Box::new([0; 1024]));
        t.expand_array(&mut g, Ok(ARRAY)).unwrap();
        assert!(t.is_pending(&g, a) && t.is_pending(&g, b));
        assert_eq!(g.head(0, 7), a);
        assert_eq!(*g.word(a) & LINK_MASK, b);
        assert_eq!(*g.ready(0), 1 << 7);
        assert!(g.upcall(0));
    }

    // --- the queue protocol, step by step ---

    #[test]
    fn links_in_order_and_sets_ready_once() {
        let mut g = Guest::new();
        let mut t = fifo_domain(&mut g);
        let ports: Vec<Port> = (0..3).map(|_| t.bind_ipi(1).unwrap()).collect();
        for &p in &ports {
            *g.word(p) = 0; // unmasked
        }
        let n = t.raise(&mut g, ports[0]);
        assert_eq!(
            n,
            Notify {
                newly_pending: true,
                upcall: Some(1)
            }
        );
        assert_eq!(t.raise(&mut g, ports[1]).upcall, None);
        assert_eq!(t.raise(&mut g, ports[2]).upcall, None);
        assert_eq!(g.head(1, 7), ports[0]);
        assert_eq!(*g.word(ports[0]), PENDING | LINKED | ports[1]);
        assert_eq!(*g.word(ports[1]), PENDING | LINKED | ports[2]);
        assert_eq!(*g.word(ports[2]), PENDING | LINKED);
        assert_eq!(*g.ready(1), 1 << 7);
        assert_eq!(t.fifo().unwrap().tail(1, 7), Some(ports[2]));
        // Raising a LINKED event again changes nothing but PENDING.
        let before = g.frames.clone();
        assert_eq!(t.raise(&mut g, ports[1]), Notify::default());
        assert_eq!(before, g.frames);
    }

    #[test]
    fn masked_events_wait_for_unmask() {
        let mut g = Guest::new();
        let mut t = fifo_domain(&mut g);
        let p = t.bind_ipi(0).unwrap();
        assert_eq!(
            t.raise(&mut g, p),
            Notify {
                newly_pending: true,
                upcall: None
            }
        );
        assert_eq!(*g.word(p), PENDING | MASKED);
        assert_eq!(*g.ready(0), 0);
        assert_eq!(t.unmask(&mut g, p), Ok(Some(0)));
        assert_eq!(*g.word(p), PENDING | LINKED);
        assert_eq!(g.head(0, 7), p);
    }

    #[test]
    fn an_empty_queue_gets_a_new_head() {
        let mut g = Guest::new();
        let mut t = fifo_domain(&mut g);
        let (a, b) = (t.bind_ipi(0).unwrap(), t.bind_ipi(0).unwrap());
        *g.word(a) = 0;
        *g.word(b) = 0;
        t.raise(&mut g, a);
        // The guest consumes a (clears LINKED and LINK) and the ready bit.
        *g.word(a) &= !(LINKED | LINK_MASK);
        *g.ready(0) = 0;
        g.info.vcpu_info[0].evtchn_upcall_pending = 0;
        // a is no longer LINKED: b becomes the head, ready again.
        assert_eq!(t.raise(&mut g, b).upcall, Some(0));
        assert_eq!(g.head(0, 7), b);
        assert_eq!(*g.word(a) & LINK_MASK, 0);
    }

    #[test]
    fn a_busy_tail_is_linked_after_a_guest_change() {
        let mut g = Guest::new();
        let mut t = fifo_domain(&mut g);
        let (a, b) = (t.bind_ipi(0).unwrap(), t.bind_ipi(0).unwrap());
        *g.word(a) = 0;
        *g.word(b) = 0;
        t.raise(&mut g, a);
        let wa = (ARRAY, a * 4);
        // Accesses when raising b: fetch_or PENDING, fetch_or LINKED, then
        // set_link's first cmpxchg on a: the guest masks a just before it.
        g.scribbles = [None, None, Some((wa.0, wa.1, !0, MASKED))].into();
        t.raise(&mut g, b);
        // The retry (after BUSY) linked it and cleared BUSY.
        assert_eq!(*g.word(a), PENDING | MASKED | LINKED | b);
        assert_eq!(t.fifo().unwrap().tail(0, 7), Some(b));
    }

    #[test]
    fn a_tail_consumed_meanwhile_makes_a_new_head() {
        let mut g = Guest::new();
        let mut t = fifo_domain(&mut g);
        let (a, b) = (t.bind_ipi(0).unwrap(), t.bind_ipi(0).unwrap());
        *g.word(a) = 0;
        *g.word(b) = 0;
        t.raise(&mut g, a);
        *g.ready(0) = 0;
        g.scribbles = [None, None, Some((ARRAY, a * 4, !(LINKED | LINK_MASK), 0))].into();
        t.raise(&mut g, b);
        assert_eq!(*g.word(a), PENDING, "BUSY must be cleared");
        assert_eq!(g.head(0, 7), b);
        assert_eq!(*g.ready(0), 1 << 7);
    }

    #[test]
    fn a_guest_changing_the_tail_forever_loses_the_event_not_the_cpu() {
        let mut g = Guest::new();
        let mut t = fifo_domain(&mut g);
        let (a, b) = (t.bind_ipi(0).unwrap(), t.bind_ipi(0).unwrap());
        *g.word(a) = 0;
        *g.word(b) = 0;
        t.raise(&mut g, a);
        // From set_link's first cmpxchg on, every access is preceded by a
        // change of a's LINK (it toggles between two values).
        g.scribbles = (0..64)
            .map(|i| (i >= 2).then_some((ARRAY, a * 4, !0x300, 0x100 << (i % 2))))
            .collect();
        let before = g.accesses;
        t.raise(&mut g, b);
        // fetch_or ×2, cmpxchg, fetch_or BUSY, 4 × cmpxchg, fetch_and BUSY, ready.
        assert!(
            g.accesses - before <= 10,
            "{} accesses",
            g.accesses - before
        );
        assert_eq!(*g.word(a) & BUSY, 0);
        assert_ne!(g.head(0, 7), b);
    }

    #[test]
    fn priorities_have_their_own_queues_and_ready_bits() {
        let mut g = Guest::new();
        let mut t = fifo_domain(&mut g);
        let (a, b) = (t.bind_ipi(2).unwrap(), t.bind_ipi(2).unwrap());
        *g.word(a) = 0;
        *g.word(b) = 0;
        t.set_priority(b, 0).unwrap();
        t.raise(&mut g, a);
        t.raise(&mut g, b);
        assert_eq!((g.head(2, 7), g.head(2, 0)), (a, b));
        assert_eq!(*g.ready(2), 1 << 7 | 1);
        // Not linked to each other.
        assert_eq!(*g.word(a) & LINK_MASK, 0);
    }

    // --- against a model: a well-behaved guest (Linux's consumer) ---

    #[derive(Clone, Debug)]
    enum Op {
        Bind,
        Close(usize),
        Raise(usize),
        Mask(usize),
        Unmask(usize),
        Priority(usize, u32),
        Move(usize, u32),
        Consume(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            1 => Just(Op::Bind),
            1 => any::<usize>().prop_map(Op::Close),
            6 => any::<usize>().prop_map(Op::Raise),
            2 => any::<usize>().prop_map(Op::Mask),
            3 => any::<usize>().prop_map(Op::Unmask),
            2 => (any::<usize>(), 0..16u32).prop_map(|(p, q)| Op::Priority(p, q)),
            1 => (any::<usize>(), 0..VCPUS).prop_map(|(p, v)| Op::Move(p, v)),
            6 => (0..VCPUS).prop_map(Op::Consume),
        ]
    }

    /// What the guest should see, port by port and queue by queue.
    #[derive(Default)]
    struct Model {
        bound: BTreeMap<Port, (u32, u32)>, // port → (vcpu, priority)
        pending: BTreeMap<Port, bool>,
        masked: BTreeMap<Port, bool>,
        linked: BTreeMap<Port, bool>,
        queues: BTreeMap<(u32, u32), VecDeque<Port>>,
    }

    impl Model {
        fn link_if_due(&mut self, p: Port) {
            let (v, q) = self.bound[&p];
            if !self.masked[&p] && !self.linked[&p] {
                self.linked.insert(p, true);
                self.queues.entry((v, q)).or_default().push_back(p);
            }
        }
    }

    /// Linux's consumer state per vCPU: its copy of `ready` and its heads.
    #[derive(Default, Clone, Copy)]
    struct Consumer {
        ready: u32,
        heads: [u32; 16],
    }

    fn pick(m: &Model, i: usize) -> Option<Port> {
        let ports: Vec<_> = m.bound.keys().copied().collect();
        (!ports.is_empty()).then(|| ports[i % ports.len()])
    }

    fn linux_consume(g: &mut Guest, c: &mut Consumer, v: u32) -> Option<(u32, Port, bool)> {
        c.ready |= core::mem::take(g.ready(v));
        if c.ready == 0 {
            return None;
        }
        let q = c.ready.trailing_zeros();
        let mut head = c.heads[q as usize];
        if head == 0 {
            head = g.head(v, q);
        }
        let port = head;
        let w = g.word(port);
        let next = *w & LINK_MASK;
        *w &= !(LINKED | LINK_MASK);
        if next == 0 {
            c.ready &= !(1 << q);
        }
        let deliver = *w & PENDING != 0 && *w & MASKED == 0;
        if deliver {
            *w &= !PENDING;
        }
        c.heads[q as usize] = next;
        Some((q, port, deliver))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn queues_match_the_model(ops in proptest::collection::vec(op(), 1..200)) {
            let mut g = Guest::new();
            let mut t = fifo_domain(&mut g);
            let mut m = Model::default();
            let mut cons = [Consumer::default(); VCPUS as usize];
            for op in ops {
                match op {
                    Op::Bind => {
                        if let Ok(p) = t.alloc_unbound(DOMID_SELF) {
                            m.bound.insert(p, (0, 7));
                            m.pending.insert(p, false);
                            m.masked.entry(p).or_insert(true);
                            m.linked.entry(p).or_insert(false);
                        }
                    }
                    Op::Close(i) => if let Some(p) = pick(&m, i) {
                        t.close(&mut g, p).unwrap();
                        m.bound.remove(&p);
                        m.pending.insert(p, false);
                    },
                    Op::Raise(i) => if let Some(p) = pick(&m, i) {
                        t.raise(&mut g, p);
                        m.pending.insert(p, true);
                        m.link_if_due(p);
                    },
                    Op::Mask(i) => if let Some(p) = pick(&m, i) {
                        *g.word(p) |= MASKED;
                        m.masked.insert(p, true);
                    },
                    Op::Unmask(i) => if let Some(p) = pick(&m, i) {
                        // Linux's evtchn_fifo_unmask: itself unless PENDING or BUSY.
                        if *g.word(p) & (PENDING | BUSY) == 0 {
                            *g.word(p) &= !MASKED;
                        } else {
                            t.unmask(&mut g, p).unwrap();
                        }
                        m.masked.insert(p, false);
                        if m.pending[&p] {
                            m.link_if_due(p);
                        }
                    },
                    Op::Priority(i, q) => if let Some(p) = pick(&m, i) {
                        t.set_priority(p, q).unwrap();
                        m.bound.get_mut(&p).unwrap().1 = q;
                    },
                    Op::Move(i, v) => if let Some(p) = pick(&m, i) {
                        t.bind_vcpu(p, v).unwrap();
                        m.bound.get_mut(&p).unwrap().0 = v;
                    },
                    Op::Consume(v) => {
                        let got = linux_consume(&mut g, &mut cons[v as usize], v);
                        match got {
                            None => prop_assert!(
                                (0..16).all(|q| m.queues.get(&(v, q)).is_none_or(|x| x.is_empty())),
                                "ready is clear but vCPU {} has events", v
                            ),
                            Some((q, port, delivered)) => {
                                let front = m.queues.get_mut(&(v, q)).and_then(|x| x.pop_front());
                                prop_assert_eq!(front, Some(port), "queue ({}, {})", v, q);
                                m.linked.insert(port, false);
                                let due = m.pending[&port] && !m.masked[&port];
                                prop_assert_eq!(delivered, due);
                                if due {
                                    m.pending.insert(port, false);
                                }
                            }
                        }
                    }
                }
                // Every event word as the model says.
                for (&p, &pending) in &m.pending {
                    let w = *g.word(p);
                    prop_assert_eq!(w & PENDING != 0, pending, "PENDING of {}", p);
                    prop_assert_eq!(w & MASKED != 0, m.masked[&p], "MASKED of {}", p);
                    prop_assert_eq!(w & LINKED != 0, m.linked[&p], "LINKED of {}", p);
                    prop_assert_eq!(w & BUSY, 0);
                }
                // Each queue is the guest's list from its head, and it is
                // non-empty exactly when its ready bit is set (Xen's or the
                // consumer's copy).
                for v in 0..VCPUS {
                    for q in 0..16 {
                        let want: Vec<Port> = m.queues.get(&(v, q)).map(|x| x.iter().copied().collect()).unwrap_or_default();
                        let ready = (*g.ready(v) | cons[v as usize].ready) & (1 << q) != 0;
                        prop_assert_eq!(ready, !want.is_empty(), "ready bit ({}, {})", v, q);
                        if want.is_empty() {
                            continue;
                        }
                        let mut at = cons[v as usize].heads[q as usize];
                        if at == 0 {
                            at = g.head(v, q);
                        }
                        let mut got = vec![];
                        for _ in 0..want.len() {
                            got.push(at);
                            at = *g.word(at) & LINK_MASK;
                        }
                        prop_assert_eq!(&got, &want, "queue ({}, {})", v, q);
                        prop_assert_eq!(at, 0, "queue ({}, {}) runs on", v, q);
                    }
                }
                // Whenever a vCPU has something ready, its upcall is pending.
                for v in 0..VCPUS {
                    if *g.ready(v) != 0 {
                        prop_assert!(g.upcall(v));
                    }
                }
            }
        }

        /// A hostile guest: it writes anything to the event words and the
        /// control blocks between the hypervisor's operations and between
        /// the accesses of one operation. The hypervisor touches only the
        /// frames it was given, makes a bounded number of accesses per
        /// operation, and only ever writes ports it owns into heads and
        /// LINKs.
        #[test]
        fn a_scribbling_guest_cannot_hurt_the_hypervisor(
            ops in proptest::collection::vec(
                (op(), proptest::collection::vec(proptest::option::weighted(0.5, (0..5u64, 0..1024u32, any::<u32>(), any::<u32>())), 0..12)),
                1..150,
            )
        ) {
            let mut g = Guest::new();
            let mut t = fifo_domain(&mut g);
            let mut bound: Vec<Port> = vec![];
            for (op, scribbles) in ops {
                g.scribbles = scribbles
                    .into_iter()
                    .map(|s| s.map(|(f, o, and, or)| {
                        let frame = if f < VCPUS as u64 { CB + f * 0x1000 } else { ARRAY };
                        (frame, o * 4, and, or)
                    }))
                    .collect();
                let before = g.accesses;
                let p = |i: usize| bound.get(i % bound.len().max(1)).copied();
                match op {
                    Op::Bind => if let Ok(x) = t.alloc_unbound(DOMID_SELF) { bound.push(x) },
                    Op::Close(i) => if let Some(x) = p(i) {
                        t.close(&mut g, x).unwrap();
                        bound.retain(|&y| y != x);
                    },
                    Op::Raise(i) => if let Some(x) = p(i) { t.raise(&mut g, x); },
                    Op::Mask(i) | Op::Unmask(i) => if let Some(x) = p(i) { t.unmask(&mut g, x).unwrap(); },
                    Op::Priority(i, q) => if let Some(x) = p(i) { t.set_priority(x, q).unwrap() },
                    Op::Move(i, v) => if let Some(x) = p(i) { t.bind_vcpu(x, v).unwrap() },
                    // The guest takes everything off vCPU v's queues.
                    Op::Consume(v) => *g.ready(v) = 0,
                }
                // set_pending: PENDING, LINKED, a cmpxchg, BUSY, 4 cmpxchg,
                // un-BUSY, head, ready; unmask adds MASKED (loads not counted).
                prop_assert!(g.accesses - before <= 12, "{} accesses", g.accesses - before);
                for &l in &g.links_written {
                    prop_assert!(l < MAX_PORTS as u32, "wrote port {} into a head or LINK", l);
                }
                let f = t.fifo().unwrap();
                for v in 0..VCPUS {
                    for q in 0..16 {
                        prop_assert!(f.tail(v, q).unwrap() < MAX_PORTS as u32);
                    }
                }
            }
        }
    }
}
