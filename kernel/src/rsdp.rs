//! Finding the ACPI RSDP by scanning, for loaders that do not pass it (ACPI 6.5, 5.2.5.1).

/// `"RSD PTR "`, the RSDP signature (ACPI 6.5, table 5.3).
const SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// Bytes covered by the ACPI 1.0 checksum.
const V1_LEN: usize = 20;
/// Length of the ACPI 2.0+ structure, covered by the extended checksum.
const V2_LEN: usize = 36;

fn sums_to_zero(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b)) == 0
}

/// The address of the first valid RSDP in `window` (which starts at physical
/// `base`), checked on 16-byte boundaries as the specification places it.
pub fn find(window: &[u8], base: u64) -> Option<u64> {
    let first = (base.wrapping_neg() & 15) as usize;
    (first..window.len())
        .step_by(16)
        .find(|&off| is_valid(&window[off..]))
        .map(|off| base + off as u64)
}

/// Whether `bytes` starts with a valid RSDP (both checksums for revision ≥ 2).
pub fn is_valid(bytes: &[u8]) -> bool {
    if bytes.len() < V1_LEN || &bytes[..8] != SIGNATURE || !sums_to_zero(&bytes[..V1_LEN]) {
        return false;
    }
    let revision = bytes[15];
    revision < 2 || (bytes.len() >= V2_LEN && sums_to_zero(&bytes[..V2_LEN]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsdp_v2() -> [u8; 36] {
        let mut r = [0u8; 36];
        r[..8].copy_from_slice(SIGNATURE);
        r[9..15].copy_from_slice(b"XENOLI");
        r[15] = 2;
        r[16..20].copy_from_slice(&0x07fe_1000_u32.to_le_bytes());
        r[20..24].copy_from_slice(&36u32.to_le_bytes());
        r[8] = 0u8.wrapping_sub(r[..20].iter().fold(0u8, |s, &b| s.wrapping_add(b)));
        r[32] = 0u8.wrapping_sub(r.iter().fold(0u8, |s, &b| s.wrapping_add(b)));
        r
    }

    #[test]
    fn finds_aligned_valid_rsdp_only() {
        let mut window = vec![0u8; 4096];
        window[0x105..0x105 + 36].copy_from_slice(&rsdp_v2()); // misaligned: ignored
        assert_eq!(find(&window, 0xe0000), None);
        window[0x200..0x200 + 36].copy_from_slice(&rsdp_v2());
        assert_eq!(find(&window, 0xe0000), Some(0xe0200));
        window[0x201] ^= 1; // checksum broken
        assert_eq!(find(&window, 0xe0000), None);
    }

    #[test]
    fn truncated_window_is_safe() {
        let r = rsdp_v2();
        assert!(!is_valid(&r[..30]));
        assert!(is_valid(&r));
    }
}
