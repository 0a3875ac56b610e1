/* PVH guest entry: from the 32-bit PVH start state into long mode (xen docs/misc/pvh.pandoc), with a guard page under each stack, then pvh_rt_main(start_info). */

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
    /* A not-present page under each stack: running off its end faults
     * (on the fault stack, idt.rs) instead of overwriting what lies below,
     * the page tables first of all. */
    mov $pvh_rt_stack_guard, %edi
    call pvh_rt_unmap_page
    mov $pvh_rt_fault_stack_guard, %edi
    call pvh_rt_unmap_page
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

/* Make the 4 KiB page at %edi not present, before paging is on. Its
 * 2 MiB page is first split into 4 KiB pages mapping the same, with the
 * next unused page table. The guard pages lie within 128 KiB of each
 * other, so two page tables do. Clobbers %eax, %ecx, %edx. */
pvh_rt_unmap_page:
    mov %edi, %ecx
    shr $21, %ecx               /* its PD entry */
    mov pvh_rt_pd(, %ecx, 8), %eax
    test $0x80, %eax            /* still a 2 MiB page? */
    jz 2f
    mov pvh_rt_pts_used, %edx
    incl pvh_rt_pts_used
    shl $12, %edx
    add $pvh_rt_pts, %edx
    and $0xffe00000, %eax
    or $3, %eax                 /* present, writable, 4 KiB */
    push %ecx
    xor %ecx, %ecx
1:  mov %eax, (%edx, %ecx, 8)
    add $0x1000, %eax
    inc %ecx
    cmp $512, %ecx
    jne 1b
    pop %ecx
    or $3, %edx
    mov %edx, pvh_rt_pd(, %ecx, 8)
2:  mov pvh_rt_pd(, %ecx, 8), %edx
    and $0xfffff000, %edx       /* its page table */
    mov %edi, %eax
    shr $12, %eax
    and $511, %eax
    movl $0, (%edx, %eax, 8)
    ret

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
/* Every vector the guest did not claim, on the fault stack (IST 1,
 * idt.rs): on an aligned stack to pvh_rt_fault, which does not return.
 * A fault inside it would start over on the same stack, and again, so a
 * second one ends the guest with a triple fault: an empty IDT, then #UD. */
.global pvh_rt_fault_stub
pvh_rt_fault_stub:
    lock btsl $0, pvh_rt_in_fault(%rip)
    jc 1f
    and $-16, %rsp
    call pvh_rt_fault
1:  lidt pvh_rt_no_idt(%rip)
    ud2

.section .rodata
.balign 16
pvh_rt_no_idt:
    .short 0
    .quad 0

/* Writable: LTR marks the TSS descriptor busy. */
.section .data
.balign 16
.global pvh_rt_gdt
pvh_rt_gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff    /* 0x10: data */
    .quad 0, 0                  /* 0x18: the TSS, filled in by idt.rs */
pvh_rt_gdt_end:
pvh_rt_gdt_desc:
    .short pvh_rt_gdt_end - pvh_rt_gdt - 1
    .quad pvh_rt_gdt
.balign 4
pvh_rt_pts_used:
    .long 0
pvh_rt_in_fault:
    .long 0

.section .bss
.balign 4096
pvh_rt_pml4:
    .skip 4096
pvh_rt_pdpt:
    .skip 4096
pvh_rt_pd:
    .skip 16384
pvh_rt_pts:
    .skip 8192
pvh_rt_stack_guard:
    .skip 4096
pvh_rt_stack:
    .skip 65536
pvh_rt_stack_top:
/* Also the main stack's ceiling: popping past its top faults. */
pvh_rt_fault_stack_guard:
    .skip 4096
/* Where the CPU switches for the faults (IST 1): a stack overflow's #PF
 * cannot push its frame on the stack that overflowed. */
pvh_rt_fault_stack:
    .skip 16384
.global pvh_rt_fault_stack_top
pvh_rt_fault_stack_top:
