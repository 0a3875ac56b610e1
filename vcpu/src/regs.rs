//! Guest register names and the paging state the core needs to walk guest page tables.

/// General-purpose registers in encoding order (Intel SDM Vol. 2A 2.1.5, table 2-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Gpr {
    Rax = 0,
    Rcx,
    Rdx,
    Rbx,
    Rsp,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

impl Gpr {
    pub const ALL: [Gpr; 16] = [
        Gpr::Rax,
        Gpr::Rcx,
        Gpr::Rdx,
        Gpr::Rbx,
        Gpr::Rsp,
        Gpr::Rbp,
        Gpr::Rsi,
        Gpr::Rdi,
        Gpr::R8,
        Gpr::R9,
        Gpr::R10,
        Gpr::R11,
        Gpr::R12,
        Gpr::R13,
        Gpr::R14,
        Gpr::R15,
    ];
}

/// The control registers that decide how a guest-virtual address translates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Paging {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

/// The segment registers an instruction's memory operands go through
/// (Intel SDM Vol. 3A 3.4.2), in encoding order (Vol. 2A 3.1.1.3, Sreg).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Segment {
    Es,
    Cs,
    Ss,
    Ds,
    Fs,
    Gs,
}

/// CR4 bits whose change invalidates the guest's TLB entries and
/// paging-structure caches: PSE, PAE, PGE, PCIDE, SMEP, SMAP, PKE, LA57
/// (Intel SDM Vol. 3A 4.10.4.1 lists PGE, PCIDE 1 to 0, PAE and SMEP 0 to
/// 1; the others change how cached translations are interpreted). A
/// backend that loads a new guest CR4 itself, rather than by the guest's
/// own MOV, must flush the guest's tagged translations when one changes.
pub const CR4_TLB_BITS: u64 =
    (1 << 4) | (1 << 5) | (1 << 7) | (1 << 17) | (1 << 20) | (1 << 21) | (1 << 22) | (1 << 12);

/// Whether loading CR4 `new` over `old` must flush the guest's TLB.
pub fn cr4_change_flushes_tlb(old: u64, new: u64) -> bool {
    (old ^ new) & CR4_TLB_BITS != 0
}
