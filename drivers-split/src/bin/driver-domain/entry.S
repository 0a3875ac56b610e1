/* Driver domain entry: from the PVH 32-bit state into long mode (xen docs/misc/pvh.pandoc). */

.section .note.Xen, "a", @note
.balign 4
    .long 4
    .long 8
    .long 18                    /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad driver_entry
    .balign 4

.section .entry, "ax"
.code32
.global driver_entry
driver_entry:
    cli
    cld
    mov $driver_stack_top, %esp
    mov %ebx, %esi              /* hvm_start_info */
    /* The low 4 GiB identity-mapped with 2 MiB pages: RAM, the shared_info
     * page and the window where guests' pages are grant-mapped. */
    mov $driver_pdpt, %eax
    or $3, %eax
    mov %eax, driver_pml4
    mov $driver_pd, %eax
    or $3, %eax
    xor %ecx, %ecx
1:  mov %eax, driver_pdpt(, %ecx, 8)
    add $0x1000, %eax
    inc %ecx
    cmp $4, %ecx
    jne 1b
    mov $0x83, %eax
    xor %ecx, %ecx
2:  mov %eax, driver_pd(, %ecx, 8)
    add $0x200000, %eax
    inc %ecx
    cmp $2048, %ecx
    jne 2b
    mov %cr4, %eax
    or $0x20, %eax              /* PAE */
    mov %eax, %cr4
    mov $driver_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx       /* EFER */
    rdmsr
    or $0x100, %eax             /* LME */
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax        /* PG | WP | PE */
    mov %eax, %cr0
    lgdt driver_gdt_desc
    ljmp $0x08, $driver_long

.code64
driver_long:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    mov $driver_stack_top, %rsp
    mov %esi, %edi
    call driver_main
3:  hlt
    jmp 3b

.text
/* The event-channel upcall (HVM callback vector): acknowledge it by
 * clearing vcpu_info.evtchn_upcall_pending, as Linux's
 * __xen_evtchn_do_upcall does; the main loop scans the pending bits. */
.global upcall_stub
upcall_stub:
    push %rax
    mov UPCALL_PENDING_BYTE(%rip), %rax
    movb $0, (%rax)
    pop %rax
    iretq

.global fault_stub
fault_stub:
    and $-16, %rsp
    call driver_fault

.section .rodata
.balign 16
driver_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
driver_gdt_end:
driver_gdt_desc:
    .short driver_gdt_end - driver_gdt - 1
    .quad driver_gdt

.section .bss
.balign 4096
driver_pml4:
    .skip 4096
driver_pdpt:
    .skip 4096
driver_pd:
    .skip 16384
driver_stack:
    .skip 65536
driver_stack_top:
