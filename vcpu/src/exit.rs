//! Why a vCPU stopped, and what the core may inject into it, in vendor-neutral terms.

/// The kind of guest access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Access {
    Read,
    Write,
    Execute,
}

/// An intercepted IN/OUT/INS/OUTS. For OUT the value is in RAX; for IN the
/// core writes RAX (or memory, for INS) before resuming.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct IoAccess {
    pub port: u16,
    /// 1, 2 or 4 bytes.
    pub size: u8,
    pub write: bool,
    /// INS/OUTS.
    pub string: bool,
    /// With a REP prefix (count in RCX).
    pub rep: bool,
}

/// One VM exit, decoded by the backend. The core never sees a VMCS field or
/// a VMCB offset: whatever it needs is in here or behind the `Vcpu` trait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Exit {
    /// CPUID; the leaf is in RAX, the subleaf in RCX.
    Cpuid,
    /// RDMSR of `msr`; the result goes to EDX:EAX.
    MsrRead {
        msr: u32,
    },
    /// WRMSR of `value` (EDX:EAX) to `msr`.
    MsrWrite {
        msr: u32,
        value: u64,
    },
    Io(IoAccess),
    /// VMCALL (VMX) or VMMCALL (SVM); number and arguments in registers.
    Hypercall,
    Hlt,
    /// A guest-physical access the second-level tables do not allow.
    NestedPageFault {
        gpa: u64,
        access: Access,
        present: bool,
    },
    /// A host interrupt arrived while the guest ran.
    ExternalInterrupt,
    /// The guest can now take an interrupt (requested by `set_interrupt_window`).
    InterruptWindow,
    /// XSETBV of `value` (EDX:EAX) to extended control register `xcr` (ECX).
    /// VMX always exits on it (SDM Vol. 3C 26.1.2); SVM runs it natively.
    Xsetbv {
        xcr: u32,
        value: u64,
    },
    /// An intercepted guest exception.
    Exception {
        vector: u8,
        error_code: Option<u32>,
    },
    /// Triple fault: the vCPU is dead.
    Shutdown,
    Init,
    Sipi {
        vector: u8,
    },
    /// The hardware refused the guest state or reported something the backend
    /// cannot continue from; the reason names the manual's condition.
    Invalid(&'static str),
    /// An instruction the guest's CPU does not have: the VMX and SVM
    /// instructions (no nested virtualization), GETSEC, MONITOR/MWAIT
    /// (hidden from CPUID). The core injects #UD, as Xen does.
    Undefined,
    /// INVD or WBINVD. Neither runs natively: INVD would discard dirty cache
    /// lines other domains own, WBINVD stalls every core's caches. Both
    /// complete as no-ops (Xen's `svm_vmexit_do_invalidate_cache` does the
    /// same for a domain without pass-through devices).
    CacheFlush,
    /// MOV to CR4 that the core must check (Intel SDM Vol. 2B, MOV-Move
    /// to/from Control Registers): every write on SVM, a write touching a
    /// host-owned bit on VMX. The value comes from `Vcpu::cr4_write_value`
    /// (SVM without decode assists must read the instruction to find the
    /// source register); the core then calls `Vcpu::set_cr4` and skips the
    /// instruction, or injects #GP.
    Cr4Write,
    /// An exit the backend has no handling for: the raw code (SVM EXITCODE,
    /// VMX basic exit reason) and its name in the vendor's manual, or
    /// "unknown". The core ends the domain, naming both.
    Unhandled {
        code: u64,
        name: &'static str,
    },
}

/// An event to deliver at the next entry (Intel SDM Vol. 3C 27.6; AMD APM Vol. 2 15.20).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event {
    /// An external interrupt with this vector.
    Interrupt(u8),
    /// A hardware exception; the error code is pushed where the vector has one.
    Exception {
        vector: u8,
        error_code: Option<u32>,
    },
    Nmi,
}

impl Exit {
    /// Names of the exit reasons, indexed by `Exit::reason`, for per-reason counts.
    pub const REASONS: [&'static str; 19] = [
        "cpuid",
        "msr-read",
        "msr-write",
        "io",
        "hypercall",
        "hlt",
        "npf",
        "external-interrupt",
        "interrupt-window",
        "exception",
        "shutdown",
        "init",
        "sipi",
        "invalid",
        "xsetbv",
        "undefined",
        "cache-flush",
        "cr4-write",
        "unhandled",
    ];

    /// This exit's index into `REASONS`.
    pub fn reason(&self) -> usize {
        match self {
            Exit::Cpuid => 0,
            Exit::MsrRead { .. } => 1,
            Exit::MsrWrite { .. } => 2,
            Exit::Io(_) => 3,
            Exit::Hypercall => 4,
            Exit::Hlt => 5,
            Exit::NestedPageFault { .. } => 6,
            Exit::ExternalInterrupt => 7,
            Exit::InterruptWindow => 8,
            Exit::Exception { .. } => 9,
            Exit::Shutdown => 10,
            Exit::Init => 11,
            Exit::Sipi { .. } => 12,
            Exit::Invalid(_) => 13,
            Exit::Xsetbv { .. } => 14,
            Exit::Undefined => 15,
            Exit::CacheFlush => 16,
            Exit::Cr4Write => 17,
            Exit::Unhandled { .. } => 18,
        }
    }
}

/// What happens when delivering an exception raises another (Intel SDM Vol.
/// 3A 6.15, "Interrupt 8—Double Fault Exception", table 6-5; AMD APM Vol. 2
/// 8.2.9): the vector to deliver, or `None` for a triple fault (shutdown).
/// A backend whose queue already holds a hardware exception (one the last
/// exit interrupted) combines it with a new one this way, instead of
/// overwriting it or dropping the new one.
pub fn combine_exceptions(first: u8, second: u8) -> Option<u8> {
    const DOUBLE_FAULT: u8 = 8;
    const PAGE_FAULT: u8 = 14;
    // #DE, #TS, #NP, #SS, #GP (table 6-4); #PF is a class of its own.
    let contributory = |v: u8| matches!(v, 0 | 10..=13);
    let serious = |v: u8| contributory(v) || v == PAGE_FAULT;
    match first {
        DOUBLE_FAULT if serious(second) => None,
        PAGE_FAULT if serious(second) => Some(DOUBLE_FAULT),
        f if contributory(f) && contributory(second) => Some(DOUBLE_FAULT),
        _ => Some(second),
    }
}

/// What a vCPU's one-event queue holds after the core injects `event` on
/// top of `queued_exception` (the vector of a hardware exception already
/// queued, if any): the combined event (a double fault pushes error code
/// 0), or `None` for a triple fault. Anything but an exception on top of
/// an exception replaces what was queued, as the CPU's own delivery does.
pub fn queue_on_top(queued_exception: Option<u8>, event: Event) -> Option<Event> {
    const DOUBLE_FAULT: u8 = 8;
    match (queued_exception, event) {
        (Some(first), Event::Exception { vector, .. }) => {
            match combine_exceptions(first, vector)? {
                DOUBLE_FAULT if vector != DOUBLE_FAULT => Some(Event::Exception {
                    vector: DOUBLE_FAULT,
                    error_code: Some(0),
                }),
                _ => Some(event),
            }
        }
        _ => Some(event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GP: Event = Event::Exception {
        vector: 13,
        error_code: Some(0x18),
    };

    #[test]
    fn queueing_on_top() {
        // Nothing queued, or not an exception: the new event as it is.
        assert_eq!(queue_on_top(None, GP), Some(GP));
        assert_eq!(
            queue_on_top(None, Event::Interrupt(0x30)),
            Some(Event::Interrupt(0x30))
        );
        // #GP on a re-delivered #PF: a double fault with error code 0.
        assert_eq!(
            queue_on_top(Some(14), GP),
            Some(Event::Exception {
                vector: 8,
                error_code: Some(0)
            })
        );
        // #GP on a queued #DB: the #GP. On a queued #DF: shutdown.
        assert_eq!(queue_on_top(Some(1), GP), Some(GP));
        assert_eq!(queue_on_top(Some(8), GP), None);
    }

    #[test]
    fn table_6_5() {
        // Benign first: the second is handled on its own.
        assert_eq!(combine_exceptions(1, 13), Some(13));
        assert_eq!(combine_exceptions(17, 17), Some(17));
        // Contributory then contributory: #DF; then #PF: the #PF.
        assert_eq!(combine_exceptions(13, 11), Some(8));
        assert_eq!(combine_exceptions(0, 14), Some(14));
        // #PF then #PF or contributory: #DF; then benign: the benign one.
        assert_eq!(combine_exceptions(14, 14), Some(8));
        assert_eq!(combine_exceptions(14, 13), Some(8));
        assert_eq!(combine_exceptions(14, 17), Some(17));
        // #DF then contributory or #PF: shutdown; then benign: serial.
        assert_eq!(combine_exceptions(8, 13), None);
        assert_eq!(combine_exceptions(8, 14), None);
        assert_eq!(combine_exceptions(8, 1), Some(1));
    }

    #[test]
    fn every_pair_has_an_answer() {
        for first in 0..32u8 {
            for second in 0..32u8 {
                match combine_exceptions(first, second) {
                    None => assert_eq!(first, 8),
                    Some(v) => assert!(v == second || v == 8),
                }
            }
        }
    }

    #[test]
    fn reason_indexes_are_distinct() {
        let exits = [
            Exit::Undefined,
            Exit::CacheFlush,
            Exit::Xsetbv { xcr: 0, value: 1 },
            Exit::Invalid("x"),
            Exit::Cr4Write,
            Exit::Unhandled {
                code: 0x99,
                name: "unknown",
            },
        ];
        for e in exits {
            assert!(e.reason() < Exit::REASONS.len());
        }
        assert_eq!(Exit::REASONS[Exit::Undefined.reason()], "undefined");
        assert_eq!(Exit::REASONS[Exit::CacheFlush.reason()], "cache-flush");
        assert_eq!(Exit::REASONS[Exit::Cr4Write.reason()], "cr4-write");
    }
}
