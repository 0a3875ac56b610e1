//! Host tests of the MMIO emulator: flags against the host CPU, instruction forms against a model machine, random bytes.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::vec::Vec;

/// A model machine: registers, and memory where the bytes below
/// `MMIO_BASE` are RAM (a map, zero where unwritten) and the rest reads as
/// all ones and drops writes, as unbacked guest-physical space.
#[derive(Default, Clone)]
struct Model {
    gprs: [u64; 16],
    rflags: u64,
    bases: [u64; 6],
    ram: BTreeMap<u64, u8>,
    /// (linear, size, value) of every write that reached MMIO.
    mmio_writes: Vec<(u64, u8, u64)>,
    /// (linear, size) of every MMIO read.
    mmio_reads: Vec<(u64, u8)>,
}

const MMIO_BASE: u64 = 0xfed0_0000;

impl Machine for Model {
    fn gpr(&self, reg: Gpr) -> u64 {
        self.gprs[reg as usize]
    }
    fn set_gpr(&mut self, reg: Gpr, value: u64) {
        self.gprs[reg as usize] = value;
    }
    fn rflags(&self) -> u64 {
        self.rflags
    }
    fn set_rflags(&mut self, value: u64) {
        self.rflags = value;
    }
    fn segment_base(&self, seg: Segment) -> u64 {
        self.bases[seg as usize]
    }
    fn read(&mut self, linear: u64, size: u8) -> Result<u64, Stop> {
        if (MMIO_BASE..MMIO_BASE + 0x1000).contains(&linear) {
            self.mmio_reads.push((linear, size));
            return Ok(mask(size));
        }
        if linear >= 1 << 40 {
            return Err(Stop::Memory {
                linear,
                why: "not mapped",
            });
        }
        let mut v = 0;
        for i in 0..u64::from(size) {
            v |= u64::from(*self.ram.get(&(linear + i)).unwrap_or(&0)) << (8 * i);
        }
        Ok(v)
    }
    fn write(&mut self, linear: u64, size: u8, value: u64) -> Result<(), Stop> {
        if (MMIO_BASE..MMIO_BASE + 0x1000).contains(&linear) {
            self.mmio_writes.push((linear, size, value));
            return Ok(());
        }
        if linear >= 1 << 40 {
            return Err(Stop::Memory {
                linear,
                why: "not mapped",
            });
        }
        for i in 0..u64::from(size) {
            self.ram.insert(linear + i, (value >> (8 * i)) as u8);
        }
        Ok(())
    }
}

fn run(bytes: &[u8], bits: u32, m: &mut Model) -> Result<Outcome, Stop> {
    let insn = decode(bytes, bits, 0x1000);
    execute(&insn, m)
}

fn model() -> Model {
    let mut m = Model {
        rflags: 0x2,
        ..Model::default()
    };
    m.gprs[Gpr::Rdi as usize] = MMIO_BASE + 0x10;
    m.gprs[Gpr::Rax as usize] = 0x1122_3344_5566_7788;
    m
}

#[test]
fn mov_loads_all_widths() {
    // mov eax,[rdi]: 32-bit loads zero-extend.
    let mut m = model();
    assert_eq!(run(&[0x8b, 0x07], 64, &mut m), Ok(Outcome::Done { len: 2 }));
    assert_eq!(m.gprs[0], 0xffff_ffff);
    assert_eq!(m.mmio_reads, [(MMIO_BASE + 0x10, 4)]);
    // mov al,[rdi] and mov ax,[rdi] merge; mov rax,[rdi] takes all 64.
    let mut m = model();
    run(&[0x8a, 0x07], 64, &mut m).unwrap();
    assert_eq!(m.gprs[0], 0x1122_3344_5566_77ff);
    run(&[0x66, 0x8b, 0x07], 64, &mut m).unwrap();
    assert_eq!(m.gprs[0], 0x1122_3344_5566_ffff);
    run(&[0x48, 0x8b, 0x07], 64, &mut m).unwrap();
    assert_eq!(m.gprs[0], u64::MAX);
    // mov ah,[rdi] writes bits 15:8.
    let mut m = model();
    run(&[0x8a, 0x27], 64, &mut m).unwrap();
    assert_eq!(m.gprs[0], 0x1122_3344_5566_ff88);
}

#[test]
fn mov_stores_register_and_immediate() {
    let mut m = model();
    run(&[0x89, 0x07], 64, &mut m).unwrap(); // mov [rdi],eax
    run(&[0x88, 0x27], 64, &mut m).unwrap(); // mov [rdi],ah
    run(&[0x48, 0xc7, 0x07, 0xf0, 0xff, 0xff, 0xff], 64, &mut m).unwrap(); // mov qword [rdi],-16
    run(&[0x66, 0xc7, 0x47, 0x04, 0x34, 0x12], 64, &mut m).unwrap(); // mov word [rdi+4],0x1234
    assert_eq!(
        m.mmio_writes,
        [
            (MMIO_BASE + 0x10, 4, 0x5566_7788),
            (MMIO_BASE + 0x10, 1, 0x77),
            (MMIO_BASE + 0x10, 8, 0xffff_ffff_ffff_fff0),
            (MMIO_BASE + 0x14, 2, 0x1234),
        ]
    );
}

#[test]
fn moffs_and_rip_relative() {
    // mov eax,[moffs64] (A1) and mov eax,[rip+disp32] (RIP = 0x1000, length 6).
    let mut m = model();
    let mut bytes = vec![0xa1];
    bytes.extend_from_slice(&(MMIO_BASE + 0x20).to_le_bytes());
    run(&bytes, 64, &mut m).unwrap();
    let rip = MMIO_BASE - 0x100;
    let disp = (MMIO_BASE + 0x30 - (rip + 6)) as u32;
    let mut bytes = vec![0x8b, 0x05];
    bytes.extend_from_slice(&disp.to_le_bytes());
    execute(&decode(&bytes, 64, rip), &mut m).unwrap();
    assert_eq!(m.mmio_reads, [(MMIO_BASE + 0x20, 4), (MMIO_BASE + 0x30, 4)]);
}

#[test]
fn movzx_movsx() {
    let mut m = model();
    run(&[0x0f, 0xb6, 0x07], 64, &mut m).unwrap(); // movzx eax, byte [rdi]
    assert_eq!(m.gprs[0], 0xff);
    run(&[0x48, 0x0f, 0xbf, 0x07], 64, &mut m).unwrap(); // movsx rax, word [rdi]
    assert_eq!(m.gprs[0], u64::MAX);
    m.gprs[0] = 0;
    run(&[0x48, 0x63, 0x07], 64, &mut m).unwrap(); // movsxd rax, dword [rdi]
    assert_eq!(m.gprs[0], u64::MAX);
    run(&[0x0f, 0xbe, 0x07], 64, &mut m).unwrap(); // movsx eax, byte [rdi]
    assert_eq!(m.gprs[0], 0xffff_ffff);
}

#[test]
fn read_modify_write_keeps_flags_right() {
    // or dword [rdi],1: all ones stays all ones, SF set, ZF clear, written back.
    let mut m = model();
    m.rflags = 0x2 | CF | OF;
    run(&[0x83, 0x0f, 0x01], 64, &mut m).unwrap();
    assert_eq!(m.mmio_writes, [(MMIO_BASE + 0x10, 4, 0xffff_ffff)]);
    assert_eq!(m.rflags & STATUS, SF | PF);
    // and dword [rdi],0: zero, ZF and PF.
    let mut m = model();
    run(&[0x83, 0x27, 0x00], 64, &mut m).unwrap();
    assert_eq!(m.mmio_writes, [(MMIO_BASE + 0x10, 4, 0)]);
    assert_eq!(m.rflags & STATUS, ZF | PF);
    // add dword [rdi],1: 0xffffffff + 1 carries to zero.
    let mut m = model();
    run(&[0x83, 0x07, 0x01], 64, &mut m).unwrap();
    assert_eq!(m.mmio_writes, [(MMIO_BASE + 0x10, 4, 0)]);
    assert_eq!(m.rflags & STATUS, CF | ZF | PF | AF);
    // test [rdi],eax and cmp eax,[rdi]: flags only, nothing written.
    let mut m = model();
    run(&[0x85, 0x07], 64, &mut m).unwrap();
    assert_eq!(m.rflags & STATUS, szp(0x5566_7788, 4));
    run(&[0x3b, 0x07], 64, &mut m).unwrap();
    assert_eq!(
        m.rflags & STATUS,
        sub_flags(0x5566_7788, 0xffff_ffff, false, 4).1
    );
    assert!(m.rflags & CF != 0);
    assert!(m.mmio_writes.is_empty());
    // sub eax,[rdi] writes the register.
    run(&[0x2b, 0x07], 64, &mut m).unwrap();
    assert_eq!(m.gprs[0], 0x5566_7789);
    // inc byte [rdi], neg dword [rdi], not word [rdi].
    let mut m = model();
    m.rflags = 0x2 | CF;
    run(&[0xfe, 0x07], 64, &mut m).unwrap();
    assert_eq!(m.rflags & STATUS, CF | ZF | PF | AF);
    run(&[0xf7, 0x1f], 64, &mut m).unwrap();
    assert_eq!(m.rflags & STATUS, CF | AF);
    run(&[0x66, 0xf7, 0x17], 64, &mut m).unwrap();
    assert_eq!(
        m.mmio_writes,
        [
            (MMIO_BASE + 0x10, 1, 0),
            (MMIO_BASE + 0x10, 4, 1),
            (MMIO_BASE + 0x10, 2, 0)
        ]
    );
}

#[test]
fn bit_test_sets_carry_only() {
    // bt dword [rdi+0x240],19 (as rustc emits for `reg & (1 << 19) != 0`).
    let mut m = model();
    m.rflags = 0x2 | ZF;
    run(
        &[0x0f, 0xba, 0xa7, 0x40, 0x02, 0x00, 0x00, 0x13],
        64,
        &mut m,
    )
    .unwrap();
    assert_eq!(m.rflags, 0x2 | ZF | CF);
    assert_eq!(m.mmio_reads, [(MMIO_BASE + 0x250, 4)]);
    // In RAM (zeros): CF clear.
    let mut m = model();
    m.rflags = 0x2 | CF;
    m.gprs[Gpr::Rdi as usize] = 0x3000;
    run(&[0x0f, 0xba, 0x27, 0x05], 64, &mut m).unwrap();
    assert_eq!(m.rflags, 0x2);
}

#[test]
fn xchg_swaps() {
    let mut m = model();
    run(&[0x87, 0x07], 64, &mut m).unwrap();
    assert_eq!(m.gprs[0], 0xffff_ffff);
    assert_eq!(m.mmio_writes, [(MMIO_BASE + 0x10, 4, 0x5566_7788)]);
}

#[test]
fn protected_and_real_mode_addressing() {
    // 32-bit: mov eax,[ebx+4] with DS based at 0x100 (linear = base + offset).
    let mut m = model();
    m.gprs[Gpr::Rbx as usize] = MMIO_BASE - 0x100;
    m.bases[Segment::Ds as usize] = 0x100;
    run(&[0x8b, 0x43, 0x04], 32, &mut m).unwrap();
    assert_eq!(m.mmio_reads, [(MMIO_BASE + 4, 4)]);
    assert_eq!(m.gprs[0], 0xffff_ffff);
    // 16-bit: mov ax,[bx] with DS base MMIO_BASE; 66 makes it mov eax.
    let mut m = model();
    m.gprs[Gpr::Rbx as usize] = 0x1_0008; // only BX counts
    m.bases[Segment::Ds as usize] = MMIO_BASE;
    run(&[0x8b, 0x07], 16, &mut m).unwrap();
    run(&[0x66, 0x8b, 0x07], 16, &mut m).unwrap();
    assert_eq!(m.mmio_reads, [(MMIO_BASE + 8, 2), (MMIO_BASE + 8, 4)]);
    // 64-bit mode ignores the DS base, not the FS base.
    let mut m = model();
    m.bases[Segment::Ds as usize] = 0x5000;
    m.bases[Segment::Fs as usize] = 0x10;
    m.gprs[Gpr::Rdi as usize] = MMIO_BASE;
    run(&[0x8b, 0x07], 64, &mut m).unwrap();
    run(&[0x64, 0x8b, 0x07], 64, &mut m).unwrap();
    assert_eq!(m.mmio_reads, [(MMIO_BASE, 4), (MMIO_BASE + 0x10, 4)]);
}

#[test]
fn string_moves() {
    // rep movsd from MMIO to RAM: 3 elements of all ones, RCX 0, RSI/RDI on.
    let mut m = model();
    m.gprs[Gpr::Rsi as usize] = MMIO_BASE;
    m.gprs[Gpr::Rdi as usize] = 0x2000;
    m.gprs[Gpr::Rcx as usize] = 3;
    assert_eq!(run(&[0xf3, 0xa5], 64, &mut m), Ok(Outcome::Done { len: 2 }));
    assert_eq!(m.gprs[Gpr::Rcx as usize], 0);
    assert_eq!(m.gprs[Gpr::Rsi as usize], MMIO_BASE + 12);
    assert_eq!(m.gprs[Gpr::Rdi as usize], 0x200c);
    assert_eq!(m.read(0x2008, 4), Ok(0xffff_ffff));
    // stosb backwards (DF) into MMIO.
    let mut m = model();
    m.rflags |= DF;
    run(&[0xaa], 64, &mut m).unwrap();
    assert_eq!(m.mmio_writes, [(MMIO_BASE + 0x10, 1, 0x88)]);
    assert_eq!(m.gprs[Gpr::Rdi as usize], MMIO_BASE + 0xf);
    // A long REP runs in batches: RIP stays until RCX reaches 0.
    let mut m = model();
    m.gprs[Gpr::Rdi as usize] = MMIO_BASE;
    m.gprs[Gpr::Rcx as usize] = REP_BATCH + 1;
    m.gprs[Gpr::Rsi as usize] = MMIO_BASE;
    assert_eq!(run(&[0xf3, 0xa4], 64, &mut m), Ok(Outcome::Again));
    assert_eq!(m.gprs[Gpr::Rcx as usize], 1);
    assert_eq!(run(&[0xf3, 0xa4], 64, &mut m), Ok(Outcome::Done { len: 2 }));
    assert_eq!(m.gprs[Gpr::Rcx as usize], 0);
    // rep with RCX 0 does nothing; a 32-bit address size counts ECX only.
    let mut m = model();
    m.gprs[Gpr::Rcx as usize] = 1 << 32;
    run(&[0x67, 0xf3, 0xaa], 64, &mut m).unwrap();
    assert!(m.mmio_writes.is_empty());
    // lodsw into AX.
    let mut m = model();
    m.gprs[Gpr::Rsi as usize] = MMIO_BASE;
    run(&[0x66, 0xad], 64, &mut m).unwrap();
    assert_eq!(m.gprs[0], 0x1122_3344_5566_ffff);
}

#[test]
fn what_is_not_emulated_says_so() {
    let mut m = model();
    // movdqu xmm0,[rdi]; cmpsb; add eax,ebx (no memory operand); push [rdi].
    for bytes in [
        &[0xf3, 0x0f, 0x6f, 0x07][..],
        &[0xa6],
        &[0x01, 0xd8],
        &[0xff, 0x37],
        &[0x8e, 0x07], // mov es,[rdi]
    ] {
        assert!(
            matches!(run(bytes, 64, &mut m), Err(Stop::Unsupported(_))),
            "{bytes:x?}"
        );
    }
    assert_eq!(run(&[0x0f, 0xff], 64, &mut m), Err(Stop::Undecodable));
    assert_eq!(run(&[], 64, &mut m), Err(Stop::Undecodable));
    // A failed access changes no register or flag.
    let mut m = model();
    m.gprs[Gpr::Rdi as usize] = 1 << 41;
    let before = m.clone();
    assert!(matches!(
        run(&[0x83, 0x07, 0x01], 64, &mut m),
        Err(Stop::Memory { .. })
    ));
    assert_eq!((m.gprs, m.rflags), (before.gprs, before.rflags));
}

/// Runs `insn` with `bits`-bit register operands on the host CPU with
/// RFLAGS' status flags `flags_in`: the result and the status flags after.
macro_rules! host_binary {
    ($name:ident, $insn:literal, $m:literal) => {
        fn $name(a: u64, b: u64, flags_in: u64) -> (u64, u64) {
            let mut a = a;
            let mut f = flags_in;
            // SAFETY: register-only arithmetic and a push/pop pair on the stack.
            unsafe {
                core::arch::asm!(
                    "push {f}",
                    "popfq",
                    concat!($insn, " {a:", $m, "}, {b:", $m, "}"),
                    "pushfq",
                    "pop {f}",
                    a = inout(reg) a,
                    b = in(reg) b,
                    f = inout(reg) f,
                );
            }
            (a, f)
        }
    };
}

macro_rules! host_unary {
    ($name:ident, $insn:literal, $m:literal) => {
        fn $name(a: u64, flags_in: u64) -> (u64, u64) {
            let mut a = a;
            let mut f = flags_in;
            // SAFETY: as in `host_binary`.
            unsafe {
                core::arch::asm!(
                    "push {f}",
                    "popfq",
                    concat!($insn, " {a:", $m, "}"),
                    "pushfq",
                    "pop {f}",
                    a = inout(reg) a,
                    f = inout(reg) f,
                );
            }
            (a, f)
        }
    };
}

macro_rules! host_all_sizes {
    ($mac:ident, $insn:literal, $n1:ident, $n2:ident, $n4:ident, $n8:ident) => {
        $mac!($n1, $insn, "l");
        $mac!($n2, $insn, "x");
        $mac!($n4, $insn, "e");
        $mac!($n8, $insn, "r");
    };
}

host_all_sizes!(host_binary, "add", add1, add2, add4, add8);
host_all_sizes!(host_binary, "adc", adc1, adc2, adc4, adc8);
host_all_sizes!(host_binary, "sub", sub1, sub2, sub4, sub8);
host_all_sizes!(host_binary, "sbb", sbb1, sbb2, sbb4, sbb8);
host_all_sizes!(host_binary, "and", and1, and2, and4, and8);
host_all_sizes!(host_binary, "or", or1, or2, or4, or8);
host_all_sizes!(host_binary, "xor", xor1, xor2, xor4, xor8);
host_all_sizes!(host_binary, "cmp", cmp1, cmp2, cmp4, cmp8);
host_all_sizes!(host_binary, "test", test1, test2, test4, test8);
host_all_sizes!(host_unary, "inc", inc1, inc2, inc4, inc8);
host_all_sizes!(host_unary, "dec", dec1, dec2, dec4, dec8);
host_all_sizes!(host_unary, "neg", neg1, neg2, neg4, neg8);
host_all_sizes!(host_unary, "not", not1, not2, not4, not8);

type HostBinary = fn(u64, u64, u64) -> (u64, u64);
type HostUnary = fn(u64, u64) -> (u64, u64);

const BINARY: [(Alu, [HostBinary; 4]); 9] = [
    (Alu::Add, [add1, add2, add4, add8]),
    (Alu::Adc, [adc1, adc2, adc4, adc8]),
    (Alu::Sub, [sub1, sub2, sub4, sub8]),
    (Alu::Sbb, [sbb1, sbb2, sbb4, sbb8]),
    (Alu::And, [and1, and2, and4, and8]),
    (Alu::Or, [or1, or2, or4, or8]),
    (Alu::Xor, [xor1, xor2, xor4, xor8]),
    (Alu::Cmp, [cmp1, cmp2, cmp4, cmp8]),
    (Alu::Test, [test1, test2, test4, test8]),
];

const UNARY: [(Unary, [HostUnary; 4]); 4] = [
    (Unary::Inc, [inc1, inc2, inc4, inc8]),
    (Unary::Dec, [dec1, dec2, dec4, dec8]),
    (Unary::Neg, [neg1, neg2, neg4, neg8]),
    (Unary::Not, [not1, not2, not4, not8]),
];

/// Operands that hit the edges (0, 1, sign bits, all ones) as often as
/// random ones.
fn edgy() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        Just(0u64),
        Just(1u64),
        Just(u64::MAX),
        Just(0x7f),
        Just(0x80),
        Just(0x7fff),
        Just(0x8000),
        Just(0x7fff_ffff),
        Just(0x8000_0000),
        Just(0x7fff_ffff_ffff_ffff),
        Just(0x8000_0000_0000_0000),
        Just(0x0f),
        Just(0x10),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The emulator's result and status flags equal the host CPU's, for
    /// every ALU operation and size (AF too: the host clears it for the
    /// logic operations, as the emulator does).
    #[test]
    fn alu_matches_the_cpu(a in edgy(), b in edgy(), flags in any::<u8>()) {
        let flags_in = 0x2 | (u64::from(flags) & STATUS);
        for (op, hosts) in BINARY {
            for (i, size) in [1u8, 2, 4, 8].into_iter().enumerate() {
                let (host_r, host_f) = hosts[i](a, b, flags_in);
                let (r, f) = alu(op, a, b, flags_in, size);
                let written = !matches!(op, Alu::Cmp | Alu::Test);
                if written {
                    prop_assert_eq!(r, host_r & mask(size), "{:?} size {}", op, size);
                }
                prop_assert_eq!(f & STATUS, host_f & STATUS, "{:?} size {} a {:#x} b {:#x}", op, size, a, b);
            }
        }
        for (op, hosts) in UNARY {
            for (i, size) in [1u8, 2, 4, 8].into_iter().enumerate() {
                let (host_r, host_f) = hosts[i](a, flags_in);
                let (r, f) = unary(op, a, flags_in, size);
                prop_assert_eq!(r, host_r & mask(size), "{:?} size {}", op, size);
                prop_assert_eq!(f & STATUS, host_f & STATUS, "{:?} size {} a {:#x}", op, size, a);
            }
        }
    }

    /// Random bytes in any mode never panic the decoder or the emulator;
    /// what completes is at most 15 bytes long.
    #[test]
    fn random_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..=16),
        mode in 0usize..3,
        gprs in any::<[u64; 16]>(),
        flags in any::<u64>(),
    ) {
        let bits = [16, 32, 64][mode];
        let mut m = Model { gprs, rflags: flags, ..Model::default() };
        m.bases = [0, 0, 0, 0, MMIO_BASE, 0];
        if let Ok(Outcome::Done { len }) = run(&bytes, bits, &mut m) {
            prop_assert!(len as usize <= MAX_INSTRUCTION && len as usize <= bytes.len());
        }
    }

    /// Random MMIO-shaped instructions: a random opcode byte after a ModRM
    /// of [rdi], in every mode, with prefixes.
    #[test]
    fn random_mmio_shapes_never_panic(
        prefix in prop_oneof![Just(None), Just(Some(0x66u8)), Just(Some(0xf3)), Just(Some(0x48)), Just(Some(0x67))],
        two_byte in any::<bool>(),
        opcode in any::<u8>(),
        modrm in prop_oneof![Just(0x07u8), Just(0x47), any::<u8>()],
        tail in any::<[u8; 8]>(),
        mode in 0usize..3,
    ) {
        let mut bytes = Vec::new();
        bytes.extend(prefix);
        if two_byte {
            bytes.push(0x0f);
        }
        bytes.push(opcode);
        bytes.push(modrm);
        bytes.extend_from_slice(&tail);
        let mut m = model();
        m.gprs[Gpr::Rcx as usize] = 3;
        m.gprs[Gpr::Rsi as usize] = MMIO_BASE;
        let _ = run(&bytes, [16, 32, 64][mode], &mut m);
    }
}

/// BT with a register bit offset reads the word the signed offset selects,
/// not the operand itself: XSA-195's test (offset 0xfffd000000000000 from
/// an operand just below 2^47) and small offsets both ways.
#[test]
fn bt_register_offset_selects_the_word() {
    // bt [rbx], rax (48 0f a3 03)
    let bytes = [0x48, 0x0f, 0xa3, 0x03];
    let mut m = Model::default();
    // Offset 65: bit 1 of the qword 8 bytes on, in RAM; set it there.
    m.gprs[Gpr::Rbx as usize] = 0x2000;
    m.gprs[Gpr::Rax as usize] = 65;
    m.ram.insert(0x2008, 0b10);
    run(&bytes, 64, &mut m).unwrap();
    assert_eq!(m.rflags & CF, CF);
    // Offset -63: bit 1 of the qword 8 bytes back, zero.
    m.gprs[Gpr::Rax as usize] = (-63i64) as u64;
    run(&bytes, 64, &mut m).unwrap();
    assert_eq!(m.rflags & CF, 0);
    // Reaching into MMIO from RAM: the read lands on the MMIO word.
    m.gprs[Gpr::Rbx as usize] = MMIO_BASE - 8;
    m.gprs[Gpr::Rax as usize] = 64 + 5;
    run(&bytes, 64, &mut m).unwrap();
    assert_eq!(m.mmio_reads.last(), Some(&(MMIO_BASE, 8)));
    assert_eq!(m.rflags & CF, CF);
    // XSA-195: the address wraps to (2^47 - 8) - ((−idx − 1) / 8 + 8 & !7).
    let mem = (1u64 << 47) - 8;
    let idx = 0xfffd_0000_0000_0000u64;
    let adjust = (8 + ((idx.wrapping_neg() - 1) >> 3)) & !7;
    m.gprs[Gpr::Rbx as usize] = mem;
    m.gprs[Gpr::Rax as usize] = idx;
    let err = run(&bytes, 64, &mut m).unwrap_err();
    assert_eq!(
        err,
        Stop::Memory {
            linear: mem.wrapping_sub(adjust),
            why: "not mapped"
        }
    );
}
