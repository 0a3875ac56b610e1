/* PVH guest entry: from the 32-bit PVH start state into long mode (xen docs/misc/pvh.pandoc), then pvh_rt_main(start_info). */

.section .note.Xen, "a", @note
.balign 4
    .long 4
    .long 8
    .long 18                    /* XEN_ELFNOTE_PHYS32_ENTRY (xen/include/public/elfnote.h) */
    .asciz "Xen"
    .balign 4
    .quad pvh_rt_entry
    .balign 4

.section .entry, "ax"
.code32
.global pvh_rt_entry
pvh_rt_entry:
    cli
    cld
    mov $pvh_rt_stack_top, %esp
    mov %ebx, %esi              /* hvm_start_info */
    /* The low 4 GiB identity-mapped with 2 MiB pages: RAM, and holes where
     * a guest puts shared_info or grant-maps pages. Past a guest's RAM
     * this maps addresses the hypervisor must refuse (the test guest's
     * "oob" check). */
    mov $pvh_rt_pdpt, %eax
    or $3, %eax
    mov %eax, pvh_rt_pml4
    mov $pvh_rt_pd, %eax
    or $3, %eax
    xor %ecx, %ecx
1:  mov %eax, pvh_rt_pdpt(, %ecx, 8)
    add $0x1000, %eax
    inc %ecx
    cmp $4, %ecx
    jne 1b
    mov $0x83, %eax             /* present, writable, 2 MiB */
    xor %ecx, %ecx
2:  mov %eax, pvh_rt_pd(, %ecx, 8)
    add $0x200000, %eax
    inc %ecx
    cmp $2048, %ecx
    jne 2b
    mov %cr4, %eax
    or $0x20, %eax              /* PAE */
    mov %eax, %cr4
    mov $pvh_rt_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx       /* EFER: read and written through the hypervisor */
    rdmsr
    or $0x100, %eax             /* LME */
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax        /* PG | WP | PE */
    mov %eax, %cr0
    lgdt pvh_rt_gdt_desc
    ljmp $0x08, $pvh_rt_long

.code64
pvh_rt_long:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    mov $pvh_rt_stack_top, %rsp
    mov %esi, %edi
    call pvh_rt_main
3:  hlt
    jmp 3b

.text
/* Every vector the guest did not claim: on an aligned stack to
 * pvh_rt_fault, which does not return. */
.global pvh_rt_fault_stub
pvh_rt_fault_stub:
    and $-16, %rsp
    call pvh_rt_fault

.section .rodata
.balign 16
pvh_rt_gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff    /* 0x10: data */
pvh_rt_gdt_end:
pvh_rt_gdt_desc:
    .short pvh_rt_gdt_end - pvh_rt_gdt - 1
    .quad pvh_rt_gdt

.section .bss
.balign 4096
pvh_rt_pml4:
    .skip 4096
pvh_rt_pdpt:
    .skip 4096
pvh_rt_pd:
    .skip 16384
pvh_rt_stack:
    .skip 65536
pvh_rt_stack_top:
