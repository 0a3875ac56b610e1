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
    pub const REASONS: [&'static str; 15] = [
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
        }
    }
}
