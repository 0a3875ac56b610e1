/* Entry stubs for the 32 CPU exceptions: a uniform frame for exception_entry, and the fault-safe instructions it resumes from. */

.section .text
.code64

/* Vectors for which the CPU pushes an error code (SDM Vol. 3A table 6-1). */
.macro isr_noerr n
isr_\n:
    push $0
    push $\n
    jmp isr_common
.endm
.macro isr_err n
isr_\n:
    push $\n
    jmp isr_common
.endm

isr_noerr 0
isr_noerr 1
isr_noerr 2
isr_noerr 3
isr_noerr 4
isr_noerr 5
isr_noerr 6
isr_noerr 7
isr_err 8
isr_noerr 9
isr_err 10
isr_err 11
isr_err 12
isr_err 13
isr_err 14
isr_noerr 15
isr_noerr 16
isr_err 17
isr_noerr 18
isr_noerr 19
isr_noerr 20
isr_err 21
isr_noerr 22
isr_noerr 23
isr_noerr 24
isr_noerr 25
isr_noerr 26
isr_noerr 27
isr_noerr 28
isr_err 29
isr_err 30
isr_noerr 31

isr_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    /* RBX is callee-saved: it brings the frame back after the aligned call. */
    mov %rsp, %rbx
    and $-16, %rsp
    cld
    call exception_entry
    /* exception_entry returns only after pointing RIP at a fix-up. */
    mov %rbx, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    iretq

/*
 * Instructions that may fault on a value a guest chose. Each fault site is
 * listed in fixup_table with where to resume; exception_entry resumes there
 * instead of ending the run (Linux's exception tables, arch/x86/mm/extable.c).
 * A second line of defence behind the architectural checks in the core.
 */

/* u32 xenolith_safe_xsetbv(u32 xcr, u32 lo, u32 hi): 0, or 1 if it faulted. */
.global xenolith_safe_xsetbv
xenolith_safe_xsetbv:
    /* SysV: xcr in EDI, lo in ESI, hi already in EDX. */
    mov %edi, %ecx
    mov %esi, %eax
xsetbv_site:
    xsetbv
    xor %eax, %eax
    ret
xsetbv_fixup:
    mov $1, %eax
    ret

.section .rodata
.balign 8
/* Pairs of (faulting RIP, RIP to resume at), ended by a zero pair. */
.global fixup_table
fixup_table:
    .quad xsetbv_site, xsetbv_fixup
    .quad 0, 0

.balign 8
.global isr_table
isr_table:
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad isr_\n
.endr
