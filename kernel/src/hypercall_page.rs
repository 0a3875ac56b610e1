//! The Xen hypercall page a guest installs by writing MSR 0x40000000 (xen/arch/x86/hvm/{vmx,svm}: *_init_hypercall_page).

pub const PAGE_SIZE: usize = 4096;
/// Each hypercall has a 32-byte stub at `number * 32`.
const SLOT: usize = 32;
/// `__HYPERVISOR_iret`: a PV-only call; its slot faults instead (UD2).
const IRET: usize = 23;

/// Fills `page` as Xen does: 0xCC (INT3) everywhere, then in each slot
/// `mov eax, <number>` (B8 imm32), the backend's 3-byte hypercall
/// instruction (VMCALL or VMMCALL), `ret` (C3); slot 23 starts with UD2.
pub fn fill(page: &mut [u8; PAGE_SIZE], hypercall: [u8; 3]) {
    page.fill(0xcc);
    for (number, slot) in page.chunks_exact_mut(SLOT).enumerate() {
        if number == IRET {
            slot[..2].copy_from_slice(&[0x0f, 0x0b]);
            continue;
        }
        slot[0] = 0xb8;
        slot[1..5].copy_from_slice(&(number as u32).to_le_bytes());
        slot[5..8].copy_from_slice(&hypercall);
        slot[8] = 0xc3;
    }
}

/// The guest frame an MSR write names: bits 11:0 select the page of a
/// multi-page area and must be 0 (one page here); `None` means #GP.
pub fn frame(msr_value: u64) -> Option<u64> {
    (msr_value & 0xfff == 0).then_some(msr_value >> 12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_xen() {
        let mut page = [0u8; PAGE_SIZE];
        fill(&mut page, [0x0f, 0x01, 0xd9]);
        // xen_version (17) at 17 * 32: mov eax, 17; vmmcall; ret; int3 padding.
        assert_eq!(
            &page[544..553],
            &[0xb8, 17, 0, 0, 0, 0x0f, 0x01, 0xd9, 0xc3]
        );
        assert!(page[553..576].iter().all(|&b| b == 0xcc));
        assert_eq!(&page[23 * 32..23 * 32 + 3], &[0x0f, 0x0b, 0xcc]);
        assert_eq!(&page[127 * 32..127 * 32 + 2], &[0xb8, 127]);
    }

    #[test]
    fn frame_needs_page_index_zero() {
        assert_eq!(frame(0x12_3000), Some(0x123));
        assert_eq!(frame(0x12_3001), None);
    }
}
