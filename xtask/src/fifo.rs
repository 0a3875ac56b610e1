//! Named pipes that an emulator writes a serial port into and a thread reads live.
//!
//! The read end is opened non-blocking before the emulator starts, so the
//! emulator's open for writing never blocks, and a reader exists even if the
//! emulator dies before opening its end. Reads wait in poll(): Linux reports
//! POLLHUP on a FIFO only after a writer has come and gone, so "no writer yet"
//! and "writer finished" stay distinguishable.
//!
//! The same poll-driven reader also follows a connected socket
//! ([`FifoReader::socket`]), where the peer closing its end is end-of-file.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

/// How long one poll() waits before looking at the stop flag again.
const POLL_MS: i32 = 100;

/// The read end of a FIFO.
pub struct FifoReader {
    file: File,
    stop: Arc<AtomicBool>,
}

/// Tells a [`FifoReader`] that its writer is gone for good (the emulator has
/// been reaped), so it should finish once the pipe is drained.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Makes a FIFO at `path`, replacing any file there.
fn make_fifo(path: &Path) -> Result<()> {
    if path.exists() {
        fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    }
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: c_path is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("mkfifo {}", path.display()));
    }
    Ok(())
}

/// Creates a FIFO at `path` (replacing any file there) for an emulator to
/// read, opened read-write and non-blocking so neither side waits for the
/// other to open it; a full pipe (input nobody reads) fails the write.
pub fn create_input(path: &Path) -> Result<File> {
    make_fifo(path)?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Creates a FIFO at `path` (replacing any file there) and opens its read end.
pub fn create(path: &Path, stop: &Stop) -> Result<FifoReader> {
    make_fifo(path)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok(FifoReader {
        file,
        stop: Arc::clone(&stop.0),
    })
}

impl FifoReader {
    /// Reads a connected socket instead: it ends when the peer closes its end,
    /// or when stop is set while nothing is pending.
    pub fn socket(stream: TcpStream, stop: &Stop) -> FifoReader {
        FifoReader {
            file: File::from(OwnedFd::from(stream)),
            stop: Arc::clone(&stop.0),
        }
    }

    /// Hands every chunk written to the FIFO to `sink` until the writer closes
    /// it, or until stop is set while no writer is feeding it.
    pub fn pump(mut self, mut sink: impl FnMut(&[u8])) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            let mut pfd = libc::pollfd {
                fd: self.file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: pfd is a valid pollfd and the count is 1.
            let ready = unsafe { libc::poll(&mut pfd, 1, POLL_MS) };
            if ready < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if ready == 0 {
                // Nothing pending: only give up once the writer is known dead,
                // covering an emulator that never opened its end.
                if self.stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                continue;
            }
            match self.file.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => sink(&buf[..n]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::Command;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-fifo-{tag}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_until_writer_closes() {
        let dir = temp_dir("eof");
        let path = dir.join("p");
        let stop = Stop::default();
        let reader = create(&path, &stop).unwrap();
        let writer = std::thread::spawn({
            let path = path.clone();
            move || {
                let mut f = OpenOptions::new().write(true).open(&path).unwrap();
                f.write_all(b"hello ").unwrap();
                f.write_all(b"world").unwrap();
            }
        });
        let mut got = Vec::new();
        reader.pump(|chunk| got.extend_from_slice(chunk)).unwrap();
        writer.join().unwrap();
        assert_eq!(got, b"hello world");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn child_process_writer() {
        let dir = temp_dir("child");
        let path = dir.join("p");
        let stop = Stop::default();
        let reader = create(&path, &stop).unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("printf 'a\\nb\\n' > {}", path.display()))
            .spawn()
            .unwrap();
        let mut got = Vec::new();
        reader.pump(|chunk| got.extend_from_slice(chunk)).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(got, b"a\nb\n");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stop_ends_a_reader_that_never_got_a_writer() {
        let dir = temp_dir("stop");
        let stop = Stop::default();
        let reader = create(&dir.join("p"), &stop).unwrap();
        let handle = std::thread::spawn(move || reader.pump(|_| panic!("no data expected")));
        stop.set();
        handle.join().unwrap().unwrap();
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn reads_a_socket_until_the_peer_closes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.write_all(b"over ").unwrap();
            conn.write_all(b"tcp").unwrap();
        });
        let stop = Stop::default();
        let reader = FifoReader::socket(TcpStream::connect(addr).unwrap(), &stop);
        let mut got = Vec::new();
        reader.pump(|chunk| got.extend_from_slice(chunk)).unwrap();
        peer.join().unwrap();
        assert_eq!(got, b"over tcp");
        assert!(!stop.is_set());
    }
}
