//! The world switch: VMLAUNCH/VMRESUME with the guest's general-purpose registers loaded around it (SDM Vol. 3C 27, 28.5).

use crate::fields::HOST_RSP;
use core::arch::global_asm;
use static_assertions::const_assert_eq;
use vcpu::Gpr;

/// Guest registers the VMCS does not hold, in `vcpu::Gpr` order; slot 4
/// (RSP) is unused, as RSP lives in the guest-state area.
pub type Gprs = [u64; 16];

// The asm below addresses the slots by these offsets.
const_assert_eq!(Gpr::Rax as usize, 0);
const_assert_eq!(Gpr::Rsp as usize, 4);
const_assert_eq!(Gpr::Rdi as usize, 7);
const_assert_eq!(Gpr::R15 as usize, 15);

/// What `vmx_run_guest` returns.
pub const ENTERED: u64 = 0;
pub const FAIL_INVALID: u64 = 1;
pub const FAIL_VALID: u64 = 2;

// vmx_run_guest(gprs: *mut Gprs, launched: u64, verw: u64) -> u64
//
// Saves the host's callee-saved registers and the GPR pointer on the stack,
// points HOST_RSP at them, loads the guest GPRs and enters with VMLAUNCH
// (launched = 0) or VMRESUME. A VM exit lands at `vmx_host_return` (HOST_RIP)
// with RSP = HOST_RSP and RFLAGS = 2 (SDM Vol. 3C 28.5.3), stores the guest
// GPRs and returns ENTERED. A failed entry falls through with CF (VMfailInvalid)
// or ZF (VMfailValid) set (SDM Vol. 3C 27.1) and returns FAIL_INVALID or
// FAIL_VALID; the guest registers in memory are then unchanged.
//
// With verw != 0, VERW with a memory operand naming the host's data
// segment overwrites the store, fill and load-port buffers (MD_CLEAR; Intel
// "Microarchitectural Data Sampling" guidance for VMMs) after the last host
// memory access but the loads of the guest's own registers, as KVM's
// VM_CLEAR_CPU_BUFFERS in vmx/vmenter.S and Xen's VERW on the way into an
// HVM guest (SC_VERW_HVM).
// VERW writes ZF, so it comes before the TEST that picks VMLAUNCH.
//
// After the exit the return stack buffer holds the guest's return
// addresses; before the first RET the host overwrites it with 32 entries
// that each point at an INT3 (Linux's __FILL_RETURN_BUFFER with
// RSB_CLEAR_LOOPS, used by KVM's vmx/vmenter.S; Xen's DO_OVERWRITE_RSB on
// every exit from an HVM guest; Intel "Speculative Execution Side Channel
// Mitigations", RSB stuffing). Each pair of CALLs pushes two RSB entries and
// two stack slots, which the ADD drops; the LFENCE stops speculation past a
// mispredicted loop end.
global_asm!(
    ".global vmx_run_guest",
    "vmx_run_guest:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdi",
    "mov eax, {host_rsp}",
    "vmwrite rax, rsp",
    "jbe 3f",
    "test edx, edx",
    "jz 5f",
    "mov eax, ds",
    "push rax",
    "verw word ptr [rsp]",
    "add rsp, 8",
    "5:",
    "test rsi, rsi",
    "mov rax, [rdi]",
    "mov rcx, [rdi + 8]",
    "mov rdx, [rdi + 16]",
    "mov rbx, [rdi + 24]",
    "mov rbp, [rdi + 40]",
    "mov rsi, [rdi + 48]",
    "mov r8, [rdi + 64]",
    "mov r9, [rdi + 72]",
    "mov r10, [rdi + 80]",
    "mov r11, [rdi + 88]",
    "mov r12, [rdi + 96]",
    "mov r13, [rdi + 104]",
    "mov r14, [rdi + 112]",
    "mov r15, [rdi + 120]",
    "mov rdi, [rdi + 56]",
    // MOV leaves the flags of TEST alone.
    "jz 2f",
    "vmresume",
    "jmp 3f",
    "2:",
    "vmlaunch",
    "3:",
    // The entry failed: CF or ZF tells how.
    "pushfq",
    "pop rax",
    "pop rdi",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "test eax, 1",
    "mov eax, {fail_invalid}",
    "jnz 4f",
    "mov eax, {fail_valid}",
    "4:",
    "ret",
    "",
    ".global vmx_host_return",
    "vmx_host_return:",
    "push rdi",
    "mov rdi, [rsp + 8]",
    "mov [rdi], rax",
    "mov [rdi + 8], rcx",
    "mov [rdi + 16], rdx",
    "mov [rdi + 24], rbx",
    "mov [rdi + 40], rbp",
    "mov [rdi + 48], rsi",
    "mov [rdi + 64], r8",
    "mov [rdi + 72], r9",
    "mov [rdi + 80], r10",
    "mov [rdi + 88], r11",
    "mov [rdi + 96], r12",
    "mov [rdi + 104], r13",
    "mov [rdi + 112], r14",
    "mov [rdi + 120], r15",
    "pop rax",
    "mov [rdi + 56], rax",
    "mov eax, 16",
    "80:",
    "call 81f",
    "int3",
    "81:",
    "call 82f",
    "int3",
    "82:",
    "add rsp, 16",
    "dec eax",
    "jnz 80b",
    "lfence",
    "pop rdi",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "mov eax, {entered}",
    "ret",
    host_rsp = const HOST_RSP,
    entered = const ENTERED,
    fail_invalid = const FAIL_INVALID,
    fail_valid = const FAIL_VALID,
);

extern "sysv64" {
    fn vmx_run_guest(gprs: *mut Gprs, launched: u64, verw: u64) -> u64;
    fn vmx_host_return();
}

/// The HOST_RIP every VMCS of this backend uses.
pub fn host_rip() -> u64 {
    vmx_host_return as *const () as u64
}

/// Enters the guest of the current VMCS and returns at its next exit
/// (ENTERED), or at once if the entry failed (FAIL_INVALID, FAIL_VALID).
/// With `verw`, VERW clears the CPU buffers just before the entry.
///
/// # Safety
/// VMX root operation with a current VMCS whose host state is this CPU's
/// (HOST_RIP = [`host_rip`]) and whose guest state cannot reach host memory
/// except through EPT; `launched` must match the VMCS's launch state.
pub unsafe fn run_guest(gprs: &mut Gprs, launched: bool, verw: bool) -> u64 {
    // SAFETY: per the caller's contract; the asm restores every callee-saved
    // register and the stack before returning.
    unsafe { vmx_run_guest(gprs, u64::from(launched), u64::from(verw)) }
}
