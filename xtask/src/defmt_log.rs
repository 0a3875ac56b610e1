//! COM2 reader: decodes the hypervisor's defmt log live with the table of the ELF that runs.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::thread::{self, JoinHandle};

use anyhow::{Context, Result};
use defmt_decoder::{DecodeError, Locations, Table};

use crate::fifo::FifoReader;

/// The prefix that sets hypervisor log lines apart from xtask's own output.
const PREFIX: &str = "[hv] ";

/// The defmt table and source locations of one image.
pub struct Decoder {
    table: Table,
    locations: Option<Locations>,
}

/// Reads the defmt table out of `elf`. `Ok(None)` means the image carries no
/// defmt section, so its COM2 stream can only be kept raw.
pub fn load(elf: &Path) -> Result<Option<Decoder>> {
    let bytes = fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let Some(table) = Table::parse(&bytes)
        .with_context(|| format!("reading the defmt table of {}", elf.display()))?
    else {
        return Ok(None);
    };
    // Locations are a nicety; a stripped image still decodes without them.
    let locations = table.get_locations(&bytes).ok();
    Ok(Some(Decoder { table, locations }))
}

/// Where a run keeps COM2's stream.
pub struct Outputs<'a> {
    /// The raw bytes, exactly as received.
    pub raw: &'a Path,
    /// One decoded frame per line, with its source location.
    pub decoded: &'a Path,
}

/// What came over COM2.
#[derive(Default)]
pub struct HvLog {
    /// Decoded frames (and xtask's notes about the stream), one per line.
    pub lines: Vec<String>,
    /// Whether the image had a defmt table to decode with.
    pub had_table: bool,
    pub frames: usize,
    pub malformed: usize,
}

/// Collects decoded lines into the log file, the returned [`HvLog`] and,
/// when echoing, stderr.
struct Sink {
    file: File,
    echo: bool,
    log: HvLog,
}

impl Sink {
    fn emit(&mut self, text: String, location: Option<String>) {
        if self.echo {
            eprintln!("{PREFIX}{text}");
        }
        // A failed log write must not stop decoding.
        let _ = match &location {
            Some(loc) => writeln!(self.file, "{text}  ({loc})"),
            None => writeln!(self.file, "{text}"),
        };
        self.log.lines.push(text);
    }
}

/// Starts a thread that decodes COM2 from `reader`, saving raw and decoded
/// output, echoing decoded lines to stderr when `echo` is set.
pub fn spawn(
    reader: FifoReader,
    decoder: Option<Decoder>,
    out: Outputs<'_>,
    echo: bool,
) -> Result<JoinHandle<HvLog>> {
    let mut raw =
        File::create(out.raw).with_context(|| format!("creating {}", out.raw.display()))?;
    let file =
        File::create(out.decoded).with_context(|| format!("creating {}", out.decoded.display()))?;
    let mut sink = Sink {
        file,
        echo,
        log: HvLog::default(),
    };
    let handle = thread::Builder::new()
        .name("com2-defmt".into())
        .spawn(move || {
            let Some(decoder) = decoder else {
                sink.emit(
                    "(image has no defmt table; COM2 kept raw only)".into(),
                    None,
                );
                let _ = reader.pump(|chunk| {
                    let _ = raw.write_all(chunk);
                });
                return sink.log;
            };
            sink.log.had_table = true;
            let mut stream = decoder.table.new_stream_decoder();
            let result = reader.pump(|chunk| {
                let _ = raw.write_all(chunk);
                stream.received(chunk);
                loop {
                    match stream.decode() {
                        Ok(frame) => {
                            let location = decoder
                                .locations
                                .as_ref()
                                .and_then(|l| l.get(&frame.index()))
                                .map(|l| format!("{}:{}", l.file.display(), l.line));
                            sink.log.frames += 1;
                            sink.emit(frame.display(false).to_string(), location);
                        }
                        Err(DecodeError::UnexpectedEof) => break,
                        // The decoder drops the bad frame, so keep going.
                        Err(DecodeError::Malformed) => {
                            sink.log.malformed += 1;
                            sink.emit("(malformed defmt frame skipped)".into(), None);
                        }
                    }
                }
            });
            if let Err(err) = result {
                sink.emit(format!("(reading COM2 failed: {err})"), None);
            }
            sink.log
        })?;
    Ok(handle)
}
