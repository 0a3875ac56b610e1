//! Which guest gets typed input: Ctrl-A three times moves it to the next guest, as Xen's `conswitch` does.

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

/// The input focus over `guests` consoles.
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

    /// Ctrl-As are held until the third (switch) or another key (then
    /// delivered before it, as console.c `serial_rx` does).
    pub fn key(&mut self, b: u8) -> Key {
        if b == SWITCH_KEY {
            self.held += 1;
            if self.held == PRESSES {
                self.held = 0;
                if self.guests > 0 {
                    self.focus = (self.focus + 1) % self.guests;
                }
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
