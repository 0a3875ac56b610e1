//! Second-level page tables for guests: Intel EPT and AMD NPT built by one generic builder, and the guest page-table walker.
