/* Host interrupt stubs: save the caller-saved registers, call host_interrupt(vector), return. */

.section .text
.code64

/* At entry RSP is 16-byte aligned minus the 40-byte frame; nine pushes make it aligned. */
.macro irq_stub vec
.global irq_stub_\vec
irq_stub_\vec:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    mov $\vec, %edi
    cld
    call host_interrupt
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    iretq
.endm

irq_stub 0xf0
irq_stub 0xfe
irq_stub 0xff
