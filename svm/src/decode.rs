//! Instruction lengths for intercepted instructions when the CPU has no NRIPS (QEMU TCG), by decoding the bytes at RIP.

/// The instructions whose exits need RIP advanced by the VMM (APM 15.7.1:
/// without NRIPS, nRIP is not saved; IOIO exits carry it in EXITINFO2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    Cpuid,
    Rdmsr,
    Wrmsr,
    Vmmcall,
    Hlt,
    /// INVD or WBINVD: either may come with either exit code, since QEMU
    /// 7.2 reports INVD as a WBINVD intercept (0x89; its translator picks
    /// the code from bit 1 of the opcode, which both share). Both complete
    /// as no-ops, so which one it was does not matter.
    CacheFlush,
}

impl Expected {
    /// The opcode bytes after any prefixes (AMD APM Vol. 3, opcode map):
    /// any one of these.
    fn opcodes(self) -> &'static [&'static [u8]] {
        match self {
            Expected::Cpuid => &[&[0x0f, 0xa2]],
            Expected::Rdmsr => &[&[0x0f, 0x32]],
            Expected::Wrmsr => &[&[0x0f, 0x30]],
            Expected::Vmmcall => &[&[0x0f, 0x01, 0xd9]],
            Expected::Hlt => &[&[0xf4]],
            Expected::CacheFlush => &[&[0x0f, 0x08], &[0x0f, 0x09]],
        }
    }
}

/// Legacy prefixes (APM Vol. 3 1.2): operand/address size, segment overrides, LOCK, REP.
fn is_legacy_prefix(b: u8) -> bool {
    matches!(
        b,
        0x66 | 0x67 | 0x2e | 0x36 | 0x3e | 0x26 | 0x64 | 0x65 | 0xf0 | 0xf2 | 0xf3
    )
}

/// The length of the instruction in `bytes` if it is `expected` (with any
/// prefixes; REX only in 64-bit mode, and only right before the opcode).
/// `None` if the bytes are some other instruction or run out.
pub fn length(bytes: &[u8], expected: Expected, long_mode: bool) -> Option<usize> {
    let mut at = 0;
    while at < bytes.len() && at < 14 && is_legacy_prefix(bytes[at]) {
        at += 1;
    }
    if long_mode && bytes.get(at).is_some_and(|b| b & 0xf0 == 0x40) {
        at += 1;
    }
    expected.opcodes().iter().find_map(|opcode| {
        let end = at + opcode.len();
        (end <= 15 && bytes.get(at..end) == Some(*opcode)).then_some(end)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_instructions() {
        assert_eq!(length(&[0x0f, 0xa2, 0x90], Expected::Cpuid, true), Some(2));
        assert_eq!(length(&[0x0f, 0x32], Expected::Rdmsr, false), Some(2));
        assert_eq!(length(&[0x0f, 0x30], Expected::Wrmsr, true), Some(2));
        assert_eq!(
            length(&[0x0f, 0x01, 0xd9], Expected::Vmmcall, true),
            Some(3)
        );
        assert_eq!(length(&[0xf4], Expected::Hlt, false), Some(1));
        assert_eq!(length(&[0x0f, 0x08], Expected::CacheFlush, true), Some(2));
        assert_eq!(
            length(&[0xf3, 0x0f, 0x09], Expected::CacheFlush, true),
            Some(3)
        );
        assert_eq!(length(&[0x0f, 0x0a], Expected::CacheFlush, true), None);
    }

    #[test]
    fn prefixes_count() {
        assert_eq!(length(&[0x66, 0x0f, 0xa2], Expected::Cpuid, false), Some(3));
        assert_eq!(length(&[0x48, 0x0f, 0x30], Expected::Wrmsr, true), Some(3));
        assert_eq!(
            length(&[0x2e, 0x48, 0x0f, 0x01, 0xd9], Expected::Vmmcall, true),
            Some(5)
        );
    }

    #[test]
    fn mismatches_are_refused() {
        // REX is INC/DEC outside 64-bit mode, so it is no prefix there.
        assert_eq!(length(&[0x48, 0x0f, 0x30], Expected::Wrmsr, false), None);
        // VMCALL is Intel's; on SVM it is not the intercepted instruction.
        assert_eq!(length(&[0x0f, 0x01, 0xc1], Expected::Vmmcall, true), None);
        assert_eq!(length(&[0x0f], Expected::Cpuid, true), None);
        assert_eq!(length(&[], Expected::Hlt, true), None);
        assert_eq!(length(&[0x66; 15], Expected::Hlt, true), None);
    }
}
