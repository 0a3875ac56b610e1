//! COM1 as an interactive console where the emulator cannot be handed the
//! terminal (Bochs): the emulator serves the port on a loopback TCP socket,
//! xtask connects to it, copies what arrives to stdout (see `console`) and
//! copies stdin to it, with the terminal in raw mode while the run lasts.
//!
//! Bochs 2.7's `mode=socket-server` binds and listens on the given address,
//! then blocks in accept() before the simulation starts, so xtask connects as
//! soon as it has started Bochs ([`connect`]). Bochs reads the socket with a
//! zero-timeout select() and a one-byte read(), so an end-of-file would reach
//! the guest as an endless stream of NUL bytes: when stdin ends, xtask stops
//! forwarding but keeps the socket open until Bochs is gone. Bochs writes to
//! the (blocking) socket a byte at a time, so nothing is lost when xtask reads
//! slowly; the emulation waits instead, as it does on a FIFO.

use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::fifo::Stop;

/// How many times [`connect`] tries before giving up (about 30 s in all with
/// [`backoff`]; Bochs is listening well within a second of starting).
const CONNECT_ATTEMPTS: u32 = 130;

/// How long one poll() of stdin waits before looking at the stop flag again.
const POLL_MS: i32 = 100;

/// A loopback port that is free now: the kernel picks it for a throwaway
/// listener, which is closed again so the emulator can bind it.
pub fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// The `dev=` of Bochs' socket modes for a loopback port.
pub fn loopback(port: u16) -> String {
    format!("{}:{port}", Ipv4Addr::LOCALHOST)
}

/// The wait before connect attempt `attempt + 1`: 10 ms, doubling up to 250 ms.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((10u64 << attempt.min(5)).min(250))
}

/// Connects to the emulator's socket on the loopback `port`, retrying while
/// the emulator is still starting. Ok(None) when `stop` says the emulator has
/// already ended; an error when it never started listening.
pub fn connect(port: u16, stop: &Stop) -> Result<Option<TcpStream>> {
    let mut last = None;
    for attempt in 0..CONNECT_ATTEMPTS {
        if stop.is_set() {
            return Ok(None);
        }
        match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            Ok(stream) => return Ok(Some(stream)),
            Err(err) => last = Some(err),
        }
        thread::sleep(backoff(attempt));
    }
    let err = last.map_or_else(|| "no attempt".to_string(), |e| e.to_string());
    bail!(
        "COM1: could not connect to the emulator at {}: {err}",
        loopback(port)
    )
}

/// Whether stdin can be read without being stopped by SIGTTIN: anything but a
/// terminal, or a terminal whose foreground process group is ours.
pub fn stdin_usable() -> bool {
    // SAFETY: isatty, tcgetpgrp and getpgrp only inspect descriptor 0 and the process.
    unsafe { libc::isatty(0) == 0 || libc::tcgetpgrp(0) == libc::getpgrp() }
}

/// Starts a thread that copies stdin to `to` until stdin ends (end-of-file,
/// closed, or hung up), `to` fails (the emulator is gone), or `stop` is set.
pub fn forward_stdin(mut to: TcpStream, stop: Stop) -> io::Result<JoinHandle<()>> {
    thread::Builder::new().name("stdin".into()).spawn(move || {
        let mut buf = [0u8; 1024];
        while !stop.is_set() {
            let mut pfd = libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: pfd is a valid pollfd and the count is 1.
            let ready = unsafe { libc::poll(&mut pfd, 1, POLL_MS) };
            if ready < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            if ready == 0 {
                continue;
            }
            if pfd.revents & libc::POLLNVAL != 0 {
                // No stdin at all (descriptor 0 closed).
                return;
            }
            // Read the descriptor directly: std's Stdin would buffer.
            // SAFETY: buf is valid for writes of buf.len() bytes.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let kind = io::Error::last_os_error().kind();
                if matches!(kind, io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) {
                    continue;
                }
                return;
            }
            if n == 0 {
                // End of input. The socket stays open (see the module docs).
                return;
            }
            if to.write_all(&buf[..n as usize]).is_err() {
                return;
            }
        }
    })
}

/// The terminal settings to restore, for the signal handler too.
static SAVED: OnceLock<libc::termios> = OnceLock::new();
/// Whether the terminal is raw now (and so must be restored).
static RAW: AtomicBool = AtomicBool::new(false);
/// Signals whose default action ends xtask; the handler restores the terminal first.
const FATAL_SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

extern "C" fn restore_and_die(sig: libc::c_int) {
    if RAW.load(Ordering::SeqCst) {
        if let Some(saved) = SAVED.get() {
            // SAFETY: tcsetattr is async-signal-safe; saved is a valid termios.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, saved) };
        }
    }
    // SAFETY: signal and raise are async-signal-safe. The signal stays blocked
    // until the handler returns, then its default action ends the process.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// `orig` made raw the way QEMU's stdio console does it: bytes pass as typed
/// (no echo, no line editing, CR not turned into LF), but Ctrl-C and Ctrl-\
/// still end the run and output newlines still return the carriage (the
/// hypervisor's and xtask's own lines end in a bare LF). Ctrl-Z goes to the
/// guest rather than stopping xtask with the terminal raw.
fn raw_termios(orig: &libc::termios) -> libc::termios {
    let mut t = *orig;
    // SAFETY: t is a valid termios.
    unsafe { libc::cfmakeraw(&mut t) };
    t.c_lflag |= libc::ISIG;
    t.c_oflag |= libc::OPOST | libc::ONLCR;
    t.c_cc[libc::VSUSP] = 0; // _POSIX_VDISABLE
    t
}

/// The terminal on stdin in raw mode; dropping it restores the terminal.
pub struct RawTerminal {
    old_actions: Vec<(libc::c_int, libc::sigaction)>,
}

impl RawTerminal {
    /// Makes the terminal on stdin raw, if stdin is a terminal in our
    /// foreground; None otherwise (a pipe, a file, /dev/null, no stdin), or
    /// if the terminal refuses (with a warning: the run goes on cooked).
    pub fn enter() -> Option<RawTerminal> {
        // SAFETY: isatty only inspects descriptor 0.
        if unsafe { libc::isatty(0) } == 0 || !stdin_usable() {
            return None;
        }
        let mut orig = MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr fills orig when it returns 0.
        if unsafe { libc::tcgetattr(0, orig.as_mut_ptr()) } != 0 {
            eprintln!(
                "xtask: warning: stdin stays cooked: tcgetattr: {}",
                io::Error::last_os_error()
            );
            return None;
        }
        // SAFETY: initialised by the successful tcgetattr.
        let orig = unsafe { orig.assume_init() };
        // A second run in one process finds the same original settings.
        let saved = *SAVED.get_or_init(|| orig);
        let mut guard = RawTerminal {
            old_actions: Vec::new(),
        };
        for sig in FATAL_SIGNALS {
            // SAFETY: sa is fully initialised before use; old receives the
            // previous action, which Drop reinstalls.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = restore_and_die as extern "C" fn(libc::c_int) as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &sa, &mut old) == 0 {
                    guard.old_actions.push((sig, old));
                }
            }
        }
        RAW.store(true, Ordering::SeqCst);
        let raw = raw_termios(&saved);
        // SAFETY: raw is a valid termios.
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) } != 0 {
            eprintln!(
                "xtask: warning: stdin stays cooked: tcsetattr: {}",
                io::Error::last_os_error()
            );
            // Dropping the guard puts the signal handlers back.
            return None;
        }
        Some(guard)
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = SAVED.get() {
            // SAFETY: saved is a valid termios.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, saved) };
        }
        RAW.store(false, Ordering::SeqCst);
        for (sig, old) in self.old_actions.drain(..) {
            // SAFETY: old is the action sigaction returned for sig.
            unsafe { libc::sigaction(sig, &old, std::ptr::null_mut()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert_eq!(backoff(0), Duration::from_millis(10));
        assert_eq!(backoff(1), Duration::from_millis(20));
        assert_eq!(backoff(4), Duration::from_millis(160));
        assert_eq!(backoff(5), Duration::from_millis(250));
        assert_eq!(backoff(u32::MAX), Duration::from_millis(250));
        let total: Duration = (0..CONNECT_ATTEMPTS).map(backoff).sum();
        assert!(total > Duration::from_secs(20) && total < Duration::from_secs(40));
    }

    #[test]
    fn loopback_dev() {
        assert_eq!(loopback(4321), "127.0.0.1:4321");
    }

    #[test]
    fn connects_once_the_server_listens() {
        let port = free_port().unwrap();
        let server = thread::spawn(move || {
            // Come up a little late, as Bochs does.
            thread::sleep(Duration::from_millis(50));
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
            let (mut conn, _) = listener.accept().unwrap();
            let mut got = String::new();
            conn.read_to_string(&mut got).unwrap();
            got
        });
        let mut stream = connect(port, &Stop::default()).unwrap().unwrap();
        stream.write_all(b"hello").unwrap();
        drop(stream);
        assert_eq!(server.join().unwrap(), "hello");
    }

    #[test]
    fn connect_gives_up_when_the_emulator_is_gone() {
        let stop = Stop::default();
        stop.set();
        assert!(connect(free_port().unwrap(), &stop).unwrap().is_none());
    }

    #[test]
    fn raw_keeps_signals_and_output_newlines() {
        // SAFETY: an all-zero termios is a valid (if odd) value.
        let mut orig: libc::termios = unsafe { std::mem::zeroed() };
        orig.c_lflag = libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN;
        orig.c_iflag = libc::ICRNL | libc::IXON;
        orig.c_oflag = libc::OPOST | libc::ONLCR;
        orig.c_cc[libc::VSUSP] = 0x1a;
        orig.c_cc[libc::VINTR] = 0x03;
        let raw = raw_termios(&orig);
        assert_eq!(raw.c_lflag & (libc::ICANON | libc::ECHO | libc::IEXTEN), 0);
        assert_ne!(raw.c_lflag & libc::ISIG, 0);
        assert_eq!(raw.c_iflag & (libc::ICRNL | libc::IXON), 0);
        assert_eq!(
            raw.c_oflag & (libc::OPOST | libc::ONLCR),
            libc::OPOST | libc::ONLCR
        );
        assert_eq!(raw.c_cc[libc::VSUSP], 0);
        assert_eq!(raw.c_cc[libc::VINTR], 0x03);
    }
}
