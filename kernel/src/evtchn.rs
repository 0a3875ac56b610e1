//! Event channels: a domain's port table and the delivery rules of the 2-level and FIFO ABIs (Xen common/event_channel.c, event_2l.c, event_fifo.c).
//!
//! Pure logic. A domain starts on the 2-level ABI: the pending and mask
//! bitmaps live in the guest's `shared_info` page and the selector and
//! upcall flag in each vCPU's `vcpu_info`. Its first `EVTCHNOP_init_control`
//! moves it to the FIFO ABI for good ([`fifo`]; only `EVTCHNOP_reset`
//! goes back, as in Xen). Both are guest memory written concurrently by the
//! guest, reached only through the [`EventBits`] trait, whose
//! implementation must use locked operations. Each port operation goes to
//! the ABI in force, as Xen's `evtchn_port_ops` do.
//! Errors are negative Xen errno values, as returned in RAX.

pub mod fifo;

use fifo::{Fifo, FifoMemory};

use xen_abi::event_channel::EVTCHN_FIFO_LINK_BITS;
use xen_abi::event_channel::{
    virq_type, DomId, EvtchnStatus, EvtchnStatusU, VirqType, BITS_PER_EVTCHN_WORD, DOMID_SELF,
    EVTCHNSTAT_CLOSED, EVTCHNSTAT_INTERDOMAIN, EVTCHNSTAT_IPI, EVTCHNSTAT_UNBOUND, EVTCHNSTAT_VIRQ,
    EVTCHN_2L_NR_CHANNELS, NR_VIRQS,
};
use xen_abi::hypercall::{EBUSY, EEXIST, EINVAL, ENOENT, ENOSPC, ENOSYS, EOPNOTSUPP};

/// An event-channel port number (`evtchn_port_t`).
pub type Port = u32;

/// Ports per domain: 0..=1023, libxl's default `max_evtchn_port` (1023), well
/// under the 2-level ABI's 4096. Ports at or above this are invalid (-EINVAL)
/// and never allocated (-ENOSPC).
pub const MAX_PORTS: usize = 1024;
/// vCPUs a table can serve (`XEN_LEGACY_MAX_VCPUS`).
pub const MAX_VCPUS: usize = 32;
/// `SCHEDOP_poll` takes at most this many ports (Xen common/sched/core.c `do_poll`).
pub const POLL_MAX_PORTS: usize = 128;

const _: () = assert!(MAX_PORTS <= EVTCHN_2L_NR_CHANNELS as usize);

/// Result of an operation: `Err` holds a negative Xen errno.
pub type Result<T> = core::result::Result<T, i64>;

/// What a port is bound to (Xen's `ECS_*`; PIRQs are never offered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Free,
    /// Port 0: never allocated.
    Reserved,
    /// Waiting for `remote_domid` to bind it with bind_interdomain.
    Unbound {
        remote_domid: DomId,
    },
    /// Connected to `remote_port` of `remote_domid` (this domain's own id for a loopback channel).
    Interdomain {
        remote_domid: DomId,
        remote_port: Port,
    },
    Virq {
        virq: u32,
    },
    Ipi,
}

/// One port: its binding and the vCPU it notifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    pub state: State,
    /// The notified vCPU (`notify_vcpu_id`); 0 when free.
    pub vcpu: u32,
}

impl Channel {
    const FREE: Self = Self {
        state: State::Free,
        vcpu: 0,
    };

    /// Whether events can be raised on it (Xen's `evtchn_usable`: bound in some way).
    pub const fn usable(&self) -> bool {
        !matches!(self.state, State::Free | State::Reserved)
    }

    /// The `EVTCHNOP_status` answer for this channel, which is `port` of `dom`.
    pub fn to_evtchn_status(&self, dom: DomId, port: Port) -> EvtchnStatus {
        let (status, u) = match self.state {
            State::Free | State::Reserved => (EVTCHNSTAT_CLOSED, EvtchnStatusU::ZERO),
            State::Unbound { remote_domid } => {
                (EVTCHNSTAT_UNBOUND, EvtchnStatusU::unbound(remote_domid))
            }
            State::Interdomain {
                remote_domid,
                remote_port,
            } => (
                EVTCHNSTAT_INTERDOMAIN,
                EvtchnStatusU::interdomain(remote_domid, remote_port),
            ),
            State::Virq { virq } => (EVTCHNSTAT_VIRQ, EvtchnStatusU::virq(virq)),
            State::Ipi => (EVTCHNSTAT_IPI, EvtchnStatusU::ZERO),
        };
        EvtchnStatus {
            dom,
            pad: 0,
            port,
            status,
            vcpu: self.vcpu,
            u,
        }
    }
}

/// The event bits in guest memory, for one domain. Every method is one
/// locked bit operation (`lock bts`/`btr`) on the guest's page: port `p` is
/// bit p % 64 of word p / 64 of `shared_info.evtchn_pending`/`evtchn_mask`;
/// a vCPU's selector and upcall flag are in its current `vcpu_info`
/// (in `shared_info` or wherever `VCPUOP_register_vcpu_info` moved it).
/// The FIFO ABI's words are reached through the [`FifoMemory`] supertrait.
pub trait EventBits: FifoMemory {
    /// Sets `evtchn_pending[port]`; returns its previous value.
    fn test_and_set_pending(&mut self, port: Port) -> bool;
    /// Clears `evtchn_pending[port]`.
    fn clear_pending(&mut self, port: Port);
    fn is_pending(&self, port: Port) -> bool;
    fn is_masked(&self, port: Port) -> bool;
    /// Clears `evtchn_mask[port]`; returns its previous value.
    fn test_and_clear_mask(&mut self, port: Port) -> bool;
    /// Sets bit `word` of `vcpu`'s `evtchn_pending_sel`; returns its previous value.
    fn test_and_set_selector(&mut self, vcpu: u32, word: u32) -> bool;
    /// Sets `vcpu`'s `evtchn_upcall_pending`; returns whether it was already non-zero.
    fn test_and_set_upcall_pending(&mut self, vcpu: u32) -> bool;
}

/// What raising a port did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notify {
    /// The pending bit went 0 → 1: wake any vCPU blocked in `SCHEDOP_poll` on
    /// this port (or on several ports), masked or not.
    pub newly_pending: bool,
    /// This vCPU's `evtchn_upcall_pending` went 0 → 1: kick it (inject the
    /// callback vector when it can take it, wake it from HLT).
    pub upcall: Option<u32>,
}

/// Where an `EVTCHNOP_send` goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The port is unbound: Xen drops the notification and returns 0.
    Dropped,
    /// Raised on a port of this domain (an IPI, or a loopback channel).
    Local(Notify),
    /// Raise `port` of domain `domid`: the caller calls
    /// [`EventChannels::raise`] on that domain's table with its bits.
    Remote { domid: DomId, port: Port },
}

/// The other end of a closed interdomain channel: the caller calls
/// [`EventChannels::peer_closed`] on domain `domid`'s table for `port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub domid: DomId,
    pub port: Port,
}

/// The remote domain of a bind_interdomain.
pub enum Remote<'a> {
    /// `remote_dom` is `DOMID_SELF` or the caller's own id.
    Loopback,
    /// Another domain's table (an unknown domid is the caller's -ESRCH).
    Domain(&'a mut EventChannels),
}

/// "Mark events pending" on `vcpu` (Xen `vcpu_mark_events_pending`): set its
/// upcall flag; `Some(vcpu)` if that was a 0 → 1 edge.
pub fn mark_events_pending<B: EventBits + ?Sized>(bits: &mut B, vcpu: u32) -> Option<u32> {
    (!bits.test_and_set_upcall_pending(vcpu)).then_some(vcpu)
}

/// Raises `port`, notifying `vcpu` (Xen `evtchn_2l_set_pending`): set the
/// pending bit; only if it was clear and the port is unmasked, set selector
/// bit port / 64 of `vcpu`; only if that was clear, mark events pending.
pub fn set_pending_2l<B: EventBits + ?Sized>(bits: &mut B, vcpu: u32, port: Port) -> Notify {
    if bits.test_and_set_pending(port) {
        return Notify::default();
    }
    let upcall = if !bits.is_masked(port)
        && !bits.test_and_set_selector(vcpu, port / BITS_PER_EVTCHN_WORD)
    {
        mark_events_pending(bits, vcpu)
    } else {
        None
    };
    Notify {
        newly_pending: true,
        upcall,
    }
}

/// Unmasks `port`, notifying `vcpu` (Xen `evtchn_2l_unmask`): clear the mask
/// bit; only if it was set and the port is pending and selector bit port / 64
/// of `vcpu` was clear, mark events pending. An edge that arrived while the
/// port was masked is delivered here.
pub fn unmask_2l<B: EventBits + ?Sized>(bits: &mut B, vcpu: u32, port: Port) -> Option<u32> {
    if bits.test_and_clear_mask(port)
        && bits.is_pending(port)
        && !bits.test_and_set_selector(vcpu, port / BITS_PER_EVTCHN_WORD)
    {
        mark_events_pending(bits, vcpu)
    } else {
        None
    }
}

/// One domain's event-channel table.
#[derive(Clone)]
pub struct EventChannels {
    domid: DomId,
    nr_vcpus: u32,
    ports: [Channel; MAX_PORTS],
    /// The port bound to each (vCPU, VIRQ), 0 for none; per-domain and global
    /// VIRQs use the vCPU 0 row (Xen's `virq_to_evtchn`).
    virqs: [[Port; NR_VIRQS as usize]; MAX_VCPUS],
    /// The FIFO ABI's state once the domain has switched to it.
    fifo: Option<Fifo>,
}

impl EventChannels {
    /// The table of domain `domid` with `nr_vcpus` vCPUs (clamped to
    /// 1..=`MAX_VCPUS`): every port free except the reserved port 0.
    pub const fn new(domid: DomId, nr_vcpus: u32) -> Self {
        let nr_vcpus = if nr_vcpus == 0 {
            1
        } else if nr_vcpus as usize > MAX_VCPUS {
            MAX_VCPUS as u32
        } else {
            nr_vcpus
        };
        let mut ports = [Channel::FREE; MAX_PORTS];
        ports[0].state = State::Reserved;
        Self {
            domid,
            nr_vcpus,
            ports,
            virqs: [[0; NR_VIRQS as usize]; MAX_VCPUS],
            fifo: None,
        }
    }

    pub const fn domid(&self) -> DomId {
        self.domid
    }

    pub const fn nr_vcpus(&self) -> u32 {
        self.nr_vcpus
    }

    /// The channel at `port`, or `None` if `port` is out of range.
    pub fn channel(&self, port: Port) -> Option<Channel> {
        self.ports.get(port as usize).copied()
    }

    /// The port bound to `virq` for `vcpu` (vCPU 0 for per-domain and global VIRQs).
    pub fn virq_port(&self, virq: u32, vcpu: u32) -> Option<Port> {
        let port = *self.virqs.get(vcpu as usize)?.get(virq as usize)?;
        (port != 0).then_some(port)
    }

    fn valid(&self, port: Port) -> Result<Channel> {
        self.channel(port).ok_or(-EINVAL)
    }

    fn check_vcpu(&self, vcpu: u32) -> Result<()> {
        if vcpu < self.nr_vcpus {
            Ok(())
        } else {
            Err(-ENOENT)
        }
    }

    /// The lowest free port (Xen `get_free_port`).
    fn free_port(&self) -> Result<Port> {
        self.ports
            .iter()
            .position(|c| c.state == State::Free)
            .map(|p| p as Port)
            .ok_or(-ENOSPC)
    }

    fn bind(&mut self, port: Port, state: State, vcpu: u32) {
        self.ports[port as usize] = Channel { state, vcpu };
        if let Some(f) = &mut self.fifo {
            f.bound(port);
        }
    }

    /// The FIFO state, once `init_control` switched the domain to it.
    pub fn fifo(&self) -> Option<&Fifo> {
        self.fifo.as_ref()
    }

    // The port operations of the ABI in force (Xen's `evtchn_port_ops`).

    fn set_pending<B: EventBits + ?Sized>(
        &mut self,
        bits: &mut B,
        vcpu: u32,
        port: Port,
    ) -> Notify {
        match &mut self.fifo {
            None => set_pending_2l(bits, vcpu, port),
            Some(f) => f.set_pending(bits, vcpu, port),
        }
    }

    fn clear_pending<B: EventBits + ?Sized>(&mut self, bits: &mut B, port: Port) {
        match &mut self.fifo {
            None => bits.clear_pending(port),
            Some(f) => f.clear_pending(bits, port),
        }
    }

    /// Whether `port` is pending, in the ABI in force.
    pub fn is_pending<B: EventBits + ?Sized>(&self, bits: &B, port: Port) -> bool {
        match &self.fifo {
            None => bits.is_pending(port),
            Some(f) => f.is_pending(bits, port),
        }
    }

    /// Whether `port` is masked, in the ABI in force.
    pub fn is_masked<B: EventBits + ?Sized>(&self, bits: &B, port: Port) -> bool {
        match &self.fifo {
            None => bits.is_masked(port),
            Some(f) => f.is_masked(bits, port),
        }
    }

    /// `EVTCHNOP_alloc_unbound`: a new port waiting for `remote_domid`
    /// (`DOMID_SELF` means this domain) to bind it. Also how the hypervisor
    /// pre-creates the console and XenStore ports for their backends.
    pub fn alloc_unbound(&mut self, remote_domid: DomId) -> Result<Port> {
        let port = self.free_port()?;
        let remote_domid = if remote_domid == DOMID_SELF {
            self.domid
        } else {
            remote_domid
        };
        self.bind(port, State::Unbound { remote_domid }, 0);
        Ok(port)
    }

    /// `EVTCHNOP_bind_interdomain` by this domain to `remote_port` of
    /// `remote`, which must be unbound and accept this domain (else -EINVAL).
    /// Both ends become interdomain, and the new local port is always set
    /// pending, for notifications sent before the bind.
    pub fn bind_interdomain<B: EventBits + ?Sized>(
        &mut self,
        bits: &mut B,
        remote: Remote<'_>,
        remote_port: Port,
    ) -> Result<(Port, Notify)> {
        let port = self.free_port()?;
        let accepts_us = State::Unbound {
            remote_domid: self.domid,
        };
        let remote_domid = match remote {
            Remote::Loopback => {
                if self.valid(remote_port)?.state != accepts_us {
                    return Err(-EINVAL);
                }
                self.ports[remote_port as usize].state = State::Interdomain {
                    remote_domid: self.domid,
                    remote_port: port,
                };
                self.domid
            }
            Remote::Domain(rd) => {
                if rd.valid(remote_port)?.state != accepts_us {
                    return Err(-EINVAL);
                }
                rd.ports[remote_port as usize].state = State::Interdomain {
                    remote_domid: self.domid,
                    remote_port: port,
                };
                rd.domid
            }
        };
        self.bind(
            port,
            State::Interdomain {
                remote_domid,
                remote_port,
            },
            0,
        );
        Ok((port, self.raise(bits, port)))
    }

    /// `EVTCHNOP_bind_virq`: checks in Xen's order: `virq` ≥ `NR_VIRQS` or a
    /// per-domain/global VIRQ with `vcpu` ≠ 0 → -EINVAL; no such vCPU →
    /// -ENOENT; a global VIRQ → -EBUSY (only the hardware domain handles
    /// them, and Xenolith has none); already bound for that vCPU → -EEXIST.
    pub fn bind_virq(&mut self, virq: u32, vcpu: u32) -> Result<Port> {
        if virq >= NR_VIRQS {
            return Err(-EINVAL);
        }
        let kind = virq_type(virq);
        if kind != VirqType::PerVcpu && vcpu != 0 {
            return Err(-EINVAL);
        }
        self.check_vcpu(vcpu)?;
        if kind == VirqType::Global {
            return Err(-EBUSY);
        }
        if self.virqs[vcpu as usize][virq as usize] != 0 {
            return Err(-EEXIST);
        }
        let port = self.free_port()?;
        self.bind(port, State::Virq { virq }, vcpu);
        self.virqs[vcpu as usize][virq as usize] = port;
        Ok(port)
    }

    /// `EVTCHNOP_bind_ipi`: a new port notifying `vcpu` (-ENOENT if none);
    /// its vCPU cannot change.
    pub fn bind_ipi(&mut self, vcpu: u32) -> Result<Port> {
        self.check_vcpu(vcpu)?;
        let port = self.free_port()?;
        self.bind(port, State::Ipi, vcpu);
        Ok(port)
    }

    /// `EVTCHNOP_close`: frees the port (its pending bit cleared, notify vCPU
    /// back to 0). Free and reserved ports are -EINVAL. For an interdomain
    /// channel to another domain, returns the peer, whose port reverts to
    /// unbound (accepting this domain) through [`Self::peer_closed`]; a
    /// loopback peer is reverted here.
    pub fn close<B: EventBits + ?Sized>(
        &mut self,
        bits: &mut B,
        port: Port,
    ) -> Result<Option<Peer>> {
        let ch = self.valid(port)?;
        let mut peer = None;
        match ch.state {
            State::Free | State::Reserved => return Err(-EINVAL),
            State::Unbound { .. } | State::Ipi => {}
            State::Virq { virq } => {
                let row = if virq_type(virq) == VirqType::PerVcpu {
                    ch.vcpu
                } else {
                    0
                };
                self.virqs[row as usize][virq as usize] = 0;
            }
            State::Interdomain {
                remote_domid,
                remote_port,
            } => {
                if remote_domid == self.domid {
                    self.peer_closed(remote_port, self.domid, port);
                } else {
                    peer = Some(Peer {
                        domid: remote_domid,
                        port: remote_port,
                    });
                }
            }
        }
        self.clear_pending(bits, port);
        self.ports[port as usize] = Channel::FREE;
        Ok(peer)
    }

    /// The far side of a close: `port` of this domain was connected to
    /// `closed_port` of `closer`, which closed it, so it reverts to unbound
    /// accepting `closer`. Returns false (and changes nothing) if `port` was
    /// not connected to that.
    pub fn peer_closed(&mut self, port: Port, closer: DomId, closed_port: Port) -> bool {
        let connected = State::Interdomain {
            remote_domid: closer,
            remote_port: closed_port,
        };
        match self.ports.get_mut(port as usize) {
            Some(ch) if ch.state == connected => {
                ch.state = State::Unbound {
                    remote_domid: closer,
                };
                true
            }
            _ => false,
        }
    }

    /// `EVTCHNOP_status` for a port of this domain (-EINVAL out of range;
    /// free and reserved ports report `EVTCHNSTAT_closed`). See
    /// [`Channel::to_evtchn_status`].
    pub fn status(&self, port: Port) -> Result<Channel> {
        self.valid(port)
    }

    /// `EVTCHNOP_bind_vcpu`: no such vCPU → -ENOENT (checked first); bad
    /// port → -EINVAL; only unbound, interdomain and per-domain/global VIRQ
    /// ports may move (per-vCPU VIRQs, IPIs, free ports: -EINVAL). Pending
    /// state is not moved.
    pub fn bind_vcpu(&mut self, port: Port, vcpu: u32) -> Result<()> {
        self.check_vcpu(vcpu)?;
        let ch = self.valid(port)?;
        match ch.state {
            State::Virq { virq } if virq_type(virq) != VirqType::PerVcpu => {}
            State::Unbound { .. } | State::Interdomain { .. } => {}
            _ => return Err(-EINVAL),
        }
        self.ports[port as usize].vcpu = vcpu;
        Ok(())
    }

    /// `EVTCHNOP_unmask`: -EINVAL out of range; on a bound port, the 2-level
    /// unmask ([`unmask_2l`]) towards its vCPU; on a free port, nothing.
    /// Returns the vCPU to kick, if any.
    pub fn unmask<B: EventBits + ?Sized>(
        &mut self,
        bits: &mut B,
        port: Port,
    ) -> Result<Option<u32>> {
        let ch = self.valid(port)?;
        Ok(match &mut self.fifo {
            _ if !ch.usable() => None,
            None => unmask_2l(bits, ch.vcpu, port),
            Some(f) => f.unmask(bits, ch.vcpu, port),
        })
    }

    /// `EVTCHNOP_send`: interdomain → the peer port; IPI → this port, on its
    /// vCPU; unbound → dropped (0); anything else, and bad ports, -EINVAL.
    pub fn send<B: EventBits + ?Sized>(&mut self, bits: &mut B, port: Port) -> Result<Delivery> {
        let ch = self.valid(port)?;
        match ch.state {
            State::Interdomain {
                remote_domid,
                remote_port,
            } if remote_domid == self.domid => Ok(Delivery::Local(self.raise(bits, remote_port))),
            State::Interdomain {
                remote_domid,
                remote_port,
            } => Ok(Delivery::Remote {
                domid: remote_domid,
                port: remote_port,
            }),
            State::Ipi => Ok(Delivery::Local(self.set_pending(bits, ch.vcpu, port))),
            State::Unbound { .. } => Ok(Delivery::Dropped),
            _ => Err(-EINVAL),
        }
    }

    /// Raises `port` of this domain on its notify vCPU: the receiving end of
    /// an interdomain send, or a hypervisor-owned channel. Nothing happens
    /// on a free, reserved or out-of-range port.
    pub fn raise<B: EventBits + ?Sized>(&mut self, bits: &mut B, port: Port) -> Notify {
        match self.channel(port) {
            Some(ch) if ch.usable() => self.set_pending(bits, ch.vcpu, port),
            _ => Notify::default(),
        }
    }

    /// Raises `virq` (e.g. `VIRQ_TIMER` when a singleshot timer expires):
    /// per-vCPU VIRQs on `vcpu`'s port, others on the domain's port
    /// (`vcpu` ignored) towards its current vCPU. Nothing if unbound.
    pub fn raise_virq<B: EventBits + ?Sized>(
        &mut self,
        bits: &mut B,
        virq: u32,
        vcpu: u32,
    ) -> Notify {
        if virq >= NR_VIRQS {
            return Notify::default();
        }
        let per_vcpu = virq_type(virq) == VirqType::PerVcpu;
        let row = if per_vcpu { vcpu } else { 0 };
        match self.virq_port(virq, row) {
            Some(port) => {
                let target = if per_vcpu {
                    vcpu
                } else {
                    self.ports[port as usize].vcpu
                };
                self.set_pending(bits, target, port)
            }
            None => Notify::default(),
        }
    }

    /// `EVTCHNOP_set_priority` (Xen `evtchn_set_priority`): -EINVAL for a
    /// bad port; in the 2-level ABI -ENOSYS (it has no priorities); in the
    /// FIFO ABI the port's queue for later events, -EINVAL above
    /// `EVTCHN_FIFO_PRIORITY_MIN`. Free ports take it too, as in Xen (a
    /// later bind resets it to the default).
    pub fn set_priority(&mut self, port: Port, priority: u32) -> Result<()> {
        self.valid(port)?;
        match &mut self.fifo {
            None => Err(-ENOSYS),
            Some(f) => f.set_priority(port, priority),
        }
    }

    /// `EVTCHNOP_init_control` (Xen `evtchn_fifo_init_control`): registers
    /// `vcpu`'s control block at `offset` of `frame`, which the caller
    /// resolved from the guest's GFN (`Err` for a GFN that is not a
    /// writable RAM page of the domain: -EINVAL, XSA-188). Checks in Xen's
    /// order: no such vCPU → -ENOENT; offset past `PAGE_SIZE - 72` or not
    /// 8-aligned → -EINVAL; that vCPU has a control block → -EINVAL; then
    /// the frame. The first success switches the domain to the FIFO ABI,
    /// carrying over which bound ports were pending; a failure changes
    /// nothing. Returns `link_bits` (17) for the guest.
    pub fn init_control<B: EventBits + ?Sized>(
        &mut self,
        bits: &B,
        vcpu: u32,
        offset: u32,
        frame: Result<u64>,
    ) -> Result<u8> {
        self.check_vcpu(vcpu)?;
        fifo::check_control_offset(offset)?;
        match &mut self.fifo {
            Some(f) => {
                if f.control_block(vcpu).is_some() {
                    return Err(-EINVAL);
                }
                f.set_control_block(vcpu, frame?, offset)?;
            }
            None => {
                let frame = frame?;
                let mut f = Fifo::new();
                f.set_control_block(vcpu, frame, offset)?;
                // Xen `setup_ports`: what was pending in shared_info is
                // raised again once the port's event-array page exists.
                for port in 1..MAX_PORTS as Port {
                    if self.ports[port as usize].usable() && bits.is_pending(port) {
                        f.save_pending(port);
                    }
                }
                self.fifo = Some(f);
            }
        }
        Ok(EVTCHN_FIFO_LINK_BITS as u8)
    }

    /// `EVTCHNOP_expand_array` (Xen `evtchn_fifo_expand_array`): adds the
    /// next event-array page, `frame` resolved from the guest's GFN as for
    /// [`Self::init_control`]. Still on the 2-level ABI → -EOPNOTSUPP; all
    /// `EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES` added → -ENOSPC; bad frame →
    /// -EINVAL. Ports raised while their page was missing are raised now.
    pub fn expand_array<B: EventBits + ?Sized>(
        &mut self,
        bits: &mut B,
        frame: Result<u64>,
    ) -> Result<()> {
        let Some(f) = &mut self.fifo else {
            return Err(-EOPNOTSUPP);
        };
        let first = f.add_page(frame)?;
        let end = f.num_evtchns().min(MAX_PORTS as Port);
        for port in first..end {
            let ch = self.ports[port as usize];
            if ch.usable() && f.take_saved_pending(port) {
                f.set_pending(bits, ch.vcpu, port);
            }
        }
        Ok(())
    }

    /// The port check of `SCHEDOP_poll` (Xen `do_poll`): -EINVAL for more
    /// than `POLL_MAX_PORTS` ports or, in list order, an out-of-range port;
    /// `Ok(true)` at the first bound port that is pending, masked or not
    /// (return 0 at once); `Ok(false)` if none is (block until one is raised
    /// — see [`Notify::newly_pending`] — or an upcall is due, or the timeout).
    pub fn poll<B: EventBits + ?Sized>(&self, bits: &B, ports: &[Port]) -> Result<bool> {
        if ports.len() > POLL_MAX_PORTS {
            return Err(-EINVAL);
        }
        for &port in ports {
            if self.valid(port)?.usable() && self.is_pending(bits, port) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `EVTCHNOP_reset` of this domain: closes every bound port, handing
    /// each remote peer to `peer` (see [`Self::close`]), and returns to the
    /// 2-level ABI.
    pub fn reset<B: EventBits + ?Sized>(&mut self, bits: &mut B, mut peer: impl FnMut(Peer)) {
        for port in 1..MAX_PORTS as Port {
            if self.ports[port as usize].usable() {
                if let Ok(Some(p)) = self.close(bits, port) {
                    peer(p);
                }
            }
        }
        // Xen `evtchn_reset`: the one way back to the 2-level ABI.
        self.release_fifo();
    }

    /// Forgets the FIFO state and every guest frame it refers to, back on
    /// the 2-level ABI (`EVTCHNOP_reset`, and domain teardown, after which
    /// the frames may be freed).
    pub fn release_fifo(&mut self) {
        self.fifo = None;
    }

    /// Whether the FIFO ABI refers to `frame` (an event-array page or a
    /// control block): such a frame must stay the domain's until
    /// [`Self::release_fifo`] (what XENMEM_decrease_reservation must refuse).
    pub fn fifo_uses_frame(&self, frame: u64) -> bool {
        self.fifo
            .as_ref()
            .is_some_and(|f| f.frames().any(|x| x == frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use xen_abi::event_channel::{
        VIRQ_ARGO, VIRQ_CONSOLE, VIRQ_DEBUG, VIRQ_MCA, VIRQ_TIMER, VIRQ_XENOPROF,
    };
    use xen_abi::shared_info::SharedInfo;

    /// The fake guest memory: a real `shared_info` layout (all vCPUs use
    /// their legacy `vcpu_info` slot).
    impl EventBits for SharedInfo {
        fn test_and_set_pending(&mut self, port: Port) -> bool {
            test_and_set(&mut self.evtchn_pending[word(port)], bit(port))
        }
        fn clear_pending(&mut self, port: Port) {
            self.evtchn_pending[word(port)] &= !bit(port);
        }
        fn is_pending(&self, port: Port) -> bool {
            self.evtchn_pending[word(port)] & bit(port) != 0
        }
        fn is_masked(&self, port: Port) -> bool {
            self.evtchn_mask[word(port)] & bit(port) != 0
        }
        fn test_and_clear_mask(&mut self, port: Port) -> bool {
            let w = &mut self.evtchn_mask[word(port)];
            let old = *w & bit(port) != 0;
            *w &= !bit(port);
            old
        }
        fn test_and_set_selector(&mut self, vcpu: u32, word: u32) -> bool {
            test_and_set(
                &mut self.vcpu_info[vcpu as usize].evtchn_pending_sel,
                1 << word,
            )
        }
        fn test_and_set_upcall_pending(&mut self, vcpu: u32) -> bool {
            let flag = &mut self.vcpu_info[vcpu as usize].evtchn_upcall_pending;
            let old = *flag != 0;
            *flag = 1;
            old
        }
    }

    /// The 2-level tests never switch to the FIFO ABI (its tests use
    /// `fifo_tests::Guest`), so `shared_info` alone has no FIFO words.
    impl FifoMemory for SharedInfo {
        fn fifo_load(&self, _: u64, _: u32) -> u32 {
            unreachable!("2-level test touched a FIFO word")
        }
        fn fifo_store(&mut self, _: u64, _: u32, _: u32) {
            unreachable!("2-level test touched a FIFO word")
        }
        fn fifo_cmpxchg(&mut self, _: u64, _: u32, _: u32, _: u32) -> u32 {
            unreachable!("2-level test touched a FIFO word")
        }
        fn fifo_fetch_or(&mut self, _: u64, _: u32, _: u32) -> u32 {
            unreachable!("2-level test touched a FIFO word")
        }
        fn fifo_fetch_and(&mut self, _: u64, _: u32, _: u32) -> u32 {
            unreachable!("2-level test touched a FIFO word")
        }
    }

    fn word(port: Port) -> usize {
        (port / 64) as usize
    }

    fn bit(port: Port) -> u64 {
        1 << (port % 64)
    }

    fn test_and_set(w: &mut u64, bit: u64) -> bool {
        let old = *w & bit != 0;
        *w |= bit;
        old
    }

    /// Guest memory as Linux leaves it after `xen_init_IRQ`: every port masked.
    fn masked() -> SharedInfo {
        let mut s = SharedInfo::ZERO;
        s.evtchn_mask = [!0; 64];
        s
    }

    fn unmasked() -> SharedInfo {
        SharedInfo::ZERO
    }

    fn sel(s: &SharedInfo, vcpu: usize) -> u64 {
        s.vcpu_info[vcpu].evtchn_pending_sel
    }

    fn upcall(s: &SharedInfo, vcpu: usize) -> u8 {
        s.vcpu_info[vcpu].evtchn_upcall_pending
    }

    const ME: DomId = 3;
    const BACKEND: DomId = 0;

    fn table() -> EventChannels {
        EventChannels::new(ME, 4)
    }

    // --- the 2-level rule on shared_info's layout ---

    #[test]
    fn set_pending_sets_bit_selector_and_upcall() {
        let mut s = unmasked();
        let n = set_pending_2l(&mut s, 2, 70);
        assert_eq!(
            n,
            Notify {
                newly_pending: true,
                upcall: Some(2)
            }
        );
        assert_eq!(s.evtchn_pending[1], 1 << 6);
        assert_eq!(sel(&s, 2), 1 << 1);
        assert_eq!(upcall(&s, 2), 1);
        assert_eq!(sel(&s, 0), 0);
        // Already pending: no new edge at all.
        assert_eq!(set_pending_2l(&mut s, 2, 70), Notify::default());
    }

    #[test]
    fn set_pending_edges_collapse_in_selector_and_upcall() {
        let mut s = unmasked();
        set_pending_2l(&mut s, 0, 1);
        // Same word, selector bit already set: no upcall request.
        assert_eq!(
            set_pending_2l(&mut s, 0, 2),
            Notify {
                newly_pending: true,
                upcall: None
            }
        );
        // New word but upcall still pending: selector set, no new upcall.
        assert_eq!(
            set_pending_2l(&mut s, 0, 64),
            Notify {
                newly_pending: true,
                upcall: None
            }
        );
        assert_eq!(sel(&s, 0), 0b11);
        // Highest port of the 2-level ABI: word 63, bit 63.
        let mut s = unmasked();
        assert_eq!(set_pending_2l(&mut s, 31, 4095).upcall, Some(31));
        assert_eq!(s.evtchn_pending[63], 1 << 63);
        assert_eq!(sel(&s, 31), 1 << 63);
    }

    #[test]
    fn set_pending_on_masked_port_loses_the_edge_until_unmask() {
        let mut s = masked();
        assert_eq!(
            set_pending_2l(&mut s, 1, 5),
            Notify {
                newly_pending: true,
                upcall: None
            }
        );
        assert_eq!((sel(&s, 1), upcall(&s, 1)), (0, 0));
        assert!(s.is_pending(5));
        assert_eq!(unmask_2l(&mut s, 1, 5), Some(1));
        assert_eq!((sel(&s, 1), upcall(&s, 1)), (1, 1));
        assert!(!s.is_masked(5));
    }

    #[test]
    fn unmask_acts_only_on_a_set_mask_and_a_pending_port() {
        let mut s = masked();
        // Masked, not pending: unmask only clears the mask.
        assert_eq!(unmask_2l(&mut s, 0, 9), None);
        assert!(!s.is_masked(9));
        // Already unmasked and pending (selector clear): no upcall, as Xen
        // (test_and_clear of the mask returned 0).
        s.evtchn_pending[0] |= 1 << 9;
        assert_eq!(unmask_2l(&mut s, 0, 9), None);
        assert_eq!(sel(&s, 0), 0);
        // Masked, pending, selector already set: no new upcall.
        let mut s = masked();
        s.evtchn_pending[0] = 0b110;
        s.vcpu_info[0].evtchn_pending_sel = 1;
        assert_eq!(unmask_2l(&mut s, 0, 1), None);
        // Masked, pending, selector clear, upcall already pending: none either.
        let mut s = masked();
        s.evtchn_pending[0] = 0b10;
        s.vcpu_info[0].evtchn_upcall_pending = 1;
        assert_eq!(unmask_2l(&mut s, 0, 1), None);
        assert_eq!(sel(&s, 0), 1);
    }

    #[test]
    fn mark_events_pending_is_an_edge() {
        let mut s = unmasked();
        assert_eq!(mark_events_pending(&mut s, 3), Some(3));
        assert_eq!(mark_events_pending(&mut s, 3), None);
    }

    // --- port table operations ---

    #[test]
    fn port_zero_is_reserved() {
        let mut t = table();
        let mut s = unmasked();
        assert_eq!(t.channel(0).unwrap().state, State::Reserved);
        assert_eq!(
            t.status(0).unwrap().to_evtchn_status(DOMID_SELF, 0).status,
            EVTCHNSTAT_CLOSED
        );
        assert_eq!(t.close(&mut s, 0), Err(-EINVAL));
        assert_eq!(t.send(&mut s, 0), Err(-EINVAL));
        assert_eq!(t.bind_vcpu(0, 0), Err(-EINVAL));
        assert_eq!(t.unmask(&mut s, 0), Ok(None));
        assert_eq!(t.alloc_unbound(BACKEND), Ok(1));
    }

    #[test]
    fn allocation_is_lowest_free_and_bounded() {
        let mut t = table();
        let mut s = unmasked();
        assert_eq!(t.alloc_unbound(BACKEND), Ok(1));
        assert_eq!(t.alloc_unbound(DOMID_SELF), Ok(2));
        assert_eq!(
            t.channel(2).unwrap().state,
            State::Unbound { remote_domid: ME }
        );
        assert_eq!(t.bind_ipi(1), Ok(3));
        assert_eq!(t.close(&mut s, 2), Ok(None));
        assert_eq!(t.bind_virq(VIRQ_TIMER, 0), Ok(2));
        for p in 4..MAX_PORTS as Port {
            assert_eq!(t.bind_ipi(0), Ok(p));
        }
        assert_eq!(t.alloc_unbound(BACKEND), Err(-ENOSPC));
        assert_eq!(t.bind_ipi(0), Err(-ENOSPC));
        assert_eq!(t.bind_virq(VIRQ_DEBUG, 0), Err(-ENOSPC));
        assert_eq!(t.close(&mut s, 700), Ok(None));
        assert_eq!(t.alloc_unbound(BACKEND), Ok(700));
    }

    #[test]
    fn out_of_range_ports_are_einval() {
        let mut t = table();
        let mut s = unmasked();
        for port in [MAX_PORTS as Port, 4095, 4096, u32::MAX] {
            assert_eq!(t.status(port), Err(-EINVAL));
            assert_eq!(t.close(&mut s, port), Err(-EINVAL));
            assert_eq!(t.send(&mut s, port), Err(-EINVAL));
            assert_eq!(t.unmask(&mut s, port), Err(-EINVAL));
            assert_eq!(t.bind_vcpu(port, 0), Err(-EINVAL));
            assert_eq!(t.set_priority(port, 0), Err(-EINVAL));
            assert_eq!(t.poll(&s, &[port]), Err(-EINVAL));
            assert_eq!(t.raise(&mut s, port), Notify::default());
        }
    }

    #[test]
    fn bind_virq_rules_and_error_order() {
        let mut t = table();
        assert_eq!(t.bind_virq(VIRQ_TIMER, 0), Ok(1));
        assert_eq!(t.bind_virq(VIRQ_TIMER, 1), Ok(2));
        assert_eq!(t.bind_virq(VIRQ_DEBUG, 0), Ok(3));
        assert_eq!(t.bind_virq(VIRQ_TIMER, 0), Err(-EEXIST));
        assert_eq!(t.virq_port(VIRQ_TIMER, 1), Some(2));
        assert_eq!(t.virq_port(VIRQ_TIMER, 2), None);
        assert_eq!(
            t.channel(2).unwrap(),
            Channel {
                state: State::Virq { virq: VIRQ_TIMER },
                vcpu: 1
            }
        );
        assert_eq!(t.bind_virq(NR_VIRQS, 0), Err(-EINVAL));
        assert_eq!(t.bind_virq(u32::MAX, 9), Err(-EINVAL));
        assert_eq!(t.bind_virq(VIRQ_TIMER, 4), Err(-ENOENT));
        assert_eq!(t.bind_virq(VIRQ_XENOPROF, 31), Err(-ENOENT));
        // Per-domain and global VIRQs: vCPU ≠ 0 is -EINVAL before anything else.
        assert_eq!(t.bind_virq(VIRQ_ARGO, 1), Err(-EINVAL));
        assert_eq!(t.bind_virq(VIRQ_CONSOLE, 1), Err(-EINVAL));
        assert_eq!(t.bind_virq(VIRQ_ARGO, 9), Err(-EINVAL));
        // Global VIRQs belong to the hardware domain.
        assert_eq!(t.bind_virq(VIRQ_CONSOLE, 0), Err(-EBUSY));
        assert_eq!(t.bind_virq(VIRQ_MCA, 0), Err(-EBUSY));
        assert_eq!(t.bind_virq(VIRQ_ARGO, 0), Ok(4));
        assert_eq!(t.bind_virq(VIRQ_ARGO, 0), Err(-EEXIST));
    }

    #[test]
    fn bind_ipi_checks_the_vcpu() {
        let mut t = table();
        assert_eq!(t.bind_ipi(3), Ok(1));
        assert_eq!(
            t.channel(1).unwrap(),
            Channel {
                state: State::Ipi,
                vcpu: 3
            }
        );
        assert_eq!(t.bind_ipi(4), Err(-ENOENT));
    }

    #[test]
    fn close_frees_clears_pending_and_virq_slot() {
        let mut t = table();
        let mut s = unmasked();
        let timer = t.bind_virq(VIRQ_TIMER, 2).unwrap();
        t.raise_virq(&mut s, VIRQ_TIMER, 2);
        assert!(s.is_pending(timer));
        assert_eq!(t.close(&mut s, timer), Ok(None));
        assert!(!s.is_pending(timer));
        assert_eq!(t.channel(timer).unwrap(), Channel::FREE);
        assert_eq!(t.virq_port(VIRQ_TIMER, 2), None);
        assert_eq!(t.close(&mut s, timer), Err(-EINVAL));
        assert_eq!(t.bind_virq(VIRQ_TIMER, 2), Ok(timer));
        // A per-domain VIRQ moved to another vCPU still frees its vCPU 0 slot.
        let argo = t.bind_virq(VIRQ_ARGO, 0).unwrap();
        t.bind_vcpu(argo, 3).unwrap();
        t.close(&mut s, argo).unwrap();
        assert_eq!(t.bind_virq(VIRQ_ARGO, 0), Ok(argo));
    }

    #[test]
    fn status_reports_every_state() {
        let mut t = table();
        let mut s = unmasked();
        let unbound = t.alloc_unbound(BACKEND).unwrap();
        let virq = t.bind_virq(VIRQ_DEBUG, 1).unwrap();
        let ipi = t.bind_ipi(2).unwrap();
        let listener = t.alloc_unbound(DOMID_SELF).unwrap();
        let (looped, _) = t
            .bind_interdomain(&mut s, Remote::Loopback, listener)
            .unwrap();

        let st = |t: &EventChannels, p| t.status(p).unwrap().to_evtchn_status(DOMID_SELF, p);
        let raw = |x: EvtchnStatus| {
            // SAFETY: `to_evtchn_status` builds `u` with its constructors,
            // which initialise all eight bytes.
            let i = unsafe { x.u.interdomain };
            (x.status, x.vcpu, i.dom, i.port)
        };
        assert_eq!(raw(st(&t, unbound)), (EVTCHNSTAT_UNBOUND, 0, BACKEND, 0));
        assert_eq!(
            raw(st(&t, virq)),
            (EVTCHNSTAT_VIRQ, 1, VIRQ_DEBUG as u16, 0)
        );
        assert_eq!(raw(st(&t, ipi)), (EVTCHNSTAT_IPI, 2, 0, 0));
        assert_eq!(
            raw(st(&t, looped)),
            (EVTCHNSTAT_INTERDOMAIN, 0, ME, listener)
        );
        assert_eq!(
            raw(st(&t, listener)),
            (EVTCHNSTAT_INTERDOMAIN, 0, ME, looped)
        );
        assert_eq!(raw(st(&t, 100)), (EVTCHNSTAT_CLOSED, 0, 0, 0));
        let x = st(&t, ipi);
        assert_eq!((x.dom, x.port), (DOMID_SELF, ipi));
    }

    #[test]
    fn bind_vcpu_moves_only_movable_ports() {
        let mut t = table();
        let unbound = t.alloc_unbound(BACKEND).unwrap();
        let timer = t.bind_virq(VIRQ_TIMER, 0).unwrap();
        let ipi = t.bind_ipi(0).unwrap();
        let argo = t.bind_virq(VIRQ_ARGO, 0).unwrap();
        assert_eq!(t.bind_vcpu(unbound, 3), Ok(()));
        assert_eq!(t.channel(unbound).unwrap().vcpu, 3);
        assert_eq!(t.bind_vcpu(argo, 2), Ok(()));
        assert_eq!(t.bind_vcpu(timer, 1), Err(-EINVAL));
        assert_eq!(t.bind_vcpu(ipi, 1), Err(-EINVAL));
        assert_eq!(t.bind_vcpu(500, 1), Err(-EINVAL));
        // The vCPU is checked before the port.
        assert_eq!(t.bind_vcpu(500, 4), Err(-ENOENT));
        assert_eq!(t.bind_vcpu(MAX_PORTS as Port, 4), Err(-ENOENT));
        let mut s = unmasked();
        assert_eq!(t.raise_virq(&mut s, VIRQ_ARGO, 0).upcall, Some(2));
    }

    #[test]
    fn send_by_state() {
        let mut t = table();
        let mut s = unmasked();
        let ipi = t.bind_ipi(1).unwrap();
        assert_eq!(
            t.send(&mut s, ipi),
            Ok(Delivery::Local(Notify {
                newly_pending: true,
                upcall: Some(1)
            }))
        );
        assert_eq!(t.send(&mut s, ipi), Ok(Delivery::Local(Notify::default())));
        let unbound = t.alloc_unbound(BACKEND).unwrap();
        assert_eq!(t.send(&mut s, unbound), Ok(Delivery::Dropped));
        assert!(!s.is_pending(unbound));
        let timer = t.bind_virq(VIRQ_TIMER, 0).unwrap();
        assert_eq!(t.send(&mut s, timer), Err(-EINVAL));
        assert_eq!(t.send(&mut s, 900), Err(-EINVAL));
    }

    #[test]
    fn interdomain_bind_send_close() {
        let mut front = table();
        let mut back = EventChannels::new(BACKEND, 2);
        let (mut fs, mut bs) = (masked(), unmasked());
        // The frontend offers a port to the backend.
        let offered = front.alloc_unbound(BACKEND).unwrap();
        let wrong = front.alloc_unbound(7).unwrap();
        front.bind_vcpu(offered, 2).unwrap();
        // Sends before the backend binds are dropped.
        assert_eq!(front.send(&mut fs, offered), Ok(Delivery::Dropped));

        assert_eq!(
            back.bind_interdomain(&mut bs, Remote::Domain(&mut front), wrong),
            Err(-EINVAL)
        );
        assert_eq!(
            back.bind_interdomain(&mut bs, Remote::Domain(&mut front), 600),
            Err(-EINVAL)
        );
        assert_eq!(
            back.bind_interdomain(&mut bs, Remote::Domain(&mut front), MAX_PORTS as Port),
            Err(-EINVAL)
        );
        let (bport, n) = back
            .bind_interdomain(&mut bs, Remote::Domain(&mut front), offered)
            .unwrap();
        assert_eq!(bport, 1);
        // The new local port is always set pending.
        assert_eq!(
            n,
            Notify {
                newly_pending: true,
                upcall: Some(0)
            }
        );
        assert_eq!(
            front.channel(offered).unwrap(),
            Channel {
                state: State::Interdomain {
                    remote_domid: BACKEND,
                    remote_port: bport
                },
                vcpu: 2
            }
        );
        assert_eq!(
            back.channel(bport).unwrap().state,
            State::Interdomain {
                remote_domid: ME,
                remote_port: offered
            }
        );
        // Binding again: the port is no longer unbound.
        assert_eq!(
            back.bind_interdomain(&mut bs, Remote::Domain(&mut front), offered),
            Err(-EINVAL)
        );

        // Front → back and back → front (masked in the front: no upcall).
        assert_eq!(
            front.send(&mut fs, offered),
            Ok(Delivery::Remote {
                domid: BACKEND,
                port: bport
            })
        );
        assert_eq!(
            back.send(&mut bs, bport),
            Ok(Delivery::Remote {
                domid: ME,
                port: offered
            })
        );
        assert_eq!(
            front.raise(&mut fs, offered),
            Notify {
                newly_pending: true,
                upcall: None
            }
        );
        assert_eq!(front.unmask(&mut fs, offered), Ok(Some(2)));

        // The backend closes: the frontend's port waits for the backend again.
        assert_eq!(
            back.close(&mut bs, bport),
            Ok(Some(Peer {
                domid: ME,
                port: offered
            }))
        );
        assert!(front.peer_closed(offered, BACKEND, bport));
        assert!(!front.peer_closed(offered, BACKEND, bport));
        assert_eq!(
            front.channel(offered).unwrap().state,
            State::Unbound {
                remote_domid: BACKEND
            }
        );
        assert!(fs.is_pending(offered), "the peer's pending bit stays");
        assert_eq!(front.send(&mut fs, offered), Ok(Delivery::Dropped));
    }

    #[test]
    fn bind_interdomain_needs_a_free_local_port_first() {
        let mut front = table();
        let mut back = EventChannels::new(BACKEND, 1);
        let mut bs = unmasked();
        let offered = front.alloc_unbound(BACKEND).unwrap();
        while back.bind_ipi(0).is_ok() {}
        assert_eq!(
            back.bind_interdomain(&mut bs, Remote::Domain(&mut front), offered),
            Err(-ENOSPC)
        );
        assert_eq!(
            back.bind_interdomain(&mut bs, Remote::Domain(&mut front), 999),
            Err(-ENOSPC)
        );
        assert_eq!(
            front.channel(offered).unwrap().state,
            State::Unbound {
                remote_domid: BACKEND
            }
        );
    }

    #[test]
    fn loopback_channel() {
        let mut t = table();
        let mut s = unmasked();
        let listener = t.alloc_unbound(DOMID_SELF).unwrap();
        let other = t.alloc_unbound(BACKEND).unwrap();
        assert_eq!(
            t.bind_interdomain(&mut s, Remote::Loopback, other),
            Err(-EINVAL)
        );
        let (p, _) = t
            .bind_interdomain(&mut s, Remote::Loopback, listener)
            .unwrap();
        t.bind_vcpu(listener, 3).unwrap();
        s.clear_pending(p);
        assert_eq!(
            t.send(&mut s, p),
            Ok(Delivery::Local(Notify {
                newly_pending: true,
                upcall: Some(3)
            }))
        );
        assert!(s.is_pending(listener));
        assert_eq!(t.close(&mut s, listener), Ok(None));
        assert_eq!(
            t.channel(p).unwrap().state,
            State::Unbound { remote_domid: ME }
        );
    }

    #[test]
    fn raise_virq_targets() {
        let mut t = table();
        let mut s = unmasked();
        assert_eq!(t.raise_virq(&mut s, VIRQ_TIMER, 1), Notify::default());
        let p1 = t.bind_virq(VIRQ_TIMER, 1).unwrap();
        let p3 = t.bind_virq(VIRQ_TIMER, 3).unwrap();
        assert_eq!(
            t.raise_virq(&mut s, VIRQ_TIMER, 1),
            Notify {
                newly_pending: true,
                upcall: Some(1)
            }
        );
        assert!(s.is_pending(p1) && !s.is_pending(p3));
        assert_eq!(t.raise_virq(&mut s, VIRQ_TIMER, 3).upcall, Some(3));
        assert_eq!(t.raise_virq(&mut s, VIRQ_TIMER, 40), Notify::default());
        assert_eq!(t.raise_virq(&mut s, NR_VIRQS, 0), Notify::default());
        assert_eq!(t.raise_virq(&mut s, VIRQ_CONSOLE, 0), Notify::default());
    }

    #[test]
    fn poll_sees_masked_pending_bound_ports() {
        let mut t = table();
        let mut s = masked();
        let a = t.bind_ipi(0).unwrap();
        let b = t.bind_ipi(1).unwrap();
        assert_eq!(t.poll(&s, &[a, b]), Ok(false));
        assert_eq!(t.poll(&s, &[]), Ok(false));
        t.send(&mut s, b).unwrap();
        assert_eq!(t.poll(&s, &[a, b]), Ok(true));
        // A free port never counts, even with its bit set.
        s.evtchn_pending[0] |= bit(50);
        assert_eq!(t.poll(&s, &[50]), Ok(false));
        // Ports are checked in order: the pending one first wins.
        assert_eq!(t.poll(&s, &[b, 5000]), Ok(true));
        assert_eq!(t.poll(&s, &[5000, b]), Err(-EINVAL));
        assert_eq!(t.poll(&s, &[a; POLL_MAX_PORTS]), Ok(false));
        assert_eq!(t.poll(&s, &[b; POLL_MAX_PORTS + 1]), Err(-EINVAL));
    }

    #[test]
    fn two_level_has_no_priorities_nor_event_array() {
        let mut t = table();
        let mut s = unmasked();
        let p = t.bind_ipi(0).unwrap();
        assert_eq!(t.set_priority(p, 0), Err(-ENOSYS));
        assert_eq!(t.set_priority(0, 99), Err(-ENOSYS));
        assert_eq!(t.expand_array(&mut s, Ok(0x1000)), Err(-EOPNOTSUPP));
        assert!(t.fifo().is_none());
    }

    #[test]
    fn reset_closes_everything() {
        let mut front = table();
        let mut back = EventChannels::new(BACKEND, 1);
        let (mut fs, mut bs) = (unmasked(), unmasked());
        let offered = front.alloc_unbound(BACKEND).unwrap();
        let (bport, _) = back
            .bind_interdomain(&mut bs, Remote::Domain(&mut front), offered)
            .unwrap();
        front.bind_virq(VIRQ_TIMER, 0).unwrap();
        front.bind_ipi(1).unwrap();
        let mut peers = Vec::new();
        front.reset(&mut fs, |p| peers.push(p));
        assert_eq!(
            peers,
            [Peer {
                domid: BACKEND,
                port: bport
            }]
        );
        assert!((1..MAX_PORTS as Port).all(|p| front.channel(p).unwrap() == Channel::FREE));
        assert_eq!(front.channel(0).unwrap().state, State::Reserved);
        assert_eq!(front.virq_port(VIRQ_TIMER, 0), None);
        assert!(back.peer_closed(bport, ME, offered));
    }

    #[test]
    fn new_clamps_vcpus() {
        assert_eq!(EventChannels::new(1, 0).nr_vcpus(), 1);
        assert_eq!(EventChannels::new(1, 1000).nr_vcpus(), MAX_VCPUS as u32);
        assert_eq!(EventChannels::new(9, 4).domid(), 9);
    }

    // --- model-based property test ---

    const VCPUS: u32 = 4;
    const DOMS: [DomId; 2] = [ME, BACKEND];

    #[derive(Clone, Debug)]
    enum Op {
        AllocUnbound {
            d: usize,
            remote: DomId,
        },
        BindInterdomain {
            d: usize,
            remote_port: Port,
        },
        BindLoopback {
            d: usize,
            remote_port: Port,
        },
        BindVirq {
            d: usize,
            virq: u32,
            vcpu: u32,
        },
        BindIpi {
            d: usize,
            vcpu: u32,
        },
        Close {
            d: usize,
            port: Port,
        },
        BindVcpu {
            d: usize,
            port: Port,
            vcpu: u32,
        },
        Send {
            d: usize,
            port: Port,
        },
        Unmask {
            d: usize,
            port: Port,
        },
        RaiseVirq {
            d: usize,
            virq: u32,
            vcpu: u32,
        },
        Status {
            d: usize,
            port: Port,
        },
        Poll {
            d: usize,
            ports: Vec<Port>,
        },
        /// The guest masks a port itself.
        GuestMask {
            d: usize,
            port: Port,
        },
        /// Linux's `evtchn_2l_unmask` on an HVM guest: clear the mask; if the
        /// port is pending, mask it again and use EVTCHNOP_unmask.
        GuestUnmask {
            d: usize,
            port: Port,
        },
        /// The upcall handler on `vcpu`: clear upcall_pending, take the
        /// selector, handle (clear) every pending unmasked port of its words.
        GuestUpcall {
            d: usize,
            vcpu: u32,
        },
        /// Bind to the `pick`-th port of the other domain offered to `d`.
        BindOffered {
            d: usize,
            pick: usize,
        },
        /// Loopback-bind the `pick`-th port of `d` offered to itself.
        LoopbackOffered {
            d: usize,
            pick: usize,
        },
        /// Close, send on or move the `pick`-th bound port of `d`.
        CloseBound {
            d: usize,
            pick: usize,
        },
        SendBound {
            d: usize,
            pick: usize,
        },
        MoveBound {
            d: usize,
            pick: usize,
            vcpu: u32,
        },
        /// Raise the VIRQ of the `pick`-th VIRQ port of `d`.
        RaiseBoundVirq {
            d: usize,
            pick: usize,
        },
    }

    fn port() -> impl Strategy<Value = Port> {
        prop_oneof![
            12 => 0..8u32,
            3 => 8..40u32,
            1 => Just(MAX_PORTS as Port),
            1 => 1000..5000u32
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let d = 0..2usize;
        let pick = 0..16usize;
        let vcpu = 0..VCPUS + 1;
        let virq = prop_oneof![
            Just(VIRQ_TIMER),
            Just(VIRQ_DEBUG),
            Just(VIRQ_ARGO),
            Just(VIRQ_CONSOLE),
            Just(NR_VIRQS)
        ];
        let remote =
            prop_oneof![3 => Just(ME), 3 => Just(BACKEND), 1 => Just(DOMID_SELF), 1 => Just(9)];
        prop_oneof![
            2 => (d.clone(), remote).prop_map(|(d, remote)| Op::AllocUnbound { d, remote }),
            3 => (d.clone(), port()).prop_map(|(d, remote_port)| Op::BindInterdomain { d, remote_port }),
            2 => (d.clone(), port()).prop_map(|(d, remote_port)| Op::BindLoopback { d, remote_port }),
            1 => (d.clone(), virq.clone(), vcpu.clone()).prop_map(|(d, virq, vcpu)| Op::BindVirq { d, virq, vcpu }),
            1 => (d.clone(), vcpu.clone()).prop_map(|(d, vcpu)| Op::BindIpi { d, vcpu }),
            2 => (d.clone(), port()).prop_map(|(d, port)| Op::Close { d, port }),
            1 => (d.clone(), port(), vcpu.clone()).prop_map(|(d, port, vcpu)| Op::BindVcpu { d, port, vcpu }),
            3 => (d.clone(), port()).prop_map(|(d, port)| Op::Send { d, port }),
            1 => (d.clone(), port()).prop_map(|(d, port)| Op::Unmask { d, port }),
            2 => (d.clone(), virq, vcpu.clone()).prop_map(|(d, virq, vcpu)| Op::RaiseVirq { d, virq, vcpu }),
            1 => (d.clone(), port()).prop_map(|(d, port)| Op::Status { d, port }),
            1 => (d.clone(), proptest::collection::vec(port(), 0..4))
                .prop_map(|(d, ports)| Op::Poll { d, ports }),
            1 => (d.clone(), port()).prop_map(|(d, port)| Op::GuestMask { d, port }),
            2 => (d.clone(), port()).prop_map(|(d, port)| Op::GuestUnmask { d, port }),
            2 => (d.clone(), vcpu.clone()).prop_map(|(d, vcpu)| Op::GuestUpcall { d, vcpu }),
            2 => (d.clone(), pick.clone()).prop_map(|(d, pick)| Op::BindOffered { d, pick }),
            1 => (d.clone(), pick.clone()).prop_map(|(d, pick)| Op::LoopbackOffered { d, pick }),
            1 => (d.clone(), pick.clone()).prop_map(|(d, pick)| Op::CloseBound { d, pick }),
            3 => (d.clone(), pick.clone()).prop_map(|(d, pick)| Op::SendBound { d, pick }),
            1 => (d.clone(), pick.clone(), vcpu).prop_map(|(d, pick, vcpu)| Op::MoveBound { d, pick, vcpu }),
            2 => (d, pick).prop_map(|(d, pick)| Op::RaiseBoundVirq { d, pick }),
        ]
    }

    /// The reference: bound ports only (absent = free; port 0 reserved).
    #[derive(Clone, Debug, Default)]
    struct Model {
        ports: BTreeMap<Port, (State, u32)>,
    }

    impl Model {
        fn get(&self, port: Port) -> Option<(State, u32)> {
            if port as usize >= MAX_PORTS {
                None
            } else if port == 0 {
                Some((State::Reserved, 0))
            } else {
                Some(self.ports.get(&port).copied().unwrap_or((State::Free, 0)))
            }
        }
        fn lowest_free(&self) -> Option<Port> {
            (1..MAX_PORTS as Port).find(|p| !self.ports.contains_key(p))
        }
        /// The `pick`-th (modulo) bound port matching `f`.
        fn pick(&self, pick: usize, f: impl Fn(State) -> bool) -> Option<Port> {
            let found: Vec<Port> = self
                .ports
                .iter()
                .filter(|(_, c)| f(c.0))
                .map(|(&p, _)| p)
                .collect();
            (!found.is_empty()).then(|| found[pick % found.len()])
        }
        fn virq_bound(&self, virq: u32, vcpu: u32) -> bool {
            self.ports.values().any(|&(s, v)| {
                s == State::Virq { virq } && (virq_type(virq) != VirqType::PerVcpu || v == vcpu)
            })
        }
    }

    struct World {
        tables: [EventChannels; 2],
        bits: [SharedInfo; 2],
        models: [Model; 2],
    }

    /// The expected effect of raising `port` on `vcpu`, from the bits before.
    fn expect_raise(s: &SharedInfo, vcpu: u32, port: Port) -> Notify {
        if s.is_pending(port) {
            return Notify::default();
        }
        let sel_was = sel(s, vcpu as usize) & (1 << word(port)) != 0;
        let up_was = upcall(s, vcpu as usize) != 0;
        let upcall = (!s.is_masked(port) && !sel_was && !up_was).then_some(vcpu);
        Notify {
            newly_pending: true,
            upcall,
        }
    }

    fn expect_unmask(s: &SharedInfo, vcpu: u32, port: Port) -> Option<u32> {
        let fires = s.is_masked(port)
            && s.is_pending(port)
            && sel(s, vcpu as usize) & (1 << word(port)) == 0
            && upcall(s, vcpu as usize) == 0;
        fires.then_some(vcpu)
    }

    fn other(d: usize) -> usize {
        1 - d
    }

    fn step(w: &mut World, op: &Op) {
        match *op {
            Op::AllocUnbound { d, remote } => {
                let m = &mut w.models[d];
                let want = m.lowest_free().ok_or(-ENOSPC);
                assert_eq!(w.tables[d].alloc_unbound(remote), want);
                let remote_domid = if remote == DOMID_SELF {
                    DOMS[d]
                } else {
                    remote
                };
                m.ports
                    .insert(want.unwrap(), (State::Unbound { remote_domid }, 0));
            }
            Op::BindInterdomain { d, remote_port } => {
                let r = other(d);
                let accepts = w.models[r].get(remote_port).map(|c| c.0)
                    == Some(State::Unbound {
                        remote_domid: DOMS[d],
                    });
                let before = w.bits[d];
                let (left, right) = w.tables.split_at_mut(1);
                let (me, them) = if d == 0 {
                    (&mut left[0], &mut right[0])
                } else {
                    (&mut right[0], &mut left[0])
                };
                let got = me.bind_interdomain(&mut w.bits[d], Remote::Domain(them), remote_port);
                match w.models[d].lowest_free() {
                    None => assert_eq!(got, Err(-ENOSPC)),
                    Some(_) if !accepts => assert_eq!(got, Err(-EINVAL)),
                    Some(p) => {
                        assert_eq!(got, Ok((p, expect_raise(&before, 0, p))));
                        w.models[d].ports.insert(
                            p,
                            (
                                State::Interdomain {
                                    remote_domid: DOMS[r],
                                    remote_port,
                                },
                                0,
                            ),
                        );
                        let rc = w.models[r].ports.get_mut(&remote_port).unwrap();
                        rc.0 = State::Interdomain {
                            remote_domid: DOMS[d],
                            remote_port: p,
                        };
                    }
                }
            }
            Op::BindLoopback { d, remote_port } => {
                let m = &mut w.models[d];
                let accepts = m.get(remote_port).map(|c| c.0)
                    == Some(State::Unbound {
                        remote_domid: DOMS[d],
                    });
                let before = w.bits[d];
                let got =
                    w.tables[d].bind_interdomain(&mut w.bits[d], Remote::Loopback, remote_port);
                match m.lowest_free() {
                    None => assert_eq!(got, Err(-ENOSPC)),
                    Some(_) if !accepts => assert_eq!(got, Err(-EINVAL)),
                    Some(p) => {
                        assert_eq!(got, Ok((p, expect_raise(&before, 0, p))));
                        m.ports.insert(
                            p,
                            (
                                State::Interdomain {
                                    remote_domid: DOMS[d],
                                    remote_port,
                                },
                                0,
                            ),
                        );
                        m.ports.get_mut(&remote_port).unwrap().0 = State::Interdomain {
                            remote_domid: DOMS[d],
                            remote_port: p,
                        };
                    }
                }
            }
            Op::BindVirq { d, virq, vcpu } => {
                let m = &mut w.models[d];
                let kind = (virq < NR_VIRQS).then(|| virq_type(virq));
                let want = match kind {
                    None => Err(-EINVAL),
                    Some(k) if k != VirqType::PerVcpu && vcpu != 0 => Err(-EINVAL),
                    Some(_) if vcpu >= VCPUS => Err(-ENOENT),
                    Some(VirqType::Global) => Err(-EBUSY),
                    Some(_) if m.virq_bound(virq, vcpu) => Err(-EEXIST),
                    Some(_) => m.lowest_free().ok_or(-ENOSPC),
                };
                assert_eq!(w.tables[d].bind_virq(virq, vcpu), want);
                if let Ok(p) = want {
                    m.ports.insert(p, (State::Virq { virq }, vcpu));
                }
            }
            Op::BindIpi { d, vcpu } => {
                let m = &mut w.models[d];
                let want = if vcpu >= VCPUS {
                    Err(-ENOENT)
                } else {
                    m.lowest_free().ok_or(-ENOSPC)
                };
                assert_eq!(w.tables[d].bind_ipi(vcpu), want);
                if let Ok(p) = want {
                    m.ports.insert(p, (State::Ipi, vcpu));
                }
            }
            Op::Close { d, port } => {
                let got = w.tables[d].close(&mut w.bits[d], port);
                match w.models[d].get(port) {
                    None | Some((State::Free | State::Reserved, _)) => {
                        assert_eq!(got, Err(-EINVAL))
                    }
                    Some((state, _)) => {
                        w.models[d].ports.remove(&port);
                        assert!(!w.bits[d].is_pending(port));
                        if let State::Interdomain {
                            remote_domid,
                            remote_port,
                        } = state
                        {
                            let r = if remote_domid == DOMS[d] { d } else { other(d) };
                            if r == d {
                                assert_eq!(got, Ok(None));
                            } else {
                                assert_eq!(
                                    got,
                                    Ok(Some(Peer {
                                        domid: remote_domid,
                                        port: remote_port
                                    }))
                                );
                                assert!(w.tables[r].peer_closed(remote_port, DOMS[d], port));
                            }
                            w.models[r].ports.get_mut(&remote_port).unwrap().0 = State::Unbound {
                                remote_domid: DOMS[d],
                            };
                        } else {
                            assert_eq!(got, Ok(None));
                        }
                    }
                }
            }
            Op::BindVcpu { d, port, vcpu } => {
                let m = &mut w.models[d];
                let want = if vcpu >= VCPUS {
                    Err(-ENOENT)
                } else {
                    match m.get(port) {
                        None => Err(-EINVAL),
                        Some((State::Unbound { .. } | State::Interdomain { .. }, _)) => Ok(()),
                        Some((State::Virq { virq }, _)) if virq_type(virq) != VirqType::PerVcpu => {
                            Ok(())
                        }
                        Some(_) => Err(-EINVAL),
                    }
                };
                assert_eq!(w.tables[d].bind_vcpu(port, vcpu), want);
                if want.is_ok() {
                    m.ports.get_mut(&port).unwrap().1 = vcpu;
                }
            }
            Op::Send { d, port } => {
                let before = w.bits;
                let got = w.tables[d].send(&mut w.bits[d], port);
                match w.models[d].get(port) {
                    Some((State::Ipi, v)) => {
                        assert_eq!(got, Ok(Delivery::Local(expect_raise(&before[d], v, port))));
                    }
                    Some((State::Unbound { .. }, _)) => assert_eq!(got, Ok(Delivery::Dropped)),
                    Some((
                        State::Interdomain {
                            remote_domid,
                            remote_port,
                        },
                        _,
                    )) => {
                        let r = if remote_domid == DOMS[d] { d } else { other(d) };
                        let v = w.models[r].get(remote_port).unwrap().1;
                        let want = expect_raise(&before[r], v, remote_port);
                        if r == d {
                            assert_eq!(got, Ok(Delivery::Local(want)));
                        } else {
                            assert_eq!(
                                got,
                                Ok(Delivery::Remote {
                                    domid: remote_domid,
                                    port: remote_port
                                })
                            );
                            assert_eq!(w.tables[r].raise(&mut w.bits[r], remote_port), want);
                        }
                        assert!(w.bits[r].is_pending(remote_port));
                    }
                    _ => assert_eq!(got, Err(-EINVAL)),
                }
            }
            Op::Unmask { d, port } => {
                let before = w.bits[d];
                let got = w.tables[d].unmask(&mut w.bits[d], port);
                match w.models[d].get(port) {
                    None => assert_eq!(got, Err(-EINVAL)),
                    Some((State::Free | State::Reserved, _)) => {
                        assert_eq!(got, Ok(None));
                        assert_eq!(before.evtchn_mask, w.bits[d].evtchn_mask);
                    }
                    Some((_, v)) => {
                        assert_eq!(got, Ok(expect_unmask(&before, v, port)));
                        assert!(!w.bits[d].is_masked(port));
                    }
                }
            }
            Op::RaiseVirq { d, virq, vcpu } => {
                let before = w.bits[d];
                let got = w.tables[d].raise_virq(&mut w.bits[d], virq, vcpu);
                let bound = w.models[d].ports.iter().find(|(_, &(s, v))| {
                    s == State::Virq { virq } && (virq_type(virq) != VirqType::PerVcpu || v == vcpu)
                });
                match bound {
                    Some((&p, &(_, v))) => assert_eq!(got, expect_raise(&before, v, p)),
                    None => {
                        assert_eq!(got, Notify::default());
                        assert_eq!(before, w.bits[d]);
                    }
                }
            }
            Op::Status { d, port } => {
                let want = w.models[d]
                    .get(port)
                    .map(|(state, vcpu)| Channel { state, vcpu });
                assert_eq!(w.tables[d].status(port), want.ok_or(-EINVAL));
            }
            Op::Poll { d, ref ports } => {
                let mut want = Ok(false);
                for &p in ports {
                    match w.models[d].get(p) {
                        None => {
                            want = Err(-EINVAL);
                            break;
                        }
                        Some((s, _))
                            if !matches!(s, State::Free | State::Reserved)
                                && w.bits[d].is_pending(p) =>
                        {
                            want = Ok(true);
                            break;
                        }
                        _ => {}
                    }
                }
                assert_eq!(w.tables[d].poll(&w.bits[d], ports), want);
            }
            Op::GuestMask { d, port } => {
                if (port as usize) < MAX_PORTS {
                    w.bits[d].evtchn_mask[word(port)] |= bit(port);
                }
            }
            Op::GuestUnmask { d, port } => {
                if (port as usize) < MAX_PORTS {
                    let s = &mut w.bits[d];
                    s.evtchn_mask[word(port)] &= !bit(port);
                    if s.is_pending(port) {
                        s.evtchn_mask[word(port)] |= bit(port);
                        step(w, &Op::Unmask { d, port });
                    }
                }
            }
            Op::BindOffered { d, pick } => {
                let offered = State::Unbound {
                    remote_domid: DOMS[d],
                };
                if let Some(remote_port) = w.models[other(d)].pick(pick, |s| s == offered) {
                    step(w, &Op::BindInterdomain { d, remote_port });
                }
            }
            Op::LoopbackOffered { d, pick } => {
                let offered = State::Unbound {
                    remote_domid: DOMS[d],
                };
                if let Some(remote_port) = w.models[d].pick(pick, |s| s == offered) {
                    step(w, &Op::BindLoopback { d, remote_port });
                }
            }
            Op::CloseBound { d, pick } => {
                if let Some(port) = w.models[d].pick(pick, |_| true) {
                    step(w, &Op::Close { d, port });
                }
            }
            Op::SendBound { d, pick } => {
                if let Some(port) = w.models[d].pick(pick, |_| true) {
                    step(w, &Op::Send { d, port });
                }
            }
            Op::MoveBound { d, pick, vcpu } => {
                if let Some(port) = w.models[d].pick(pick, |_| true) {
                    step(w, &Op::BindVcpu { d, port, vcpu });
                }
            }
            Op::RaiseBoundVirq { d, pick } => {
                let is_virq = |s| matches!(s, State::Virq { .. });
                if let Some(port) = w.models[d].pick(pick, is_virq) {
                    let (state, vcpu) = w.models[d].get(port).unwrap();
                    if let State::Virq { virq } = state {
                        step(w, &Op::RaiseVirq { d, virq, vcpu });
                    }
                }
            }
            Op::GuestUpcall { d, vcpu } => {
                if vcpu < VCPUS {
                    let s = &mut w.bits[d];
                    let info = &mut s.vcpu_info[vcpu as usize];
                    info.evtchn_upcall_pending = 0;
                    let words = core::mem::take(&mut info.evtchn_pending_sel);
                    for i in 0..64 {
                        if words & (1 << i) != 0 {
                            s.evtchn_pending[i] &= s.evtchn_mask[i];
                        }
                    }
                }
            }
        }
    }

    fn check_invariants(w: &World) {
        for (d, &dom) in DOMS.iter().enumerate() {
            let (t, m, s) = (&w.tables[d], &w.models[d], &w.bits[d]);
            // Every port is in exactly the model's state.
            for p in 0..MAX_PORTS as Port {
                let (state, vcpu) = m.get(p).unwrap();
                assert_eq!(t.channel(p), Some(Channel { state, vcpu }), "port {p}");
                assert!(vcpu < VCPUS);
                if let State::Interdomain {
                    remote_domid,
                    remote_port,
                } = state
                {
                    let r = if remote_domid == dom { d } else { other(d) };
                    assert_eq!(
                        w.tables[r].channel(remote_port).unwrap().state,
                        State::Interdomain {
                            remote_domid: dom,
                            remote_port: p
                        },
                        "both ends of an interdomain channel point at each other"
                    );
                }
                // Only bound ports are ever pending.
                if s.is_pending(p) {
                    assert!(t.channel(p).unwrap().usable(), "port {p} pending but free");
                }
            }
            // Each VIRQ is bound at most once per vCPU, and the index agrees.
            let mut holders = [[None::<Port>; NR_VIRQS as usize]; MAX_VCPUS];
            for p in 0..MAX_PORTS as Port {
                let c = t.channel(p).unwrap();
                if let State::Virq { virq } = c.state {
                    let row = if virq_type(virq) == VirqType::PerVcpu {
                        c.vcpu
                    } else {
                        0
                    };
                    let slot = &mut holders[row as usize][virq as usize];
                    assert_eq!(*slot, None, "virq {virq} bound twice for vcpu {row}");
                    *slot = Some(p);
                }
            }
            for (v, row) in holders.iter().enumerate() {
                for (virq, &port) in row.iter().enumerate() {
                    assert_eq!(t.virq_port(virq as u32, v as u32), port);
                }
            }
            // 2-level delivery: a selector bit implies an upcall is pending,
            // and every pending unmasked port has its word flagged on some vCPU.
            for v in 0..MAX_VCPUS {
                if sel(s, v) != 0 {
                    assert_eq!(upcall(s, v), 1, "vcpu {v} has selector bits but no upcall");
                }
            }
            for i in 0..64 {
                if s.evtchn_pending[i] & !s.evtchn_mask[i] != 0 {
                    assert!(
                        (0..MAX_VCPUS).any(|v| sel(s, v) & (1 << i) != 0),
                        "word {i} has deliverable ports but no selector"
                    );
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn ops_match_the_model(
            ops in proptest::collection::vec(op(), 1..150), start_masked in any::<[bool; 2]>()
        ) {
            let start = |m: bool| if m { masked() } else { unmasked() };
            let mut w = World {
                tables: [EventChannels::new(ME, VCPUS), EventChannels::new(BACKEND, VCPUS)],
                bits: [start(start_masked[0]), start(start_masked[1])],
                models: [Model::default(), Model::default()],
            };
            for op in &ops {
                step(&mut w, op);
                check_invariants(&w);
            }
        }

        #[test]
        fn raise_then_unmask_delivers_exactly_once(
            port in 1..4096u32, vcpu in 0..32u32, masked_first in any::<bool>(), sel_bits in any::<u64>()
        ) {
            let mut s = if masked_first { masked() } else { unmasked() };
            s.vcpu_info[vcpu as usize].evtchn_pending_sel = sel_bits;
            let upcall_before = sel_bits != 0;
            s.vcpu_info[vcpu as usize].evtchn_upcall_pending = upcall_before as u8;
            let sel_was = sel_bits & (1 << (port / 64)) != 0;
            let n = set_pending_2l(&mut s, vcpu, port);
            prop_assert!(n.newly_pending);
            let delivered_now = !masked_first && !sel_was && !upcall_before;
            prop_assert_eq!(n.upcall, delivered_now.then_some(vcpu));
            let u = unmask_2l(&mut s, vcpu, port);
            let delivered_on_unmask = masked_first && !sel_was && !upcall_before;
            prop_assert_eq!(u, delivered_on_unmask.then_some(vcpu));
            // Whatever happened, the port is now pending, unmasked and flagged.
            prop_assert!(s.is_pending(port) && !s.is_masked(port));
            prop_assert!(sel(&s, vcpu as usize) & (1 << (port / 64)) != 0 || sel_was);
            prop_assert_eq!(upcall(&s, vcpu as usize), 1);
        }
    }
}
