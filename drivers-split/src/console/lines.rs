//! Console output tagged by guest name, one whole line at a time.

use alloc::vec::Vec;

/// A line longer than this is cut (and continued on the next line), so one
/// guest cannot hold back everyone's output with an endless line.
pub const MAX_LINE: usize = 200;

/// Collects one guest's output bytes and hands out complete lines as
/// `[name] text\n`. Carriage returns, other control bytes except tab, and
/// whole ANSI escape sequences (ESC, then `[` and parameters up to a final
/// byte 0x40-0x7E, ECMA-48 5.4) are dropped: they would move the shared
/// terminal's cursor for everyone.
pub struct LineTagger {
    prefix: Vec<u8>,
    line: Vec<u8>,
    escape: Escape,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Started,
    /// In a control sequence (ESC `[`).
    Csi,
}

impl LineTagger {
    pub fn new(name: &str) -> Self {
        let mut prefix = Vec::with_capacity(name.len() + 3);
        prefix.push(b'[');
        prefix.extend_from_slice(name.as_bytes());
        prefix.extend_from_slice(b"] ");
        LineTagger {
            prefix,
            line: Vec::with_capacity(MAX_LINE),
            escape: Escape::None,
        }
    }

    /// Feeds output bytes; `emit` gets each finished line, tag and newline included.
    pub fn feed(&mut self, bytes: &[u8], mut emit: impl FnMut(&[u8])) {
        for &b in bytes {
            match (self.escape, b) {
                (Escape::None, 0x1b) => {
                    self.escape = Escape::Started;
                    continue;
                }
                (Escape::Started, b'[') => {
                    self.escape = Escape::Csi;
                    continue;
                }
                // A two-byte sequence (ESC c, ESC 7, ...) ends here.
                (Escape::Started, 0x20..=0x7e) => {
                    self.escape = Escape::None;
                    continue;
                }
                // A control byte breaks off the sequence and counts as itself.
                (Escape::Started, _) => self.escape = Escape::None,
                (Escape::Csi, 0x40..=0x7e) => {
                    self.escape = Escape::None;
                    continue;
                }
                (Escape::Csi, 0x20..=0x3f) => continue,
                (Escape::Csi, _) => self.escape = Escape::None,
                (Escape::None, _) => {}
            }
            match b {
                b'\n' => self.finish(&mut emit),
                b'\t' | 0x20..=0x7e | 0x80..=0xff => {
                    self.line.push(b);
                    if self.line.len() >= MAX_LINE {
                        self.finish(&mut emit);
                    }
                }
                _ => {}
            }
        }
    }

    /// How many input bytes `feed` may take so that the lines it emits
    /// cannot exceed `room` bytes, however the bytes split into lines:
    /// each byte adds at most itself and, if it ends a line, the tag and a
    /// newline; the partial line already held goes out too.
    pub fn max_input(&self, room: usize) -> usize {
        room.saturating_sub(self.line.len()) / (self.prefix.len() + 2)
    }

    /// Whether part of a line is waiting for its end.
    pub fn has_partial(&self) -> bool {
        !self.line.is_empty()
    }

    /// Emits the partial line as it is (a prompt waiting for input).
    pub fn flush(&mut self, mut emit: impl FnMut(&[u8])) {
        if self.has_partial() {
            self.finish(&mut emit);
        }
    }

    fn finish(&mut self, emit: &mut impl FnMut(&[u8])) {
        let mut out = Vec::with_capacity(self.prefix.len() + self.line.len() + 1);
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(&self.line);
        out.push(b'\n');
        emit(&out);
        self.line.clear();
    }
}
