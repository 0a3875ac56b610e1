//! Each domain's debug registers DR0–DR3 and DR6, swapped when the CPU goes to another domain.
//!
//! Guests read and write DR0–DR7 without exits: MOV DR is not intercepted,
//! so a debugger in the guest costs nothing. DR7 (and, on SVM, DR6) is
//! switched by VM entry and exit themselves (Intel SDM Vol. 3C 25.4.1 with
//! the "load/save debug controls" controls; AMD APM Vol. 2 15.5.1, the
//! VMCB's DR6/DR7), and a VM exit leaves DR7 with every breakpoint
//! disabled, so the hypervisor never hits a guest's breakpoint. DR0–DR3 and
//! (on VMX) DR6 stay in the CPU: they are the running domain's, and must be
//! saved and restored between domains, or one guest sees another's
//! breakpoint addresses and status. The hypervisor itself never uses them.

use core::arch::asm;

/// DR6's value after reset: every status bit clear (SDM Vol. 3B 18.2.3).
const DR6_RESET: u64 = 0xffff_0ff0;

pub struct DebugRegs {
    dr: [u64; 4],
    dr6: u64,
}

impl DebugRegs {
    /// A fresh domain's: no breakpoint addresses, DR6 at its reset value.
    pub fn new() -> DebugRegs {
        DebugRegs {
            dr: [0; 4],
            dr6: DR6_RESET,
        }
    }

    /// Saves the running domain's registers here.
    pub fn save(&mut self) {
        // SAFETY: reading debug registers at CPL 0 has no side effects.
        unsafe {
            asm!("mov {}, dr0", out(reg) self.dr[0], options(nomem, nostack));
            asm!("mov {}, dr1", out(reg) self.dr[1], options(nomem, nostack));
            asm!("mov {}, dr2", out(reg) self.dr[2], options(nomem, nostack));
            asm!("mov {}, dr3", out(reg) self.dr[3], options(nomem, nostack));
            asm!("mov {}, dr6", out(reg) self.dr6, options(nomem, nostack));
        }
    }

    /// Loads this domain's registers. DR7 is the host's (breakpoints off)
    /// here, so the addresses arm nothing until the guest's DR7 is loaded
    /// by VM entry.
    pub fn restore(&self) {
        // SAFETY: with DR7's enables clear, DR0–DR3 are plain addresses;
        // DR6 takes any value with its reserved bits as read back.
        unsafe {
            asm!("mov dr0, {}", in(reg) self.dr[0], options(nomem, nostack));
            asm!("mov dr1, {}", in(reg) self.dr[1], options(nomem, nostack));
            asm!("mov dr2, {}", in(reg) self.dr[2], options(nomem, nostack));
            asm!("mov dr3, {}", in(reg) self.dr[3], options(nomem, nostack));
            asm!("mov dr6, {}", in(reg) self.dr6 | DR6_RESET, options(nomem, nostack));
        }
    }
}
