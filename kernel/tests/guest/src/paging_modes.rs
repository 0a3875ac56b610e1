//! Check paging-modes: the guest leaves long mode for 32-bit paging, 32-bit paging with 4 MiB pages and PAE paging, and makes hypercalls with pointers in each.
//!
//! The hypervisor must walk the guest's tables in whatever mode it is in:
//! one linear address, `TARGET`, leads to a different page in each mode,
//! and `xen_version(XENVER_extraversion, TARGET)` must land in that mode's
//! page and nowhere else; `TARGET` + 4 MiB, mapped in no mode, must give
//! -EFAULT. In each mode `XENMEM_add_to_physmap` in the 32-bit layout
//! (xen/include/compat/memory.h: 32-bit idx and gpfn) then maps shared_info
//! at a GFN of that mode's, where 64-bit code reads it back. On SVM without
//! NRIPS (QEMU) the hypervisor also decodes each VMMCALL, RDMSR and WRMSR
//! by fetching it through the same tables; on VMX each paging switch is an
//! emulated CR0 write (see `paging_mode_call`).

use crate::checks::{ensure, load_test_gdt, COMPAT_CS};
use core::arch::asm;
use xen_abi::event_channel::DOMID_SELF;
use xen_abi::hypercall::*;
use xen_abi::memory::XENMAPSPACE_SHARED_INFO;
use xen_abi::shared_info;

/// 4 KiB of table entries or data, page-aligned.
#[repr(C, align(4096))]
struct Page([u32; 1024]);

const ZERO: Page = Page([0; 1024]);

// The tables of the three modes, in this guest's RAM (linked at 1 MiB, so
// below 4 MiB and below 4 GiB, as 32-bit CR3s need).
static mut PD_32: Page = ZERO;
static mut PT_32_LOW: Page = ZERO;
static mut PT_32_TARGET: Page = ZERO;
static mut PD_PSE: Page = ZERO;
/// The PAE PDPT lies at offset 0x20 of this page: CR3[11:5] matter.
static mut PDPT_PAE: Page = ZERO;
static mut PD_PAE_LOW: Page = ZERO;
static mut PD_PAE_TARGET: Page = ZERO;
static mut PT_PAE_TARGET: Page = ZERO;
/// Where `TARGET` leads in 32-bit, PSE and PAE paging.
static mut DATA: [Page; 3] = [ZERO, ZERO, ZERO];

/// The linear address each mode maps differently: above the identity-mapped
/// low 4 MiB, with the same offset in its 4 MiB page as `DATA[1]` has in
/// its own, for the PSE mapping.
fn target() -> u32 {
    0x8000_0000 | (data_address(1) & 0x3f_f000)
}

fn data_address(mode: usize) -> u32 {
    // SAFETY: only the address is taken.
    (unsafe { core::ptr::addr_of!(DATA[mode]) }) as u32
}

// Entry bits (Intel SDM Vol. 3A 4.3 tables 4-4 to 4-6, 4.4 tables 4-8 to 4-11).
const P: u32 = 1 << 0;
const RW: u32 = 1 << 1;
const PS: u32 = 1 << 7;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;

fn address_of(page: *const Page) -> u32 {
    page as u32
}

/// Builds every mode's tables: the low 4 MiB (this guest's image, its
/// stacks and the GDT) identity-mapped, and `TARGET` to `DATA[mode]`.
fn build_tables() {
    let target = target();
    // SAFETY: the guest is single-threaded, and only this check uses these
    // statics; they are plain memory while long-mode paging is on.
    unsafe {
        let pd = &mut *core::ptr::addr_of_mut!(PD_32);
        let low = &mut *core::ptr::addr_of_mut!(PT_32_LOW);
        let pt = &mut *core::ptr::addr_of_mut!(PT_32_TARGET);
        // 32-bit paging, 4 KiB pages: PDE 0 -> 1024 PTEs for 0..4 MiB.
        for (i, pte) in low.0.iter_mut().enumerate() {
            *pte = (i as u32) << 12 | P | RW;
        }
        pd.0[0] = address_of(low) | P | RW;
        pd.0[(target >> 22) as usize] = address_of(pt) | P | RW;
        pt.0[(target >> 12 & 0x3ff) as usize] = data_address(0) | P | RW;

        // 32-bit paging with CR4.PSE: 4 MiB pages only.
        let pse = &mut *core::ptr::addr_of_mut!(PD_PSE);
        pse.0[0] = P | RW | PS;
        pse.0[(target >> 22) as usize] = (data_address(1) & 0xffc0_0000) | P | RW | PS;

        // PAE: PDPTE 0 -> 2 MiB pages for 0..4 MiB; PDPTE 2 -> PD -> PT.
        let pdpt = &mut *core::ptr::addr_of_mut!(PDPT_PAE);
        let low = &mut *core::ptr::addr_of_mut!(PD_PAE_LOW);
        let pd = &mut *core::ptr::addr_of_mut!(PD_PAE_TARGET);
        let pt = &mut *core::ptr::addr_of_mut!(PT_PAE_TARGET);
        // 8-byte entries as pairs of u32: the high halves stay 0.
        low.0[0] = P | RW | PS;
        low.0[2] = 0x20_0000 | P | RW | PS;
        pdpt.0[8 + 2 * (target >> 30) as usize] = address_of(pd) | P;
        pd.0[2 * (target >> 21 & 0x1ff) as usize] = address_of(pt) | P | RW;
        pt.0[2 * (target >> 12 & 0x1ff) as usize] = data_address(2) | P | RW;
        pdpt.0[8] = address_of(low) | P;
    }
}

extern "C" {
    fn paging_mode_call();
}

/// What `paging_mode_call` does in one mode, and what it found.
#[repr(C)]
#[derive(Default)]
struct Block {
    cr3: u32,
    cr4: u32,
    long_cr3: u32,
    long_cr4: u32,
    target: u32,
    amd: u32,
    /// xen_version(XENVER_extraversion, target).
    written: u32,
    /// xen_version(XENVER_extraversion, target + 4 MiB).
    unmapped: u32,
    /// memory_op(XENMEM_add_to_physmap, &xatp).
    mapped: u32,
    /// A compat `struct xen_add_to_physmap`: domid | size << 16, space,
    /// idx, gpfn.
    xatp: [u32; 4],
}

// 32-bit code, entered by a far call from 64-bit code with ESI pointing at
// a Block and interrupts off. It leaves long mode as Intel SDM Vol. 3A
// 10.8.5.4 says (from compatibility mode, identity-mapped: clear CR0.PG,
// then EFER.LME), turns on the block's paging mode, makes the hypercalls,
// and enters long mode again the same way back (CR4.PAE, the PML4,
// EFER.LME, CR0.PG) before the far return. Paging goes on with CR0.NE set
// and off with it clear again: on VMX, NE is the host's, so both writes
// exit and are emulated, and entering PAE paging that way needs the
// hypervisor to load the PDPTEs into the VMCS (as 32-bit Linux's
// head_32.S does it, setting PG and NE in one write).
core::arch::global_asm!(
    ".code32",
    ".global paging_mode_call",
    "paging_mode_call:",
    "mov %cr0, %eax",
    "and $0x7fffffff, %eax",
    "mov %eax, %cr0",
    "mov $0xc0000080, %ecx",
    "rdmsr",
    "and $0xfffffeff, %eax",
    "wrmsr",
    "mov 4(%esi), %eax",
    "mov %eax, %cr4",
    "mov 0(%esi), %eax",
    "mov %eax, %cr3",
    "mov %cr0, %eax",
    "or $0x80000020, %eax",
    "mov %eax, %cr0",
    "jmp 1f",
    "1:",
    "mov 16(%esi), %ecx",
    "call 3f",
    "mov %eax, 24(%esi)",
    "mov 16(%esi), %ecx",
    "add $0x400000, %ecx",
    "call 3f",
    "mov %eax, 28(%esi)",
    "mov $12, %eax",
    "mov $7, %ebx",
    "lea 36(%esi), %ecx",
    "call 5f",
    "mov %eax, 32(%esi)",
    "mov %cr0, %eax",
    "and $0x7fffffdf, %eax",
    "mov %eax, %cr0",
    "mov 12(%esi), %eax",
    "mov %eax, %cr4",
    "mov 8(%esi), %eax",
    "mov %eax, %cr3",
    "mov $0xc0000080, %ecx",
    "rdmsr",
    "or $0x100, %eax",
    "wrmsr",
    "mov %cr0, %eax",
    "or $0x80000000, %eax",
    "mov %eax, %cr0",
    "jmp 2f",
    "2:",
    "lret",
    // xen_version(XENVER_extraversion = 1, ECX), or from 5: the hypercall
    // in EAX with EBX and ECX, with the vendor's instruction; the 32-bit
    // convention takes EBX, ECX.
    "3:",
    "mov $17, %eax",
    "mov $1, %ebx",
    "5:",
    "cmpl $0, 20(%esi)",
    "jne 4f",
    "vmcall",
    "ret",
    "4:",
    "vmmcall",
    "ret",
    ".code64",
    options(att_syntax)
);

/// Runs `paging_mode_call` for `block` from 64-bit code.
fn run_in_mode(block: &mut Block) {
    // m16:32 far pointer: offset, then selector (the code is below 4 GiB).
    let far: [u32; 2] = [paging_mode_call as *const () as u32, COMPAT_CS as u32];
    // SAFETY: the far call runs the 32-bit code above on this stack (in
    // the identity-mapped low 4 MiB) with interrupts off, as the IDT is
    // long mode's, and comes back to 64-bit mode with the same CR3 and CR4
    // and EFER.LME set again. Leaving 64-bit mode leaves the upper halves
    // of all registers and R8-R15 undefined (Intel SDM Vol. 1 3.4.1.1):
    // the callee-saved ones are saved on the stack, the others declared
    // clobbered.
    unsafe {
        asm!(
            "pushfq",
            "cli",
            "push rbx",
            "push rbp",
            "push r12",
            "push r13",
            "push r14",
            "push r15",
            "call fword ptr [{far}]",
            "pop r15",
            "pop r14",
            "pop r13",
            "pop r12",
            "pop rbp",
            "pop rbx",
            "popfq",
            far = in(reg) far.as_ptr(),
            in("rsi") block as *mut Block,
            clobber_abi("C"),
        )
    };
}

/// XENVER_extraversion as 64-bit code reads it, to compare.
fn extraversion() -> [u8; XEN_EXTRAVERSION_LEN] {
    let mut extra = [0u8; XEN_EXTRAVERSION_LEN];
    crate::hypercall::call(
        XEN_VERSION,
        XENVER_EXTRAVERSION,
        extra.as_mut_ptr() as u64,
        0,
    );
    extra
}

pub fn paging_modes() -> Result<(), &'static str> {
    let amd = crate::checks::cpuid_leaf(0).ebx == 0x6874_7541; // "Auth"
    let (cr3, cr4): (u64, u64);
    // SAFETY: reading control registers at CPL 0 changes nothing.
    unsafe { asm!("mov {}, cr3", "mov {}, cr4", out(reg) cr3, out(reg) cr4) };
    ensure(cr3 >> 32 == 0, "the PML4 is above 4 GiB")?;
    ensure(cr4 & (1 << 17) == 0, "CR4.PCIDE forbids leaving long mode")?;
    load_test_gdt();
    build_tables();
    let want = extraversion();
    ensure(want[0] != 0, "no extraversion to compare")?;
    let legacy = cr4 & !(CR4_PAE | CR4_PSE | 1 << 12);
    let modes = [
        (address_of(core::ptr::addr_of!(PD_32)), legacy),
        (address_of(core::ptr::addr_of!(PD_PSE)), legacy | CR4_PSE),
        (
            address_of(core::ptr::addr_of!(PDPT_PAE)) + 0x20,
            legacy | CR4_PAE,
        ),
    ];
    let fails = [
        (
            "xen_version to a pointer failed in 32-bit paging",
            "not written through the 32-bit paging tables",
        ),
        (
            "xen_version to a pointer failed in 32-bit paging with 4 MiB pages",
            "not written through the 4 MiB page",
        ),
        (
            "xen_version to a pointer failed in PAE paging",
            "not written through the PAE tables",
        ),
    ];
    let shared_info_gfn = crate::fuzz::above_ram_gfn()? + 8;
    for (mode, &(mode_cr3, mode_cr4)) in modes.iter().enumerate() {
        let gfn = shared_info_gfn + mode as u64;
        // SAFETY: single-threaded; not referenced while the call runs.
        unsafe { *core::ptr::addr_of_mut!(DATA) = [ZERO, ZERO, ZERO] };
        let mut block = Block {
            cr3: mode_cr3,
            cr4: mode_cr4 as u32,
            long_cr3: cr3 as u32,
            long_cr4: cr4 as u32,
            target: target(),
            amd: amd.into(),
            xatp: [
                u32::from(DOMID_SELF),
                XENMAPSPACE_SHARED_INFO,
                0,
                gfn as u32,
            ],
            ..Block::default()
        };
        run_in_mode(&mut block);
        ensure(block.written == 0, fails[mode].0)?;
        ensure(
            block.unmapped as i32 == -EFAULT as i32,
            "xen_version to an unmapped pointer outside long mode was not -EFAULT",
        )?;
        ensure(
            block.mapped == 0,
            "add_to_physmap(shared_info) in the 32-bit layout failed",
        )?;
        // vCPU 0's pvclock multiplier, which the hypervisor fills in.
        let mul =
            gfn * 4096 + (shared_info::vcpu_info_offset(0) + shared_info::TIME_OFFSET + 24) as u64;
        // SAFETY: shared_info, just mapped at `gfn` (below 4 GiB, outside
        // RAM, so no Rust object), which entry.S's identity map covers.
        let mul = unsafe { (mul as *const u32).read_volatile() };
        ensure(mul != 0, "shared_info not at the GFN of the 32-bit layout")?;
        // SAFETY: as above.
        let data = unsafe { &*core::ptr::addr_of!(DATA) };
        for (page, d) in data.iter().enumerate() {
            let bytes = &d.0[..XEN_EXTRAVERSION_LEN / 4];
            let written = bytes
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .eq(want.iter().copied());
            let untouched = d.0.iter().all(|&w| w == 0);
            ensure(
                if page == mode { written } else { untouched },
                fails[mode].1,
            )?;
        }
    }
    Ok(())
}
