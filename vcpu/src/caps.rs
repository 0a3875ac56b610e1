//! Hardware-virtualization capabilities, as a backend reports them to the core.

/// Which hardware-virtualization extension a backend drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum VirtKind {
    /// Intel VT-x (Intel SDM Vol. 3C, chapters 24-28).
    Vmx,
    /// AMD-V (AMD APM Vol. 2, chapter 15).
    Svm,
}

/// What a backend found the CPU able to do.
///
/// Field names are vendor-neutral: `second_level` is EPT on Intel and NPT on
/// AMD; `tags` is the number of VPIDs or ASIDs; `exit_length` says whether the
/// CPU reports the length of the exiting instruction (always on VMX, the
/// NRIPS feature on SVM), which decides whether the core must decode it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct VirtCaps {
    pub kind: VirtKind,
    /// The extension is present and not locked off by firmware.
    pub usable: bool,
    pub second_level: bool,
    pub tags: u32,
    /// VMX "unrestricted guest": real and unpaged protected mode run natively.
    /// SVM guests can always run unpaged, so it is true there.
    pub unrestricted_guest: bool,
    pub exit_length: bool,
}
