//! The VMX instructions, each in a small wrapper that reads CF and ZF in the same asm block (SDM Vol. 3C 31.2).

use crate::decode::instruction_error_name;
use crate::fields::VM_INSTRUCTION_ERROR;
use core::arch::asm;

/// How a VMX instruction failed (SDM Vol. 3C 31.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmFail {
    /// CF = 1: no current VMCS, or a bad operand before one is involved.
    Invalid,
    /// ZF = 1: the VM-instruction error field of the current VMCS says why.
    Valid,
}

impl VmFail {
    /// The reason, by its SDM name (table 31-1) for VMfailValid.
    pub fn name(self) -> &'static str {
        match self {
            VmFail::Invalid => "VMfailInvalid (no current VMCS, or an invalid operand)",
            // SAFETY: VMfailValid means a current VMCS exists, so its
            // read-only error field can be read.
            VmFail::Valid => match unsafe { vmread(VM_INSTRUCTION_ERROR) } {
                Ok(n) => instruction_error_name(n as u32),
                Err(_) => "VMfailValid, and the VM-instruction error field is unreadable",
            },
        }
    }
}

/// CF and ZF, as captured by `setc`/`setz` right after the instruction.
fn status(cf: u8, zf: u8) -> Result<(), VmFail> {
    if cf != 0 {
        Err(VmFail::Invalid)
    } else if zf != 0 {
        Err(VmFail::Valid)
    } else {
        Ok(())
    }
}

/// Enters VMX root operation with the VMXON region at `region` (SDM Vol. 3C 24.7).
///
/// # Safety
/// CPL 0, CR4.VMXE = 1, CR0/CR4 within the fixed bits, IA32_FEATURE_CONTROL
/// allowing VMXON; `region` is a 4 KiB-aligned frame holding the revision id.
pub unsafe fn vmxon(region: u64) -> Result<(), VmFail> {
    let (cf, zf): (u8, u8);
    // SAFETY: per the caller's contract; the operand is a 64-bit memory
    // location holding the physical address.
    unsafe {
        asm!("vmxon [{}]", "setc {}", "setz {}", in(reg) &region, out(reg_byte) cf, out(reg_byte) zf, options(nostack));
    }
    status(cf, zf)
}

/// Flushes a VMCS to memory and makes it inactive and clear (SDM Vol. 3C 25.1).
///
/// # Safety
/// VMX root operation; `vmcs` is a VMCS region owned by the caller.
pub unsafe fn vmclear(vmcs: u64) -> Result<(), VmFail> {
    let (cf, zf): (u8, u8);
    // SAFETY: per the caller's contract.
    unsafe {
        asm!("vmclear [{}]", "setc {}", "setz {}", in(reg) &vmcs, out(reg_byte) cf, out(reg_byte) zf, options(nostack));
    }
    status(cf, zf)
}

/// Makes `vmcs` the current VMCS of this CPU (SDM Vol. 3C 25.1).
///
/// # Safety
/// VMX root operation; `vmcs` is a VMCS region owned by the caller, not
/// active on another CPU.
pub unsafe fn vmptrld(vmcs: u64) -> Result<(), VmFail> {
    let (cf, zf): (u8, u8);
    // SAFETY: per the caller's contract.
    unsafe {
        asm!("vmptrld [{}]", "setc {}", "setz {}", in(reg) &vmcs, out(reg_byte) cf, out(reg_byte) zf, options(nostack));
    }
    status(cf, zf)
}

/// The current-VMCS pointer of this CPU (all ones when there is none).
///
/// # Safety
/// VMX root operation.
pub unsafe fn vmptrst() -> u64 {
    let mut pointer = u64::MAX;
    // SAFETY: per the caller's contract; VMPTRST writes 8 bytes to `pointer`.
    unsafe {
        asm!("vmptrst [{}]", in(reg) &mut pointer, options(nostack));
    }
    pointer
}

/// Reads a field of the current VMCS.
///
/// # Safety
/// VMX root operation.
pub unsafe fn vmread(field: u32) -> Result<u64, VmFail> {
    let (value, cf, zf): (u64, u8, u8);
    // SAFETY: per the caller's contract; VMREAD only reads the current VMCS.
    unsafe {
        asm!("vmread {}, {}", "setc {}", "setz {}", out(reg) value, in(reg) u64::from(field), out(reg_byte) cf, out(reg_byte) zf, options(nostack));
    }
    status(cf, zf).map(|()| value)
}

/// Writes a field of the current VMCS.
///
/// # Safety
/// VMX root operation; the value must not break the memory safety of the
/// host once a VM entry uses it (host state, bitmap addresses).
pub unsafe fn vmwrite(field: u32, value: u64) -> Result<(), VmFail> {
    let (cf, zf): (u8, u8);
    // SAFETY: per the caller's contract.
    unsafe {
        asm!("vmwrite {}, {}", "setc {}", "setz {}", in(reg) u64::from(field), in(reg) value, out(reg_byte) cf, out(reg_byte) zf, options(nostack));
    }
    status(cf, zf)
}

/// INVEPT types (SDM Vol. 3C 29.4.3.1).
pub const INVEPT_SINGLE_CONTEXT: u64 = 1;
pub const INVEPT_ALL_CONTEXT: u64 = 2;
/// INVVPID types (SDM Vol. 3C 29.4.3.1).
pub const INVVPID_SINGLE_CONTEXT: u64 = 1;
pub const INVVPID_ALL_CONTEXT: u64 = 2;

/// Invalidates EPT-derived translations (SDM Vol. 3C 31.3, INVEPT).
///
/// # Safety
/// VMX root operation; the type must be supported (IA32_VMX_EPT_VPID_CAP).
pub unsafe fn invept(kind: u64, eptp: u64) -> Result<(), VmFail> {
    let descriptor: [u64; 2] = [eptp, 0];
    let (cf, zf): (u8, u8);
    // SAFETY: per the caller's contract; the descriptor is 128 bits.
    unsafe {
        asm!("invept {}, [{}]", "setc {}", "setz {}", in(reg) kind, in(reg) &descriptor, out(reg_byte) cf, out(reg_byte) zf, options(nostack));
    }
    status(cf, zf)
}

/// Invalidates translations tagged with a VPID (SDM Vol. 3C 31.3, INVVPID).
///
/// # Safety
/// VMX root operation; the type must be supported (IA32_VMX_EPT_VPID_CAP).
pub unsafe fn invvpid(kind: u64, vpid: u16) -> Result<(), VmFail> {
    let descriptor: [u64; 2] = [u64::from(vpid), 0];
    let (cf, zf): (u8, u8);
    // SAFETY: per the caller's contract; the descriptor is 128 bits.
    unsafe {
        asm!("invvpid {}, [{}]", "setc {}", "setz {}", in(reg) kind, in(reg) &descriptor, out(reg_byte) cf, out(reg_byte) zf, options(nostack));
    }
    status(cf, zf)
}

/// Sets DR6. VMX does not switch DR6 (SDM Vol. 3C 28.3.1): the register in
/// the CPU is the running guest's own, which the hypervisor never uses.
///
/// # Safety
/// Only while the CPU holds this guest's debug registers (between its
/// domain's entries, with DR7 the host's).
pub unsafe fn write_dr6(value: u64) {
    // SAFETY: per the caller's contract; MOV to DR6 at CPL 0 cannot fault
    // in 64-bit mode with the upper 32 bits clear, as `value` has them.
    unsafe {
        core::arch::asm!("mov dr6, {}", in(reg) value & 0xffff_ffff, options(nomem, nostack))
    };
}
