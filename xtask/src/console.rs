//! COM1 reader: splits the people-readable serial stream into lines as they arrive.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::mpsc::Sender;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::fifo::FifoReader;
use crate::serial::clean_line;

/// What the COM1 reader tells the session.
#[derive(Debug)]
pub enum Event {
    /// A complete, cleaned line and when its newline arrived.
    Line(String, Instant),
    /// The emulator closed the port; no more lines will come.
    Closed,
}

/// Splits a byte stream into lines, keeping the unfinished tail.
#[derive(Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes and returns the lines they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                out.push(clean_line(&String::from_utf8_lossy(&self.partial)));
                self.partial.clear();
            } else {
                self.partial.push(b);
            }
        }
        out
    }

    /// The unterminated last line, if any (an emulator may stop before the
    /// final newline leaves the UART).
    pub fn finish(self) -> Option<String> {
        let line = clean_line(&String::from_utf8_lossy(&self.partial));
        (!line.is_empty()).then_some(line)
    }
}

/// Starts a thread that reads COM1 from `reader`, logs the raw bytes to
/// `log_path`, optionally echoes them to stdout, and sends lines to `events`.
pub fn spawn(
    reader: FifoReader,
    log_path: &Path,
    echo: bool,
    events: Sender<Event>,
) -> Result<JoinHandle<()>> {
    let mut log =
        File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let handle = thread::Builder::new().name("com1".into()).spawn(move || {
        let mut splitter = LineSplitter::default();
        let mut ended_line = true;
        let result = reader.pump(|chunk| {
            let now = Instant::now();
            // A failed log write must not stop the test from seeing lines.
            let _ = log.write_all(chunk);
            if echo {
                let mut out = io::stdout().lock();
                let _ = out.write_all(chunk);
                let _ = out.flush();
                ended_line = chunk.ends_with(b"\n");
            }
            for line in splitter.push(chunk) {
                let _ = events.send(Event::Line(line, now));
            }
        });
        if let Err(err) = result {
            eprintln!("xtask: reading COM1 failed: {err}");
        }
        if echo && !ended_line {
            // Keep whatever prints next off the unterminated last line.
            println!();
        }
        if let Some(line) = splitter.finish() {
            let _ = events.send(Event::Line(line, Instant::now()));
        }
        let _ = events.send(Event::Closed);
    })?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_across_chunks() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"Xeno").is_empty());
        assert_eq!(s.push(b"lith\r\nmod"), vec!["Xenolith".to_string()]);
        assert_eq!(
            s.push(b"ule\n\n"),
            vec!["module".to_string(), String::new()]
        );
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn keeps_unterminated_tail() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"xenolith: exit success").is_empty());
        assert_eq!(s.finish().as_deref(), Some("xenolith: exit success"));
    }
}
