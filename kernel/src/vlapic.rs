//! The guest's local APIC in x2APIC mode, as far as a PVH guest uses it (Intel SDM Vol. 3A chapter 12).
//!
//! Registers are reached only through MSRs 0x800-0x8FF: `IA32_APIC_BASE`
//! reads with EXTD set, so Linux finds x2APIC enabled "by the BIOS" and never
//! touches the xAPIC page. Interrupts accepted here (self-IPIs, the timer)
//! go through IRR/ISR and need an EOI; the Xen callback vector does not
//! come through this model at all.

/// `IA32_APIC_BASE` as the guest reads it: 0xFEE00000, EN (bit 11), EXTD
/// (bit 10, x2APIC mode) and BSP (bit 8) (SDM 12.4.4, 12.12.1).
pub const APIC_BASE_VALUE: u64 = 0xfee0_0000 | (1 << 11) | (1 << 10) | (1 << 8);
/// Version register: version 0x14, 6 LVT entries (max LVT index 5), as Xen's vlapic.
const VERSION: u32 = 0x0005_0014;
/// The emulated APIC timer counts at 100 MHz before the divider (Xen's APIC_BUS_CYCLE_NS = 10).
pub const TIMER_HZ: u64 = 100_000_000;

const LVT_MASKED: u32 = 1 << 16;
const SVR_ENABLE: u32 = 1 << 8;

/// Why an access gets #GP (SDM 12.12.1.2: reserved or write-only registers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault;

/// What an MSR write asks the hypervisor to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    /// The timer was (re)programmed: its deadline in APIC-timer ns from now, or stopped.
    Timer(Option<u64>),
    /// An IPI to other CPUs, which a single-vCPU domain does not have.
    IpiToOthers,
}

#[derive(Clone, Debug)]
pub struct VLapic {
    id: u32,
    tpr: u32,
    svr: u32,
    /// LVT timer, thermal, PMC, LINT0, LINT1, error, CMCI.
    lvt: [u32; 7],
    esr: u32,
    timer_initial: u32,
    timer_divide: u32,
    irr: [u32; 8],
    isr: [u32; 8],
}

const LVT_TIMER: usize = 0;

fn bit(v: u8) -> (usize, u32) {
    (usize::from(v / 32), 1 << (v % 32))
}

fn highest(bits: &[u32; 8]) -> Option<u8> {
    (0..8)
        .rev()
        .find(|&i| bits[i] != 0)
        .map(|i| (i * 32 + 31 - bits[i].leading_zeros() as usize) as u8)
}

impl VLapic {
    /// The state after reset: software-disabled, every LVT masked (SDM 12.4.7.1).
    pub fn new(id: u32) -> Self {
        VLapic {
            id,
            tpr: 0,
            svr: 0xff,
            lvt: [LVT_MASKED; 7],
            esr: 0,
            timer_initial: 0,
            timer_divide: 0,
            irr: [0; 8],
            isr: [0; 8],
        }
    }

    /// The timer divider from the divide configuration register (SDM figure 12-10).
    fn divider(&self) -> u64 {
        let code = (self.timer_divide & 0b11) | ((self.timer_divide & 0b1000) >> 1);
        if code == 0b111 {
            1
        } else {
            2 << code
        }
    }

    /// Nanoseconds until a one-shot count of `count` expires.
    fn count_ns(&self, count: u32) -> u64 {
        // At most 2^32 counts of 128 ticks of 10 ns: 5.5e12 ns, but the
        // product on the way there (5.5e20) needs more than 64 bits.
        (u128::from(count) * u128::from(self.divider()) * 1_000_000_000 / u128::from(TIMER_HZ))
            as u64
    }

    /// Reads x2APIC register MSR `msr` (0x800-0x8FF).
    pub fn read(&self, msr: u32) -> Result<u64, Fault> {
        let v = match msr {
            0x802 => self.id,
            0x803 => VERSION,
            0x808 => self.tpr,
            0x80a => self
                .tpr
                .max(highest(&self.isr).map_or(0, |v| u32::from(v) & 0xf0)),
            // Logical ID in x2APIC mode: cluster in 31:16, one bit in 15:0 (SDM 12.12.10.2).
            0x80d => ((self.id >> 4) << 16) | (1 << (self.id & 0xf)),
            0x80f => self.svr,
            0x810..=0x817 => self.isr[(msr - 0x810) as usize],
            0x818..=0x81f => 0,
            0x820..=0x827 => self.irr[(msr - 0x820) as usize],
            0x828 => self.esr,
            0x82f => self.lvt[6],
            0x832..=0x837 => self.lvt[(msr - 0x832) as usize],
            0x838 => self.timer_initial,
            // The current count is not modelled down to the tick: 0 once programmed.
            0x839 => 0,
            0x83e => self.timer_divide,
            _ => return Err(Fault),
        };
        Ok(u64::from(v))
    }

    /// Writes x2APIC register MSR `msr`.
    pub fn write(&mut self, msr: u32, value: u64) -> Result<Effect, Fault> {
        let low = value as u32;
        match msr {
            0x808 => self.tpr = low & 0xff,
            // EOI: writing a non-zero value is a #GP in x2APIC mode (SDM 12.12.1.2).
            0x80b if low == 0 => {
                if let Some(v) = highest(&self.isr) {
                    let (i, b) = bit(v);
                    self.isr[i] &= !b;
                }
            }
            0x80f => {
                self.svr = low & 0x13ff;
                if self.svr & SVR_ENABLE == 0 {
                    // Software disable masks every LVT (SDM 12.4.7.2).
                    self.lvt.iter_mut().for_each(|l| *l |= LVT_MASKED);
                }
            }
            0x828 => self.esr = 0,
            0x82f => self.lvt[6] = low,
            0x830 => return Ok(self.icr(value)),
            0x832..=0x837 => {
                let i = (msr - 0x832) as usize;
                let masked = if self.svr & SVR_ENABLE == 0 {
                    LVT_MASKED
                } else {
                    0
                };
                self.lvt[i] = low | masked;
            }
            0x838 => {
                self.timer_initial = low;
                return Ok(Effect::Timer((low != 0).then(|| self.count_ns(low))));
            }
            0x83e => self.timer_divide = low & 0b1011,
            0x83f => self.accept((low & 0xff) as u8),
            _ => return Err(Fault),
        }
        Ok(Effect::None)
    }

    /// ICR in x2APIC mode: one 64-bit write, destination in 63:32 (SDM 12.12.9).
    fn icr(&mut self, value: u64) -> Effect {
        let vector = value as u8;
        let delivery = (value >> 8) & 0b111;
        let shorthand = (value >> 18) & 0b11;
        let dest = (value >> 32) as u32;
        let to_self = match shorthand {
            0b01 | 0b10 => true,
            0b11 => false,
            _ => dest == self.id,
        };
        // Fixed delivery to ourselves is the self-IPI Linux uses (irq_work).
        if to_self && delivery == 0 {
            self.accept(vector);
        }
        if shorthand >= 0b10 || (shorthand == 0 && dest != self.id) {
            Effect::IpiToOthers
        } else {
            Effect::None
        }
    }

    /// An interrupt for the guest arrives at this APIC (vectors below 16 are illegal).
    pub fn accept(&mut self, vector: u8) {
        if vector < 16 {
            self.esr |= 1 << 6; // "send illegal vector"
            return;
        }
        let (i, b) = bit(vector);
        self.irr[i] |= b;
    }

    /// The timer's one-shot count ran out: its LVT vector, unless masked.
    pub fn timer_expired(&mut self) {
        let lvt = self.lvt[LVT_TIMER];
        if lvt & LVT_MASKED == 0 {
            self.accept(lvt as u8);
        }
    }

    /// The vector to inject now, if one in IRR outranks the processor priority
    /// (SDM 12.8.3); `take` moves it to ISR.
    pub fn deliverable(&self) -> Option<u8> {
        let v = highest(&self.irr)?;
        let ppr = self.read(0x80a).unwrap_or(0) as u32;
        (self.svr & SVR_ENABLE != 0 && u32::from(v) & 0xf0 > ppr & 0xf0).then_some(v)
    }

    /// Marks `vector` as being serviced (after injecting it).
    pub fn take(&mut self, vector: u8) {
        let (i, b) = bit(vector);
        self.irr[i] &= !b;
        self.isr[i] |= b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> VLapic {
        let mut a = VLapic::new(0);
        a.write(0x80f, 0x1ff).unwrap();
        a
    }

    #[test]
    fn identity_registers() {
        let a = VLapic::new(3);
        assert_eq!(a.read(0x802), Ok(3));
        assert_eq!(a.read(0x803), Ok(0x0005_0014));
        assert_eq!(a.read(0x80d), Ok(1 << 3));
        assert_eq!(a.read(0x80b), Err(Fault)); // EOI is write-only
        assert_eq!(a.read(0x83f), Err(Fault)); // SELF_IPI is write-only
        assert_eq!(a.read(0x8ff), Err(Fault));
    }

    #[test]
    fn self_ipi_irr_isr_eoi() {
        let mut a = enabled();
        a.write(0x83f, 0xf6).unwrap();
        assert_eq!(a.deliverable(), Some(0xf6));
        a.take(0xf6);
        assert_eq!(a.deliverable(), None);
        assert_eq!(a.read(0x817), Ok(1 << (0xf6 % 32)));
        assert_eq!(a.write(0x80b, 1), Err(Fault));
        a.write(0x80b, 0).unwrap();
        assert_eq!(a.read(0x817), Ok(0));
    }

    #[test]
    fn priority_blocks_lower_vectors() {
        let mut a = enabled();
        a.write(0x808, 0x50).unwrap();
        a.accept(0x41);
        assert_eq!(a.deliverable(), None);
        a.accept(0x61);
        assert_eq!(a.deliverable(), Some(0x61));
        a.take(0x61);
        // 0x41 still waits: in service 0x61 raises the PPR further.
        assert_eq!(a.deliverable(), None);
    }

    #[test]
    fn disabled_apic_delivers_nothing_and_masks_lvts() {
        let mut a = VLapic::new(0);
        a.write(0x832, 0xec).unwrap();
        assert_eq!(a.read(0x832), Ok(u64::from(0xec | LVT_MASKED)));
        a.accept(0x80);
        assert_eq!(a.deliverable(), None);
    }

    #[test]
    fn icr_self_and_others() {
        let mut a = enabled();
        assert_eq!(a.write(0x830, 0xf6), Ok(Effect::None)); // fixed, dest 0 = self
        assert_eq!(a.deliverable(), Some(0xf6));
        assert_eq!(a.write(0x830, (0b11 << 18) | 0xf8), Ok(Effect::IpiToOthers));
        assert_eq!(a.write(0x830, (1u64 << 32) | 0xf8), Ok(Effect::IpiToOthers));
    }

    #[test]
    fn timer_longest_count_does_not_overflow() {
        // Divide by 128 with the initial count all ones: 2^32-1 counts of
        // 1.28 us, 5497.56 s (this overflowed 64 bits and fired 37x early).
        let mut a = VLapic::new(0);
        a.write(0x83e, 0b1010).unwrap();
        assert_eq!(
            a.write(0x838, 0xffff_ffff),
            Ok(Effect::Timer(Some(0xffff_ffff * 1280)))
        );
    }

    #[test]
    fn timer_one_shot() {
        let mut a = enabled();
        a.write(0x83e, 0b1011).unwrap(); // divide by 1
        a.write(0x832, 0xec).unwrap();
        assert_eq!(a.write(0x838, 100), Ok(Effect::Timer(Some(1000))));
        a.write(0x83e, 0b0011).unwrap(); // divide by 16
        assert_eq!(a.write(0x838, 100), Ok(Effect::Timer(Some(16_000))));
        a.timer_expired();
        assert_eq!(a.deliverable(), Some(0xec));
        assert_eq!(a.write(0x838, 0), Ok(Effect::Timer(None)));
    }
}
