//! One emulator run: start it with both serial ports wired up, follow COM1, enforce the timeout.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wait_timeout::ChildExt;

use crate::console::{self, Event, Source};
use crate::defmt_log;
use crate::fifo::{self, Stop};
use crate::interactive::{self, RawTerminal};
use crate::serial::{self, clean_line};

/// How long an emulator may linger after the hypervisor printed its exit line
/// (it should shut the machine down right after).
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// How COM1 reaches us.
pub enum Com1 {
    /// Through the FIFO at [`Paths::com1_fifo`], read live; `echo` copies it to stdout.
    Fifo { echo: bool },
    /// The emulator owns the terminal and logs COM1 to [`Paths::com1_log`] itself.
    Terminal,
    /// Interactive through xtask: the emulator serves COM1 on this loopback
    /// TCP port; xtask connects, echoes it to stdout and logs it, and forwards
    /// stdin to it with the terminal raw (see [`interactive`]).
    Socket { port: u16 },
    /// As `Fifo` (not echoed), and typed into: QEMU's pipe chardev reads
    /// COM1 input from [`Paths::com1_input`]; after each COM1 line, the
    /// script may answer with bytes to type (a smoke driving a console).
    Scripted(Script),
}

/// What a smoke types on COM1: called with every COM1 line, in order; the
/// bytes it returns are typed at once.
pub struct Script(pub Box<Typist>);

/// Given a COM1 line, the bytes to type (if any).
pub type Typist = dyn FnMut(&str) -> Option<Vec<u8>> + Send;

impl Com1 {
    /// COM1 on a free loopback port.
    pub fn socket() -> Result<Com1> {
        Ok(Com1::Socket {
            port: interactive::free_port()?,
        })
    }
}

/// The files of one run directory.
pub struct Paths {
    /// Where COM1 comes out: a FIFO xtask reads. QEMU's pipe chardev for
    /// `Com1::Scripted` opens `com1.in` and `com1.out` of `com1_pipe`.
    pub com1_fifo: PathBuf,
    pub com1_pipe: PathBuf,
    pub com1_input: PathBuf,
    pub com1_log: PathBuf,
    pub com2_fifo: PathBuf,
    pub com2_raw: PathBuf,
    pub com2_log: PathBuf,
}

impl Paths {
    pub fn in_dir(dir: &Path) -> Paths {
        Paths {
            com1_fifo: dir.join("com1.fifo"),
            com1_pipe: dir.join("com1"),
            com1_input: dir.join("com1.in"),
            com1_log: dir.join("com1.log"),
            com2_fifo: dir.join("com2.fifo"),
            com2_raw: dir.join("com2.defmt"),
            com2_log: dir.join("com2.log"),
        }
    }
}

/// What to run and how.
pub struct Launch<'a> {
    pub command: Command,
    pub paths: &'a Paths,
    pub com1: Com1,
    /// The ELF that runs, for its defmt table; None when no hypervisor runs
    /// (a kernel booted directly), so COM2 carries nothing to decode.
    pub elf: Option<&'a Path>,
    /// Echo decoded hypervisor log lines to stderr as they arrive.
    pub echo_hv: bool,
    pub timeout: Option<Duration>,
}

/// What happened.
pub struct Outcome {
    /// COM1, cleaned, one entry per line.
    pub lines: Vec<String>,
    /// When each of `lines` arrived, from emulator start; empty when the
    /// emulator owned the terminal and COM1 was only read back afterwards.
    pub line_times: Vec<Duration>,
    /// The decoded COM2 log.
    pub hv_log: defmt_log::HvLog,
    /// None when xtask had to kill the emulator.
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    /// The hypervisor printed its exit line but the emulator did not stop.
    pub lingered: bool,
    /// From emulator start until the capability line arrived on COM1.
    pub caps_after: Option<Duration>,
    pub wall: Duration,
}

/// Kills the emulator if xtask leaves early (error or panic), so none is left running.
struct Reaper(Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the emulator to completion (or timeout) and collects its output.
pub fn run(mut launch: Launch<'_>) -> Result<Outcome> {
    let paths = launch.paths;
    let stop = Stop::default();
    let (tx, rx) = mpsc::channel();

    let com2 = fifo::create(&paths.com2_fifo, &stop)?;
    let decoder = match launch.elf.map(defmt_log::load).transpose() {
        Ok(decoder) => decoder.flatten(),
        Err(err) => {
            eprintln!("xtask: warning: COM2 will be kept raw only: {err:#}");
            None
        }
    };
    let outputs = defmt_log::Outputs {
        raw: &paths.com2_raw,
        decoded: &paths.com2_log,
    };
    let com2_thread = defmt_log::spawn(com2, decoder, outputs, launch.echo_hv)?;
    let com1_thread = match launch.com1 {
        Com1::Fifo { echo } => {
            let com1 = fifo::create(&paths.com1_fifo, &stop)?;
            Some(console::spawn(
                Source::Fifo(com1),
                &paths.com1_log,
                echo,
                tx,
            )?)
        }
        Com1::Socket { port } => {
            let source = Source::Socket {
                port,
                stop: stop.clone(),
            };
            Some(console::spawn(source, &paths.com1_log, true, tx)?)
        }
        Com1::Scripted(_) => {
            // QEMU's pipe chardev: it writes `<path>.out`, reads `<path>.in`.
            let com1 = fifo::create(&paths.com1_pipe.with_extension("out"), &stop)?;
            Some(console::spawn(
                Source::Fifo(com1),
                &paths.com1_log,
                false,
                tx,
            )?)
        }
        Com1::Terminal => {
            drop(tx);
            None
        }
    };
    // The input side of a scripted COM1: opened read-write, so opening
    // never waits for QEMU and QEMU's reads never see end-of-file.
    let mut typist = match &mut launch.com1 {
        Com1::Scripted(script) => {
            let input = fifo::create_input(&paths.com1_input)?;
            Some((std::mem::replace(script, Script(Box::new(|_| None))), input))
        }
        _ => None,
    };

    // If xtask itself dies (even by SIGKILL), take the emulator with it.
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        launch.command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Raw until this function returns, however it returns; the COM1 thread
    // (and with it the stdin forwarder) has been joined by then on success.
    let _raw = match launch.com1 {
        Com1::Socket { .. } => RawTerminal::enter(),
        Com1::Fifo { .. } | Com1::Terminal | Com1::Scripted(_) => None,
    };
    let start = Instant::now();
    let child = match launch.command.spawn() {
        Ok(child) => child,
        Err(err) => {
            // No writer will ever come: let the reader threads finish.
            stop.set();
            return Err(err)
                .with_context(|| format!("starting {:?}", launch.command.get_program()));
        }
    };
    let mut reaper = Reaper(Some(child));
    let child = reaper.0.as_mut().expect("just stored");

    let deadline = launch.timeout.map(|t| start + t);
    let mut follow = Follow::new(start);
    let mut status = None;
    let mut timed_out = false;
    let mut lingered = false;
    if com1_thread.is_some() {
        let mut com1_open = true;
        let mut killed = false;
        let mut kill_now = false;
        // Runs until the emulator is gone and COM1 is drained: the reader
        // sees end-of-file once the emulator's end closes, however it ended.
        while com1_open || (status.is_none() && !killed) {
            if status.is_none() && !killed {
                if let Some(st) = child.try_wait()? {
                    status = Some(st);
                    stop.set();
                } else {
                    let now = Instant::now();
                    lingered = follow.grace_until.is_some_and(|g| now >= g);
                    timed_out = !lingered && deadline.is_some_and(|d| now >= d);
                    if lingered || timed_out || kill_now {
                        let _ = child.kill();
                        child.wait()?;
                        killed = true;
                        stop.set();
                    }
                }
            }
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Event::Line(line, at)) => {
                    if let Some((Script(script), input)) = &mut typist {
                        if let Some(bytes) = script(&line) {
                            use std::io::Write;
                            if let Err(err) = input.write_all(&bytes) {
                                eprintln!("xtask: typing on COM1 failed: {err}");
                            }
                        }
                    }
                    follow.line(line, at)
                }
                Ok(Event::Unreachable(err)) => {
                    // The emulator waits for a client that will not come.
                    eprintln!("xtask: {err}");
                    kill_now = true;
                }
                Ok(Event::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => com1_open = false,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    } else {
        // COM1 is on the terminal: all there is to do is wait.
        status = match deadline {
            Some(d) => child.wait_timeout(d.saturating_duration_since(Instant::now()))?,
            None => Some(child.wait()?),
        };
        if status.is_none() {
            timed_out = true;
            let _ = child.kill();
            child.wait()?;
        }
        stop.set();
        follow.lines = read_log_lines(&paths.com1_log);
    }
    let wall = start.elapsed();
    // The child has been reaped; nothing is left for the reaper to kill.
    reaper.0 = None;
    stop.set();
    if let Some(handle) = com1_thread {
        let _ = handle.join();
    }
    let hv_log = com2_thread.join().unwrap_or_default();
    Ok(Outcome {
        lines: follow.lines,
        line_times: follow.times,
        hv_log,
        status,
        timed_out,
        lingered,
        caps_after: follow.caps_after,
        wall,
    })
}

impl Outcome {
    /// When the first COM1 line satisfying `pred` arrived, from emulator start.
    pub fn first_line_at(&self, pred: impl Fn(&str) -> bool) -> Option<Duration> {
        self.lines
            .iter()
            .zip(&self.line_times)
            .find(|(line, _)| pred(line))
            .map(|(_, &at)| at)
    }
}

/// What the session learns from COM1 lines as they arrive.
struct Follow {
    start: Instant,
    lines: Vec<String>,
    times: Vec<Duration>,
    caps_after: Option<Duration>,
    grace_until: Option<Instant>,
}

impl Follow {
    fn new(start: Instant) -> Self {
        Follow {
            start,
            lines: Vec::new(),
            times: Vec::new(),
            caps_after: None,
            grace_until: None,
        }
    }

    fn line(&mut self, line: String, at: Instant) {
        let after = at.saturating_duration_since(self.start);
        if self.caps_after.is_none() && serial::is_caps_line(&line) {
            self.caps_after = Some(after);
        }
        if self.grace_until.is_none() && serial::parse_exit(&line).is_some() {
            self.grace_until = Some(Instant::now() + EXIT_GRACE);
        }
        self.lines.push(line);
        self.times.push(after);
    }
}

/// Reads a COM1 log the emulator wrote itself.
fn read_log_lines(path: &Path) -> Vec<String> {
    let bytes = fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .split('\n')
        .map(clean_line)
        .collect()
}
