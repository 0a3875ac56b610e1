//! The world switch: VMSAVE/VMLOAD/VMRUN with the guest's general-purpose registers loaded around it (APM 15.5).

use crate::spec_ctrl::SpecCtrl;
use core::arch::{asm, global_asm};

/// Guest registers the VMCB does not hold (RAX and RSP live in its state-save
/// area), in `vcpu::Gpr` order; slots 0 (RAX) and 4 (RSP) are unused.
pub type Gprs = [u64; 16];

// svm_world_switch(gprs: *mut Gprs, guest_vmcb_pa: u64, host_vmcb_pa: u64)
//
// Host interrupts stay pending after the exit: the core takes them with IF
// set at a point of its choosing. Called with GIF clear (`world_switch`).
//
// VMRUN saves and restores the host's RAX/RSP/RIP/control state through
// VM_HSAVE_PA; VMSAVE/VMLOAD move the rest (FS, GS, TR, LDTR, KernelGSBase,
// STAR family, SYSENTER MSRs), for the guest from its VMCB and for the host
// from a per-CPU host VMCB.
//
// After the exit the return stack buffer holds the guest's return
// addresses; before the first RET the host overwrites it with 32 entries
// that each point at an INT3 (Linux's __FILL_RETURN_BUFFER with
// RSB_CLEAR_LOOPS, used by KVM's svm/vmenter.S after VMLOAD; Xen's
// DO_OVERWRITE_RSB on every exit from an HVM guest; AMD's "Software
// Techniques for Managing Speculation", return stack overwrite). Each pair of
// CALLs pushes two RSB entries and two stack slots, which the ADD drops;
// the LFENCE stops speculation past a mispredicted loop end.
global_asm!(
    ".global svm_world_switch",
    "svm_world_switch:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdx",
    "push rdi",
    "mov rax, rdx",
    "vmsave rax",
    "mov rax, rsi",
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
    "vmload rax",
    // With V_INTR_MASKING the host's IF at VMRUN decides whether physical
    // interrupts end the guest's run (APM 15.21.1); GIF keeps them out here.
    "sti",
    "vmrun rax",
    "cli",
    "vmsave rax",
    // RAX is the guest VMCB address again (restored from the host save area).
    "push rdi",
    "mov rdi, [rsp + 8]",
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
    "pop rdi",
    "pop rax",
    "vmload rax",
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
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
);

extern "C" {
    fn svm_world_switch(gprs: *mut Gprs, guest_vmcb_pa: u64, host_vmcb_pa: u64);
}

/// CLGI (APM 15.17): no interrupt, NMI or SMI until STGI.
fn clgi() {
    // SAFETY: only clears GIF; `world_switch` sets it again.
    unsafe { asm!("clgi", options(nomem, nostack, preserves_flags)) };
}

fn stgi() {
    // SAFETY: sets GIF, which `world_switch` cleared.
    unsafe { asm!("stgi", options(nomem, nostack, preserves_flags)) };
}

/// Runs the guest until the next #VMEXIT, with the guest's SPEC_CTRL loaded.
///
/// GIF is clear from before the guest's SPEC_CTRL is loaded until the
/// host's is back, so no interrupt, NMI or SMI lands between loading guest
/// state and VMRUN, or between #VMEXIT and restoring the host's (APM 15.17;
/// Xen writes SPEC_CTRL after CLGI for the same reason).
///
/// # Safety
/// Both addresses are identity-mapped, page-aligned VMCBs; the guest VMCB
/// passes VMRUN's consistency checks or produces VMEXIT_INVALID; EFER.SVME
/// and VM_HSAVE_PA are set on this CPU.
pub unsafe fn world_switch(
    gprs: &mut Gprs,
    guest_vmcb_pa: u64,
    host_vmcb_pa: u64,
    spec_ctrl: &SpecCtrl,
) {
    clgi();
    spec_ctrl.before_entry();
    // SAFETY: per this function's contract; GIF is clear.
    unsafe { svm_world_switch(gprs, guest_vmcb_pa, host_vmcb_pa) };
    spec_ctrl.after_exit();
    stgi();
}
