//! Seeded fuzzing from inside the test guest: what every fuzz mode shares (PRNG, `N:SEED` words, the last call, progress, failures, the clock, event waits) and the hypercall fuzzer (`fuzz-hypercalls=N:SEED`).
//!
//! Each mode takes `mode=N:SEED[:TRACE]` on the guest's command line: N
//! calls (or requests), a 64-bit seed (decimal or 0x-hex), and optionally
//! the index from which every call is printed before it is made, to find
//! the last one before a hang or a hypervisor crash. The calls depend only
//! on the seed and on what the hypervisor answered, so a run replays as
//! long as the answers are the same.

use crate::hypercall::{call, call5};
use crate::println;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use xen_abi::event_channel::DOMID_SELF;
use xen_abi::hypercall::*;

/// A fuzz mode's entry point: `Err` when it could not run at all; what it
/// found is counted by `fail`.
type Mode = fn(Params) -> Result<(), &'static str>;

/// The modes and the command-line words that start them, in the order they run.
const MODES: [(&str, u8, Mode); 4] = [
    ("fuzz-hypercalls", 1, hypercalls),
    ("fuzz-xenstore", 2, crate::fuzz_xenstore::run),
    ("fuzz-blkif", 3, crate::blk_garbage::fuzz),
    ("fuzz-netif", 4, crate::net_garbage::fuzz),
];

/// What the last call of each mode is called in a report.
const LAST_LABELS: [&str; 5] = ["", "call", "request", "request", "slot"];

/// Runs every fuzz mode the command line names. None if it names none;
/// otherwise whether all of them ran and found nothing.
pub fn run(cmdline: &str) -> Option<bool> {
    let mut any = None;
    for (word, id, mode) in MODES {
        let Some(parsed) = params(cmdline, word) else {
            continue;
        };
        let ok = match parsed {
            Ok(p) => {
                MODE.store(id, Ordering::SeqCst);
                let before = FAILS.load(Ordering::SeqCst);
                let result = mode(p);
                MODE.store(0, Ordering::SeqCst);
                match result {
                    Ok(()) => FAILS.load(Ordering::SeqCst) == before,
                    Err(why) => {
                        println!("fuzz: FAIL {word}: {why}");
                        false
                    }
                }
            }
            Err(why) => {
                println!("fuzz: FAIL {word}: {why}");
                false
            }
        };
        any = Some(any.unwrap_or(true) && ok);
    }
    any
}

/// A mode's parameters.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub count: u64,
    pub seed: u64,
    /// Calls from this index on are printed before they are made.
    pub trace_from: u64,
}

/// `word=N:SEED[:TRACE]` from the command line, if the word is there.
fn params(cmdline: &str, word: &str) -> Option<Result<Params, &'static str>> {
    let value = cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(word)?.strip_prefix('='))?;
    let mut parts = value.split(':');
    let (Some(count), Some(seed)) = (parts.next().and_then(number), parts.next().and_then(number))
    else {
        return Some(Err("expected <calls>:<seed>[:<trace-from>]"));
    };
    let trace_from = match parts.next() {
        None => u64::MAX,
        Some(t) => match number(t) {
            Some(t) => t,
            None => return Some(Err("bad <trace-from>")),
        },
    };
    Some(Ok(Params {
        count,
        seed,
        trace_from,
    }))
}

fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// splitmix64 (Steele, Lea, Flood 2014): one add and two multiplies per
/// word, every seed a full-period stream; no crate needed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 for n = 0), by multiply-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// A value near an edge more often than chance would give: 0, 1, all
    /// ones, powers of two and their neighbours, or anything.
    pub fn edgy(&mut self) -> u64 {
        match self.below(6) {
            0 => self.below(3),
            1 => u64::MAX - self.below(3),
            2 => {
                let p = 1u64 << self.below(64);
                p.wrapping_add(self.below(3)).wrapping_sub(1)
            }
            3 => u64::from(u32::MAX) - self.below(3),
            _ => self.next(),
        }
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            *b = self.next() as u8;
        }
    }
}

/// Which mode runs (0: none), for reports.
static MODE: AtomicU8 = AtomicU8::new(0);
/// The call about to be made, recorded before it is made.
static LAST_INDEX: AtomicU64 = AtomicU64::new(0);
static LAST_NR: AtomicU64 = AtomicU64::new(0);
static LAST_ARGS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
/// What the fuzzers found.
static FAILS: AtomicU64 = AtomicU64::new(0);
/// Failures printed in full; the rest are only counted.
const FAILS_SHOWN: u64 = 20;

/// Records call `index` (a hypercall number and its arguments, or a ring
/// request's main fields) before it is made, for `report_last`.
pub fn record(index: u64, nr: u64, args: [u64; 5]) {
    LAST_INDEX.store(index, Ordering::Relaxed);
    LAST_NR.store(nr, Ordering::Relaxed);
    for (slot, a) in LAST_ARGS.iter().zip(args) {
        slot.store(a, Ordering::Relaxed);
    }
}

/// The index of the last recorded call.
pub fn last_index() -> u64 {
    LAST_INDEX.load(Ordering::Relaxed)
}

/// Prints the last recorded call, if a fuzz mode is running (the guest's
/// fault and panic handlers call this).
pub fn report_last() {
    let mode = MODE.load(Ordering::SeqCst);
    if mode == 0 {
        return;
    }
    let a: [u64; 5] = core::array::from_fn(|i| LAST_ARGS[i].load(Ordering::Relaxed));
    println!(
        "fuzz: last {} #{}: {:x} {:x} {:x} {:x} {:x} {:x}",
        LAST_LABELS[usize::from(mode)],
        LAST_INDEX.load(Ordering::Relaxed),
        LAST_NR.load(Ordering::Relaxed),
        a[0],
        a[1],
        a[2],
        a[3],
        a[4]
    );
}

/// Prints a call the way `report_last` does, before it is made (hex
/// without `0x`: the hypervisor's log cuts console lines at 128 bytes).
pub fn trace(index: u64, nr: u64, a: [u64; 5]) {
    println!(
        "fuzz: #{index}: {nr:x} {:x} {:x} {:x} {:x} {:x}",
        a[0], a[1], a[2], a[3], a[4]
    );
}

/// Something the hypervisor or a backend must not have done: printed
/// (the first few in full, with the call) and counted; the run goes on.
pub fn fail(index: u64, what: &str) {
    let n = FAILS.fetch_add(1, Ordering::SeqCst);
    if n < FAILS_SHOWN {
        println!("fuzz: FAIL #{index}: {what}");
        report_last();
    }
}

/// Progress lines at every tenth of the run.
pub struct Progress {
    what: &'static str,
    total: u64,
    tenth: u64,
}

impl Progress {
    pub fn new(what: &'static str, total: u64) -> Progress {
        Progress {
            what,
            total,
            tenth: 1,
        }
    }

    /// Call after call `done` (1-based) finished.
    pub fn tick(&mut self, done: u64) {
        if self.tenth < 10 && done >= self.total * self.tenth / 10 && done < self.total {
            println!("fuzz: {} {}/{}", self.what, done, self.total);
            self.tenth += 1;
        }
    }
}

/// The final lines every mode prints: what it found, then the line
/// `cargo xtask fuzz` waits for.
pub fn done(what: &str, p: &Params) {
    println!("fuzz: {what}: {} failures", FAILS.load(Ordering::SeqCst));
    println!("fuzz: {what} {} calls, seed {}, done", p.count, p.seed);
}

/// The name of a Xen errno, for histograms.
pub fn errno_name(e: i64) -> &'static str {
    match e {
        EPERM => "EPERM",
        ENOENT => "ENOENT",
        ESRCH => "ESRCH",
        EINTR => "EINTR",
        EIO => "EIO",
        ENXIO => "ENXIO",
        E2BIG => "E2BIG",
        EAGAIN => "EAGAIN",
        ENOMEM => "ENOMEM",
        EACCES => "EACCES",
        EFAULT => "EFAULT",
        EBUSY => "EBUSY",
        EEXIST => "EEXIST",
        ENODEV => "ENODEV",
        EINVAL => "EINVAL",
        ENOSPC => "ENOSPC",
        ERANGE => "ERANGE",
        ENOSYS => "ENOSYS",
        ENODATA => "ENODATA",
        ETIME => "ETIME",
        EOVERFLOW => "EOVERFLOW",
        ERESTART => "ERESTART",
        EOPNOTSUPP => "EOPNOTSUPP",
        _ => "errno",
    }
}

/// One histogram cell: a label and its count; `errno` cells print as
/// `-NAME` (or the bare negative number if it has no name here).
pub enum Cell {
    Label(&'static str, u64),
    Errno(i64, u64),
}

/// A histogram row, `fuzz: <head>: <total>, <cell> <n>, …`, on as many
/// lines as keep each whole: the hypervisor's log takes `console_io` in
/// 128-byte pieces, one line each.
pub fn print_row(head: core::fmt::Arguments, total: u64, cells: &mut dyn Iterator<Item = Cell>) {
    let mut line = Line::new();
    line.push_fmt(format_args!("fuzz: {head}: {total} calls"));
    let mut sep = ", ";
    for cell in cells {
        if line.len > 100 {
            crate::hypercall::console_write(line.finish());
            line = Line::new();
            line.push_fmt(format_args!("fuzz: {head} (cont.): "));
            sep = "";
        }
        match cell {
            Cell::Label(name, n) => line.push_fmt(format_args!("{sep}{name} {n}")),
            Cell::Errno(e, n) => match errno_name(e) {
                "errno" => line.push_fmt(format_args!("{sep}-{e} {n}")),
                name => line.push_fmt(format_args!("{sep}-{name} {n}")),
            },
        }
        sep = ", ";
    }
    crate::hypercall::console_write(line.finish());
}

/// One console line being built.
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line {
            buf: [0; 256],
            len: 0,
        }
    }

    fn push_fmt(&mut self, args: core::fmt::Arguments) {
        let _ = core::fmt::Write::write_fmt(self, args);
    }

    fn finish(&mut self) -> &[u8] {
        let n = self.len.min(self.buf.len() - 1);
        self.buf[n] = b'\n';
        &self.buf[..=n]
    }
}

impl core::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            if self.len < self.buf.len() - 1 {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

/// Xen system time from a pvclock record read once: the hypervisor's
/// scale is fixed and guests see its TSC unchanged, so the record stays
/// good while the fuzzer moves shared_info and vcpu_info about.
#[derive(Clone, Copy)]
pub struct Clock {
    tsc: u64,
    ns: u64,
    mul: u32,
    shift: i8,
}

impl Clock {
    /// Maps shared_info at `gfn` and reads vCPU 0's time record from it.
    pub fn new(gfn: u64) -> Result<Clock, &'static str> {
        // struct xen_add_to_physmap { DOMID_SELF, size 0, space 0 (shared_info); idx 0; gpfn }
        let xatp: [u64; 3] = [u64::from(DOMID_SELF), 0, gfn];
        if call(MEMORY_OP, 7, xatp.as_ptr() as u64, 0) != 0 {
            return Err("add_to_physmap(shared_info) failed");
        }
        let at = gfn * 4096
            + (xen_abi::shared_info::vcpu_info_offset(0) + xen_abi::shared_info::TIME_OFFSET)
                as u64;
        for _ in 0..1000 {
            // SAFETY: shared_info, just mapped at `gfn`, which entry.S's
            // identity map covers (the fuzzers keep it below 4 GiB).
            let (v0, tsc, ns, scale, v1) = unsafe {
                let p = at as *const u32;
                let v0 = p.read_volatile();
                let tsc = (at as *const u64).add(1).read_volatile();
                let ns = (at as *const u64).add(2).read_volatile();
                let scale = (at as *const u64).add(3).read_volatile();
                (v0, tsc, ns, scale, p.read_volatile())
            };
            if v0 == v1 && v0 % 2 == 0 && scale as u32 != 0 {
                return Ok(Clock {
                    tsc,
                    ns,
                    mul: scale as u32,
                    shift: (scale >> 32) as u8 as i8,
                });
            }
        }
        Err("no stable pvclock record in shared_info")
    }

    /// Xen system time now, in ns.
    pub fn now(&self) -> u64 {
        // SAFETY: RDTSC has no side effects.
        let delta = unsafe { core::arch::x86_64::_rdtsc() }.wrapping_sub(self.tsc);
        let delta = if self.shift >= 0 {
            delta << self.shift
        } else {
            delta >> -self.shift
        };
        self.ns
            .wrapping_add(((u128::from(delta) * u128::from(self.mul)) >> 32) as u64)
    }
}

/// Waiting for an event channel the way a real frontend does: clear the
/// port's pending bit, look at the ring, and only then sleep in
/// SCHEDOP_poll (with a deadline), so no notification is lost.
#[derive(Clone, Copy)]
pub struct Events {
    shared_info: u64,
    pub clock: Clock,
}

impl Events {
    /// shared_info mapped at `gfn` (below 4 GiB, outside RAM).
    pub fn new(gfn: u64) -> Result<Events, &'static str> {
        Ok(Events {
            shared_info: gfn * 4096,
            clock: Clock::new(gfn)?,
        })
    }

    /// Clears `port`'s bit in shared_info's `evtchn_pending`, and its
    /// PENDING in the FIFO event word once the check `evtchn-fifo` moved
    /// this domain to the FIFO ABI.
    pub fn clear(&self, port: u32) {
        crate::evtchn_fifo::clear_pending(port);
        let word = self.shared_info
            + xen_abi::shared_info::EVTCHN_PENDING_OFFSET as u64
            + u64::from(port / 64) * 8;
        // SAFETY: shared_info is mapped at `shared_info` (identity-mapped
        // below 4 GiB); the hypervisor sets bits concurrently, so the clear
        // is one locked instruction.
        unsafe {
            core::arch::asm!("lock btr qword ptr [{}], {}", in(reg) word, in(reg) u64::from(port % 64));
        }
    }

    /// Waits until `ready` says yes, sleeping on `port` between looks;
    /// false if `timeout_ns` passed first.
    pub fn wait(&self, port: u32, timeout_ns: u64, mut ready: impl FnMut() -> bool) -> bool {
        let deadline = self.clock.now().saturating_add(timeout_ns);
        loop {
            self.clear(port);
            if ready() {
                return true;
            }
            let now = self.clock.now();
            if now >= deadline {
                return false;
            }
            // struct sched_poll { ports; nr_ports; pad; timeout (absolute ns) }
            let ports = [port];
            let poll: [u64; 3] = [ports.as_ptr() as u64, 1, deadline.min(now + 100_000_000)];
            call(SCHED_OP, SCHEDOP_POLL, poll.as_ptr() as u64, 0);
        }
    }
}

/// This domain's id, from its XenStore `domid` node.
pub fn my_domid(xs: &mut crate::frontend::Store) -> Result<u16, &'static str> {
    let mut out = [0u8; 256];
    let n = xs.read("domid", &mut out)?;
    core::str::from_utf8(&out[..n])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or("the domid node is not a number")
}

// ---------------------------------------------------------------------------
// The hypercall fuzzer.
//
// Every pointer it passes reaches only memory it has just written (its
// scratch pages, through a window of its own page tables), a page of 0xff
// bytes mapped read-only, dedicated sink pages for what the hypervisor
// keeps writing (vcpu_info, runstate), or nothing at all (not present in
// its page tables, or outside its RAM). So the hypervisor can never be
// asked to write over the guest's code, stack or page tables, and never
// reads stale bytes it could take for a valid shutdown reason or a GFN in
// the guest's RAM. Every GFN it passes is above its RAM (or in the low
// 640 KiB it never uses), every domain id that is not its own belongs to
// another domain, and every call that would legitimately end it is
// neutralised (see `sched_op` and `vcpu_op`).

/// The window: PML4 slot 1 of the guest's page tables, 4 KiB pages.
const WIN: u64 = 0x80_0000_0000;
const RW_PAGES: u64 = 16;
const RW_LEN: u64 = RW_PAGES * 4096;
/// The page after the scratch pages: not present.
const NOT_PRESENT: u64 = WIN + RW_LEN;
/// A page of 0xff bytes, mapped read-only: the hypervisor may read it (as
/// any structure it is safe: domain 0xffff, GFNs and counts out of range,
/// shutdown reason out of range) and must not write it.
const RO_VA: u64 = NOT_PRESENT + 4096;
/// Present in the guest's tables, at a guest-physical address outside its RAM.
const HOLE_VA: u64 = RO_VA + 4096;
const HOLE_GPA: u64 = 0x3f00_0000;
/// Present with a reserved bit set (bit 51, above any MAXPHYADDR here).
const RSVD_VA: u64 = HOLE_VA + 4096;
/// A 2 MiB page at a guest-physical address outside its RAM.
const BIG_VA: u64 = WIN + 0x20_0000;
const BIG_GPA: u64 = 0x3e00_0000;
const WIN_END: u64 = WIN + 0x40_0000;
/// Guest-physical addresses the identity map reaches but no GFN the
/// fuzzer passes ever maps: pointers here fault in the second stage.
const IDENTITY_HOLE: u64 = 0x3000_0000;
/// The low RAM below 640 KiB: never used by this guest, so GFNs there may
/// be remapped or removed (page 0 is also unmapped in its page tables).
const LOW_FREE_GFNS: u64 = 0xa0;
/// The vector the test operation raises before SCHEDOP_block (idt.rs).
const TEST_VECTOR: u64 = crate::idt::TEST_VECTOR as u64;
const MAX_PORTS: usize = 32;

#[repr(C, align(4096))]
struct Table([u64; 512]);
#[repr(C, align(4096))]
struct Pages<const N: usize>([[u8; 4096]; N]);

static mut WIN_PDPT: Table = Table([0; 512]);
static mut WIN_PD: Table = Table([0; 512]);
static mut WIN_PT: Table = Table([0; 512]);
/// The guest's first 2 MiB in 4 KiB pages, page 0 left out.
static mut LOW_PT: Table = Table([0; 512]);
static mut SCRATCH: Pages<{ RW_PAGES as usize }> = Pages([[0; 4096]; RW_PAGES as usize]);
static mut RO_PAGE: Pages<1> = Pages([[0xff; 4096]; 1]);
/// Where vcpu_info (page 0) and runstate and time areas (page 1) may be
/// registered, and where GNTTABOP_copy may write (pages 2 and 3).
static mut SINK: Pages<4> = Pages([[0; 4096]; 4]);

/// Hypercall families, the histogram's rows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    XenVersion,
    MemoryOp,
    GrantTableOp,
    EventChannelOp,
    SchedOp,
    HvmOp,
    VcpuOp,
    ConsoleIo,
    Arch7,
    Privileged,
    Unknown,
}

const FAMILIES: [(Family, &str, u64); 11] = [
    (Family::XenVersion, "xen_version", 8),
    (Family::MemoryOp, "memory_op", 12),
    (Family::GrantTableOp, "grant_table_op", 16),
    (Family::EventChannelOp, "event_channel_op", 16),
    (Family::SchedOp, "sched_op", 8),
    (Family::HvmOp, "hvm_op", 8),
    (Family::VcpuOp, "vcpu_op", 10),
    (Family::ConsoleIo, "console_io", 6),
    (Family::Arch7, "arch_7", 3),
    (Family::Privileged, "privileged", 4),
    (Family::Unknown, "unknown", 6),
];

/// Histogram columns: 0 = returned 0, 1 = positive, 1 + e = -e for
/// e in 1..=127, 129 = any other negative value.
const COLS: usize = 130;
static mut HIST: [[u64; COLS]; FAMILIES.len()] = [[0; COLS]; FAMILIES.len()];

/// What to check once a call returns.
enum Check {
    None,
    /// Only -ENOSYS is right (an unknown hypercall number).
    Enosys,
    /// Only -EFAULT is right (an argument that cannot be read).
    Fault,
    /// XENVER_version: 4.17.
    Version,
    /// Must fail: an operation on another domain this guest has no right to.
    Refused(&'static str),
    /// EVTCHNOP_*: on success, the port the hypervisor wrote at this address.
    NewPort(u64),
    /// EVTCHNOP_init_control (`link_bits` at this address, else
    /// expand_array): never accepts GFN -2 (XSA-188); on success says 17.
    FifoSetup {
        link_bits: Option<u64>,
        bad_gfn: bool,
    },
    /// GNTTABOP_copy/map_grant_ref: the ops (at `va`, `size` bytes apart)
    /// set in `foreign` touch a domain that never granted this guest
    /// anything; their status must not be GNTST_okay.
    Statuses {
        va: u64,
        size: u64,
        status_at: u64,
        foreign: u64,
    },
}

/// One call: number, arguments, family, what to check.
struct Call {
    nr: u64,
    args: [u64; 5],
    family: Family,
    check: Check,
}

struct Fuzzer {
    rng: Rng,
    me: u16,
    /// The other domains: the driver domain and the Linux guest.
    others: [u16; 2],
    /// Domain 1, the Linux guest, unless this is domain 1.
    linux: Option<u16>,
    ram_gfns: u64,
    /// Grant frame 0 and shared_info (for the clock), just above RAM.
    grant_gfn: u64,
    /// First GFN add_to_physmap may use; up to `IDENTITY_HOLE`.
    map_low: u64,
    scratch_gfn: u64,
    sink_gfn: u64,
    sink_va: u64,
    ports: [u32; MAX_PORTS],
    nports: usize,
    /// An interrupt is pending that IF=0 keeps undelivered: SCHEDOP_block
    /// and SCHEDOP_poll return at once from now on.
    irq_pending: bool,
    /// The call's pointers include the read-only page.
    used_ro: bool,
    /// A memory_op succeeded since grant frame 0 was last put at `grant_gfn`.
    physmap_changed: bool,
    clock: Clock,
}

/// `fuzz-hypercalls=N:SEED`.
fn hypercalls(p: Params) -> Result<(), &'static str> {
    let mut f = Fuzzer::new(p.seed)?;
    println!(
        "fuzz: hypercalls: {} calls, seed {}, domain {}, RAM {:#x} pages, window {WIN:#x}",
        p.count, p.seed, f.me, f.ram_gfns
    );
    let mut progress = Progress::new("hypercalls", p.count);
    for i in 0..p.count {
        f.used_ro = false;
        let c = f.next_call();
        record(i, c.nr, c.args);
        if i >= p.trace_from {
            trace(i, c.nr, c.args);
        }
        let ret = call5(c.nr, c.args);
        f.physmap_changed |= c.family == Family::MemoryOp && ret >= 0;
        f.tally(c.family, ret);
        f.check(i, &c, ret);
        progress.tick(i + 1);
    }
    // SAFETY: single-threaded; the fuzzing is over.
    let hist = unsafe { &*core::ptr::addr_of!(HIST) };
    for (row, (family, name, _)) in hist.iter().zip(FAMILIES) {
        let nr = match family {
            Family::XenVersion => XEN_VERSION,
            Family::MemoryOp => MEMORY_OP,
            Family::GrantTableOp => GRANT_TABLE_OP,
            Family::EventChannelOp => EVENT_CHANNEL_OP,
            Family::SchedOp => SCHED_OP,
            Family::HvmOp => HVM_OP,
            Family::VcpuOp => VCPU_OP,
            Family::ConsoleIo => CONSOLE_IO,
            Family::Arch7 => ARCH_7,
            // sysctl, domctl, platform_op, hypfs_op: one row.
            Family::Privileged => SYSCTL,
            Family::Unknown => u64::MAX,
        };
        let total: u64 = row.iter().sum();
        let mut cells = row
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(col, &n)| match col {
                0 => Cell::Label("ok", n),
                1 => Cell::Label("positive", n),
                129 => Cell::Label("other", n),
                c => Cell::Errno(c as i64 - 1, n),
            });
        if nr == u64::MAX {
            print_row(format_args!("hypercall other ({name})"), total, &mut cells);
        } else {
            print_row(format_args!("hypercall {nr} ({name})"), total, &mut cells);
        }
    }
    done("hypercalls", &p);
    Ok(())
}

impl Fuzzer {
    /// A call of `nr` with its first two arguments and harmless words in
    /// the other three (registers the sub-op does not read).
    fn call_with(&mut self, (nr, cmd, arg): (u64, u64, u64), family: Family, check: Check) -> Call {
        Call {
            nr,
            args: [
                cmd,
                arg,
                self.safe_word(),
                self.safe_word(),
                self.safe_word(),
            ],
            family,
            check,
        }
    }

    fn new(seed: u64) -> Result<Fuzzer, &'static str> {
        let mut xs = crate::frontend::Store::new();
        let me = my_domid(&mut xs)
            .map_err(|_| "cannot read its domid from XenStore (boot it with the driver domain)")?;
        let ram_gfns = ram_top()?.div_ceil(4096);
        let grant_gfn = above_ram_gfn()?;
        let map_low = grant_gfn + 16;
        if map_low >= IDENTITY_HOLE >> 12 {
            return Err("too much RAM for the fuzzer's layout (at most 768 MiB)");
        }
        // Grant frame 0 (the checks put it at 0x1000 already; here too, so
        // the entries below are reachable at `grant_gfn`).
        let xatp: [u64; 3] = [u64::from(DOMID_SELF) | (1 << 32), 0, grant_gfn];
        if call(MEMORY_OP, 7, xatp.as_ptr() as u64, 0) != 0 {
            return Err("add_to_physmap(grant table) failed");
        }
        let clock = Clock::new(grant_gfn + 4)?;
        install_window();
        let others = match me {
            0 | 1 => [0, 2],
            _ => [0, 1],
        };
        let mut f = Fuzzer {
            rng: Rng::new(seed),
            me,
            others,
            linux: (me != 1).then_some(1),
            ram_gfns,
            grant_gfn,
            map_low,
            scratch_gfn: core::ptr::addr_of!(SCRATCH) as u64 >> 12,
            sink_gfn: core::ptr::addr_of!(SINK) as u64 >> 12,
            sink_va: core::ptr::addr_of!(SINK) as u64,
            ports: [0; MAX_PORTS],
            nports: 0,
            irq_pending: false,
            used_ro: false,
            physmap_changed: false,
            clock,
        };
        // The console and XenStore channels the hypervisor made.
        f.add_port(1);
        f.add_port(2);
        for gref in 8..24 {
            f.rewrite_grant(gref);
        }
        Ok(f)
    }

    fn add_port(&mut self, port: u32) {
        if self.ports[..self.nports].contains(&port) {
            return;
        }
        if self.nports < MAX_PORTS {
            self.nports += 1;
        }
        let at = self.rng.below(self.nports as u64) as usize;
        self.ports[at] = port;
    }

    fn tally(&mut self, family: Family, ret: i64) {
        let col = match ret {
            0 => 0,
            r if r > 0 => 1,
            r if r >= -127 => 1 + (-r) as usize,
            _ => 129,
        };
        let row = FAMILIES.iter().position(|f| f.0 == family).unwrap_or(0);
        // SAFETY: single-threaded; HIST is only touched here and at the end.
        unsafe { (*core::ptr::addr_of_mut!(HIST))[row][col] += 1 };
    }

    fn check(&mut self, i: u64, c: &Call, ret: i64) {
        if ret < -4095 {
            fail(i, "a return value that is neither a result nor a Xen errno");
        }
        if self.used_ro && !ro_page_intact() {
            fail(i, "the hypervisor wrote through a read-only guest mapping");
            // Put the pattern back so one bug is reported once.
            // SAFETY: the guest's own page, mapped read-only only in the window.
            unsafe { (*core::ptr::addr_of_mut!(RO_PAGE)).0[0].fill(0xff) };
        }
        match c.check {
            Check::None => {}
            Check::Enosys => {
                if ret != -ENOSYS {
                    fail(i, "an unknown hypercall number did not get -ENOSYS");
                }
            }
            Check::Fault => {
                if ret != -EFAULT {
                    fail(i, "an argument that cannot be read did not get -EFAULT");
                }
            }
            Check::Version => {
                if ret != i64::from((VERSION_MAJOR << 16) | VERSION_MINOR) {
                    fail(i, "XENVER_version changed");
                }
            }
            Check::Refused(what) => {
                if ret == 0 {
                    fail(i, what);
                }
            }
            Check::FifoSetup { link_bits, bad_gfn } => {
                if ret == 0 && bad_gfn {
                    fail(i, "FIFO set-up accepted GFN -2 (XSA-188)");
                }
                if let (0, Some(va)) = (ret, link_bits) {
                    if peek32(va).is_some_and(|w| w & 0xff != 17) {
                        fail(i, "init_control did not say link_bits 17");
                    }
                }
            }
            Check::NewPort(va) => {
                if ret == 0 {
                    if let Some(port) = peek32(va) {
                        self.add_port(port);
                    }
                }
            }
            Check::Statuses {
                va,
                size,
                status_at,
                foreign,
            } => {
                if ret != 0 {
                    return;
                }
                for k in 0..64 {
                    if foreign & (1 << k) == 0 {
                        continue;
                    }
                    let at = va + k * size + status_at;
                    if peek16(at) == Some(0) {
                        fail(
                            i,
                            "a grant operation on a domain that granted this guest nothing succeeded",
                        );
                    }
                }
            }
        }
    }

    fn next_call(&mut self) -> Call {
        let total: u64 = FAMILIES.iter().map(|f| f.2).sum();
        let mut r = self.rng.below(total);
        let mut family = Family::Unknown;
        for (f, _, w) in FAMILIES {
            if r < w {
                family = f;
                break;
            }
            r -= w;
        }
        match family {
            Family::XenVersion => self.xen_version(),
            Family::MemoryOp => self.memory_op(),
            Family::GrantTableOp => self.grant_table_op(),
            Family::EventChannelOp => self.event_channel_op(),
            Family::SchedOp => self.sched_op(),
            Family::HvmOp => self.hvm_op(),
            Family::VcpuOp => self.vcpu_op(),
            Family::ConsoleIo => self.console_io(),
            Family::Arch7 => self.arch_7(),
            Family::Privileged => self.privileged(),
            Family::Unknown => self.unknown(),
        }
    }

    // ---- values ----------------------------------------------------------

    /// Where a structure of `len` bytes goes: mostly freshly written
    /// scratch (sometimes across a page, or running into the page that is
    /// not present), otherwise somewhere that cannot be used.
    fn place(&mut self, len: u64) -> u64 {
        if self.rng.one_in(8) {
            self.bad_ptr()
        } else {
            self.fresh(len)
        }
    }

    fn fresh(&mut self, len: u64) -> u64 {
        let len = len.clamp(1, RW_LEN);
        let off = match self.rng.below(20) {
            0..=11 => self.rng.below((RW_LEN - len) / 8 + 1) * 8,
            12..=13 => self.rng.below(RW_LEN - len + 1),
            14..=16 => {
                let page = self.rng.range(1, RW_PAGES - 1) * 4096;
                page - self.rng.range(1, len.min(4096)).min(page)
            }
            _ => RW_LEN - self.rng.range(1, len),
        };
        WIN + off
    }

    /// A pointer to nothing the hypervisor may write: not present, the
    /// read-only page, outside RAM, a reserved-bit PTE, page 0, past 4 GiB,
    /// non-canonical.
    fn bad_ptr(&mut self) -> u64 {
        let r = self.rng.below(4096);
        match self.rng.below(11) {
            0 => NOT_PRESENT + r,
            1 => {
                self.used_ro = true;
                RO_VA + r
            }
            2 => HOLE_VA + r,
            3 => RSVD_VA + r,
            4 => BIG_VA + self.rng.below(0x20_0000),
            5 => IDENTITY_HOLE + self.rng.below(0x1000_0000),
            6 => 0x1_0000_0000 - self.rng.range(1, 64),
            7 => 0x8000_0000_0000_0000 | self.rng.next(),
            8 => 0xffff_8000_0000_0000 + self.rng.below(1 << 40),
            9 => r,
            _ => random_ptr(&mut self.rng),
        }
    }

    /// A pointer to nothing the hypervisor can even read: `bad_ptr` but
    /// for the read-only page.
    fn unreadable_ptr(&mut self) -> u64 {
        let used_ro = self.used_ro;
        loop {
            let p = self.bad_ptr();
            if !(RO_VA..RO_VA + 4096).contains(&p) {
                self.used_ro = used_ro;
                return p;
            }
        }
    }

    /// A word that is harmless whatever the hypervisor takes it for: as a
    /// pointer it reaches nothing, as a GFN nothing this guest uses.
    fn safe_word(&mut self) -> u64 {
        match self.rng.below(7) {
            0 => self.rng.below(LOW_FREE_GFNS),
            1 => self.rng.below(17),
            2 => u64::MAX - self.rng.below(4096),
            3 => random_ptr(&mut self.rng),
            4 => IDENTITY_HOLE + self.rng.below(0x1000_0000),
            5 => {
                let k = self.rng.range(36, 63);
                1u64 << if k == 39 { 40 } else { k }
            }
            _ => 0x8000_0000 | (self.rng.next() & 0x7fff_ffff),
        }
    }

    /// A GFN add_to_physmap may put a frame at, or remove_from_physmap
    /// take away: above RAM (clear of the fixed grant frame and shared_info),
    /// in the unused low RAM, scattered far up, or invalid.
    fn map_gfn(&mut self) -> u64 {
        match self.rng.below(16) {
            0..=6 => self.rng.range(self.map_low, (IDENTITY_HOLE >> 12) - 1),
            7..=9 => 0x10_0000 + self.rng.below(0x1000),
            10..=11 => self.rng.below(LOW_FREE_GFNS),
            // Scattered: each may cost the hypervisor page-table pages.
            12 => 0x10_0000 + self.rng.below((1 << 36) - 0x10_0000),
            13 => (1 << 36) + self.rng.below(1 << 20),
            14 => u64::MAX - self.rng.below(16),
            _ => {
                let w = self.rng.next();
                if w < 1 << 36 {
                    w | 1 << 36
                } else {
                    w
                }
            }
        }
    }

    /// A GFN the hypervisor may write into: the sink and scratch pages,
    /// unused low RAM, or nothing.
    fn write_gfn(&mut self) -> u64 {
        match self.rng.below(8) {
            0..=2 => self.sink_gfn + 2 + self.rng.below(2),
            3..=4 => self.scratch_gfn + self.rng.below(RW_PAGES),
            5 => self.rng.below(LOW_FREE_GFNS),
            6 => (IDENTITY_HOLE >> 12) + self.rng.below(0x1_0000),
            _ => self.safe_word(),
        }
    }

    /// Any GFN of this guest to read from, its code included.
    fn read_gfn(&mut self) -> u64 {
        match self.rng.below(6) {
            0 => self.rng.below(self.ram_gfns),
            1 => self.scratch_gfn + self.rng.below(RW_PAGES),
            2 => self.grant_gfn + self.rng.below(5),
            _ => self.write_gfn(),
        }
    }

    /// A domain id: itself (both ways), the others, reserved ids, anything.
    fn domid(&mut self) -> u16 {
        match self.rng.below(8) {
            0 | 1 => DOMID_SELF,
            2 => self.me,
            3 | 4 => self.rng.pick(&self.others),
            5 => 0x7ff1 + self.rng.below(15) as u16,
            _ => self.rng.next() as u16,
        }
    }

    /// A domain id that is not this guest's (for remote shutdown).
    fn not_me(&mut self) -> u16 {
        loop {
            let d = self.domid();
            if d != DOMID_SELF && d != self.me {
                return d;
            }
        }
    }

    fn is_other(&self, d: u16) -> bool {
        d != self.me && d != DOMID_SELF && self.others.contains(&d)
    }

    fn port(&mut self) -> u32 {
        match self.rng.below(8) {
            0..=3 if self.nports > 0 => self.ports[self.rng.below(self.nports as u64) as usize],
            4 | 5 => self.rng.below(64) as u32,
            6 => self.rng.pick(&[0, 4095, 4096, u32::MAX]),
            _ => self.rng.next() as u32,
        }
    }

    /// A grant reference: its own (8..24), the reserved ones, any.
    fn gref(&mut self) -> u32 {
        match self.rng.below(6) {
            0..=2 => self.rng.range(8, 23) as u32,
            3 => self.rng.below(8) as u32,
            4 => self.rng.below(1024) as u32,
            _ => self.rng.next() as u32,
        }
    }

    /// A batch length: mostly a few, sometimes none, the limit, or absurd.
    fn count(&mut self) -> u64 {
        match self.rng.below(20) {
            0 => 0,
            1..=8 => 1,
            9..=13 => self.rng.range(2, 8),
            14..=16 => self.rng.range(9, 64),
            17 => self.rng.pick(&[511, 512, 513]),
            _ => self.rng.edgy(),
        }
    }

    /// Rewrites grant entry `gref` (8..24) of frame 0: to itself, to the
    /// others, read-only or not, or invalid; always of a frame it may
    /// lend out (sink or scratch pages, unused low RAM) or of none.
    fn rewrite_grant(&mut self, gref: u64) {
        // A memory_op may have moved grant frame 0 away (add_to_physmap
        // leaves a hole where a page was): put it back before writing.
        if self.physmap_changed {
            self.physmap_changed = false;
            let xatp: [u64; 3] = [u64::from(DOMID_SELF) | (1 << 32), 0, self.grant_gfn];
            call(MEMORY_OP, 7, xatp.as_ptr() as u64, 0);
        }
        let frame = match self.rng.below(6) {
            0..=1 => self.sink_gfn + 2 + self.rng.below(2),
            2..=3 => self.scratch_gfn + self.rng.below(RW_PAGES),
            4 => self.rng.below(LOW_FREE_GFNS),
            _ => 0xffff_0000 | self.rng.next() & 0xffff,
        } as u32;
        let domid = match self.rng.below(4) {
            0 | 1 => self.me,
            2 => self.rng.pick(&self.others),
            _ => self.rng.next() as u16,
        };
        let flags: u16 = match self.rng.below(6) {
            0..=2 => 1,
            3 => 1 | 4,
            4 => 0,
            _ => self.rng.next() as u16,
        };
        let entry = (self.grant_gfn * 4096 + gref * 8) as *mut u16;
        // SAFETY: entry `gref` of grant frame 0, mapped at `grant_gfn`
        // (identity-mapped); domid and frame before flags, as a granter must.
        unsafe {
            entry.write_volatile(0);
            entry.add(1).write_volatile(domid);
            entry.add(2).cast::<u32>().write_volatile(frame);
            entry.write_volatile(flags);
        }
    }

    // ---- families --------------------------------------------------------

    fn xen_version(&mut self) -> Call {
        let cmd = match self.rng.below(12) {
            0..=8 => self.rng.below(9),
            9 => self.rng.range(9, 20),
            _ => self.rng.edgy(),
        };
        let check = if cmd == XENVER_VERSION {
            Check::Version
        } else {
            Check::None
        };
        // Outputs are at most 1 KiB (XENVER_commandline); get_features reads first.
        let arg = self.place(1024);
        let mut s = Struct::random(&mut self.rng, 8);
        s.w32(0, self.rng.below(3) as u32);
        self.emit(arg, &s);
        self.call_with((XEN_VERSION, cmd, arg), Family::XenVersion, check)
    }

    fn memory_op(&mut self) -> Call {
        let cmd = match self.rng.below(24) {
            0..=5 => 7,
            6..=7 => 9,
            8 => 15,
            9..=15 => self.rng.below(30),
            // The balloon driver's sub-ops.
            16..=19 => self.rng.pick(&[0, 1, 6, 1]),
            20 => self.rng.pick(&[2, 3, 4, 16, 17]),
            _ => self.rng.edgy(),
        };
        // Bits 6 and up of the command are a continuation's start extent.
        let cmd_word = if self.rng.one_in(8) {
            cmd | (self.rng.next() << 6)
        } else {
            cmd
        };
        let arg = match cmd {
            // struct xen_add_to_physmap { domid, size, space; idx; gpfn }
            7 => {
                let space = match self.rng.below(8) {
                    0..=2 => 0,
                    3..=5 => 1,
                    _ => self.rng.pick(&[2, 3, 4, 5, 6, u32::MAX]),
                };
                // Spaces 0 and 1 index shared_info and grant frames; the
                // others name GFNs to move, which must not be its RAM.
                let idx = match space {
                    0 | 1 => match self.rng.below(4) {
                        0..=2 => self.rng.below(34),
                        _ => self.rng.edgy(),
                    },
                    _ => self.map_gfn(),
                };
                let mut s = Struct::new(24);
                s.w16(0, self.domid());
                s.w16(2, self.rng.next() as u16);
                s.w32(4, space);
                s.w64(8, idx);
                s.w64(16, self.map_gfn());
                self.put(s)
            }
            // struct xen_memory_map { nr_entries; pad; buffer }
            9 | 10 => {
                let n = self.rng.pick(&[0, 1, 3, 4, 5, 8, 128]);
                let buffer = self.place(20 * n.max(1));
                let mut s = Struct::new(16);
                s.w32(
                    0,
                    if self.rng.one_in(8) {
                        self.rng.next() as u32
                    } else {
                        n as u32
                    },
                );
                s.w64(8, buffer);
                self.put(s)
            }
            // struct xen_remove_from_physmap { domid; pad; gpfn }
            15 => {
                let mut s = Struct::new(16);
                s.w16(0, self.domid());
                s.w64(8, self.map_gfn());
                self.put(s)
            }
            // Reservations: struct xen_memory_reservation { extent_start;
            // nr_extents; extent_order; mem_flags; domid }. The extents are
            // GFNs above its RAM: even a future implementation of these
            // only adds or takes pages there.
            0 | 1 | 6 => self.reservation(cmd),
            // current/maximum_reservation: a domid_t.
            3 | 4 => {
                let mut s = Struct::new(8);
                s.w16(0, self.domid());
                self.put(s)
            }
            // struct xen_pod_target { target_pages; tot_pages;
            // pod_cache_pages; pod_entries; domid }
            16 | 17 => {
                let mut s = Struct::random(&mut self.rng, 40);
                s.w16(32, self.domid());
                self.put(s)
            }
            // xen_memory_exchange: two reservations and nr_exchanged.
            11 => {
                let a = self.reservation_struct();
                let b = self.reservation_struct();
                let mut s = Struct::new(72);
                s.b[..32].copy_from_slice(&a.b[..32]);
                s.b[32..64].copy_from_slice(&b.b[..32]);
                s.w64(64, self.rng.below(4));
                self.put(s)
            }
            // xen_add_to_physmap_batch { domid, space, size, foreign domid;
            // idxs; gpfns; errs }
            23 => {
                let n = self.count().min(1 << 20);
                let idxs = self.gfn_array(n);
                let gpfns = self.gfn_array(n);
                let errs = self.place(4 * n.max(1));
                let mut s = Struct::new(32);
                s.w16(0, self.domid());
                s.w16(2, self.rng.below(6) as u16);
                s.w16(4, n as u16);
                s.w16(6, self.domid());
                s.w64(8, idxs);
                s.w64(16, gpfns);
                s.w64(24, errs);
                self.put(s)
            }
            _ => self.blob(8),
        };
        Call {
            nr: MEMORY_OP,
            args: [
                cmd_word,
                arg,
                self.safe_word(),
                self.safe_word(),
                self.safe_word(),
            ],
            family: Family::MemoryOp,
            check: Check::None,
        }
    }

    fn reservation_struct(&mut self) -> Struct {
        let n = self.count().min(1 << 20);
        let extents = self.gfn_array(n);
        let mut s = Struct::new(32);
        s.w64(0, extents);
        s.w64(
            8,
            if self.rng.one_in(8) {
                self.rng.edgy()
            } else {
                n
            },
        );
        s.w32(
            16,
            match self.rng.below(4) {
                0 | 1 => 0,
                2 => self.rng.below(10) as u32,
                _ => self.rng.next() as u32,
            },
        );
        s.w32(20, self.rng.next() as u32 & 0x7_00ff);
        s.w16(24, self.domid());
        s
    }

    /// A reservation; a decrease of extents larger than a page takes them
    /// above RAM only: one at a low GFN would reach into the guest's code.
    fn reservation(&mut self, cmd: u64) -> u64 {
        let mut s = self.reservation_struct();
        let order = u32::from_le_bytes(s.b[16..20].try_into().unwrap_or([0; 4]));
        if cmd == 1 && order > 0 {
            let n = self.rng.range(1, 4);
            let at = self.place(8 * n);
            for k in 0..n {
                let g = self.rng.range(self.map_low, (IDENTITY_HOLE >> 12) - 1024);
                if !self.emit_word(at + 8 * k, g) {
                    break;
                }
            }
            s.w64(0, at);
            s.w64(8, n);
        }
        self.put(s)
    }

    /// A fresh array of `n` GFNs fit for any physmap operation.
    fn gfn_array(&mut self, n: u64) -> u64 {
        let at = self.place(8 * n.clamp(1, 512));
        let fit = n.min(RW_LEN / 8);
        for k in 0..fit {
            let g = if self.rng.one_in(2) {
                self.map_gfn()
            } else {
                self.safe_word()
            };
            if !self.emit_word(at + 8 * k, g) {
                break;
            }
        }
        at
    }

    fn grant_table_op(&mut self) -> Call {
        if self.rng.one_in(8) {
            let gref = self.rng.range(8, 23);
            self.rewrite_grant(gref);
        }
        let cmd = match self.rng.below(24) {
            0..=5 => 5,
            6..=8 => 0,
            9..=10 => 1,
            11..=12 => 2,
            13 => 6,
            14 => 8,
            15 => 9,
            16 => 10,
            17..=20 => self.rng.below(14),
            _ => self.rng.edgy(),
        };
        let count = self.count();
        let (arg, check) = match cmd {
            5 => self.copy_batch(count),
            0 => self.map_batch(count),
            // struct gnttab_unmap_grant_ref { host_addr; dev_bus_addr; handle; status; pad }
            1 => {
                let at = self.array(count, 24, |f| {
                    let mut s = Struct::random(&mut f.rng, 24);
                    s.w64(0, f.host_addr());
                    s.w32(16, f.rng.pick(&[0, 1, 2, 1023, 1024, u32::MAX]));
                    s
                });
                (at, Check::None)
            }
            // struct gnttab_setup_table { dom; pad; nr_frames; status; pad; frame_list }
            2 => {
                let at = self.array(count, 24, |f| {
                    let n = match f.rng.below(4) {
                        0..=2 => f.rng.below(36),
                        _ => f.rng.edgy(),
                    };
                    let list = f.place(8 * n.clamp(1, 64));
                    let mut s = Struct::random(&mut f.rng, 24);
                    s.w16(0, f.domid());
                    s.w32(4, n as u32);
                    s.w64(16, list);
                    s
                });
                (at, Check::None)
            }
            // struct gnttab_query_size / get_version: dom first.
            6 | 10 => {
                let at = self.array(count, 16, |f| {
                    let mut s = Struct::random(&mut f.rng, 16);
                    s.w16(0, f.domid());
                    s
                });
                (at, Check::None)
            }
            8 => {
                let mut s = Struct::new(4);
                s.w32(0, self.rng.pick(&[0, 1, 1, 2, 3, u32::MAX]));
                (self.put(s), Check::None)
            }
            // struct gnttab_get_status_frames { nr_frames; dom; status; frame_list }
            9 => {
                let list = self.place(8 * 64);
                let mut s = Struct::new(16);
                s.w32(0, self.rng.below(70) as u32);
                s.w16(4, self.domid());
                s.w64(8, list);
                (self.put(s), Check::None)
            }
            _ => (self.blob(16), Check::None),
        };
        Call {
            nr: GRANT_TABLE_OP,
            args: [cmd, arg, count, self.safe_word(), self.safe_word()],
            family: Family::GrantTableOp,
            check,
        }
    }

    /// A GPA for a grant mapping: above RAM and clear of the fixed frames,
    /// never where its pointers could then read.
    fn host_addr(&mut self) -> u64 {
        match self.rng.below(6) {
            0 | 1 => (0x20_0000 + self.rng.below(0x1000)) * 4096,
            2 => self.rng.range(self.map_low, (IDENTITY_HOLE >> 12) - 1) * 4096,
            3 => self.rng.below(LOW_FREE_GFNS) * 4096 + self.rng.below(2) * self.rng.below(4096),
            _ => self.safe_word() | 1 << 40,
        }
    }

    /// An array of `count` structures of `size` bytes, each from `make`,
    /// written wherever the scratch pages hold it (a batch longer than the
    /// scratch runs into the page that is not present).
    fn array(&mut self, count: u64, size: u64, mut make: impl FnMut(&mut Self) -> Struct) -> u64 {
        let at = self.place(size * count.clamp(1, 64));
        if !(WIN..WIN + RW_LEN).contains(&at) {
            return at;
        }
        let fit = ((WIN + RW_LEN - at) / size + 1).min(count);
        for k in 0..fit {
            let s = make(self);
            self.emit(at + k * size, &s);
        }
        at
    }

    /// GNTTABOP_copy ops (struct gnttab_copy: source {u, domid, offset},
    /// dest {u, domid, offset}, len, flags, status). A side by GFN of
    /// itself may be read from anywhere in its RAM but written only into
    /// sink and scratch pages; one of another domain must be refused.
    fn copy_batch(&mut self, count: u64) -> (u64, Check) {
        let mut foreign = 0u64;
        let mut k = 0;
        let at = self.array(count, 40, |f| {
            let mut s = Struct::random(&mut f.rng, 40);
            let flags: u16 = match f.rng.below(8) {
                0..=5 => f.rng.below(4) as u16,
                _ => f.rng.next() as u16,
            };
            let mut touches_other = false;
            for side in 0..2u64 {
                let gref = flags & (1 << side) != 0;
                let domid = f.domid();
                let u = if gref {
                    u64::from(f.gref()) | ((f.rng.next() << 32) * u64::from(f.rng.one_in(4)))
                } else if f.is_other(domid) {
                    f.rng.below(0x1_0000)
                } else if side == 0 {
                    f.read_gfn()
                } else {
                    f.write_gfn()
                };
                touches_other |= f.is_other(domid);
                let off = match f.rng.below(4) {
                    0..=2 => f.rng.below(4096) as u16,
                    _ => f.rng.next() as u16,
                };
                s.w64(side * 16, u);
                s.w16(side * 16 + 8, domid);
                s.w16(side * 16 + 10, off);
            }
            s.w16(
                32,
                match f.rng.below(4) {
                    0..=2 => f.rng.below(4097) as u16,
                    _ => f.rng.next() as u16,
                },
            );
            s.w16(34, flags);
            if touches_other && k < 64 {
                foreign |= 1 << k;
            }
            k += 1;
            s
        });
        (
            at,
            Check::Statuses {
                va: at,
                size: 40,
                status_at: 36,
                foreign,
            },
        )
    }

    /// GNTTABOP_map_grant_ref ops (struct gnttab_map_grant_ref: host_addr;
    /// flags; ref; dom; status; handle; dev_bus_addr). Nobody grants this
    /// guest anything, and mapping its own grants is refused.
    fn map_batch(&mut self, count: u64) -> (u64, Check) {
        let mut foreign = 0u64;
        let mut k = 0;
        let at = self.array(count, 32, |f| {
            let mut s = Struct::random(&mut f.rng, 32);
            let dom = f.domid();
            s.w64(0, f.host_addr());
            s.w32(
                8,
                match f.rng.below(4) {
                    0 => 2,
                    1 => 2 | 4,
                    2 => f.rng.below(32) as u32,
                    _ => f.rng.next() as u32,
                },
            );
            s.w32(12, f.gref());
            s.w16(16, dom);
            if f.is_other(dom) && k < 64 {
                foreign |= 1 << k;
            }
            k += 1;
            s
        });
        (
            at,
            Check::Statuses {
                va: at,
                size: 32,
                status_at: 18,
                foreign,
            },
        )
    }

    fn event_channel_op(&mut self) -> Call {
        let cmd = match self.rng.below(24) {
            0..=17 => self.rng.below(14),
            18..=20 => 4,
            _ => self.rng.edgy(),
        };
        let mut check = Check::None;
        let arg = match cmd {
            // struct evtchn_alloc_unbound { dom, remote_dom; port }
            6 => {
                let mut s = Struct::new(8);
                s.w16(
                    0,
                    if self.rng.one_in(4) {
                        self.domid()
                    } else {
                        DOMID_SELF
                    },
                );
                s.w16(2, self.domid());
                s.w32(4, self.rng.next() as u32);
                let at = self.put(s);
                check = Check::NewPort(at + 4);
                at
            }
            // struct evtchn_bind_interdomain { remote_dom; pad; remote_port; local_port }
            0 => {
                let remote = self.domid();
                let mut s = Struct::new(12);
                s.w16(0, remote);
                s.w32(4, self.port());
                s.w32(8, self.rng.next() as u32);
                let at = self.put(s);
                check = if Some(remote) == self.linux {
                    Check::Refused("bound to a port of the Linux guest, which offered it none")
                } else {
                    Check::NewPort(at + 8)
                };
                at
            }
            // struct evtchn_bind_virq { virq; vcpu; port }
            1 => {
                let mut s = Struct::new(12);
                s.w32(
                    0,
                    match self.rng.below(4) {
                        0..=2 => self.rng.below(25) as u32,
                        _ => self.rng.next() as u32,
                    },
                );
                s.w32(4, self.rng.pick(&[0, 0, 0, 1, u32::MAX]));
                let at = self.put(s);
                check = Check::NewPort(at + 8);
                at
            }
            // struct evtchn_bind_ipi { vcpu; port }
            7 => {
                let mut s = Struct::new(8);
                s.w32(0, self.rng.pick(&[0, 0, 1, u32::MAX]));
                let at = self.put(s);
                check = Check::NewPort(at + 4);
                at
            }
            // close, send, unmask, set_priority: the port first; bind_vcpu
            // { port; vcpu }; bind_pirq { pirq; flags; port }.
            2 | 3 | 4 | 8 | 9 | 13 => {
                let mut s = Struct::random(&mut self.rng, 12);
                s.w32(0, self.port());
                s.w32(4, self.rng.pick(&[0, 0, 1, 7, 15, u32::MAX]));
                self.put(s)
            }
            // struct evtchn_status { dom; pad; port; status; vcpu; u }
            5 => {
                let mut s = Struct::random(&mut self.rng, 24);
                s.w16(0, self.domid());
                s.w32(4, self.port());
                self.put(s)
            }
            // struct evtchn_reset { dom }
            10 => {
                let mut s = Struct::new(2);
                s.w16(0, self.domid());
                self.put(s)
            }
            // init_control { control_gfn; offset; vcpu; link_bits; }, expand_array
            // { array_gfn }: the FIFO ABI's pages go where the hypervisor may
            // write, and the domain switches to it for the rest of the run.
            11 | 12 => {
                let mut s = Struct::random(&mut self.rng, 24);
                let bad_gfn = self.rng.one_in(8);
                s.w64(
                    0,
                    if bad_gfn {
                        u64::MAX - 1
                    } else {
                        self.write_gfn()
                    },
                );
                // Offsets: in range and 8-aligned, the last that fits (4024),
                // unaligned, past the end.
                let offset = match self.rng.below(4) {
                    0 => self.rng.below(504) as u32 * 8,
                    1 => self.rng.pick(&[0, 4024, 4028, 4032, 4096, u32::MAX]),
                    _ => self.rng.below(4096) as u32,
                };
                s.w32(8, offset);
                s.w32(12, self.rng.pick(&[0, 0, 1, u32::MAX]));
                let at = self.put(s);
                check = Check::FifoSetup {
                    link_bits: (cmd == 11).then_some(at + 16),
                    bad_gfn,
                };
                at
            }
            _ => self.blob(4),
        };
        self.call_with((EVENT_CHANNEL_OP, cmd, arg), Family::EventChannelOp, check)
    }

    fn sched_op(&mut self) -> Call {
        let cmd = match self.rng.below(20) {
            0..=15 => self.rng.below(8),
            16..=17 => self.rng.range(8, 20),
            _ => loop {
                let c = self.rng.edgy();
                if c > 7 {
                    break c;
                }
            },
        };
        let mut check = Check::None;
        let arg = match cmd {
            SCHEDOP_YIELD => self.safe_word(),
            // SCHEDOP_block sleeps until an event is pending, and nothing
            // need ever become pending: neutralised by raising the test
            // vector first (with IF=0 it is never delivered, so it stays
            // pending and every block and poll returns at once).
            SCHEDOP_BLOCK if !self.irq_pending => {
                self.irq_pending = true;
                return Call {
                    nr: ARCH_7,
                    args: [TEST_OP_RAISE_IRQ, TEST_VECTOR, 0, 0, 0],
                    family: Family::Arch7,
                    check: Check::None,
                };
            }
            SCHEDOP_BLOCK => self.safe_word(),
            // SCHEDOP_shutdown ends the guest whatever the reason (Xen keeps
            // its low byte): only a reason that cannot be read, entirely or
            // in part (its last bytes on the page that is not present).
            SCHEDOP_SHUTDOWN => {
                check = Check::Fault;
                if self.rng.one_in(4) {
                    WIN + RW_LEN - self.rng.range(1, 3)
                } else {
                    self.unreadable_ptr()
                }
            }
            // struct sched_poll { ports; nr_ports; pad; timeout }. While no
            // interrupt is pending a poll could sleep for ever: its
            // timeout is then at most 2 ms away.
            SCHEDOP_POLL => {
                let n = match self.rng.below(8) {
                    0 => 0,
                    1..=5 => self.rng.range(1, 4),
                    6 => self.rng.range(5, 200),
                    _ => self.rng.edgy(),
                };
                let fit = n.min(RW_LEN / 4);
                let ports = self.place(4 * fit.max(1));
                for k in 0..fit.min(256) {
                    let p = self.port();
                    if !self.emit_u32(ports + 4 * k, p) {
                        break;
                    }
                }
                let timeout = if self.irq_pending {
                    let soon = self.clock.now() + 1_000_000;
                    let any = self.rng.edgy();
                    self.rng.pick(&[0, 1, soon, any])
                } else if self.rng.one_in(2) {
                    self.clock.now() + self.rng.below(2_000_000)
                } else {
                    1 + self.rng.below(1_000_000)
                };
                let mut s = Struct::new(24);
                s.w64(0, ports);
                s.w32(8, n as u32);
                s.w64(16, timeout);
                // A bad pointer here would let the poll read nothing
                // bounded; only its fresh copy, or a fault.
                let at = self.fresh(24);
                self.emit(at, &s);
                at
            }
            // struct sched_remote_shutdown { domain_id; pad; reason }: never
            // this guest, and another domain must not be shut down by it.
            SCHEDOP_REMOTE_SHUTDOWN => {
                let dom = self.not_me();
                let mut s = Struct::new(8);
                s.w16(0, dom);
                s.w32(4, self.rng.below(8) as u32);
                if self.is_other(dom) {
                    check = Check::Refused("shut another domain down");
                }
                self.put(s)
            }
            // struct sched_watchdog { id; timeout }: id 0 would create a
            // watchdog that ends the guest when it fires; only ids of
            // watchdogs that do not exist.
            SCHEDOP_WATCHDOG => {
                let mut s = Struct::new(8);
                s.w32(0, self.rng.range(1, u64::from(u32::MAX)) as u32);
                s.w32(4, self.rng.edgy() as u32);
                self.put(s)
            }
            // shutdown_code (a reason kept for later), pin_override.
            _ => {
                let s = self.safe_struct(4);
                self.put(s)
            }
        };
        self.call_with((SCHED_OP, cmd, arg), Family::SchedOp, check)
    }

    fn hvm_op(&mut self) -> Call {
        let cmd = match self.rng.below(10) {
            0..=5 => self.rng.below(2),
            6..=8 => self.rng.below(30),
            _ => self.rng.edgy(),
        };
        let arg = match cmd {
            // struct xen_hvm_param { domid; pad; index; value }
            0 | 1 => {
                let index = match self.rng.below(4) {
                    0..=2 => self.rng.below(40) as u32,
                    _ => self.rng.next() as u32,
                };
                // The callback vector: with IF=0 it is never delivered.
                let value = match self.rng.below(4) {
                    0 => (2 << 56) | self.rng.below(256),
                    1 => self.rng.below(64),
                    _ => self.rng.edgy(),
                };
                let mut s = Struct::new(16);
                s.w16(0, self.domid());
                s.w32(4, index);
                s.w64(8, value);
                self.put(s)
            }
            _ => self.blob(4),
        };
        self.call_with((HVM_OP, cmd, arg), Family::HvmOp, Check::None)
    }

    fn vcpu_op(&mut self) -> Call {
        use xen_abi::vcpu::*;
        let cmd = match self.rng.below(12) {
            0..=9 => self.rng.below(17),
            _ => self.rng.edgy(),
        };
        let vcpu = match self.rng.below(8) {
            0..=5 => 0,
            6 => self.rng.pick(&[1, 31, 32, 127, 4096]),
            _ => self.rng.edgy(),
        };
        // Taking vCPU 0 down or sending it an NMI (taken even with IF=0)
        // ends the guest, and so would starting a second vCPU from a
        // context of garbage: those go to vCPUs that cannot exist.
        let vcpu = match cmd {
            VCPUOP_DOWN | VCPUOP_SEND_NMI => 0x1_0000 + self.rng.below(1 << 20),
            VCPUOP_INITIALISE | VCPUOP_UP if vcpu != 0 => 0x1_0000 + self.rng.below(1 << 20),
            _ => vcpu,
        };
        let arg = match cmd {
            // struct vcpu_register_vcpu_info { mfn; offset; rsvd }: into
            // the sink's first page (the hypervisor keeps writing there).
            VCPUOP_REGISTER_VCPU_INFO => {
                let mfn = match self.rng.below(4) {
                    0 | 1 => self.sink_gfn,
                    2 => self.rng.below(LOW_FREE_GFNS),
                    _ => self.safe_word(),
                };
                let mut s = Struct::new(16);
                s.w64(0, mfn);
                s.w32(
                    8,
                    match self.rng.below(4) {
                        0..=2 => self.rng.below(64) as u32 * 64,
                        _ => self.rng.next() as u32,
                    },
                );
                s.w32(12, self.rng.below(2) as u32);
                self.put(s)
            }
            // Guest-virtual areas the hypervisor writes on every switch:
            // in the sink's second page (48 bytes may run into the third).
            VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA | VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA => {
                let addr = if self.rng.one_in(3) {
                    self.bad_ptr()
                } else {
                    self.sink_va + 4096 + self.rng.below(4096)
                };
                let mut s = Struct::new(8);
                s.w64(0, addr);
                self.put(s)
            }
            // The same, guest-physical.
            VCPUOP_REGISTER_RUNSTATE_PHYS_AREA | VCPUOP_REGISTER_VCPU_TIME_PHYS_AREA => {
                let addr = match self.rng.below(3) {
                    0 => (self.sink_gfn + 1) * 4096 + self.rng.below(4096),
                    1 => self.rng.below(LOW_FREE_GFNS * 4096),
                    _ => self.safe_word(),
                };
                let mut s = Struct::new(8);
                s.w64(0, addr);
                self.put(s)
            }
            // struct vcpu_set_singleshot_timer { timeout_abs_ns; flags }
            VCPUOP_SET_SINGLESHOT_TIMER => {
                let now = self.clock.now();
                let t = match self.rng.below(5) {
                    0 => now + self.rng.below(5_000_000),
                    1 => now.saturating_sub(self.rng.below(1_000_000)),
                    2 => 0,
                    _ => self.rng.edgy(),
                };
                let mut s = Struct::new(16);
                s.w64(0, t);
                s.w32(8, self.rng.pick(&[0, 1, 1, 2, u32::MAX]));
                self.put(s)
            }
            VCPUOP_SET_PERIODIC_TIMER => {
                let mut s = Struct::new(8);
                s.w64(0, self.rng.pick(&[0, 1, 50_000, 1_000_000, u64::MAX]));
                self.put(s)
            }
            // Outputs (runstate info, physid) and inputs of no consequence.
            VCPUOP_GET_RUNSTATE_INFO | VCPUOP_GET_PHYSID => self.place(48),
            _ => self.blob(8),
        };
        Call {
            nr: VCPU_OP,
            args: [cmd, vcpu, arg, self.safe_word(), self.safe_word()],
            family: Family::VcpuOp,
            check: Check::None,
        }
    }

    fn console_io(&mut self) -> Call {
        let cmd = match self.rng.below(8) {
            0..=4 => CONSOLEIO_WRITE,
            5 => CONSOLEIO_READ,
            _ => self.rng.edgy(),
        };
        // Short writes: each becomes a line of the hypervisor's log, and
        // the hypervisor keeps a domain to 8 KiB/s past a 64 KiB burst
        // (console_quota.rs): what the fuzzer prints itself must not be
        // dropped, so the fuzz writes stay near 0.2 bytes a call. Long
        // counts read at most 16 bytes of scratch before the page that is
        // not present, or nothing.
        let count = match self.rng.below(64) {
            0..=55 => self.rng.below(8),
            56..=60 => self.rng.pick(&[2048, 2049, 4096, 16 * 1024 + 1]),
            _ => self.rng.edgy(),
        };
        let buf = if count > 256 {
            match self.rng.below(4) {
                0 => WIN + RW_LEN - self.rng.below(16),
                _ => self.unreadable_ptr(),
            }
        } else {
            self.place(count.min(RW_LEN))
        };
        if (WIN..WIN + RW_LEN).contains(&buf) {
            let n = count.min(WIN + RW_LEN - buf).min(256);
            for k in 0..n {
                // Printable bytes mostly: this is the log people read.
                let b = if self.rng.one_in(16) {
                    self.rng.next() as u8
                } else {
                    b' ' + self.rng.below(95) as u8
                };
                self.emit_byte(buf + k, b);
            }
        }
        Call {
            nr: CONSOLE_IO,
            args: [cmd, count, buf, self.safe_word(), self.safe_word()],
            family: Family::ConsoleIo,
            check: Check::None,
        }
    }

    fn arch_7(&mut self) -> Call {
        let cmd = match self.rng.below(8) {
            0..=4 => TEST_OP_RAISE_IRQ,
            5 | 6 => TEST_OP_UNMAP_ONCE,
            _ => self.rng.edgy(),
        };
        // Any vector: interrupts stay off for the whole run, so none is
        // ever delivered (and once one is pending, block and poll return).
        // TEST_OP_UNMAP_ONCE takes a RAM page away until the guest touches
        // it: only pages the hypervisor, not the guest's own instruction
        // fetch, may find missing (without NRIPS it reads the hypercall
        // instruction back to skip it).
        let vector = match (cmd, self.rng.below(3)) {
            (TEST_OP_UNMAP_ONCE, 0) => self.rng.below(LOW_FREE_GFNS),
            (TEST_OP_UNMAP_ONCE, 1) => self.scratch_gfn + self.rng.below(RW_PAGES),
            (TEST_OP_UNMAP_ONCE, _) => self.write_gfn(),
            (_, 0 | 1) => self.rng.below(300),
            _ => self.rng.edgy(),
        };
        let vector = if cmd == TEST_OP_UNMAP_ONCE
            && (LOW_FREE_GFNS..self.ram_gfns).contains(&vector)
            && !(self.scratch_gfn..self.scratch_gfn + RW_PAGES).contains(&vector)
            && !(self.sink_gfn..self.sink_gfn + 4).contains(&vector)
        {
            self.rng.below(LOW_FREE_GFNS)
        } else {
            vector
        };
        if cmd == TEST_OP_RAISE_IRQ && (32..256).contains(&vector) {
            self.irq_pending = true;
        }
        Call {
            nr: ARCH_7,
            args: [
                cmd,
                vector,
                self.safe_word(),
                self.safe_word(),
                self.safe_word(),
            ],
            family: Family::Arch7,
            check: Check::None,
        }
    }

    /// sysctl, domctl, platform_op and hypfs_op with random commands,
    /// mostly the right interface version: a domU must always be refused.
    fn privileged(&mut self) -> Call {
        let (nr, version) = match self.rng.below(4) {
            0 => (SYSCTL, XEN_SYSCTL_INTERFACE_VERSION),
            1 => (DOMCTL, XEN_DOMCTL_INTERFACE_VERSION),
            2 => (PLATFORM_OP, XENPF_INTERFACE_VERSION),
            _ => (HYPFS_OP, 0),
        };
        // The structure (Xen copies 136 or 144 bytes) is the first argument.
        let arg = self.place(DOMCTL_SIZE as u64);
        let mut s = Struct::random(&mut self.rng, 72);
        if !self.rng.one_in(4) {
            s.w32(4, version);
        }
        self.emit(arg, &s);
        let cmd = self.rng.below(80);
        self.call_with(
            (nr, arg, cmd),
            Family::Privileged,
            Check::Refused("a privileged hypercall succeeded for a domU"),
        )
    }

    /// Hypercall numbers the hypervisor does not implement, with
    /// arguments harmless whatever they would mean (multicall included).
    fn unknown(&mut self) -> Call {
        const KNOWN: [u64; 13] = [
            SYSCTL,
            DOMCTL,
            PLATFORM_OP,
            HYPFS_OP,
            XEN_VERSION,
            MEMORY_OP,
            GRANT_TABLE_OP,
            EVENT_CHANNEL_OP,
            SCHED_OP,
            HVM_OP,
            VCPU_OP,
            CONSOLE_IO,
            ARCH_7,
        ];
        let nr = loop {
            let n = match self.rng.below(4) {
                0..=2 => self.rng.below(64),
                _ => self.rng.edgy(),
            };
            if !KNOWN.contains(&n) {
                break n;
            }
        };
        let args = core::array::from_fn(|_| self.safe_word());
        Call {
            nr,
            args,
            family: Family::Unknown,
            // Xen's numbers end at 63 (arch_7 is 55): past that, nothing may answer.
            check: if nr >= 64 { Check::Enosys } else { Check::None },
        }
    }

    // ---- writing arguments ----------------------------------------------

    /// A structure of safe words.
    fn safe_struct(&mut self, words: usize) -> Struct {
        let mut s = Struct::new(8 * words.min(8));
        for k in 0..words.min(8) {
            let w = self.safe_word();
            s.w64(8 * k as u64, w);
        }
        s
    }

    /// A structure of safe words placed as any argument.
    fn blob(&mut self, words: usize) -> u64 {
        let s = self.safe_struct(words);
        self.put(s)
    }

    /// Places `s` (`place`) and writes it there; returns where.
    fn put(&mut self, s: Struct) -> u64 {
        let at = self.place(s.len as u64);
        self.emit(at, &s);
        at
    }

    /// Writes the part of `s` that falls on scratch pages of the window.
    fn emit(&mut self, at: u64, s: &Struct) {
        for (k, &b) in s.b[..s.len].iter().enumerate() {
            self.emit_byte(at.wrapping_add(k as u64), b);
        }
    }

    fn emit_byte(&mut self, at: u64, b: u8) -> bool {
        if (WIN..WIN + RW_LEN).contains(&at) {
            // SAFETY: a scratch page, mapped writable in the window.
            unsafe { (at as *mut u8).write_volatile(b) };
            true
        } else {
            false
        }
    }

    fn emit_u32(&mut self, at: u64, v: u32) -> bool {
        let mut ok = true;
        for (k, b) in v.to_le_bytes().into_iter().enumerate() {
            ok &= self.emit_byte(at + k as u64, b);
        }
        ok
    }

    fn emit_word(&mut self, at: u64, v: u64) -> bool {
        let mut ok = true;
        for (k, b) in v.to_le_bytes().into_iter().enumerate() {
            ok &= self.emit_byte(at + k as u64, b);
        }
        ok
    }
}

/// A random pointer past 4 GiB and outside the window: nothing there.
fn random_ptr(rng: &mut Rng) -> u64 {
    loop {
        let p = rng.next();
        if p >= 1 << 32 && !(WIN..WIN_END).contains(&p) {
            return p;
        }
    }
}

/// Up to 64 bytes of an argument structure.
struct Struct {
    b: [u8; 72],
    len: usize,
}

impl Struct {
    fn new(len: usize) -> Struct {
        Struct { b: [0; 72], len }
    }

    /// Random bytes, for fields nobody checks (padding, outputs, handles).
    fn random(rng: &mut Rng, len: usize) -> Struct {
        let mut s = Struct::new(len);
        rng.fill(&mut s.b[..len]);
        s
    }

    fn w16(&mut self, at: u64, v: u16) {
        self.b[at as usize..at as usize + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn w32(&mut self, at: u64, v: u32) {
        self.b[at as usize..at as usize + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn w64(&mut self, at: u64, v: u64) {
        self.b[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
    }
}

/// Reads a u32 the hypervisor may have written, if it lies in the scratch.
fn peek32(at: u64) -> Option<u32> {
    (at >= WIN && at + 4 <= WIN + RW_LEN).then(|| {
        // SAFETY: inside the scratch pages, mapped in the window.
        unsafe { (at as *const u32).read_unaligned() }
    })
}

fn peek16(at: u64) -> Option<u16> {
    (at >= WIN && at + 2 <= WIN + RW_LEN).then(|| {
        // SAFETY: as `peek32`.
        unsafe { (at as *const u16).read_unaligned() }
    })
}

fn ro_page_intact() -> bool {
    // SAFETY: the guest's own static page.
    let page = unsafe { &(*core::ptr::addr_of!(RO_PAGE)).0[0] };
    page.iter().all(|&b| b == 0xff)
}

/// The first GFN above the guest's RAM at which the fuzzers put frames
/// (grant frame 0, shared_info): 0x1000 (16 MiB) as the checks use, or
/// higher for a guest with more RAM.
pub fn above_ram_gfn() -> Result<u64, &'static str> {
    Ok(ram_top()?.div_ceil(4096).next_multiple_of(16).max(0x1000))
}

/// The end of the guest's memory map (XENMEM_memory_map).
fn ram_top() -> Result<u64, &'static str> {
    let mut entries = [0u8; 20 * 8];
    // struct xen_memory_map { nr_entries; pad; buffer }
    let mut map: [u64; 2] = [8, entries.as_mut_ptr() as u64];
    if call(MEMORY_OP, 9, map.as_mut_ptr() as u64, 0) != 0 {
        return Err("XENMEM_memory_map failed");
    }
    let n = (map[0] as u32).min(8) as usize;
    let top = entries[..n * 20]
        .chunks(20)
        .map(|e| {
            let word = |k: usize| u64::from_le_bytes(e[k..k + 8].try_into().unwrap_or([0; 8]));
            word(0) + word(8)
        })
        .max()
        .unwrap_or(0);
    if top == 0 {
        return Err("an empty memory map");
    }
    Ok(top)
}

/// The window of its own page tables (PML4 slot 1), and page 0 unmapped
/// (the first 2 MiB split into 4 KiB pages), so that NULL and small
/// pointers reach nothing.
fn install_window() {
    let cr3: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) cr3) };
    let mask = 0x000f_ffff_ffff_f000;
    let pml4 = (cr3 & mask) as *mut u64;
    // SAFETY: the tables below are this guest's statics and its own page
    // tables (entry.S's, identity-mapped). The first 2 MiB keep mapping
    // the same frames (the code runs from them) but for page 0, and PML4
    // slot 1 was empty; CR3 is reloaded after.
    unsafe {
        let pdpt = (pml4.read_volatile() & mask) as *mut u64;
        let pd = (pdpt.read_volatile() & mask) as *mut u64;
        let low = &mut *core::ptr::addr_of_mut!(LOW_PT);
        for (i, e) in low.0.iter_mut().enumerate().skip(1) {
            *e = (i as u64 * 4096) | 3;
        }
        low.0[0] = 0;
        let pdpt_w = &mut *core::ptr::addr_of_mut!(WIN_PDPT);
        let pd_w = &mut *core::ptr::addr_of_mut!(WIN_PD);
        let pt_w = &mut *core::ptr::addr_of_mut!(WIN_PT);
        let scratch = core::ptr::addr_of!(SCRATCH) as u64;
        for (i, e) in pt_w.0.iter_mut().take(RW_PAGES as usize).enumerate() {
            *e = (scratch + i as u64 * 4096) | 3;
        }
        let base = RW_PAGES as usize;
        pt_w.0[base] = 0;
        pt_w.0[base + 1] = core::ptr::addr_of!(RO_PAGE) as u64 | 1;
        pt_w.0[base + 2] = HOLE_GPA | 3;
        pt_w.0[base + 3] = scratch | 3 | 1 << 51;
        pd_w.0[0] = pt_w.0.as_ptr() as u64 | 3;
        pd_w.0[1] = BIG_GPA | 0x83;
        pdpt_w.0[0] = pd_w.0.as_ptr() as u64 | 3;
        pd.write_volatile(low.0.as_ptr() as u64 | 3);
        pml4.add(1).write_volatile(pdpt_w.0.as_ptr() as u64 | 3);
        core::arch::asm!("mov cr3, {}", in(reg) cr3);
    }
}
