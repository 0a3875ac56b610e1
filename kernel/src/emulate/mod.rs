//! Emulation of the guest instruction whose data access hit guest-physical space that is not RAM (MMIO): decoded by iced-x86, carried out on a register file and a bus.
//!
//! Xen emulates every instruction that faults on an MMIO page
//! (xen/arch/x86/hvm/hvm.c `hvm_hap_nested_page_fault` → `handle_mmio`);
//! this module carries out the forms compilers emit for device registers
//! (Intel SDM Vol. 2): MOV to and from registers and immediates (and the
//! moffs forms), MOVZX/MOVSX/MOVSXD, the ALU forms ADD/OR/ADC/SBB/AND/SUB/XOR
//! with their arithmetic flags, CMP and TEST, BT with an immediate,
//! INC/DEC/NOT/NEG, XCHG, and the
//! string moves MOVS/STOS/LODS with or without REP. Anything else is
//! `Stop::Unsupported`, which the caller turns into a precise reason to end
//! the domain. Pure logic: the caller's `Machine` supplies registers and
//! performs each access, page walk and device dispatch included.

use iced_x86::{Decoder, DecoderOptions, Instruction, MemorySize, Mnemonic, OpKind, Register};
use vcpu::{Gpr, Segment};

#[cfg(test)]
mod tests;

/// The longest x86 instruction (SDM Vol. 2A 2.1).
pub const MAX_INSTRUCTION: usize = 15;

/// RFLAGS bits the arithmetic instructions write (SDM Vol. 1 3.4.3.1).
pub const CF: u64 = 1 << 0;
pub const PF: u64 = 1 << 2;
pub const AF: u64 = 1 << 4;
pub const ZF: u64 = 1 << 6;
pub const SF: u64 = 1 << 7;
pub const DF: u64 = 1 << 10;
pub const OF: u64 = 1 << 11;
/// The six status flags together.
pub const STATUS: u64 = CF | PF | AF | ZF | SF | OF;

/// REP string instructions carry out at most this many elements per exit;
/// the rest run when the guest executes the instruction again (RIP is not
/// advanced), so a huge RCX cannot hold the hypervisor.
pub const REP_BATCH: u64 = 256;

/// Why an instruction was not carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The bytes are no valid instruction in this mode.
    Undecodable,
    /// A valid instruction this emulator does not carry out (or this form
    /// of it, e.g. without a memory operand).
    Unsupported(Mnemonic),
    /// The machine refused an access: `why` at guest-linear `linear`.
    Memory { linear: u64, why: &'static str },
}

/// How an emulated instruction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done: RIP moves past its `len` bytes.
    Done { len: u64 },
    /// A REP string instruction with elements left: RIP stays, so the guest
    /// executes it again (and interrupts get their chance in between).
    Again,
}

/// The vCPU and memory an instruction runs against.
pub trait Machine {
    fn gpr(&self, reg: Gpr) -> u64;
    fn set_gpr(&mut self, reg: Gpr, value: u64);
    fn rflags(&self) -> u64;
    fn set_rflags(&mut self, value: u64);
    fn segment_base(&self, seg: Segment) -> u64;
    /// Reads `size` (1, 2, 4 or 8) bytes at guest-linear `linear`, little-endian.
    fn read(&mut self, linear: u64, size: u8) -> Result<u64, Stop>;
    /// Writes the low `size` bytes of `value` at guest-linear `linear`.
    fn write(&mut self, linear: u64, size: u8, value: u64) -> Result<(), Stop>;
}

/// Decodes the instruction in `bytes` at `rip` for code of `bits` (16, 32
/// or 64); RIP-relative operands resolve against `rip`.
pub fn decode(bytes: &[u8], bits: u32, rip: u64) -> Instruction {
    let bits = match bits {
        16 | 32 => bits,
        _ => 64,
    };
    let mut decoder = Decoder::with_ip(bits, bytes, rip, DecoderOptions::NONE);
    decoder.decode()
}

fn mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

fn sign_bit(size: u8) -> u64 {
    1 << (u32::from(size) * 8 - 1)
}

fn sign_extend(value: u64, size: u8) -> u64 {
    match size {
        1 => value as u8 as i8 as i64 as u64,
        2 => value as u16 as i16 as i64 as u64,
        4 => value as u32 as i32 as i64 as u64,
        _ => value,
    }
}

/// A general-purpose register operand: its GPR, width in bytes, and
/// whether it is one of AH, CH, DH, BH (bits 15:8).
fn gpr_operand(reg: Register) -> Option<(Gpr, u8, bool)> {
    let n = reg as u32;
    let (index, size, high) = match n {
        // AL, CL, DL, BL, then AH, CH, DH, BH, then SPL..R15L (iced-x86's order).
        1..=4 => (n - 1, 1, false),
        5..=8 => (n - 5, 1, true),
        9..=20 => (n - 5, 1, false),
        21..=36 => (n - 21, 2, false),
        37..=52 => (n - 37, 4, false),
        53..=68 => (n - 53, 8, false),
        _ => return None,
    };
    Some((Gpr::ALL[index as usize], size, high))
}

fn read_reg(m: &dyn Machine, reg: Register) -> Option<(u64, u8)> {
    let (gpr, size, high) = gpr_operand(reg)?;
    let full = m.gpr(gpr);
    let value = if high { full >> 8 } else { full };
    Some((value & mask(size), size))
}

/// Writes a register as the CPU does: 8- and 16-bit writes keep the other
/// bits, 32-bit writes zero the upper half (SDM Vol. 1 3.4.1.1).
fn write_reg(m: &mut dyn Machine, reg: Register, value: u64) -> Option<()> {
    let (gpr, size, high) = gpr_operand(reg)?;
    let full = m.gpr(gpr);
    let new = match (size, high) {
        (1, true) => (full & !0xff00) | ((value & 0xff) << 8),
        (1, false) => (full & !0xff) | (value & 0xff),
        (2, _) => (full & !0xffff) | (value & 0xffff),
        (4, _) => value & 0xffff_ffff,
        _ => value,
    };
    m.set_gpr(gpr, new);
    Some(())
}

/// Bytes of a scalar memory operand.
fn memory_bytes(size: MemorySize) -> Option<u8> {
    Some(match size {
        MemorySize::UInt8 | MemorySize::Int8 => 1,
        MemorySize::UInt16 | MemorySize::Int16 | MemorySize::WordOffset => 2,
        MemorySize::UInt32 | MemorySize::Int32 | MemorySize::DwordOffset => 4,
        MemorySize::UInt64 | MemorySize::Int64 | MemorySize::QwordOffset => 8,
        _ => return None,
    })
}

fn segment_of(reg: Register) -> Option<Segment> {
    Some(match reg {
        Register::ES => Segment::Es,
        Register::CS => Segment::Cs,
        Register::SS => Segment::Ss,
        Register::DS => Segment::Ds,
        Register::FS => Segment::Fs,
        Register::GS => Segment::Gs,
        _ => return None,
    })
}

/// The value iced-x86 asks for while forming an address: a register, or a
/// segment base (0 for ES, CS, SS, DS in 64-bit mode, SDM Vol. 3A 3.4.4).
fn address_register(m: &dyn Machine, reg: Register, long: bool) -> Option<u64> {
    if let Some(seg) = segment_of(reg) {
        let flat = long && !matches!(seg, Segment::Fs | Segment::Gs);
        return Some(if flat { 0 } else { m.segment_base(seg) });
    }
    read_reg(m, reg).map(|(v, _)| v)
}

/// The guest-linear address of memory operand `op`: 32 bits wide outside
/// 64-bit mode.
fn linear(m: &dyn Machine, insn: &Instruction, op: u32) -> Option<u64> {
    let long = insn.code_size() == iced_x86::CodeSize::Code64;
    let va = insn.virtual_address(op, 0, |reg, _, _| address_register(m, reg, long))?;
    Some(if long { va } else { va & 0xffff_ffff })
}

/// Where an operand comes from.
enum Operand {
    Memory { linear: u64, size: u8 },
    Reg(Register),
    Imm(u64),
}

fn operand(m: &dyn Machine, insn: &Instruction, op: u32) -> Option<Operand> {
    match insn.op_kind(op) {
        OpKind::Memory => Some(Operand::Memory {
            linear: linear(m, insn, op)?,
            size: memory_bytes(insn.memory_size())?,
        }),
        OpKind::Register => {
            let reg = insn.op_register(op);
            gpr_operand(reg)?;
            Some(Operand::Reg(reg))
        }
        OpKind::Immediate8
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate64
        | OpKind::Immediate8to16
        | OpKind::Immediate8to32
        | OpKind::Immediate8to64
        | OpKind::Immediate32to64 => Some(Operand::Imm(insn.immediate(op))),
        _ => None,
    }
}

/// The two-operand ALU operations (SDM Vol. 2 ADD, OR, ADC, SBB, AND, SUB, XOR, CMP, TEST).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alu {
    Add,
    Or,
    Adc,
    Sbb,
    And,
    Sub,
    Xor,
    Cmp,
    Test,
}

fn parity(value: u64) -> u64 {
    if (value as u8).count_ones().is_multiple_of(2) {
        PF
    } else {
        0
    }
}

/// SF, ZF and PF of a `size`-byte result.
fn szp(result: u64, size: u8) -> u64 {
    let mut f = parity(result);
    if result & mask(size) == 0 {
        f |= ZF;
    }
    if result & sign_bit(size) != 0 {
        f |= SF;
    }
    f
}

/// `a + b + carry` on `size` bytes: the result and its six status flags.
pub fn add_flags(a: u64, b: u64, carry: bool, size: u8) -> (u64, u64) {
    let m = mask(size);
    let (a, b) = (a & m, b & m);
    let wide = u128::from(a) + u128::from(b) + u128::from(carry);
    let r = (wide as u64) & m;
    let mut f = szp(r, size);
    if wide > u128::from(m) {
        f |= CF;
    }
    if (a ^ r) & (b ^ r) & sign_bit(size) != 0 {
        f |= OF;
    }
    if (a ^ b ^ r) & 0x10 != 0 {
        f |= AF;
    }
    (r, f)
}

/// `a - b - borrow` on `size` bytes: the result and its six status flags.
pub fn sub_flags(a: u64, b: u64, borrow: bool, size: u8) -> (u64, u64) {
    let m = mask(size);
    let (a, b) = (a & m, b & m);
    let r = a.wrapping_sub(b).wrapping_sub(u64::from(borrow)) & m;
    let mut f = szp(r, size);
    if u128::from(a) < u128::from(b) + u128::from(borrow) {
        f |= CF;
    }
    if (a ^ b) & (a ^ r) & sign_bit(size) != 0 {
        f |= OF;
    }
    if (a ^ b ^ r) & 0x10 != 0 {
        f |= AF;
    }
    (r, f)
}

/// One ALU operation: the result and the new RFLAGS (status flags replaced;
/// AND/OR/XOR/TEST clear CF and OF, and AF, which the SDM leaves undefined
/// and which current Intel and AMD CPUs clear).
pub fn alu(op: Alu, a: u64, b: u64, rflags: u64, size: u8) -> (u64, u64) {
    let carry = rflags & CF != 0;
    let (r, f) = match op {
        Alu::Add => add_flags(a, b, false, size),
        Alu::Adc => add_flags(a, b, carry, size),
        Alu::Sub | Alu::Cmp => sub_flags(a, b, false, size),
        Alu::Sbb => sub_flags(a, b, carry, size),
        Alu::And | Alu::Test => {
            let r = a & b & mask(size);
            (r, szp(r, size))
        }
        Alu::Or => {
            let r = (a | b) & mask(size);
            (r, szp(r, size))
        }
        Alu::Xor => {
            let r = (a ^ b) & mask(size);
            (r, szp(r, size))
        }
    };
    (r, (rflags & !STATUS) | f)
}

/// The one-operand read-modify-write operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unary {
    Inc,
    Dec,
    Not,
    Neg,
}

/// One unary operation: the result and the new RFLAGS (INC/DEC keep CF,
/// NOT changes no flag, NEG sets CF unless the operand is 0).
pub fn unary(op: Unary, a: u64, rflags: u64, size: u8) -> (u64, u64) {
    match op {
        Unary::Inc => {
            let (r, f) = add_flags(a, 1, false, size);
            (r, (rflags & !STATUS) | (f & !CF) | (rflags & CF))
        }
        Unary::Dec => {
            let (r, f) = sub_flags(a, 1, false, size);
            (r, (rflags & !STATUS) | (f & !CF) | (rflags & CF))
        }
        Unary::Not => (!a & mask(size), rflags),
        Unary::Neg => {
            let (r, f) = sub_flags(0, a, false, size);
            (r, (rflags & !STATUS) | f)
        }
    }
}

fn alu_op(mnemonic: Mnemonic) -> Option<Alu> {
    Some(match mnemonic {
        Mnemonic::Add => Alu::Add,
        Mnemonic::Or => Alu::Or,
        Mnemonic::Adc => Alu::Adc,
        Mnemonic::Sbb => Alu::Sbb,
        Mnemonic::And => Alu::And,
        Mnemonic::Sub => Alu::Sub,
        Mnemonic::Xor => Alu::Xor,
        Mnemonic::Cmp => Alu::Cmp,
        Mnemonic::Test => Alu::Test,
        _ => return None,
    })
}

fn unary_op(mnemonic: Mnemonic) -> Option<Unary> {
    Some(match mnemonic {
        Mnemonic::Inc => Unary::Inc,
        Mnemonic::Dec => Unary::Dec,
        Mnemonic::Not => Unary::Not,
        Mnemonic::Neg => Unary::Neg,
        _ => return None,
    })
}

/// Carries out `insn` against `m`. Registers and RFLAGS change only if the
/// instruction completes (a failed access leaves them as they were, except
/// the elements a REP string instruction already moved, as on hardware).
pub fn execute(insn: &Instruction, m: &mut dyn Machine) -> Result<Outcome, Stop> {
    if insn.is_invalid() {
        return Err(Stop::Undecodable);
    }
    let unsupported = Stop::Unsupported(insn.mnemonic());
    let done = Outcome::Done {
        len: insn.len() as u64,
    };
    if is_string(insn) {
        return string(insn, m).ok_or(unsupported)?;
    }
    let mnemonic = insn.mnemonic();
    let count = insn.op_count();
    let op0 = if count >= 1 {
        operand(m, insn, 0).ok_or(unsupported)?
    } else {
        return Err(unsupported);
    };
    let op1 = if count >= 2 {
        Some(operand(m, insn, 1).ok_or(unsupported)?)
    } else {
        None
    };
    if count > 2 {
        return Err(unsupported);
    }
    match (mnemonic, op0, op1) {
        (Mnemonic::Mov, Operand::Memory { linear, size }, Some(src)) => {
            let value = match src {
                Operand::Reg(reg) => read_reg(m, reg).ok_or(unsupported)?.0,
                Operand::Imm(v) => v,
                Operand::Memory { .. } => return Err(unsupported),
            };
            m.write(linear, size, value & mask(size))?;
        }
        (Mnemonic::Mov, Operand::Reg(reg), Some(Operand::Memory { linear, size })) => {
            let value = m.read(linear, size)?;
            write_reg(m, reg, value).ok_or(unsupported)?;
        }
        (
            Mnemonic::Movzx | Mnemonic::Movsx | Mnemonic::Movsxd,
            Operand::Reg(reg),
            Some(Operand::Memory { linear, size }),
        ) => {
            let value = m.read(linear, size)?;
            let value = if mnemonic == Mnemonic::Movzx {
                value
            } else {
                sign_extend(value, size)
            };
            write_reg(m, reg, value).ok_or(unsupported)?;
        }
        (Mnemonic::Xchg, Operand::Memory { linear, size }, Some(Operand::Reg(reg)))
        | (Mnemonic::Xchg, Operand::Reg(reg), Some(Operand::Memory { linear, size })) => {
            let old = m.read(linear, size)?;
            let value = read_reg(m, reg).ok_or(unsupported)?.0;
            m.write(linear, size, value)?;
            write_reg(m, reg, old).ok_or(unsupported)?;
        }
        (mn, Operand::Memory { linear, size }, Some(src)) if alu_op(mn).is_some() => {
            let op = alu_op(mn).ok_or(unsupported)?;
            let b = match src {
                Operand::Reg(reg) => read_reg(m, reg).ok_or(unsupported)?.0,
                Operand::Imm(v) => v,
                Operand::Memory { .. } => return Err(unsupported),
            };
            let a = m.read(linear, size)?;
            let (r, flags) = alu(op, a, b, m.rflags(), size);
            if !matches!(op, Alu::Cmp | Alu::Test) {
                m.write(linear, size, r)?;
            }
            m.set_rflags(flags);
        }
        (mn, Operand::Reg(reg), Some(Operand::Memory { linear, size })) if alu_op(mn).is_some() => {
            let op = alu_op(mn).ok_or(unsupported)?;
            let a = read_reg(m, reg).ok_or(unsupported)?.0;
            let b = m.read(linear, size)?;
            let (r, flags) = alu(op, a, b, m.rflags(), size);
            if !matches!(op, Alu::Cmp | Alu::Test) {
                write_reg(m, reg, r).ok_or(unsupported)?;
            }
            m.set_rflags(flags);
        }
        // BT m, imm8 (SDM Vol. 2A BT): CF = the bit, the offset taken modulo
        // the operand size; the other status flags keep their values (ZF is
        // unaffected, the rest undefined).
        (Mnemonic::Bt, Operand::Memory { linear, size }, Some(Operand::Imm(offset))) => {
            let value = m.read(linear, size)?;
            let bit = (value >> (offset % (u64::from(size) * 8))) & 1;
            m.set_rflags((m.rflags() & !CF) | if bit != 0 { CF } else { 0 });
        }
        // BT m, reg: the register is a signed bit offset from the operand,
        // reaching any operand-sized word in ±2^(n-1) bits (SDM Vol. 2A BT,
        // "bit base"): the word at linear + (offset SAR log2(n)) * n/8,
        // wrapping in the address space (64 bits, or 32 outside 64-bit
        // mode). XSA-195 was Xen's emulator getting this adjustment wrong.
        (Mnemonic::Bt, Operand::Memory { linear, size }, Some(Operand::Reg(reg))) => {
            let (offset, reg_size) = read_reg(m, reg).ok_or(unsupported)?;
            let offset = sign_extend(offset, reg_size) as i64;
            let bits = i64::from(size) * 8;
            let words = offset >> bits.trailing_zeros();
            let address = linear.wrapping_add((words * i64::from(size)) as u64);
            let address = if insn.code_size() == iced_x86::CodeSize::Code64 {
                address
            } else {
                address & 0xffff_ffff
            };
            let value = m.read(address, size)?;
            let bit = (value >> (offset & (bits - 1))) & 1;
            m.set_rflags((m.rflags() & !CF) | if bit != 0 { CF } else { 0 });
        }
        (mn, Operand::Memory { linear, size }, None) if unary_op(mn).is_some() => {
            let op = unary_op(mn).ok_or(unsupported)?;
            let a = m.read(linear, size)?;
            let (r, flags) = unary(op, a, m.rflags(), size);
            m.write(linear, size, r)?;
            m.set_rflags(flags);
        }
        _ => return Err(unsupported),
    }
    Ok(done)
}

fn is_string(insn: &Instruction) -> bool {
    (0..insn.op_count()).any(|op| {
        matches!(
            insn.op_kind(op),
            OpKind::MemorySegSI
                | OpKind::MemorySegESI
                | OpKind::MemorySegRSI
                | OpKind::MemoryESDI
                | OpKind::MemoryESEDI
                | OpKind::MemoryESRDI
        )
    })
}

/// The address size of a string instruction's operands, from their kind.
fn string_address_size(kind: OpKind) -> Option<u8> {
    Some(match kind {
        OpKind::MemorySegSI | OpKind::MemoryESDI => 2,
        OpKind::MemorySegESI | OpKind::MemoryESEDI => 4,
        OpKind::MemorySegRSI | OpKind::MemoryESRDI => 8,
        _ => return None,
    })
}

/// Sets an index or count register as an instruction of `address` bytes'
/// address size does: 16 keeps the upper bits, 32 zero-extends.
fn set_sized(m: &mut dyn Machine, gpr: Gpr, value: u64, address: u8) {
    let old = m.gpr(gpr);
    let new = match address {
        2 => (old & !0xffff) | (value & 0xffff),
        4 => value & 0xffff_ffff,
        _ => value,
    };
    m.set_gpr(gpr, new);
}

/// MOVS, STOS and LODS, with or without REP (SDM Vol. 2B MOVS, STOS, LODS,
/// REP): at most `REP_BATCH` elements per call. `None` for any other string
/// instruction (CMPS, SCAS, INS, OUTS) or form.
fn string(insn: &Instruction, m: &mut dyn Machine) -> Option<Result<Outcome, Stop>> {
    let long = insn.code_size() == iced_x86::CodeSize::Code64;
    let mnemonic = insn.mnemonic();
    let (kind, size) = match mnemonic {
        Mnemonic::Movsb | Mnemonic::Movsw | Mnemonic::Movsd | Mnemonic::Movsq => {
            (0, memory_bytes(insn.memory_size())?)
        }
        Mnemonic::Stosb | Mnemonic::Stosw | Mnemonic::Stosd | Mnemonic::Stosq => {
            (1, gpr_operand(insn.op_register(1))?.1)
        }
        Mnemonic::Lodsb | Mnemonic::Lodsw | Mnemonic::Lodsd | Mnemonic::Lodsq => {
            (2, gpr_operand(insn.op_register(0))?.1)
        }
        _ => return None,
    };
    let address = (0..insn.op_count()).find_map(|op| string_address_size(insn.op_kind(op)))?;
    let amask = mask(address);
    let rep = insn.has_rep_prefix() || insn.has_repne_prefix();
    let step = if m.rflags() & DF != 0 {
        (size as u64).wrapping_neg()
    } else {
        size as u64
    };
    let base = |m: &dyn Machine, reg: Register| address_register(m, reg, long).unwrap_or(0);
    let linear = |b: u64, offset: u64| {
        let l = b.wrapping_add(offset & amask);
        if long {
            l
        } else {
            l & 0xffff_ffff
        }
    };
    let mut elements = 0;
    loop {
        if rep {
            if m.gpr(Gpr::Rcx) & amask == 0 {
                break;
            }
            if elements == REP_BATCH {
                return Some(Ok(Outcome::Again));
            }
        }
        let si = m.gpr(Gpr::Rsi);
        let di = m.gpr(Gpr::Rdi);
        let src = linear(base(m, insn.memory_segment()), si);
        let dst = linear(base(m, Register::ES), di);
        let result = match kind {
            0 => m
                .read(src, size)
                .and_then(|v| m.write(dst, size, v))
                .map(|()| {
                    set_sized(m, Gpr::Rsi, si.wrapping_add(step), address);
                    set_sized(m, Gpr::Rdi, di.wrapping_add(step), address);
                }),
            1 => {
                let v = m.gpr(Gpr::Rax) & mask(size);
                m.write(dst, size, v)
                    .map(|()| set_sized(m, Gpr::Rdi, di.wrapping_add(step), address))
            }
            _ => m.read(src, size).map(|v| {
                let _ = write_reg(m, insn.op_register(0), v);
                set_sized(m, Gpr::Rsi, si.wrapping_add(step), address);
            }),
        };
        if let Err(stop) = result {
            return Some(Err(stop));
        }
        elements += 1;
        if !rep {
            break;
        }
        let rcx = m.gpr(Gpr::Rcx);
        set_sized(m, Gpr::Rcx, rcx.wrapping_sub(1), address);
    }
    Some(Ok(Outcome::Done {
        len: insn.len() as u64,
    }))
}
