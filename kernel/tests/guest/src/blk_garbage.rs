//! A hostile blkfront: connects to its vbd like Linux does, then puts garbage on the ring and checks that blkback answers errors, serves a good request, and drops the ring when it is overrun.

use crate::frontend::{
    alloc_path, alloc_unbound, fmt_u32, grant, map_grant_frame, send, set32, wait_word, Page, Store,
};

static mut RING: Page = Page([0; 4096]);
static mut DATA: Page = Page([0; 4096]);

/// The grant refs this frontend uses (0-7 are reserved).
const RING_REF: u32 = 10;
const DATA_REF: u32 = 11;
/// A ref this guest never granted.
const BAD_REF: u32 = 400;
const VBD: &str = "device/vbd/51712";

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
    map_grant_frame();
    let ring = core::ptr::addr_of_mut!(RING) as u64;
    let data = core::ptr::addr_of_mut!(DATA) as u64;
    set32(ring + 4, 1);
    set32(ring + 12, 1);
    grant(RING_REF, ring, false);
    grant(DATA_REF, data, false);
    let port = alloc_unbound()?;
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
    wait_word(ring + 8, requests.len() as u32, "blkback never answered")?;
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
