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
    /// MOV CR4, reg (0F 22 /r with ModRM.reg = 4).
    MovToCr4,
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
            // Followed by ModRM: see `mov_to_cr4`.
            Expected::MovToCr4 => &[&[0x0f, 0x22]],
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
///
/// The same bytes decode alike in 64-, 32- and 16-bit code: none of these
/// instructions has an operand or ModRM byte, so the default operand and
/// address sizes (CS.D, APM Vol. 3 1.2.3) and the 66h/67h prefixes that
/// flip them change no length; only REX depends on the mode (in 32- and
/// 16-bit code 40h-4Fh are INC/DEC).
pub fn length(bytes: &[u8], expected: Expected, long_mode: bool) -> Option<usize> {
    if expected == Expected::MovToCr4 {
        return mov_to_cr4(bytes, long_mode).map(|(_, len)| len);
    }
    let (at, _) = prefixes(bytes, long_mode);
    expected.opcodes().iter().find_map(|opcode| {
        let end = at + opcode.len();
        (end <= 15 && bytes.get(at..end) == Some(*opcode)).then_some(end)
    })
}

/// Where the instruction at CS:RIP starts: in 64-bit mode the CS base is
/// ignored (APM Vol. 2 4.8.1); elsewhere it is added to EIP and the linear
/// address wraps at 4 GiB (APM Vol. 2 4.5.3). The walk then goes through
/// whatever paging mode the guest is in.
pub fn code_address(long_mode: bool, cs_base: u64, rip: u64) -> u64 {
    if long_mode {
        rip
    } else {
        cs_base.wrapping_add(rip) & 0xffff_ffff
    }
}

/// RIP after an instruction of `len` bytes: outside 64-bit mode EIP wraps
/// at 32 bits, as on VMX (vmx `skip_instruction`).
pub fn next_rip(long_mode: bool, rip: u64, len: usize) -> u64 {
    let next = rip.wrapping_add(len as u64);
    if long_mode {
        next
    } else {
        next & 0xffff_ffff
    }
}

/// The length of the prefixes at the start of `bytes`, and the REX byte
/// among them (0 if none).
fn prefixes(bytes: &[u8], long_mode: bool) -> (usize, u8) {
    let mut at = 0;
    while at < bytes.len() && at < 14 && is_legacy_prefix(bytes[at]) {
        at += 1;
    }
    match bytes.get(at) {
        Some(&rex) if long_mode && rex & 0xf0 == 0x40 => (at + 1, rex),
        _ => (at, 0),
    }
}

/// MOV CR4, reg (AMD APM Vol. 3, MOV CRn; Intel SDM Vol. 2B): 0F 22 /r,
/// ModRM.reg names the control register (4), ModRM.rm the source register
/// whatever ModRM.mod says, REX.B extends it. Returns the source register
/// (0-15, `vcpu::Gpr` order) and the length. REX.R would make it CR12, and
/// LOCK (AMD's alternative CR8 encoding) CR12 too: both #UD before the
/// intercept, so neither is this exit's instruction. Without decode
/// assists (QEMU), an intercepted CR4 write tells nothing else (APM 15.33).
pub fn mov_to_cr4(bytes: &[u8], long_mode: bool) -> Option<(u8, usize)> {
    let (at, rex) = prefixes(bytes, long_mode);
    if bytes[..at].contains(&0xf0) || rex & 0b0100 != 0 {
        return None;
    }
    let modrm = *bytes.get(at + 2)?;
    let end = at + 3;
    (end <= 15 && bytes.get(at..at + 2) == Some(&[0x0f, 0x22][..]) && (modrm >> 3) & 7 == 4)
        .then_some(((modrm & 7) | ((rex & 1) << 3), end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_addresses_by_mode() {
        // 64-bit mode ignores the CS base.
        assert_eq!(
            code_address(true, 0x1000, 0xffff_8000_0000_0000),
            0xffff_8000_0000_0000
        );
        // 32-bit code adds it and wraps at 4 GiB.
        assert_eq!(code_address(false, 0x1000, 0x2000), 0x3000);
        assert_eq!(code_address(false, 0xffff_f000, 0x2000), 0x1000);
        assert_eq!(code_address(false, 0, 0x1_0000_2000), 0x2000);
        assert_eq!(next_rip(false, 0xffff_fffe, 3), 1);
        assert_eq!(next_rip(true, 0xffff_fffe, 3), 0x1_0000_0001);
    }

    #[test]
    fn code32_and_code16_decode_alike() {
        // VMMCALL as 32-bit code emits it, and with the 16-bit operand- and
        // address-size prefixes; REX-like bytes are no prefix there.
        for long_mode in [false, true] {
            assert_eq!(
                length(&[0x0f, 0x01, 0xd9], Expected::Vmmcall, long_mode),
                Some(3)
            );
            assert_eq!(
                length(&[0x66, 0x67, 0x0f, 0xa2], Expected::Cpuid, long_mode),
                Some(4)
            );
        }
        assert_eq!(
            length(&[0x40, 0x0f, 0x01, 0xd9], Expected::Vmmcall, false),
            None
        );
    }

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
    fn mov_to_cr4_operands() {
        // mov cr4, rax / mov cr4, rdi / mov cr4, r9 (REX.B) / mov cr4, ecx (32-bit).
        assert_eq!(mov_to_cr4(&[0x0f, 0x22, 0xe0], true), Some((0, 3)));
        assert_eq!(mov_to_cr4(&[0x0f, 0x22, 0xe7], true), Some((7, 3)));
        assert_eq!(mov_to_cr4(&[0x41, 0x0f, 0x22, 0xe1], true), Some((9, 4)));
        assert_eq!(mov_to_cr4(&[0x0f, 0x22, 0xe1], false), Some((1, 3)));
        // ModRM.mod is ignored: 0x20 is mod 00, still a register.
        assert_eq!(mov_to_cr4(&[0x0f, 0x22, 0x20], true), Some((0, 3)));
        assert_eq!(
            length(&[0x66, 0x0f, 0x22, 0xe3], Expected::MovToCr4, true),
            Some(4)
        );
        // CR0, CR3, CR12 (REX.R), LOCK, MOV from CR4, truncated: not it.
        assert_eq!(mov_to_cr4(&[0x0f, 0x22, 0xc0], true), None);
        assert_eq!(mov_to_cr4(&[0x0f, 0x22, 0xd8], true), None);
        assert_eq!(mov_to_cr4(&[0x44, 0x0f, 0x22, 0xe0], true), None);
        assert_eq!(mov_to_cr4(&[0xf0, 0x0f, 0x22, 0xe0], true), None);
        assert_eq!(mov_to_cr4(&[0x0f, 0x20, 0xe0], true), None);
        assert_eq!(mov_to_cr4(&[0x0f, 0x22], true), None);
        // Outside 64-bit mode 0x41 is INC ECX, not REX.
        assert_eq!(mov_to_cr4(&[0x41, 0x0f, 0x22, 0xe1], false), None);
    }

    #[test]
    fn mov_to_cr4_on_hostile_bytes() {
        // Whatever the guest left at RIP: an answer, never a panic; when
        // it is a MOV CR4, a register 0-15, a length within the bytes read
        // and the 15-byte limit, ending in 0F 22 with ModRM.reg = 4.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..20_000 {
            let mut bytes = [0u8; 15];
            for b in bytes.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if round % 4 == 0 {
                // Make a prefixed MOV CR4 likely.
                let at = (x as usize >> 8) % 14;
                bytes[at..]
                    .iter_mut()
                    .take(3)
                    .zip([0x0f, 0x22, 0xe0 | (x as u8 & 7)])
                    .for_each(|(b, v)| *b = v);
            }
            let n = (x as usize >> 16) % 16;
            for long_mode in [false, true] {
                if let Some((gpr, len)) = mov_to_cr4(&bytes[..n], long_mode) {
                    assert!(gpr < 16 && (3..=15).contains(&len) && len <= n);
                    assert_eq!(bytes[len - 3..len - 1], [0x0f, 0x22]);
                    assert_eq!((bytes[len - 1] >> 3) & 7, 4);
                }
            }
        }
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
