//! A hostile blkfront: connects to its vbd like Linux does, then puts garbage on the ring and checks that blkback answers errors, serves a good request, and drops the ring when it is overrun.

use crate::hypercall::call;
use xen_abi::hypercall::*;

/// A page shared with the backend.
#[repr(C, align(4096))]
struct Page([u8; 4096]);

static mut RING: Page = Page([0; 4096]);
static mut DATA: Page = Page([0; 4096]);

/// Grant frame 0, mapped in a hole above the test guest's 8 MiB (as the
/// grant checks do), and the refs this frontend uses (0-7 are reserved).
const GRANT_FRAME_GFN: u64 = 0x1000;
const RING_REF: u32 = 10;
const DATA_REF: u32 = 11;
/// A ref this guest never granted.
const BAD_REF: u32 = 400;
const VBD: &str = "device/vbd/51712";

// XenStore wire (io/xs_wire.h).
const XS_READ: u32 = 2;
const XS_WRITE: u32 = 11;
const XS_ERROR: u32 = 16;

fn hvm_param(index: u32) -> u64 {
    // struct xen_hvm_param { domid u16, pad u16, index u32, value u64 }
    let mut p: [u64; 2] = [0x7ff0 | u64::from(index) << 32, 0];
    call(HVM_OP, 1, p.as_mut_ptr() as u64, 0);
    p[1]
}

fn send(port: u32) {
    let mut a = port;
    call(EVENT_CHANNEL_OP, 4, &mut a as *mut u32 as u64, 0);
}

fn yield_cpu() {
    call(SCHED_OP, SCHEDOP_YIELD, 0, 0);
}

fn vol32(addr: u64) -> u32 {
    // SAFETY: a 4-aligned word of a page this guest owns or shares,
    // identity-mapped by entry.S; the peer writes it concurrently.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn set32(addr: u64, v: u32) {
    // SAFETY: as `vol32`.
    unsafe { core::ptr::write_volatile(addr as *mut u32, v) }
}

/// A XenStore client on the guest's own ring (xenstore-ring.txt).
struct Store {
    ring: u64,
    port: u32,
    req_id: u32,
}

impl Store {
    fn new() -> Self {
        Store {
            ring: hvm_param(1) << 12,
            port: hvm_param(2) as u32,
            req_id: 1,
        }
    }

    fn put(&self, bytes: &[u8]) {
        for &b in bytes {
            let prod = vol32(self.ring + 2052);
            while prod.wrapping_sub(vol32(self.ring + 2048)) >= 1024 {
                yield_cpu();
            }
            // SAFETY: inside the request half of the XenStore page.
            unsafe {
                core::ptr::write_volatile((self.ring + u64::from(prod & 1023)) as *mut u8, b)
            };
            set32(self.ring + 2052, prod.wrapping_add(1));
        }
    }

    fn get(&self, out: &mut [u8]) -> Result<(), &'static str> {
        for b in out.iter_mut() {
            let mut spins = 0;
            loop {
                let cons = vol32(self.ring + 2056);
                if vol32(self.ring + 2060) != cons {
                    // SAFETY: inside the response half of the XenStore page.
                    *b = unsafe {
                        core::ptr::read_volatile(
                            (self.ring + 1024 + u64::from(cons & 1023)) as *const u8,
                        )
                    };
                    set32(self.ring + 2056, cons.wrapping_add(1));
                    break;
                }
                spins += 1;
                if spins > 2_000_000 {
                    return Err("no XenStore reply");
                }
                yield_cpu();
            }
        }
        Ok(())
    }

    /// One request; the reply's payload (at most 256 bytes) into `out`.
    fn ask(
        &mut self,
        ty: u32,
        payload: &[&[u8]],
        out: &mut [u8; 256],
    ) -> Result<usize, &'static str> {
        let len: usize = payload.iter().map(|p| p.len()).sum();
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&ty.to_le_bytes());
        h[4..8].copy_from_slice(&self.req_id.to_le_bytes());
        h[12..16].copy_from_slice(&(len as u32).to_le_bytes());
        self.req_id += 1;
        self.put(&h);
        for p in payload {
            self.put(p);
        }
        send(self.port);
        let mut rh = [0u8; 16];
        self.get(&mut rh)?;
        let rlen = u32::from_le_bytes(rh[12..16].try_into().unwrap()) as usize;
        if rlen > out.len() {
            return Err("XenStore reply too long");
        }
        self.get(&mut out[..rlen])?;
        if u32::from_le_bytes(rh[0..4].try_into().unwrap()) == XS_ERROR {
            return Err("XenStore error reply");
        }
        Ok(rlen)
    }

    fn read(&mut self, path: &str, out: &mut [u8; 256]) -> Result<usize, &'static str> {
        self.ask(XS_READ, &[path.as_bytes(), b"\0"], out)
    }

    fn write(&mut self, path: &str, value: &[u8]) -> Result<(), &'static str> {
        let mut out = [0u8; 256];
        self.ask(XS_WRITE, &[path.as_bytes(), b"\0", value], &mut out)
            .map(|_| ())
    }

    /// Waits until node `path` reads `want`.
    fn wait_for(&mut self, path: &str, want: &[u8]) -> Result<(), &'static str> {
        let mut out = [0u8; 256];
        for _ in 0..20_000 {
            if let Ok(n) = self.read(path, &mut out) {
                if &out[..n] == want {
                    return Ok(());
                }
            }
            yield_cpu();
        }
        Err("the backend state never changed as expected")
    }
}

fn grant(gref: u32, page: u64) {
    // SAFETY: the entry lies in grant frame 0 at GRANT_FRAME_GFN, which
    // entry.S maps; domid and frame are written before flags.
    unsafe {
        let entry = (GRANT_FRAME_GFN * 4096 + u64::from(gref) * 8) as *mut u16;
        entry.add(1).write_volatile(0);
        entry
            .add(2)
            .cast::<u32>()
            .write_volatile((page >> 12) as u32);
        entry.write_volatile(1); // GTF_permit_access, writable
    }
}

/// A READ of one segment into `gref`, sectors `first..=last` of the page.
fn read_request(id: u64, nr_segments: u8, sector: u64, gref: u32) -> [u8; 112] {
    let mut r = [0u8; 112];
    r[0] = 0; // BLKIF_OP_READ
    r[1] = nr_segments;
    r[8..16].copy_from_slice(&id.to_le_bytes());
    r[16..24].copy_from_slice(&sector.to_le_bytes());
    r[24..28].copy_from_slice(&gref.to_le_bytes());
    r[28] = 0;
    r[29] = 0;
    r
}

pub fn run() -> Result<&'static str, &'static str> {
    let mut xs = Store::new();
    let mut out = [0u8; 256];
    let n = xs.read(alloc_path(VBD, "backend"), &mut out)?;
    let mut backend = [0u8; 128];
    backend[..n].copy_from_slice(&out[..n]);
    let backend = core::str::from_utf8(&backend[..n]).map_err(|_| "backend path not UTF-8")?;
    xs.wait_for(alloc_path(backend, "state"), b"2")?;

    // Grant table frame 0, the ring (SHARED_RING_INIT) and a data page.
    let xatp: [u64; 3] = [0x7ff0 | (1 << 32), 0, GRANT_FRAME_GFN];
    call(MEMORY_OP, 7, xatp.as_ptr() as u64, 0);
    let ring = core::ptr::addr_of_mut!(RING) as u64;
    let data = core::ptr::addr_of_mut!(DATA) as u64;
    set32(ring + 4, 1);
    set32(ring + 12, 1);
    grant(RING_REF, ring);
    grant(DATA_REF, data);
    // EVTCHNOP_alloc_unbound { dom: DOMID_SELF, remote_dom: 0, port }
    let mut a: [u32; 2] = [0x7ff0, 0];
    if call(EVENT_CHANNEL_OP, 6, a.as_mut_ptr() as u64, 0) != 0 {
        return Err("alloc_unbound failed");
    }
    let port = a[1];
    let mut num = [0u8; 12];
    xs.write(alloc_path(VBD, "ring-ref"), fmt_u32(RING_REF, &mut num))?;
    xs.write(alloc_path(VBD, "event-channel"), fmt_u32(port, &mut num))?;
    xs.write(alloc_path(VBD, "protocol"), b"x86_64-abi")?;
    xs.write(alloc_path(VBD, "state"), b"3")?;
    xs.wait_for(alloc_path(backend, "state"), b"4")?;

    // Garbage, then one good read of the superblock's sector (ext4 magic
    // 0xEF53 at byte 56 of the superblock at byte 1024).
    let requests = [
        read_request(1, 12, 0, DATA_REF),
        read_request(2, 1, 0, BAD_REF),
        read_request(3, 1, u64::MAX / 1024, DATA_REF),
        read_request(4, 1, 2, DATA_REF),
    ];
    for (i, r) in requests.iter().enumerate() {
        // SAFETY: slot i of the ring page (64-byte header, 112-byte slots).
        unsafe {
            core::ptr::copy_nonoverlapping(r.as_ptr(), (ring + 64 + i as u64 * 112) as *mut u8, 112)
        };
    }
    set32(ring, requests.len() as u32);
    send(port);
    let mut spins = 0;
    while vol32(ring + 8) != requests.len() as u32 {
        spins += 1;
        if spins > 2_000_000 {
            return Err("blkback never answered");
        }
        yield_cpu();
    }
    for (i, want) in [(0u64, -1i16), (1, -1), (2, -1), (3, 0)] {
        let at = ring + 64 + i * 112;
        // SAFETY: response i's id and status in its slot.
        let (id, status) = unsafe {
            (
                core::ptr::read_volatile(at as *const u64),
                core::ptr::read_volatile((at + 10) as *const i16),
            )
        };
        if id != i + 1 || status != want {
            return Err(match i {
                0 => "a bad segment count was not refused",
                1 => "a grant this guest does not own was not refused",
                2 => "a sector beyond the end was not refused",
                _ => "a good read after the garbage failed",
            });
        }
    }
    // SAFETY: the data page, just written by the backend.
    let magic = unsafe { core::ptr::read_volatile((data + 56) as *const u16) };
    if magic != 0xef53 {
        return Err("the good read did not return the ext4 superblock");
    }
    // A producer index a thousand ahead of the consumer: the backend must
    // stop serving this ring and say so with Closing (5).
    set32(ring, 1004);
    send(port);
    xs.wait_for(alloc_path(backend, "state"), b"5")?;
    Ok("bad segment count, foreign grant, sector beyond the end refused; a good read served; an overrun ring closed")
}

/// `dir/key` in a static buffer (the guest has no heap).
fn alloc_path(dir: &str, key: &str) -> &'static str {
    static mut BUF: [[u8; 192]; 4] = [[0; 192]; 4];
    static mut NEXT: usize = 0;
    // SAFETY: single-threaded guest; four rotating buffers outlive each
    // use (a path is used right away, never kept across four calls).
    unsafe {
        let i = NEXT % 4;
        NEXT += 1;
        let buf = &mut *core::ptr::addr_of_mut!(BUF[i]);
        let n = (dir.len() + 1 + key.len()).min(192);
        let mut at = 0;
        for &b in dir
            .as_bytes()
            .iter()
            .chain(b"/")
            .chain(key.as_bytes())
            .take(n)
        {
            buf[at] = b;
            at += 1;
        }
        core::str::from_utf8_unchecked(&buf[..at])
    }
}

fn fmt_u32(mut v: u32, buf: &mut [u8; 12]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[at..]
}
