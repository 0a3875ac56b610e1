//! Event channels: `EVTCHNOP_*` arguments (public/event_channel.h), VIRQs and domain ids (public/xen.h).

use core::mem::offset_of;
use static_assertions::{assert_eq_size, const_assert_eq};

/// `evtchn_port_t` (event_channel.h).
pub type EvtchnPort = u32;
/// `domid_t` (xen.h).
pub type DomId = u16;

// Domain ids (xen.h). Ids at or above DOMID_FIRST_RESERVED are never real domains.
pub const DOMID_FIRST_RESERVED: DomId = 0x7ff0;
/// "The calling domain", wherever a domid argument is taken.
pub const DOMID_SELF: DomId = 0x7ff0;
pub const DOMID_IO: DomId = 0x7ff1;
pub const DOMID_XEN: DomId = 0x7ff2;
pub const DOMID_COW: DomId = 0x7ff3;
pub const DOMID_INVALID: DomId = 0x7ff4;
pub const DOMID_ANY: DomId = 0x7ff5;
pub const DOMID_IDLE: DomId = 0x7fff;
pub const DOMID_MASK: DomId = 0x7fff;

// EVTCHNOP_* (event_channel.h); `event_channel_op(cmd, arg)`.
pub const EVTCHNOP_BIND_INTERDOMAIN: u64 = 0;
pub const EVTCHNOP_BIND_VIRQ: u64 = 1;
pub const EVTCHNOP_BIND_PIRQ: u64 = 2;
pub const EVTCHNOP_CLOSE: u64 = 3;
pub const EVTCHNOP_SEND: u64 = 4;
pub const EVTCHNOP_STATUS: u64 = 5;
pub const EVTCHNOP_ALLOC_UNBOUND: u64 = 6;
pub const EVTCHNOP_BIND_IPI: u64 = 7;
pub const EVTCHNOP_BIND_VCPU: u64 = 8;
pub const EVTCHNOP_UNMASK: u64 = 9;
pub const EVTCHNOP_RESET: u64 = 10;
/// FIFO ABI (Xen event_fifo.c): a domain that never calls init_control keeps the 2-level ABI.
pub const EVTCHNOP_INIT_CONTROL: u64 = 11;
pub const EVTCHNOP_EXPAND_ARRAY: u64 = 12;
pub const EVTCHNOP_SET_PRIORITY: u64 = 13;

// EVTCHNSTAT_* (event_channel.h), `EvtchnStatus::status`.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
pub const EVTCHNSTAT_PIRQ: u32 = 3;
pub const EVTCHNSTAT_VIRQ: u32 = 4;
pub const EVTCHNSTAT_IPI: u32 = 5;

/// `EVTCHN_2L_NR_CHANNELS` (event_channel.h): `sizeof(xen_ulong_t)² × 64`
/// ports in the 2-level ABI of a 64-bit guest.
pub const EVTCHN_2L_NR_CHANNELS: u32 = 4096;
/// Bits per `evtchn_pending`/`evtchn_mask` word and per selector.
pub const BITS_PER_EVTCHN_WORD: u32 = 64;

// FIFO priorities (event_channel.h): 0 is the highest.
pub const EVTCHN_FIFO_PRIORITY_MAX: u32 = 0;
pub const EVTCHN_FIFO_PRIORITY_DEFAULT: u32 = 7;
pub const EVTCHN_FIFO_PRIORITY_MIN: u32 = 15;
/// One queue per priority (`EVTCHN_FIFO_MAX_QUEUES`).
pub const EVTCHN_FIFO_MAX_QUEUES: usize = EVTCHN_FIFO_PRIORITY_MIN as usize + 1;

// The FIFO event word (`event_word_t`, a u32 per port in the event array):
// bit numbers of its flags, and the LINK field below them (event_channel.h).
pub const EVTCHN_FIFO_PENDING: u32 = 31;
pub const EVTCHN_FIFO_MASKED: u32 = 30;
pub const EVTCHN_FIFO_LINKED: u32 = 29;
pub const EVTCHN_FIFO_BUSY: u32 = 28;
pub const EVTCHN_FIFO_LINK_BITS: u32 = 17;
pub const EVTCHN_FIFO_LINK_MASK: u32 = (1 << EVTCHN_FIFO_LINK_BITS) - 1;
/// Ports the FIFO ABI can name (`EVTCHN_FIFO_NR_CHANNELS`).
pub const EVTCHN_FIFO_NR_CHANNELS: u32 = 1 << EVTCHN_FIFO_LINK_BITS;
/// Event words per 4 KiB event-array page (Xen event_fifo.c
/// `EVTCHN_FIFO_EVENT_WORDS_PER_PAGE`).
pub const EVTCHN_FIFO_EVENT_WORDS_PER_PAGE: u32 = 4096 / 4;
/// Event-array pages a domain may add (Xen event_fifo.c
/// `EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES`): enough for every FIFO port.
pub const EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES: usize =
    (EVTCHN_FIFO_NR_CHANNELS / EVTCHN_FIFO_EVENT_WORDS_PER_PAGE) as usize;

/// `struct evtchn_fifo_control_block` (event_channel.h): per vCPU, in a
/// guest page; `ready` has bit p set when queue p may be non-empty, `head[p]`
/// is the first port of queue p (0: empty, as Xen last saw it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnFifoControlBlock {
    pub ready: u32,
    pub rsvd: u32,
    pub head: [u32; EVTCHN_FIFO_MAX_QUEUES],
}
/// Byte offset of `ready` in the control block.
pub const EVTCHN_FIFO_READY_OFFSET: u32 = 0;
/// Byte offset of `head[0]` in the control block.
pub const EVTCHN_FIFO_HEAD_OFFSET: u32 = 8;

// VIRQ_* (xen.h); V = per vCPU, D = per domain, G = global.
/// V: singleshot/periodic timer expiry.
pub const VIRQ_TIMER: u32 = 0;
/// V: "dump debug state"; Linux binds it on every vCPU with the 2-level ABI.
pub const VIRQ_DEBUG: u32 = 1;
/// G: emergency console input.
pub const VIRQ_CONSOLE: u32 = 2;
/// G: exceptional event for some domain.
pub const VIRQ_DOM_EXC: u32 = 3;
/// G: trace buffer records available.
pub const VIRQ_TBUF: u32 = 4;
/// G: a domain paused for debugging.
pub const VIRQ_DEBUGGER: u32 = 6;
/// V: XenOprofile sample.
pub const VIRQ_XENOPROF: u32 = 7;
/// G: console bytes received.
pub const VIRQ_CON_RING: u32 = 8;
/// G: physical CPU state changed.
pub const VIRQ_PCPU_STATE: u32 = 9;
/// G: memory event.
pub const VIRQ_MEM_EVENT: u32 = 10;
/// D: Argo message notification.
pub const VIRQ_ARGO: u32 = 11;
/// G: Xen heap low.
pub const VIRQ_ENOMEM: u32 = 12;
/// V: PMC interrupt.
pub const VIRQ_XENPMU: u32 = 13;
/// Architecture-specific VIRQs 16–23; all global on x86.
pub const VIRQ_ARCH_0: u32 = 16;
pub const VIRQ_ARCH_7: u32 = 23;
/// `VIRQ_MCA` (arch-x86/xen-mca.h) = `VIRQ_ARCH_0`, G.
pub const VIRQ_MCA: u32 = VIRQ_ARCH_0;
/// `NR_VIRQS` (xen.h): a bind of `virq >= NR_VIRQS` is -EINVAL.
pub const NR_VIRQS: u32 = 24;

/// The binding rule of a VIRQ (the V/D/G notes on `enum virq` in xen.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirqType {
    /// Bound once per vCPU, each on its own port; the port cannot move.
    PerVcpu,
    /// Bound once per domain on vCPU 0; may then be moved with bind_vcpu.
    PerDomain,
    /// Like `PerDomain`, but only the one domain designated to handle it
    /// (by default the hardware domain) may bind it.
    Global,
}

/// The type of `virq` (< `NR_VIRQS`), as Xen's `get_virq_type` classifies it
/// (xen/common/event_channel.c; x86's `arch_get_virq_type` makes every
/// `VIRQ_ARCH_*` global). Unassigned numbers count as global, as in Xen.
pub const fn virq_type(virq: u32) -> VirqType {
    match virq {
        VIRQ_TIMER | VIRQ_DEBUG | VIRQ_XENOPROF | VIRQ_XENPMU => VirqType::PerVcpu,
        VIRQ_ARGO => VirqType::PerDomain,
        _ => VirqType::Global,
    }
}

/// `struct evtchn_alloc_unbound` (event_channel.h), `EVTCHNOP_alloc_unbound`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnAllocUnbound {
    /// The domain to allocate in (unprivileged callers: `DOMID_SELF`).
    pub dom: DomId,
    /// The domain allowed to bind it (`DOMID_SELF` = the caller).
    pub remote_dom: DomId,
    /// Out.
    pub port: EvtchnPort,
}

/// `struct evtchn_bind_interdomain` (event_channel.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindInterdomain {
    pub remote_dom: DomId,
    pub pad: u16,
    pub remote_port: EvtchnPort,
    /// Out.
    pub local_port: EvtchnPort,
}

/// `struct evtchn_bind_virq` (event_channel.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindVirq {
    /// `VIRQ_*`.
    pub virq: u32,
    pub vcpu: u32,
    /// Out.
    pub port: EvtchnPort,
}

/// `BIND_PIRQ__WILL_SHARE` (event_channel.h), in `EvtchnBindPirq::flags`.
pub const BIND_PIRQ_WILL_SHARE: u32 = 1;

/// `struct evtchn_bind_pirq` (event_channel.h); not for a PVH domU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindPirq {
    pub pirq: u32,
    pub flags: u32,
    /// Out.
    pub port: EvtchnPort,
}

/// `struct evtchn_bind_ipi` (event_channel.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindIpi {
    pub vcpu: u32,
    /// Out.
    pub port: EvtchnPort,
}

/// `struct evtchn_close` (event_channel.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnClose {
    pub port: EvtchnPort,
}

/// `struct evtchn_send` (event_channel.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnSend {
    pub port: EvtchnPort,
}

/// `u.unbound` of `struct evtchn_status`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnStatusUnbound {
    /// The domain allowed to bind.
    pub dom: DomId,
}

/// `u.interdomain` of `struct evtchn_status`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnStatusInterdomain {
    pub dom: DomId,
    pub pad: u16,
    pub port: EvtchnPort,
}

/// The anonymous union `u` of `struct evtchn_status`, 8 bytes. Build it with
/// the constructors, which initialise all eight bytes, so that any view of
/// it may be read afterwards.
#[repr(C)]
#[derive(Clone, Copy)]
pub union EvtchnStatusU {
    pub unbound: EvtchnStatusUnbound,
    pub interdomain: EvtchnStatusInterdomain,
    pub pirq: u32,
    pub virq: u32,
}

impl EvtchnStatusU {
    /// All eight bytes zero.
    pub const ZERO: Self = Self {
        interdomain: EvtchnStatusInterdomain {
            dom: 0,
            pad: 0,
            port: 0,
        },
    };

    pub const fn unbound(dom: DomId) -> Self {
        Self::interdomain(dom, 0)
    }

    pub const fn interdomain(dom: DomId, port: EvtchnPort) -> Self {
        Self {
            interdomain: EvtchnStatusInterdomain { dom, pad: 0, port },
        }
    }

    pub const fn pirq(pirq: u32) -> Self {
        Self::interdomain(0, 0).with_first_word(pirq)
    }

    pub const fn virq(virq: u32) -> Self {
        Self::interdomain(0, 0).with_first_word(virq)
    }

    const fn with_first_word(mut self, word: u32) -> Self {
        self.virq = word;
        self
    }
}

impl Default for EvtchnStatusU {
    fn default() -> Self {
        Self::ZERO
    }
}

/// `struct evtchn_status` (event_channel.h), `EVTCHNOP_status`, 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct EvtchnStatus {
    /// In: the domain to ask about (`DOMID_SELF`).
    pub dom: DomId,
    pub pad: u16,
    /// In.
    pub port: EvtchnPort,
    /// Out: `EVTCHNSTAT_*`.
    pub status: u32,
    /// Out: the vCPU notified.
    pub vcpu: u32,
    /// Out: `unbound` / `interdomain` / `pirq` / `virq` by `status`.
    pub u: EvtchnStatusU,
}

/// `struct evtchn_bind_vcpu` (event_channel.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindVcpu {
    pub port: EvtchnPort,
    pub vcpu: u32,
}

/// `struct evtchn_unmask` (event_channel.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnUnmask {
    pub port: EvtchnPort,
}

/// `struct evtchn_reset` (event_channel.h), 2 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnReset {
    pub dom: DomId,
}

/// `struct evtchn_init_control` (event_channel.h), FIFO ABI.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnInitControl {
    pub control_gfn: u64,
    pub offset: u32,
    pub vcpu: u32,
    /// Out.
    pub link_bits: u8,
    pub pad: [u8; 7],
}

/// `struct evtchn_expand_array` (event_channel.h), FIFO ABI.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnExpandArray {
    pub array_gfn: u64,
}

/// `struct evtchn_set_priority` (event_channel.h), FIFO ABI.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnSetPriority {
    pub port: EvtchnPort,
    pub priority: u32,
}

assert_eq_size!(EvtchnFifoControlBlock, [u8; 72]);
const_assert_eq!(
    offset_of!(EvtchnFifoControlBlock, head),
    EVTCHN_FIFO_HEAD_OFFSET as usize
);
assert_eq_size!(EvtchnAllocUnbound, [u8; 8]);
const_assert_eq!(offset_of!(EvtchnAllocUnbound, remote_dom), 2);
const_assert_eq!(offset_of!(EvtchnAllocUnbound, port), 4);
assert_eq_size!(EvtchnBindInterdomain, [u8; 12]);
const_assert_eq!(offset_of!(EvtchnBindInterdomain, pad), 2);
const_assert_eq!(offset_of!(EvtchnBindInterdomain, remote_port), 4);
const_assert_eq!(offset_of!(EvtchnBindInterdomain, local_port), 8);
assert_eq_size!(EvtchnBindVirq, [u8; 12]);
const_assert_eq!(offset_of!(EvtchnBindVirq, vcpu), 4);
const_assert_eq!(offset_of!(EvtchnBindVirq, port), 8);
assert_eq_size!(EvtchnBindPirq, [u8; 12]);
const_assert_eq!(offset_of!(EvtchnBindPirq, flags), 4);
const_assert_eq!(offset_of!(EvtchnBindPirq, port), 8);
assert_eq_size!(EvtchnBindIpi, [u8; 8]);
const_assert_eq!(offset_of!(EvtchnBindIpi, port), 4);
assert_eq_size!(EvtchnClose, [u8; 4]);
assert_eq_size!(EvtchnSend, [u8; 4]);
assert_eq_size!(EvtchnStatusUnbound, [u8; 2]);
assert_eq_size!(EvtchnStatusInterdomain, [u8; 8]);
const_assert_eq!(offset_of!(EvtchnStatusInterdomain, port), 4);
assert_eq_size!(EvtchnStatusU, [u8; 8]);
assert_eq_size!(EvtchnStatus, [u8; 24]);
const_assert_eq!(offset_of!(EvtchnStatus, pad), 2);
const_assert_eq!(offset_of!(EvtchnStatus, port), 4);
const_assert_eq!(offset_of!(EvtchnStatus, status), 8);
const_assert_eq!(offset_of!(EvtchnStatus, vcpu), 12);
const_assert_eq!(offset_of!(EvtchnStatus, u), 16);
assert_eq_size!(EvtchnBindVcpu, [u8; 8]);
const_assert_eq!(offset_of!(EvtchnBindVcpu, vcpu), 4);
assert_eq_size!(EvtchnUnmask, [u8; 4]);
assert_eq_size!(EvtchnReset, [u8; 2]);
assert_eq_size!(EvtchnInitControl, [u8; 24]);
const_assert_eq!(offset_of!(EvtchnInitControl, offset), 8);
const_assert_eq!(offset_of!(EvtchnInitControl, vcpu), 12);
const_assert_eq!(offset_of!(EvtchnInitControl, link_bits), 16);
const_assert_eq!(offset_of!(EvtchnInitControl, pad), 17);
assert_eq_size!(EvtchnExpandArray, [u8; 8]);
assert_eq_size!(EvtchnSetPriority, [u8; 8]);
const_assert_eq!(offset_of!(EvtchnSetPriority, priority), 4);
const_assert_eq!(
    EVTCHN_2L_NR_CHANNELS,
    BITS_PER_EVTCHN_WORD * BITS_PER_EVTCHN_WORD
);

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(u: EvtchnStatusU) -> [u8; 8] {
        // SAFETY: the constructors initialise all eight bytes; the
        // interdomain view covers them with no padding.
        let i = unsafe { u.interdomain };
        let mut b = [0u8; 8];
        b[..2].copy_from_slice(&i.dom.to_le_bytes());
        b[2..4].copy_from_slice(&i.pad.to_le_bytes());
        b[4..].copy_from_slice(&i.port.to_le_bytes());
        b
    }

    #[test]
    fn status_union_views() {
        assert_eq!(
            bytes(EvtchnStatusU::unbound(0x1234)),
            [0x34, 0x12, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes(EvtchnStatusU::interdomain(1, 0x0a0b_0c0d)),
            [1, 0, 0, 0, 0x0d, 0x0c, 0x0b, 0x0a]
        );
        assert_eq!(
            bytes(EvtchnStatusU::virq(VIRQ_DEBUG)),
            [1, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes(EvtchnStatusU::pirq(0x0102_0304)),
            [4, 3, 2, 1, 0, 0, 0, 0]
        );
        assert_eq!(bytes(EvtchnStatusU::default()), [0; 8]);
    }

    #[test]
    fn virq_types() {
        assert_eq!(virq_type(VIRQ_TIMER), VirqType::PerVcpu);
        assert_eq!(virq_type(VIRQ_DEBUG), VirqType::PerVcpu);
        assert_eq!(virq_type(VIRQ_XENPMU), VirqType::PerVcpu);
        assert_eq!(virq_type(VIRQ_ARGO), VirqType::PerDomain);
        assert_eq!(virq_type(VIRQ_CONSOLE), VirqType::Global);
        assert_eq!(virq_type(VIRQ_MCA), VirqType::Global);
        assert_eq!(virq_type(VIRQ_ARCH_7), VirqType::Global);
    }
}
