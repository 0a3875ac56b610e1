//! What the hostile frontends share: a tiny XenStore client, grants, event channels, ring-word accessors and path and number formatting.

use crate::hypercall::call;
use xen_abi::grant_table::{GTF_PERMIT_ACCESS, GTF_READONLY};
use xen_abi::hypercall::*;

/// A page shared with a backend.
#[repr(C, align(4096))]
pub struct Page(pub [u8; 4096]);

/// Grant frame 0 goes in a hole above the test guest's 8 MiB (as the grant
/// checks do); refs 0-7 are reserved, so each frontend picks its own above.
const GRANT_FRAME_GFN: u64 = 0x1000;

// XenStore wire (io/xs_wire.h).
const XS_READ: u32 = 2;
const XS_WRITE: u32 = 11;
const XS_ERROR: u32 = 16;

/// HVMOP_get_param of this domain's parameter `index` (0 if refused).
pub fn hvm_param(index: u32) -> u64 {
    // struct xen_hvm_param { domid u16, pad u16, index u32, value u64 }
    let mut p: [u64; 2] = [0x7ff0 | u64::from(index) << 32, 0];
    call(HVM_OP, 1, p.as_mut_ptr() as u64, 0);
    p[1]
}

/// EVTCHNOP_send on `port`.
pub fn send(port: u32) {
    let mut a = port;
    call(EVENT_CHANNEL_OP, 4, &mut a as *mut u32 as u64, 0);
}

/// EVTCHNOP_alloc_unbound { dom: DOMID_SELF, remote_dom: 0, port }: a port
/// for the backend in domain 0 to bind.
pub fn alloc_unbound() -> Result<u32, &'static str> {
    let mut a: [u32; 2] = [0x7ff0, 0];
    if call(EVENT_CHANNEL_OP, 6, a.as_mut_ptr() as u64, 0) != 0 {
        return Err("alloc_unbound failed");
    }
    Ok(a[1])
}

pub fn yield_cpu() {
    call(SCHED_OP, SCHEDOP_YIELD, 0, 0);
}

pub fn vol32(addr: u64) -> u32 {
    // SAFETY: a 4-aligned word of a page this guest owns or shares,
    // identity-mapped by entry.S; the peer writes it concurrently.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

pub fn set32(addr: u64, v: u32) {
    // SAFETY: as `vol32`.
    unsafe { core::ptr::write_volatile(addr as *mut u32, v) }
}

/// Polls the word at `addr` (a ring's rsp_prod) until it reads `want`,
/// yielding between looks; `err` if it never does.
pub fn wait_word(addr: u64, want: u32, err: &'static str) -> Result<(), &'static str> {
    let mut spins = 0;
    while vol32(addr) != want {
        spins += 1;
        if spins > 2_000_000 {
            return Err(err);
        }
        yield_cpu();
    }
    Ok(())
}

/// A XenStore client on the guest's own ring (xenstore-ring.txt).
pub struct Store {
    ring: u64,
    port: u32,
    req_id: u32,
}

impl Store {
    pub fn new() -> Self {
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

    pub fn read(&mut self, path: &str, out: &mut [u8; 256]) -> Result<usize, &'static str> {
        self.ask(XS_READ, &[path.as_bytes(), b"\0"], out)
    }

    pub fn write(&mut self, path: &str, value: &[u8]) -> Result<(), &'static str> {
        let mut out = [0u8; 256];
        self.ask(XS_WRITE, &[path.as_bytes(), b"\0", value], &mut out)
            .map(|_| ())
    }

    /// Waits until node `path` reads `want`.
    pub fn wait_for(&mut self, path: &str, want: &[u8]) -> Result<(), &'static str> {
        self.wait_node(path, want, "the backend state never changed as expected")
    }

    /// Waits until node `path` reads `want`; `err` if it never does.
    pub fn wait_node(
        &mut self,
        path: &str,
        want: &[u8],
        err: &'static str,
    ) -> Result<(), &'static str> {
        let mut out = [0u8; 256];
        for _ in 0..20_000 {
            if let Ok(n) = self.read(path, &mut out) {
                if &out[..n] == want {
                    return Ok(());
                }
            }
            yield_cpu();
        }
        Err(err)
    }
}

/// XENMEM_add_to_physmap { DOMID_SELF, size 0, space 1 (grant table), idx 0,
/// gpfn }: grant frame 0 at GRANT_FRAME_GFN, where `grant` writes entries.
/// Mapping it again at the same place (a second frontend) is harmless.
pub fn map_grant_frame() {
    let xatp: [u64; 3] = [0x7ff0 | (1 << 32), 0, GRANT_FRAME_GFN];
    call(MEMORY_OP, 7, xatp.as_ptr() as u64, 0);
}

/// Grants `page` to domain 0 under `gref` (in frame 0), read-only or writable.
pub fn grant(gref: u32, page: u64, readonly: bool) {
    let flags = if readonly {
        GTF_PERMIT_ACCESS | GTF_READONLY
    } else {
        GTF_PERMIT_ACCESS
    };
    // SAFETY: the entry lies in grant frame 0 at GRANT_FRAME_GFN, which
    // entry.S maps; domid and frame are written before flags.
    unsafe {
        let entry = (GRANT_FRAME_GFN * 4096 + u64::from(gref) * 8) as *mut u16;
        entry.add(1).write_volatile(0);
        entry
            .add(2)
            .cast::<u32>()
            .write_volatile((page >> 12) as u32);
        entry.write_volatile(flags);
    }
}

/// `dir/key` in a static buffer (the guest has no heap).
pub fn alloc_path(dir: &str, key: &str) -> &'static str {
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

/// `v` in decimal, in the end of `buf`.
pub fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
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
