/* Xenolith entry points: the multiboot2 header, the Xen PVH note and the 32-to-64-bit trampoline. */

/* Multiboot2 header (Multiboot2 spec 3.1.1): magic, architecture 0 (i386
 * protected mode), length, checksum, then the end tag. GRUB loads the ELF
 * segments itself, so no address tag is needed. */
.section .multiboot2_header, "a"
.balign 8
mb2_header:
    .long 0xe85250d6
    .long 0
    .long mb2_header_end - mb2_header
    .long 0x100000000 - (0xe85250d6 + (mb2_header_end - mb2_header))
    .balign 8
    .short 0
    .short 0
    .long 8
mb2_header_end:

/* XEN_ELFNOTE_PHYS32_ENTRY (type 18, xen/include/public/elfnote.h): the
 * 32-bit physical entry point. QEMU reads the descriptor as a 64-bit value. */
.section .note.Xen, "a", @note
.balign 4
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .balign 4
    .quad pvh_entry
    .balign 4

.section .boot.text, "ax"
.code32

/* Multiboot2 entry: EAX = 0x36d76289, EBX = boot information (spec 3.3). */
.global mb2_entry
mb2_entry:
    cli
    cld
    cmp $0x36d76289, %eax
    jne halt32
    mov $1, %esi
    mov %ebx, %edi
    jmp boot32

/* PVH entry (xen docs/misc/pvh.pandoc): flat 32-bit protected mode, paging
 * off, EBX = hvm_start_info, no stack. */
.global pvh_entry
pvh_entry:
    cli
    cld
    mov $2, %esi
    mov %ebx, %edi

boot32:
    mov $__stack_top, %esp

    /* Long mode (bit 29) and NX (bit 20): CPUID 80000001h EDX, SDM Vol. 2A. */
    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    jb halt32
    mov $0x80000001, %eax
    cpuid
    bt $29, %edx
    jnc halt32
    mov %edx, %ebp

    /* Boot page tables: the first 4 GiB identity-mapped with 2 MiB pages.
     * kernel/src/paging.rs replaces them with the final tables. */
    mov $boot_pdpt, %eax
    or $3, %eax
    mov %eax, boot_pml4
    movl $0, boot_pml4 + 4
    mov $boot_pd, %eax
    or $3, %eax
    xor %ecx, %ecx
1:  mov %eax, boot_pdpt(, %ecx, 8)
    movl $0, boot_pdpt + 4(, %ecx, 8)
    add $0x1000, %eax
    inc %ecx
    cmp $4, %ecx
    jne 1b
    mov $0x83, %eax             /* present, writable, 2 MiB page */
    xor %ecx, %ecx
2:  mov %eax, boot_pd(, %ecx, 8)
    movl $0, boot_pd + 4(, %ecx, 8)
    add $0x200000, %eax
    inc %ecx
    cmp $2048, %ecx
    jne 2b

    /* Enter IA-32e mode (SDM Vol. 3A 10.8.5): PAE, CR3, EFER.LME (and NXE
     * where supported), then CR0.PG with WP so read-only pages bind ring 0. */
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax
    bt $20, %ebp
    jnc 3f
    or $0x800, %eax
3:  wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax
    mov %eax, %cr0

    lgdt boot_gdt_desc
    ljmp $0x08, $long_entry

halt32:
    hlt
    jmp halt32

.code64
long_entry:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    mov $__stack_top, %rsp
    xor %ebp, %ebp
    /* kernel_entry(kind: u32 = ESI, info: u64 = EDI); 32-bit moves zero-extend. */
    mov %edi, %eax
    mov %esi, %edi
    mov %eax, %esi
    call kernel_entry
4:  cli
    hlt
    jmp 4b

.section .rodata
.balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00cf92000000ffff    /* 0x10: data, DPL 0 */
boot_gdt_end:
boot_gdt_desc:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt

.section .bss
.balign 4096
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4
