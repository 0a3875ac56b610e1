/* Test guest entry: from the PVH 32-bit state into long mode, as Linux's PVH entry does. */

.section .note.Xen, "a", @note
.balign 4
    .long 4
    .long 8
    .long 18                    /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad guest_entry
    .balign 4

.section .entry, "ax"
.code32
.global guest_entry
guest_entry:
    cli
    cld
    mov $guest_stack_top, %esp
    mov %ebx, %esi              /* hvm_start_info */
    /* The first 2 GiB identity-mapped with 2 MiB pages. Past the guest's
     * RAM this maps addresses the hypervisor must refuse (the "oob" case). */
    mov $guest_pdpt, %eax
    or $3, %eax
    mov %eax, guest_pml4
    mov $guest_pd, %eax
    or $3, %eax
    mov %eax, guest_pdpt
    add $0x1000, %eax
    mov %eax, guest_pdpt + 8
    mov $0x83, %eax
    xor %ecx, %ecx
1:  mov %eax, guest_pd(, %ecx, 8)
    add $0x200000, %eax
    inc %ecx
    cmp $1024, %ecx
    jne 1b
    mov %cr4, %eax
    or $0x20, %eax              /* PAE */
    mov %eax, %cr4
    mov $guest_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx       /* EFER: read and written through the hypervisor */
    rdmsr
    or $0x100, %eax             /* LME */
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax        /* PG | WP | PE */
    mov %eax, %cr0
    lgdt guest_gdt_desc
    ljmp $0x08, $guest_long

.code64
guest_long:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    mov $guest_stack_top, %rsp
    mov %esi, %edi
    call guest_main
2:  hlt
    jmp 2b

.text
/* #GP: count it and skip the faulting 2-byte RDMSR/WRMSR. */
.global gp_stub
gp_stub:
    lock incq GP_COUNT(%rip)
    add $8, %rsp
    addq $2, (%rsp)
    iretq

.global irq_stub
irq_stub:
    lock incq IRQ_COUNT(%rip)
    iretq

.global unexpected_stub
unexpected_stub:
    and $-16, %rsp
    call guest_unexpected

.section .rodata
.balign 16
guest_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
guest_gdt_end:
guest_gdt_desc:
    .short guest_gdt_end - guest_gdt - 1
    .quad guest_gdt

.section .bss
.balign 4096
guest_pml4:
    .skip 4096
guest_pdpt:
    .skip 4096
guest_pd:
    .skip 8192
guest_stack:
    .skip 16384
guest_stack_top:
