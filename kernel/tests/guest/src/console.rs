//! `println!` over the `console_io` hypercall (CONSOLEIO_write).

use core::fmt::{self, Write};

struct Buffer {
    bytes: [u8; 256],
    len: usize,
}

impl Write for Buffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.bytes.len() {
                crate::hypercall::console_write(&self.bytes[..self.len]);
                self.len = 0;
            }
            self.bytes[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

pub fn print(args: fmt::Arguments) {
    let mut buf = Buffer {
        bytes: [0; 256],
        len: 0,
    };
    let _ = buf.write_fmt(args);
    crate::hypercall::console_write(&buf.bytes[..buf.len]);
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
