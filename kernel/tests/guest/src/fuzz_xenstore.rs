//! The XenStore fuzzer (`fuzz-xenstore=N:SEED`): N seeded requests over the guest's own XenStore ring (random and malformed headers and payloads, transactions, watches, odd and deep paths), every reply checked; then one request over the length limit, or broken ring indices.

use crate::frontend::{decimal, hvm_param, send, set32, vol32};
use crate::fuzz::{self, Cell, Events, Params, Progress, Rng};
use crate::println;
use core::sync::atomic::{fence, Ordering};

// The ring page (xs_wire.h `struct xenstore_domain_interface`).
const RSP: u64 = 1024;
const REQ_CONS: u64 = 2048;
const REQ_PROD: u64 = 2052;
const RSP_CONS: u64 = 2056;
const RSP_PROD: u64 = 2060;
const ERROR: u64 = 2072;
const RING: u32 = 1024;
/// `XENSTORE_PAYLOAD_MAX`.
const PAYLOAD_MAX: usize = 4096;
/// xs_wire.h message types.
const WATCH_EVENT: u32 = 15;
const XS_ERROR: u32 = 16;
/// Types only the privileged domain may use (xenstored `XS_FLAG_PRIV`).
const PRIVILEGED: [u32; 9] = [0, 8, 9, 17, 18, 19, 24, 25, 26];
/// The error names a reply may carry (xs_wire.h `xsd_errors`).
const ERRNOS: [&str; 16] = [
    "EINVAL",
    "EACCES",
    "EEXIST",
    "EISDIR",
    "ENOENT",
    "ENOMEM",
    "ENOSPC",
    "EIO",
    "ENOTEMPTY",
    "ENOSYS",
    "EROFS",
    "EBUSY",
    "EAGAIN",
    "EISCONN",
    "E2BIG",
    "EPERM",
];
/// A reply, or a watch event, not seen in this long means the store hangs.
const REPLY_TIMEOUT_NS: u64 = 30_000_000_000;
/// Histogram: one row per type 0..=26, then every other type; columns:
/// the type echoed, then each error name, then an unknown error.
const ROWS: usize = 28;
const COLS: usize = 18;
/// The node the consistency check writes and reads back; random requests
/// never name it.
const MODEL: &[u8] = b"data/m";

static mut HIST: [[u64; COLS]; ROWS] = [[0; COLS]; ROWS];
static mut OUT: [u8; 16 + PAYLOAD_MAX] = [0; 16 + PAYLOAD_MAX];

/// What a path is, for the permission checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Where this domain may write: under its `data`, `control/…`, ….
    Mine,
    /// Its home's nodes owned by domain 0: readable, not writable.
    Home,
    /// Under the Linux guest's home: neither readable nor writable.
    Linux,
    /// Anything else, odd characters included: no expectation.
    Any,
}

/// A request being built (the payload goes into `OUT` after the header).
struct Request {
    ty: u32,
    req_id: u32,
    tx_id: u32,
    len: usize,
    kind: Kind,
}

/// A reply as received.
struct Reply {
    ty: u32,
    req_id: u32,
    tx_id: u32,
    body: [u8; PAYLOAD_MAX],
    len: usize,
}

/// Reassembles messages from the response ring.
struct Reader {
    hdr: [u8; 16],
    hdr_len: usize,
    want: usize,
    body: [u8; PAYLOAD_MAX],
    body_len: usize,
    reply: Option<Reply>,
    events: u64,
}

struct Client {
    page: u64,
    port: u32,
    events: Events,
    reader: Reader,
}

struct Fuzzer {
    rng: Rng,
    me: u16,
    linux: Option<u16>,
    /// Open transactions (xenstored allows 10).
    txs: [u32; 16],
    ntx: usize,
    /// Registered watches: (path index into WATCH_PATHS, token).
    watches: [(u8, u32); 32],
    nwatch: usize,
}

pub fn run(p: Params) -> Result<(), &'static str> {
    let mut xs = crate::frontend::Store::new();
    let me = fuzz::my_domid(&mut xs)
        .map_err(|_| "cannot read its domid from XenStore (boot it with the driver domain)")?;
    let events = Events::new(fuzz::above_ram_gfn()? + 4)?;
    let mut client = Client {
        page: hvm_param(1) << 12,
        port: hvm_param(2) as u32,
        events,
        reader: Reader {
            hdr: [0; 16],
            hdr_len: 0,
            want: 0,
            body: [0; PAYLOAD_MAX],
            body_len: 0,
            reply: None,
            events: 0,
        },
    };
    let mut f = Fuzzer {
        rng: Rng::new(p.seed),
        me,
        linux: (me != 1).then_some(1),
        txs: [0; 16],
        ntx: 0,
        watches: [(0, 0); 32],
        nwatch: 0,
    };
    println!(
        "fuzz: xenstore: {} requests, seed {}, domain {}",
        p.count, p.seed, me
    );
    let mut progress = Progress::new("xenstore", p.count);
    for i in 0..p.count {
        if f.rng.one_in(64) {
            f.model_check(i, &mut client)?;
        }
        let req = f.request();
        record(i, &req);
        if i >= p.trace_from {
            fuzz::trace(i, u64::from(req.ty), last_args(&req));
        }
        let reply = client.exchange(&req)?;
        f.judge(i, &req, &reply);
        progress.tick(i + 1);
    }
    f.model_check(p.count, &mut client)?;
    let ending = if p.seed.is_multiple_of(2) {
        client.too_long(&mut f.rng)?
    } else {
        client.bad_indices()?
    };
    // SAFETY: single-threaded; the fuzzing is over.
    let hist = unsafe { &*core::ptr::addr_of!(HIST) };
    for (ty, row) in hist.iter().enumerate() {
        let total: u64 = row.iter().sum();
        if total == 0 {
            continue;
        }
        let mut cells = row
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(c, &n)| match c {
                0 => Cell::Label("ok", n),
                17 => Cell::Label("EUNKNOWN", n),
                c => Cell::Label(ERRNOS[c - 1], n),
            });
        if ty == ROWS - 1 {
            fuzz::print_row(format_args!("xenstore type other"), total, &mut cells);
        } else {
            fuzz::print_row(format_args!("xenstore type {ty}"), total, &mut cells);
        }
    }
    println!(
        "fuzz: xenstore: {} watch events, {ending}",
        client.reader.events
    );
    fuzz::done("xenstore", &p);
    Ok(())
}

fn last_args(r: &Request) -> [u64; 5] {
    // SAFETY: single-threaded; OUT holds the request just built.
    let out = unsafe { &*core::ptr::addr_of!(OUT) };
    let mut first = [0u8; 8];
    let n = r.len.min(8);
    first[..n].copy_from_slice(&out[16..16 + n]);
    [
        u64::from(r.req_id),
        u64::from(r.tx_id),
        r.len as u64,
        u64::from_le_bytes(first),
        fnv(&out[16..16 + r.len]),
    ]
}

fn record(i: u64, r: &Request) {
    fuzz::record(i, u64::from(r.ty), last_args(r));
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

impl Reader {
    /// Takes one byte; a finished reply is kept, a finished watch event checked and counted.
    fn feed(&mut self, b: u8) -> Result<(), &'static str> {
        if self.hdr_len < 16 {
            self.hdr[self.hdr_len] = b;
            self.hdr_len += 1;
            if self.hdr_len == 16 {
                self.want = self.word(12) as usize;
                if self.want > PAYLOAD_MAX {
                    return Err("a reply longer than XENSTORE_PAYLOAD_MAX");
                }
                self.body_len = 0;
                if self.want == 0 {
                    return self.finish();
                }
            }
            return Ok(());
        }
        self.body[self.body_len] = b;
        self.body_len += 1;
        if self.body_len == self.want {
            return self.finish();
        }
        Ok(())
    }

    fn word(&self, at: usize) -> u32 {
        u32::from_le_bytes([
            self.hdr[at],
            self.hdr[at + 1],
            self.hdr[at + 2],
            self.hdr[at + 3],
        ])
    }

    fn finish(&mut self) -> Result<(), &'static str> {
        self.hdr_len = 0;
        let ty = self.word(0);
        let body = &self.body[..self.body_len];
        if ty == WATCH_EVENT {
            // "path\0token\0"
            if body.iter().filter(|&&c| c == 0).count() != 2 || body.last() != Some(&0) {
                return Err("a watch event that is not path and token");
            }
            self.events += 1;
            return Ok(());
        }
        if self.reply.is_some() {
            return Err("two replies to one request");
        }
        let mut reply = Reply {
            ty,
            req_id: self.word(4),
            tx_id: self.word(8),
            body: [0; PAYLOAD_MAX],
            len: self.body_len,
        };
        reply.body[..self.body_len].copy_from_slice(body);
        self.reply = Some(reply);
        Ok(())
    }
}

impl Client {
    /// Puts as much of `bytes` on the request ring as fits.
    fn push(&self, bytes: &[u8]) -> usize {
        let cons = vol32(self.page + REQ_CONS);
        let prod = vol32(self.page + REQ_PROD);
        let room = RING.saturating_sub(prod.wrapping_sub(cons)) as usize;
        let n = bytes.len().min(room);
        for (k, &b) in bytes[..n].iter().enumerate() {
            let at = self.page + u64::from(prod.wrapping_add(k as u32) & (RING - 1));
            // SAFETY: the request half of this domain's XenStore page.
            unsafe { (at as *mut u8).write_volatile(b) };
        }
        // The bytes before the index that publishes them.
        fence(Ordering::SeqCst);
        set32(self.page + REQ_PROD, prod.wrapping_add(n as u32));
        n
    }

    /// Takes what the response ring holds; whether anything was taken.
    fn pull(&mut self) -> Result<bool, &'static str> {
        let cons = vol32(self.page + RSP_CONS);
        let prod = vol32(self.page + RSP_PROD);
        fence(Ordering::SeqCst);
        let n = prod.wrapping_sub(cons);
        if n > RING {
            return Err("the store's response indices are broken");
        }
        for k in 0..n {
            let at = self.page + RSP + u64::from(cons.wrapping_add(k) & (RING - 1));
            // SAFETY: the response half of this domain's XenStore page.
            let b = unsafe { (at as *const u8).read_volatile() };
            self.reader.feed(b)?;
        }
        fence(Ordering::SeqCst);
        set32(self.page + RSP_CONS, cons.wrapping_add(n));
        Ok(n > 0)
    }

    /// Sends `bytes` (a whole request) and waits for its reply, taking
    /// watch events as they come.
    fn send_and_wait(&mut self, bytes: &[u8]) -> Result<Reply, &'static str> {
        let mut sent = 0;
        let mut broken = None;
        let port = self.port;
        let events = self.events;
        let got = events.wait(port, REPLY_TIMEOUT_NS, || {
            let pushed = self.push(&bytes[sent..]);
            sent += pushed;
            let pulled = match self.pull() {
                Ok(p) => p,
                Err(e) => {
                    broken = Some(e);
                    return true;
                }
            };
            if pushed > 0 || pulled {
                send(port);
            }
            sent == bytes.len() && self.reader.reply.is_some()
        });
        if let Some(e) = broken {
            fuzz::fail(fuzz_index(), e);
            return Err(e);
        }
        if !got {
            fuzz::fail(fuzz_index(), "no reply from the XenStore within 30 s");
            return Err("the XenStore stopped answering");
        }
        Ok(self.reader.reply.take().expect("waited for it"))
    }

    fn exchange(&mut self, r: &Request) -> Result<Reply, &'static str> {
        // SAFETY: single-threaded; OUT holds the request just built.
        let out = unsafe { &mut *core::ptr::addr_of_mut!(OUT) };
        out[0..4].copy_from_slice(&r.ty.to_le_bytes());
        out[4..8].copy_from_slice(&r.req_id.to_le_bytes());
        out[8..12].copy_from_slice(&r.tx_id.to_le_bytes());
        out[12..16].copy_from_slice(&(r.len as u32).to_le_bytes());
        let bytes = &out[..16 + r.len];
        self.send_and_wait(bytes)
    }

    /// The last request: a header whose length is over the limit. The
    /// store answers E2BIG and drops the connection (`error` = 3, PROTO).
    fn too_long(&mut self, rng: &mut Rng) -> Result<&'static str, &'static str> {
        let len = match rng.below(3) {
            0 => PAYLOAD_MAX as u32 + 1,
            1 => u32::MAX,
            _ => rng.range(PAYLOAD_MAX as u64 + 1, u64::from(u32::MAX)) as u32,
        };
        let req_id = rng.next() as u32;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&2u32.to_le_bytes());
        h[4..8].copy_from_slice(&req_id.to_le_bytes());
        h[12..16].copy_from_slice(&len.to_le_bytes());
        fuzz::record(u64::MAX, 2, [u64::from(req_id), 0, u64::from(len), 0, 0]);
        let reply = self.send_and_wait(&h)?;
        if reply.ty != XS_ERROR || &reply.body[..reply.len] != b"E2BIG\0" || reply.req_id != req_id
        {
            fuzz::fail(
                u64::MAX,
                "a request over the length limit did not get E2BIG",
            );
        }
        let page = self.page;
        if !self
            .events
            .wait(self.port, REPLY_TIMEOUT_NS, || vol32(page + ERROR) == 3)
        {
            fuzz::fail(
                u64::MAX,
                "the ring's error field never said XENSTORE_ERROR_PROTO",
            );
        }
        Ok("a request over the limit got E2BIG and closed the connection")
    }

    /// The last act: a request producer index more than a ring ahead of
    /// the consumer. The store drops the connection (`error` = 2, RINGIDX).
    fn bad_indices(&mut self) -> Result<&'static str, &'static str> {
        let cons = vol32(self.page + REQ_CONS);
        set32(
            self.page + REQ_PROD,
            cons.wrapping_add(RING + 1 + (cons & 0xfff)),
        );
        fuzz::record(u64::MAX, 0, [u64::from(cons), 0, 0, 0, 0]);
        send(self.port);
        let page = self.page;
        if !self
            .events
            .wait(self.port, REPLY_TIMEOUT_NS, || vol32(page + ERROR) == 2)
        {
            fuzz::fail(
                u64::MAX,
                "broken ring indices did not set XENSTORE_ERROR_RINGIDX",
            );
        }
        Ok("broken ring indices closed the connection")
    }
}

/// The index of the request in flight (for failure reports).
fn fuzz_index() -> u64 {
    fuzz::last_index()
}

/// Path pieces.
const WRITABLE: [&[u8]; 8] = [
    b"data",
    b"data/fuzz",
    b"control/shutdown",
    b"control/sysrq",
    b"feature",
    b"attr",
    b"error",
    b"device/suspend/event-channel",
];
const HOME_RO: [&[u8]; 9] = [
    b"name",
    b"domid",
    b"memory/target",
    b"device",
    b"console/ring-ref",
    b"store/port",
    b"vm",
    b"cpu/0/availability",
    b"control",
];
const NAMES: [&[u8]; 10] = [
    b"a", b"b", b"x1", b"node", b"deep", b"_", b"-", b"@", b"Zz9", b"fuzz",
];
const OTHER: [&[u8]; 8] = [
    b"/",
    b"/local",
    b"/local/domain",
    b"/local/domain/0",
    b"/local/domain/0/backend",
    b"/vm",
    b"/libxl",
    b"/local/pool/0/name",
];
const WATCH_PATHS: [&[u8]; 6] = [
    b"data",
    b"data/fuzz",
    b"/",
    b"@introduceDomain",
    b"@releaseDomain",
    b"control",
];

/// Appends to OUT's payload.
struct Payload {
    len: usize,
}

impl Payload {
    fn new() -> Payload {
        Payload { len: 0 }
    }

    fn push(&mut self, bytes: &[u8]) {
        // SAFETY: single-threaded; OUT is only written while building a request.
        let out = unsafe { &mut *core::ptr::addr_of_mut!(OUT) };
        let n = bytes.len().min(PAYLOAD_MAX - self.len);
        out[16 + self.len..16 + self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn byte(&mut self, b: u8) {
        self.push(&[b]);
    }

    fn num(&mut self, v: u64) {
        let mut buf = [0u8; 20];
        self.push(decimal(v, &mut buf));
    }
}

impl Fuzzer {
    /// Writes a path into `p`; what kind it is, and whether it is the
    /// writable area's root itself.
    fn path(&mut self, p: &mut Payload) -> (Kind, bool) {
        let absolute = self.rng.one_in(3);
        let home = |f: &mut Fuzzer, p: &mut Payload| {
            if absolute {
                p.push(b"/local/domain/");
                p.num(u64::from(f.me));
                p.byte(b'/');
            }
        };
        match self.rng.below(20) {
            0..=10 => {
                home(self, p);
                let base = self.rng.pick(&WRITABLE);
                p.push(base);
                let depth = match self.rng.below(10) {
                    0..=5 => self.rng.below(4),
                    6..=8 => self.rng.range(4, 30),
                    _ => self.rng.range(30, 800),
                };
                for _ in 0..depth {
                    p.byte(b'/');
                    if self.rng.one_in(64) {
                        // A long component: near and past the path limits.
                        let n = self.rng.range(100, 2100) as usize;
                        for _ in 0..n {
                            p.byte(b'l');
                        }
                    } else {
                        let name = self.rng.pick(&NAMES);
                        p.push(name);
                    }
                }
                (
                    Kind::Mine,
                    depth == 0 && (base == b"data" || base == b"data/fuzz"),
                )
            }
            11..=12 => {
                home(self, p);
                let name = self.rng.pick(&HOME_RO);
                p.push(name);
                (Kind::Home, false)
            }
            13..=14 => match self.linux {
                Some(l) => {
                    p.push(b"/local/domain/");
                    p.num(u64::from(l));
                    let tail: &[u8] = self.rng.pick(&[
                        b"" as &[u8],
                        b"/name",
                        b"/control/shutdown",
                        b"/data",
                        b"/data/fuzz",
                        b"/device/vbd",
                        b"/memory/target",
                    ]);
                    p.push(tail);
                    (Kind::Linux, false)
                }
                None => {
                    let other = self.rng.pick(&OTHER);
                    p.push(other);
                    (Kind::Any, false)
                }
            },
            15..=16 => {
                let other = self.rng.pick(&OTHER);
                p.push(other);
                if self.rng.one_in(2) {
                    p.push(b"/fuzz");
                }
                (Kind::Any, false)
            }
            // Odd characters, doubled and trailing slashes, empty, special.
            _ => {
                let odd: &[u8] = self.rng.pick(&[
                    b"" as &[u8],
                    b"data//x",
                    b"data/",
                    b"data/.",
                    b"data/..",
                    b"data/a b",
                    b"data/*",
                    b"data/\x01",
                    b"data/\xff\xfe",
                    b"@introduceDomain",
                    b"@releaseDomain",
                    b"@other",
                    b"//",
                    b"/local/domain/65535/x",
                    b"/local/domain/99999999/x",
                    b"\\data",
                ]);
                p.push(odd);
                if self.rng.one_in(4) {
                    for _ in 0..self.rng.below(16) {
                        let c = self.rng.next() as u8;
                        p.byte(if c == 0 { b'?' } else { c });
                    }
                }
                (Kind::Any, false)
            }
        }
    }

    fn tx(&mut self) -> u32 {
        match self.rng.below(10) {
            0..=6 => 0,
            7..=8 if self.ntx > 0 => self.txs[self.rng.below(self.ntx as u64) as usize],
            _ => {
                let any = self.rng.next() as u32;
                self.rng.pick(&[1, 2, 10, u32::MAX, any])
            }
        }
    }

    fn value(&mut self, p: &mut Payload) {
        let n = match self.rng.below(16) {
            0..=11 => self.rng.below(64),
            12..=13 => self.rng.range(64, 2048),
            14 => self.rng.pick(&[2047, 2048, 2049]),
            _ => self.rng.range(2049, 4000),
        } as usize;
        for _ in 0..n {
            let b = if self.rng.one_in(8) {
                self.rng.next() as u8
            } else {
                b'a' + self.rng.below(26) as u8
            };
            p.byte(b);
        }
    }

    /// The next request, with its payload in OUT.
    fn request(&mut self) -> Request {
        let mut p = Payload::new();
        let mut kind = Kind::Any;
        let roll = self.rng.below(100);
        let ty: u32 = match roll {
            0..=11 => 2,
            12..=25 => 11,
            26..=31 => 12,
            32..=37 => 13,
            38..=43 => 1,
            44..=46 => 22,
            47..=50 => 3,
            51..=55 => 14,
            56..=62 => 4,
            63..=65 => 5,
            66..=71 => 6,
            72..=76 => 7,
            77..=78 => 10,
            79 => 21,
            80..=84 => self.rng.pick(&PRIVILEGED),
            85..=89 => self.rng.pick(&[15, 16, 20, 23, 27, 28, 100]),
            _ => match self.rng.below(3) {
                0 => self.rng.below(27) as u32,
                1 => self.rng.next() as u32,
                _ => self.rng.below(64) as u32,
            },
        };
        let tx_id = match ty {
            6 => {
                if self.rng.one_in(8) {
                    self.tx()
                } else {
                    0
                }
            }
            7 if self.ntx > 0 && !self.rng.one_in(4) => {
                self.txs[self.rng.below(self.ntx as u64) as usize]
            }
            4 | 5 => self.rng.next() as u32 * u32::from(self.rng.one_in(4)),
            _ => self.tx(),
        };
        if roll >= 95 {
            // Bytes with no structure at all, for any type.
            let n = match self.rng.below(4) {
                0 => 0,
                1 => PAYLOAD_MAX,
                _ => self.rng.below(300) as usize,
            };
            for _ in 0..n {
                p.byte(self.rng.next() as u8);
            }
        } else {
            match ty {
                // One path: READ, DIRECTORY, GET_PERMS, MKDIR, RM.
                1..=3 | 12 | 13 => {
                    let root;
                    (kind, root) = self.path(&mut p);
                    if root && ty == 13 {
                        // Not `data` itself: the run needs somewhere to write.
                        p.push(b"/x");
                    }
                    self.terminate(&mut p);
                }
                11 => {
                    kind = self.path(&mut p).0;
                    p.byte(0);
                    self.value(&mut p);
                }
                14 => {
                    let root;
                    (kind, root) = self.path(&mut p);
                    if root {
                        // Giving `data` away would leave the run nowhere to write.
                        p.push(b"/x");
                    }
                    p.byte(0);
                    for _ in 0..self.rng.below(8) {
                        match self.rng.below(6) {
                            0 => {
                                p.byte(b'n');
                                p.num(u64::from(self.me));
                            }
                            1 => p.push(self.rng.pick(&[b"r0" as &[u8], b"w0", b"b0", b"n0"])),
                            2 => {
                                p.byte(self.rng.pick(b"rwbnx"));
                                p.num(self.rng.below(70000));
                            }
                            3 => p.push(b"r1"),
                            4 => p.push(b""),
                            _ => p.push(b"q"),
                        }
                        p.byte(0);
                    }
                }
                22 => {
                    kind = self.path(&mut p).0;
                    p.byte(0);
                    p.num(self.rng.pick(&[0, 1, 2, 100, 4096, u64::from(u32::MAX)]));
                    p.byte(0);
                }
                4 | 5 => {
                    let (path, token) = if ty == 5 && self.nwatch > 0 && !self.rng.one_in(4) {
                        self.watches[self.rng.below(self.nwatch as u64) as usize]
                    } else {
                        (
                            self.rng.below(WATCH_PATHS.len() as u64 + 1) as u8,
                            self.rng.below(40) as u32,
                        )
                    };
                    match WATCH_PATHS.get(usize::from(path)) {
                        Some(w) => p.push(w),
                        None => {
                            self.path(&mut p);
                        }
                    }
                    p.byte(0);
                    p.byte(b't');
                    p.num(u64::from(token));
                    p.byte(0);
                    if self.rng.one_in(16) {
                        // A depth: needs a feature the store does not offer.
                        p.push(b"3\0");
                    }
                    if ty == 4 && usize::from(path) < WATCH_PATHS.len() && self.nwatch < 32 {
                        self.watches[self.nwatch] = (path, token);
                        self.nwatch += 1;
                    }
                }
                6 => {
                    if self.rng.one_in(2) {
                        p.byte(0);
                    }
                }
                7 => {
                    let arg: &[u8] = self.rng.pick(&[
                        b"T\0" as &[u8],
                        b"F\0",
                        b"T\0",
                        b"F\0",
                        b"X\0",
                        b"T",
                        b"",
                    ]);
                    p.push(arg);
                }
                10 => {
                    let d: &[u8] = self.rng.pick(&[
                        b"0" as &[u8],
                        b"1",
                        b"65535",
                        b"65536",
                        b"-1",
                        b"abc",
                        b"",
                        b"007",
                    ]);
                    p.push(d);
                    self.terminate(&mut p);
                }
                // INTRODUCE <domid> <gfn> <port>, RELEASE <domid>, and the rest.
                _ => {
                    p.num(self.rng.below(8));
                    p.byte(0);
                    p.num(self.rng.below(0x1000));
                    p.byte(0);
                    p.num(self.rng.below(8));
                    p.byte(0);
                }
            }
        }
        Request {
            ty,
            req_id: self.rng.next() as u32,
            tx_id,
            len: p.len,
            kind,
        }
    }

    /// Ends a one-argument payload: mostly with its NUL, sometimes not,
    /// sometimes with more after it.
    fn terminate(&mut self, p: &mut Payload) {
        match self.rng.below(16) {
            0 => {}
            1 => p.push(b"\0junk\0"),
            _ => p.byte(0),
        }
    }

    /// Checks a reply against its request and tallies it.
    fn judge(&mut self, i: u64, req: &Request, reply: &Reply) {
        let body = &reply.body[..reply.len];
        let error = (reply.ty == XS_ERROR).then(|| {
            ERRNOS.iter().position(|e| {
                body.len() == e.len() + 1 && &body[..e.len()] == e.as_bytes() && body[e.len()] == 0
            })
        });
        let col = match error {
            None => 0,
            Some(Some(e)) => 1 + e,
            Some(None) => 17,
        };
        let row = (req.ty as usize).min(ROWS - 1);
        // SAFETY: single-threaded; HIST is only touched here and at the end.
        unsafe { (*core::ptr::addr_of_mut!(HIST))[row][col] += 1 };
        if reply.req_id != req.req_id || reply.tx_id != req.tx_id {
            fuzz::fail(
                i,
                "a reply that does not echo its request's id and transaction",
            );
        }
        if reply.ty != req.ty && reply.ty != XS_ERROR {
            fuzz::fail(i, "a reply of another type than its request's");
        }
        if error == Some(None) {
            fuzz::fail(i, "an error reply that names no xs_wire.h error");
        }
        let ok = error.is_none() && reply.ty == req.ty;
        if ok && PRIVILEGED.contains(&req.ty) {
            fuzz::fail(i, "a privileged request from a guest succeeded");
        }
        let mutating = matches!(req.ty, 11..=14);
        if ok && mutating && matches!(req.kind, Kind::Home | Kind::Linux) {
            fuzz::fail(i, "changed a node it has no write permission on");
        }
        if ok && matches!(req.ty, 1..=3 | 22) && req.kind == Kind::Linux {
            fuzz::fail(i, "read a node of another guest's");
        }
        match req.ty {
            6 if ok => match parse_id(body) {
                Some(id) if self.ntx < self.txs.len() => {
                    self.txs[self.ntx] = id;
                    self.ntx += 1;
                }
                Some(_) => {}
                None => fuzz::fail(i, "TRANSACTION_START did not answer a transaction id"),
            },
            // Ended: committed, abandoned, or gone (EAGAIN, ENOENT).
            7 if ok || matches!(col, 5 | 13) => self.forget_tx(req.tx_id),
            // RESET_WATCHES ends every transaction and watch.
            21 if ok => {
                self.ntx = 0;
                self.nwatch = 0;
            }
            _ => {}
        }
    }

    fn forget_tx(&mut self, id: u32) {
        if let Some(k) = self.txs[..self.ntx].iter().position(|&t| t == id) {
            self.txs[k] = self.txs[self.ntx - 1];
            self.ntx -= 1;
        }
    }

    /// Writes a fresh value to `data/m` outside any transaction and reads
    /// it back: the store must hold what it said it wrote.
    fn model_check(&mut self, i: u64, c: &mut Client) -> Result<(), &'static str> {
        let value = self.rng.next();
        let mut p = Payload::new();
        p.push(MODEL);
        p.byte(0);
        p.num(value);
        let req = Request {
            ty: 11,
            req_id: self.rng.next() as u32,
            tx_id: 0,
            len: p.len,
            kind: Kind::Mine,
        };
        record(i, &req);
        let reply = c.exchange(&req)?;
        if reply.ty != 11 {
            // Quotas may refuse it; then there is nothing to read back.
            let body = &reply.body[..reply.len];
            if body != b"ENOSPC\0" && body != b"ENOMEM\0" {
                fuzz::fail(i, "the consistency check's write was refused");
            }
            return Ok(());
        }
        let mut p = Payload::new();
        p.push(MODEL);
        p.byte(0);
        let req = Request {
            ty: 2,
            req_id: self.rng.next() as u32,
            tx_id: 0,
            len: p.len,
            kind: Kind::Mine,
        };
        record(i, &req);
        let reply = c.exchange(&req)?;
        let mut digits = [0u8; 20];
        let want = decimal(value, &mut digits);
        if reply.ty != 2 || &reply.body[..reply.len] != want {
            fuzz::fail(i, "read back another value than the one just written");
        }
        Ok(())
    }
}

/// A transaction id reply: decimal digits and a NUL.
fn parse_id(body: &[u8]) -> Option<u32> {
    let (last, digits) = body.split_last()?;
    if *last != 0 || digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    core::str::from_utf8(digits).ok()?.parse().ok()
}
