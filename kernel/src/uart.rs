//! 16550 UART on a legacy COM port, polled (PC16550D data sheet).

use x86::io::{inb, outb};

pub const COM1: u16 = 0x3f8;
pub const COM2: u16 = 0x2f8;

// Register offsets from the port base.
const DATA: u16 = 0;
const IER: u16 = 1;
const FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const LSR_DATA_READY: u8 = 1 << 0;
const LSR_THR_EMPTY: u8 = 1 << 5;
const LSR_TRANSMITTER_EMPTY: u8 = 1 << 6;
/// Bound on the drain wait: at 115200 baud a 16-byte FIFO empties in under
/// 2 ms, far fewer polls than this.
const DRAIN_POLLS: u32 = 1_000_000;

pub struct Uart {
    base: u16,
}

impl Uart {
    pub const fn new(base: u16) -> Self {
        Uart { base }
    }

    /// 115200 baud, 8N1, FIFOs on, no interrupts.
    pub fn init(&self) {
        for (reg, value) in [
            (IER, 0x00),
            (LCR, 0x80), // DLAB: the next two writes set the divisor
            (DATA, 0x01),
            (IER, 0x00),
            (LCR, 0x03),
            (FCR, 0xc7),
            (MCR, 0x03),
        ] {
            self.out(reg, value);
        }
    }

    /// Waits for room in the transmitter. A missing UART reads LSR as 0xff,
    /// so writes to an absent port never hang.
    pub fn write_byte(&self, byte: u8) {
        while self.inp(LSR) & LSR_THR_EMPTY == 0 {
            core::hint::spin_loop();
        }
        self.out(DATA, byte);
    }

    /// Whether the transmitter takes a byte now, without waiting.
    pub fn ready(&self) -> bool {
        self.inp(LSR) & LSR_THR_EMPTY != 0
    }

    /// A received byte, if one is waiting. An absent UART reads LSR as 0xff,
    /// which would look like endless input: its data register reads 0xff too,
    /// and such bytes are dropped by the caller's filter.
    pub fn try_read_byte(&self) -> Option<u8> {
        let lsr = self.inp(LSR);
        (lsr != 0xff && lsr & LSR_DATA_READY != 0).then(|| self.inp(DATA))
    }

    /// Waits until the last byte has left the shift register (LSR.TEMT), so a
    /// machine switched off right after still shows it. Bounded, for absent UARTs.
    pub fn drain(&self) {
        for _ in 0..DRAIN_POLLS {
            if self.inp(LSR) & LSR_TRANSMITTER_EMPTY != 0 {
                return;
            }
            core::hint::spin_loop();
        }
    }

    fn out(&self, reg: u16, value: u8) {
        // SAFETY: the COM ports belong to the hypervisor; writes have no memory effects.
        unsafe { outb(self.base + reg, value) }
    }

    fn inp(&self, reg: u16) -> u8 {
        // SAFETY: as above; reading LSR has no side effects.
        unsafe { inb(self.base + reg) }
    }
}
