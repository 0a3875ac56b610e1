//! COM1 reader: splits the people-readable serial stream into lines as they arrive.
//!
//! COM1 comes from a FIFO the emulator writes, or from a socket the emulator
//! serves, which xtask connects to and also feeds its stdin into (see `interactive`).

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::mpsc::Sender;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::fifo::{FifoReader, Stop};
use crate::interactive;
use crate::serial::clean_line;

/// Where COM1 comes from.
pub enum Source {
    /// A FIFO the emulator writes.
    Fifo(FifoReader),
    /// A loopback TCP port the emulator listens on; xtask connects and then
    /// forwards its stdin there. `stop` is the session's: the emulator is gone.
    Socket { port: u16, stop: Stop },
}

/// What the COM1 reader tells the session.
#[derive(Debug)]
pub enum Event {
    /// A complete, cleaned line and when its newline arrived.
    Line(String, Instant),
    /// xtask could not connect to the emulator's COM1 socket: the emulator
    /// is stuck waiting for a client, so the session has to end it.
    Unreachable(String),
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

/// Connects to the socket source and starts forwarding stdin to it; None if
/// the emulator ended first or never listened (then `events` has been told).
fn open_socket(
    port: u16,
    stop: &Stop,
    events: &Sender<Event>,
) -> Option<(FifoReader, Option<JoinHandle<()>>)> {
    let stream = match interactive::connect(port, stop) {
        Ok(Some(stream)) => stream,
        Ok(None) => return None,
        Err(err) => {
            let _ = events.send(Event::Unreachable(format!("{err:#}")));
            return None;
        }
    };
    let forwarder = if interactive::stdin_usable() {
        match stream
            .try_clone()
            .and_then(|to| interactive::forward_stdin(to, stop.clone()))
        {
            Ok(handle) => Some(handle),
            Err(err) => {
                eprintln!("xtask: warning: stdin is not forwarded to COM1: {err}");
                None
            }
        }
    } else {
        None
    };
    Some((FifoReader::socket(stream, stop), forwarder))
}

/// Starts a thread that reads COM1 from `source`, logs the raw bytes to
/// `log_path`, optionally echoes them to stdout, and sends lines to `events`.
pub fn spawn(
    source: Source,
    log_path: &Path,
    echo: bool,
    events: Sender<Event>,
) -> Result<JoinHandle<()>> {
    let mut log =
        File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let handle = thread::Builder::new().name("com1".into()).spawn(move || {
        let (reader, forwarder) = match source {
            Source::Fifo(reader) => (Some(reader), None),
            Source::Socket { port, stop } => match open_socket(port, &stop, &events) {
                Some((reader, forwarder)) => (Some(reader), forwarder),
                None => (None, None),
            },
        };
        let mut splitter = LineSplitter::default();
        let mut ended_line = true;
        let result = reader.map_or(Ok(()), |reader| {
            reader.pump(|chunk| {
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
            })
        });
        if let Err(err) = result {
            eprintln!("xtask: reading COM1 failed: {err}");
        }
        if let Some(forwarder) = forwarder {
            // It ends within a poll interval of the session's stop.
            let _ = forwarder.join();
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
