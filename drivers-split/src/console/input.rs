//! Which guest gets typed input: Ctrl-A three times moves it to the next guest, and after the last to the toolstack, as Xen's `conswitch` moves it between dom0 and Xen.

/// Ctrl-A (Xen's default `conswitch=a`, xen/drivers/char/console.c).
pub const SWITCH_KEY: u8 = 0x01;
/// Presses in a row that switch.
const PRESSES: u8 = 3;

/// What a typed byte turns into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// Deliver these bytes (held Ctrl-As first) to the focused guest.
    Deliver([u8; 3], usize),
    /// Focus moved to the guest at this index.
    Switched(usize),
    /// Held: could be the start of a switch sequence.
    Held,
}

/// The input focus over `guests` consoles and, last in the cycle, the
/// toolstack's command line (focus == guests).
pub struct InputSwitch {
    pub focus: usize,
    guests: usize,
    held: u8,
}

impl InputSwitch {
    pub fn new(guests: usize) -> Self {
        InputSwitch {
            focus: 0,
            guests,
            held: 0,
        }
    }

    /// Whether typed lines go to the toolstack.
    pub fn at_toolstack(&self) -> bool {
        self.focus == self.guests
    }

    /// Ctrl-As are held until the third (switch) or another key (then
    /// delivered before it, as console.c `serial_rx` does).
    pub fn key(&mut self, b: u8) -> Key {
        if b == SWITCH_KEY {
            self.held += 1;
            if self.held == PRESSES {
                self.held = 0;
                self.focus = (self.focus + 1) % (self.guests + 1);
                return Key::Switched(self.focus);
            }
            return Key::Held;
        }
        let mut out = [SWITCH_KEY; 3];
        let n = usize::from(self.held);
        out[n] = b;
        self.held = 0;
        Key::Deliver(out, n + 1)
    }
}
