//! Console output on its way to the one shared UART: a bounded share of whole lines per source, drained round-robin a byte at a time, drops counted and reported.
//!
//! The UART takes a byte only when its transmit holding register is empty,
//! so whoever writes to it must wait for it or buffer. The driver domain
//! must not wait: a chatty guest would stall every other guest's rings.
//! So each source (the driver domain's own log, each guest's console) gets
//! a fixed share of buffer; a line that does not fit in its source's share
//! is dropped and counted, and the source's next line that fits is
//! preceded by `[name] [N bytes dropped]`. The binary moves a small budget
//! of bytes a turn, only while the UART is ready, one line of one source
//! at a time and then the next source's, so a flooding guest delays a
//! quiet one's line by at most one line per source.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// One source's share of the buffer.
struct Share {
    /// Whole lines, oldest first; never more than `cap` bytes.
    bytes: VecDeque<u8>,
    cap: usize,
    /// `[name] `, for the drop marker.
    tag: Vec<u8>,
    /// Bytes dropped since the last marker.
    dropped: u64,
}

impl Share {
    fn room(&self) -> usize {
        self.cap - self.bytes.len()
    }
}

/// The buffered output of every source.
#[derive(Default)]
pub struct Output {
    shares: Vec<Share>,
    /// The source whose line is going out: lines are never interleaved.
    current: Option<usize>,
    /// Where the search for the next line starts (round-robin).
    next: usize,
    /// The CR of a newline's CR LF went out, the LF not yet.
    cr_sent: bool,
    dropped_total: u64,
}

/// Decimal digits of `n`.
fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// The marker line for `dropped` bytes of a source tagged `tag`.
fn marker_len(tag: &[u8], dropped: u64) -> usize {
    tag.len() + "[".len() + digits(dropped) + " bytes dropped]\n".len()
}

impl Output {
    pub fn new() -> Self {
        Output::default()
    }

    /// Adds a source tagged `[name] ` holding at most `cap` bytes (its
    /// share; allocated now, once). Returns its index for [`Output::push`].
    pub fn add_source(&mut self, name: &str, cap: usize) -> usize {
        let mut tag = Vec::with_capacity(name.len() + 3);
        tag.push(b'[');
        tag.extend_from_slice(name.as_bytes());
        tag.extend_from_slice(b"] ");
        self.shares.push(Share {
            bytes: VecDeque::with_capacity(cap),
            cap,
            tag,
            dropped: 0,
        });
        self.shares.len() - 1
    }

    /// Queues one whole line of `source` (newline included, as
    /// `LineTagger` emits it), after the drop marker if bytes were dropped
    /// before; if the two do not fit in the source's share, the line is
    /// dropped and counted instead. An unknown source is ignored.
    pub fn push(&mut self, source: usize, line: &[u8]) {
        let Some(s) = self.shares.get_mut(source) else {
            return;
        };
        let marker = if s.dropped > 0 {
            marker_len(&s.tag, s.dropped)
        } else {
            0
        };
        if marker + line.len() > s.room() {
            s.dropped = s.dropped.saturating_add(line.len() as u64);
            self.dropped_total = self.dropped_total.saturating_add(line.len() as u64);
            return;
        }
        if marker > 0 {
            s.bytes.extend(s.tag.iter().copied());
            s.bytes.push_back(b'[');
            let d = digits(s.dropped);
            for i in (0..d).rev() {
                let digit = (s.dropped / 10u64.pow(i as u32)) % 10;
                s.bytes.push_back(b'0' + digit as u8);
            }
            s.bytes.extend(b" bytes dropped]\n".iter().copied());
            s.dropped = 0;
        }
        s.bytes.extend(line.iter().copied());
    }

    /// The next byte to send, if any.
    pub fn peek(&mut self) -> Option<u8> {
        if self.current.is_none() {
            let n = self.shares.len();
            let found = (0..n)
                .map(|k| (self.next + k) % n)
                .find(|&i| !self.shares[i].bytes.is_empty());
            if let Some(i) = found {
                self.current = Some(i);
                self.next = (i + 1) % n;
            }
        }
        self.current
            .and_then(|i| self.shares[i].bytes.front().copied())
    }

    /// The byte [`Output::peek`] gave went out. After a newline the next
    /// source with output has its turn.
    pub fn advance(&mut self) {
        let Some(i) = self.current else { return };
        let s = &mut self.shares[i];
        if s.bytes.pop_front() == Some(b'\n') || s.bytes.is_empty() {
            self.current = None;
        }
    }

    /// Sends up to `budget` bytes through `put`, each only if `ready()`
    /// (the UART's transmit holding register is empty), each newline as
    /// CR LF (a terminal on the port is raw). Never waits: it returns as
    /// soon as the UART is busy. Returns the bytes sent.
    pub fn drain(
        &mut self,
        budget: usize,
        mut ready: impl FnMut() -> bool,
        mut put: impl FnMut(u8),
    ) -> usize {
        let mut sent = 0;
        while sent < budget {
            // Whose turn it is is settled only when a byte goes out.
            if (self.current.is_none() && !self.pending()) || !ready() {
                break;
            }
            let Some(b) = self.peek() else { break };
            if b == b'\n' && !self.cr_sent {
                put(b'\r');
                self.cr_sent = true;
            } else {
                put(b);
                self.advance();
                self.cr_sent = false;
            }
            sent += 1;
        }
        sent
    }

    /// Whether bytes are waiting.
    pub fn pending(&self) -> bool {
        self.shares.iter().any(|s| !s.bytes.is_empty())
    }

    /// Bytes waiting from `source`.
    pub fn queued(&self, source: usize) -> usize {
        self.shares.get(source).map_or(0, |s| s.bytes.len())
    }

    /// Bytes dropped so far, all sources.
    pub fn dropped(&self) -> u64 {
        self.dropped_total
    }
}
