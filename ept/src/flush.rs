//! What a table change asks of the TLB: nothing, or an INVEPT / ASID flush.

/// Whether the hardware may still hold a translation the change made stale.
///
/// The table code never invalidates; it reports, and the backend runs INVEPT
/// (SDM Vol. 3C 29.4.3) or flushes the guest's ASID (APM Vol. 2 15.16) when it
/// sees `Needed`. Making a not-present entry present is `None`: translations
/// are only cached through present entries, so there is nothing stale to drop
/// (SDM Vol. 3A 4.10.4.3 "Optional Invalidation"; EPT follows the same rules,
/// Vol. 3C 29.4).
#[must_use = "a changed mapping may still be cached until the backend flushes"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    None,
    Needed,
}

impl Flush {
    /// `Needed` if `needed`.
    pub fn when(needed: bool) -> Flush {
        if needed {
            Flush::Needed
        } else {
            Flush::None
        }
    }

    /// Both changes together: a flush is needed if either needs one.
    pub fn merge(self, other: Flush) -> Flush {
        Flush::when(self.is_needed() || other.is_needed())
    }

    pub fn is_needed(self) -> bool {
        self == Flush::Needed
    }
}
