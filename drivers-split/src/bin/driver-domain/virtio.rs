//! A virtio block device through its legacy PCI interface (virtio 1.0 section 4.1.4.8, "Legacy Interfaces"; virtio 0.9.5 appendix): I/O BAR registers, one split virtqueue in the DMA pool, completions polled.
//!
//! The hypervisor hands this domain exactly the device's I/O BAR and turns
//! bus mastering on; the configuration space stays with it. The legacy
//! interface needs nothing else: no MMIO BARs to map, no capability list.
//! Discards go to the device when it offers them (QEMU's
//! `-drive discard=unmap` then punches holes in the image file).
//! Interrupts are not routed here, so a batch is submitted with one
//! notification and its completions are polled (the device works while
//! this vCPU spins; QEMU completes requests on its own threads).

use crate::{dma, xen};
use alloc::vec::Vec;
use core::sync::atomic::{fence, AtomicU16, Ordering};
use drivers_split::blkback::device::{discard_pieces, BlockDevice, Io, IoKind};
use x86::io::{inb, inl, inw, outb, outl, outw};

// Legacy register offsets in BAR 0 (virtio 1.0 4.1.4.8).
const DEVICE_FEATURES: u16 = 0x00;
const GUEST_FEATURES: u16 = 0x04;
const QUEUE_ADDRESS: u16 = 0x08;
const QUEUE_SIZE: u16 = 0x0c;
const QUEUE_SELECT: u16 = 0x0e;
const QUEUE_NOTIFY: u16 = 0x10;
const DEVICE_STATUS: u16 = 0x12;
/// Device configuration without MSI-X: `struct virtio_blk_config`, whose
/// first field is the capacity in 512-byte sectors.
const CONFIG: u16 = 0x14;
// Discard limits in `struct virtio_blk_config` (virtio 1.1 5.2.4).
const CONFIG_MAX_DISCARD_SECTORS: u16 = CONFIG + 36;
const CONFIG_MAX_DISCARD_SEG: u16 = CONFIG + 40;
const CONFIG_DISCARD_SECTOR_ALIGNMENT: u16 = CONFIG + 44;

// Device status bits (virtio 1.0 2.1).
const ACKNOWLEDGE: u8 = 1;
const DRIVER: u8 = 2;
const DRIVER_OK: u8 = 4;
const FAILED: u8 = 128;

// Block feature bits (virtio 1.0 5.2.3).
const VIRTIO_BLK_F_RO: u32 = 1 << 5;
const VIRTIO_BLK_F_FLUSH: u32 = 1 << 9;
const VIRTIO_BLK_F_DISCARD: u32 = 1 << 13;

// Request types (virtio 1.0 5.2.6).
const VIRTIO_BLK_T_IN: u32 = 0;
const VIRTIO_BLK_T_OUT: u32 = 1;
const VIRTIO_BLK_T_FLUSH: u32 = 4;
const VIRTIO_BLK_T_DISCARD: u32 = 11;

// Descriptor flags (virtio 1.0 2.4.5).
const VIRTQ_DESC_F_NEXT: u16 = 1;
const VIRTQ_DESC_F_WRITE: u16 = 2;

/// A request waits this long before the device counts as dead.
const TIMEOUT_NS: u64 = 30_000_000_000;

/// One descriptor (`struct virtq_desc`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

/// A discard's one range (`struct virtio_blk_discard_write_zeroes`,
/// virtio 1.1 5.2.6); `flags` stays 0: the unmap flag is for write-zeroes.
#[repr(C)]
#[derive(Clone, Copy)]
struct DiscardRange {
    sector: u64,
    num_sectors: u32,
    flags: u32,
}

/// A request's header and status byte, in the pool.
#[repr(C)]
#[derive(Clone, Copy)]
struct Header {
    kind: u32,
    ioprio: u32,
    sector: u64,
}

pub struct VirtioBlk {
    io: u16,
    queue: u16,
    /// The virtqueue's pages: descriptors, available ring, used ring.
    desc: *mut Desc,
    avail: *mut u16,
    used: *mut u16,
    headers: *mut Header,
    status: *mut u8,
    /// One discard range per slot, in the pool.
    ranges: *mut DiscardRange,
    avail_idx: u16,
    used_idx: u16,
    sectors: u64,
    flush: bool,
    read_only: bool,
    /// Sectors one discard may cover; 0 when discard is not offered.
    max_discard: u32,
    dead: bool,
    /// Counters for the report.
    pub requests: u64,
    pub notifies: u64,
}

fn read8(port: u16) -> u8 {
    // SAFETY: a register of the device's I/O BAR, passed to this domain.
    unsafe { inb(port) }
}
fn read16(port: u16) -> u16 {
    // SAFETY: as `read8`.
    unsafe { inw(port) }
}
fn read32(port: u16) -> u32 {
    // SAFETY: as `read8`.
    unsafe { inl(port) }
}
fn write8(port: u16, v: u8) {
    // SAFETY: as `read8`.
    unsafe { outb(port, v) }
}
fn write16(port: u16, v: u16) {
    // SAFETY: as `read8`.
    unsafe { outw(port, v) }
}
fn write32(port: u16, v: u32) {
    // SAFETY: as `read8`.
    unsafe { outl(port, v) }
}

/// Bytes of a legacy virtqueue of `q` entries: descriptors and the
/// available ring, then the used ring on the next page (virtio 0.9.5 2.3).
fn queue_bytes(q: usize) -> (usize, usize) {
    let first = (16 * q + 6 + 2 * q).next_multiple_of(4096);
    (first, first + (6 + 8 * q).next_multiple_of(4096))
}

impl VirtioBlk {
    /// Resets and sets up the device at I/O base `io` (virtio 1.0 3.1.1,
    /// legacy variant: no FEATURES_OK step).
    pub fn new(io: u16) -> Result<Self, &'static str> {
        write8(io + DEVICE_STATUS, 0);
        write8(io + DEVICE_STATUS, ACKNOWLEDGE);
        write8(io + DEVICE_STATUS, ACKNOWLEDGE | DRIVER);
        let offered = read32(io + DEVICE_FEATURES);
        let mut wanted = offered & (VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_RO | VIRTIO_BLK_F_DISCARD);
        // Only what blkback can pass on: one range per command, on the
        // 512-byte sectors it publishes (`discard-granularity` 512).
        let max_discard = if wanted & VIRTIO_BLK_F_DISCARD != 0
            && wanted & VIRTIO_BLK_F_RO == 0
            && read32(io + CONFIG_MAX_DISCARD_SEG) >= 1
            && read32(io + CONFIG_DISCARD_SECTOR_ALIGNMENT) <= 1
        {
            read32(io + CONFIG_MAX_DISCARD_SECTORS)
        } else {
            0
        };
        if max_discard == 0 {
            wanted &= !VIRTIO_BLK_F_DISCARD;
        }
        write32(io + GUEST_FEATURES, wanted);
        write16(io + QUEUE_SELECT, 0);
        let queue = read16(io + QUEUE_SIZE);
        if queue == 0 || !queue.is_power_of_two() {
            write8(io + DEVICE_STATUS, FAILED);
            return Err("no request queue");
        }
        let q = usize::from(queue);
        let (used_at, bytes) = queue_bytes(q);
        let Some(mem) = dma::alloc(bytes) else {
            write8(io + DEVICE_STATUS, FAILED);
            return Err("DMA pool too small for the virtqueue");
        };
        let Some(req) = dma::alloc(q * (16 + 16 + 1)) else {
            write8(io + DEVICE_STATUS, FAILED);
            return Err("DMA pool too small for request headers");
        };
        let base = mem.as_mut_ptr();
        let addr = base as u64;
        // The legacy queue address is a page frame number, 32 bits wide.
        let Ok(pfn) = u32::try_from(addr >> 12) else {
            write8(io + DEVICE_STATUS, FAILED);
            return Err("virtqueue above the 16 TiB a legacy device reaches");
        };
        write32(io + QUEUE_ADDRESS, pfn);
        let lo = read32(io + CONFIG);
        let hi = read32(io + CONFIG + 4);
        write8(io + DEVICE_STATUS, ACKNOWLEDGE | DRIVER | DRIVER_OK);
        Ok(VirtioBlk {
            io,
            queue,
            desc: base.cast(),
            // SAFETY: offsets inside the queue's pages (queue_bytes).
            avail: unsafe { base.add(16 * q) }.cast(),
            // SAFETY: as above.
            used: unsafe { base.add(used_at) }.cast(),
            headers: req.as_mut_ptr().cast(),
            // SAFETY: the discard ranges follow the headers in `req`.
            ranges: unsafe { req.as_mut_ptr().add(16 * q) }.cast(),
            // SAFETY: the status bytes follow the ranges in `req`.
            status: unsafe { req.as_mut_ptr().add(32 * q) },
            avail_idx: 0,
            used_idx: 0,
            sectors: u64::from(hi) << 32 | u64::from(lo),
            flush: wanted & VIRTIO_BLK_F_FLUSH != 0,
            read_only: wanted & VIRTIO_BLK_F_RO != 0,
            max_discard,
            dead: false,
            requests: 0,
            notifies: 0,
        })
    }

    fn set_desc(&mut self, i: u16, d: Desc) {
        // SAFETY: i < queue size: inside the descriptor table.
        unsafe { core::ptr::write_volatile(self.desc.add(usize::from(i)), d) }
    }

    fn avail_word(&self, i: usize) -> &AtomicU16 {
        // SAFETY: the available ring's flags, idx and entries, inside the
        // queue's pages; the device reads them concurrently.
        unsafe { &*(self.avail.add(i) as *const AtomicU16) }
    }

    fn used_idx_now(&self) -> u16 {
        // SAFETY: the used ring's idx word, which the device writes.
        unsafe { (*(self.used.add(1) as *const AtomicU16)).load(Ordering::Acquire) }
    }

    /// Queues one request as a chain from descriptor `first`: header, data
    /// (if any), status. Returns the descriptors used.
    fn queue_one(&mut self, slot: u16, first: u16, io: &Io, data: u64) -> u16 {
        let (kind, sector) = match io.kind {
            IoKind::Read => (VIRTIO_BLK_T_IN, io.sector),
            IoKind::Write => (VIRTIO_BLK_T_OUT, io.sector),
            IoKind::Flush => (VIRTIO_BLK_T_FLUSH, 0),
            // The range carries the sectors; the header's stays 0.
            IoKind::Discard { .. } => (VIRTIO_BLK_T_DISCARD, 0),
        };
        // SAFETY: slot < queue size: inside the header and status arrays.
        unsafe {
            core::ptr::write_volatile(
                self.headers.add(usize::from(slot)),
                Header {
                    kind,
                    ioprio: 0,
                    sector,
                },
            );
            core::ptr::write_volatile(self.status.add(usize::from(slot)), 0xff);
        }
        let header = self.headers as u64 + u64::from(slot) * 16;
        let status = self.status as u64 + u64::from(slot);
        let mut n = first;
        self.set_desc(
            n,
            Desc {
                addr: header,
                len: 16,
                flags: VIRTQ_DESC_F_NEXT,
                next: n + 1,
            },
        );
        n += 1;
        if let IoKind::Discard { count } = io.kind {
            // SAFETY: slot < queue size: inside the range array.
            unsafe {
                core::ptr::write_volatile(
                    self.ranges.add(usize::from(slot)),
                    DiscardRange {
                        sector: io.sector,
                        // run() cut it to max_discard, a u32.
                        num_sectors: count as u32,
                        flags: 0,
                    },
                );
            }
            self.set_desc(
                n,
                Desc {
                    addr: self.ranges as u64 + u64::from(slot) * 16,
                    len: 16,
                    flags: VIRTQ_DESC_F_NEXT,
                    next: n + 1,
                },
            );
            n += 1;
        } else if !io.buf.is_empty() {
            let flags = VIRTQ_DESC_F_NEXT
                | if kind == VIRTIO_BLK_T_IN {
                    VIRTQ_DESC_F_WRITE
                } else {
                    0
                };
            self.set_desc(
                n,
                Desc {
                    addr: data,
                    len: io.buf.len() as u32,
                    flags,
                    next: n + 1,
                },
            );
            n += 1;
        }
        self.set_desc(
            n,
            Desc {
                addr: status,
                len: 1,
                flags: VIRTQ_DESC_F_WRITE,
                next: 0,
            },
        );
        n + 1 - first
    }

    /// Submits `ios` (at most a third of the queue) and waits for them all.
    fn run_chunk(&mut self, scratch: &mut [u8], ios: &mut [Io]) {
        let q = usize::from(self.queue);
        let mut next_desc = 0u16;
        for (slot, io) in ios.iter().enumerate() {
            let data = scratch.as_ptr() as u64 + io.buf.start as u64;
            let head = next_desc;
            next_desc += self.queue_one(slot as u16, head, io, data);
            let at = 2 + usize::from(self.avail_idx.wrapping_add(slot as u16)) % q;
            self.avail_word(at).store(head, Ordering::Relaxed);
        }
        // Descriptors and ring entries before the index the device reads
        // (virtio 1.0 2.4.7: a write barrier), the index before the notify.
        fence(Ordering::SeqCst);
        self.avail_idx = self.avail_idx.wrapping_add(ios.len() as u16);
        self.avail_word(1).store(self.avail_idx, Ordering::Release);
        fence(Ordering::SeqCst);
        write16(self.io + QUEUE_NOTIFY, 0);
        self.notifies += 1;
        self.requests += ios.len() as u64;
        let deadline = xen::now_ns() + TIMEOUT_NS;
        while self.used_idx_now() != self.avail_idx {
            if xen::now_ns() > deadline {
                crate::log!(
                    "virtio-blk at {:#x}: no completion in 30 s; giving up on it",
                    self.io
                );
                self.dead = true;
                for io in ios.iter_mut() {
                    io.ok = false;
                }
                return;
            }
            core::hint::spin_loop();
        }
        fence(Ordering::SeqCst);
        self.used_idx = self.avail_idx;
        for (slot, io) in ios.iter_mut().enumerate() {
            // SAFETY: the status byte of this slot, written by the device.
            let s = unsafe { core::ptr::read_volatile(self.status.add(slot)) };
            io.ok = s == 0;
        }
        // The ISR register is read-to-clear: keep the (unrouted) line quiet.
        let _ = read8(self.io + 0x13);
    }
}

impl VirtioBlk {
    /// A discard of more sectors than one command may carry.
    fn too_long(&self, io: &Io) -> bool {
        matches!(io.kind, IoKind::Discard { count } if count > u64::from(self.max_discard))
    }

    /// `io`, a discard over the device's limit, as commands of at most
    /// `max_discard` sectors, `per_chunk` at a time; ok if all are.
    fn run_long_discard(&mut self, scratch: &mut [u8], io: &mut Io, per_chunk: usize) {
        let IoKind::Discard { count } = io.kind else {
            return;
        };
        // A chunk's worth at a time: a discard of a big disk is thousands
        // of commands, more than the heap should hold at once.
        let mut pieces = discard_pieces(io.sector, count, self.max_discard).peekable();
        io.ok = true;
        while pieces.peek().is_some() {
            let mut chunk: Vec<Io> = pieces
                .by_ref()
                .take(per_chunk.max(1))
                .map(|(sector, n)| Io {
                    kind: IoKind::Discard {
                        count: u64::from(n),
                    },
                    sector,
                    buf: 0..0,
                    ok: false,
                })
                .collect();
            self.run_chunk(scratch, &mut chunk);
            io.ok &= chunk.iter().all(|p| p.ok);
        }
    }
}

impl BlockDevice for VirtioBlk {
    fn sectors(&self) -> u64 {
        self.sectors
    }

    fn can_flush(&self) -> bool {
        self.flush
    }

    fn can_discard(&self) -> bool {
        self.max_discard != 0
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn run(&mut self, scratch: &mut [u8], ios: &mut [Io]) {
        if self.dead {
            ios.iter_mut().for_each(|io| io.ok = false);
            return;
        }
        // The device may run a chunk's requests in any order, and a flush
        // covers only completed writes (virtio 1.0 5.2.6.1): a flush goes
        // alone, after everything before it completed and before anything
        // after it. A discard longer than the device takes goes alone too,
        // in pieces.
        let per_chunk = usize::from(self.queue) / 3;
        let mut start = 0;
        while start < ios.len() {
            if self.too_long(&ios[start]) {
                self.run_long_discard(scratch, &mut ios[start], per_chunk);
                start += 1;
                continue;
            }
            let mut end = start;
            while end < ios.len()
                && end - start < per_chunk
                && ios[end].kind != IoKind::Flush
                && !self.too_long(&ios[end])
            {
                end += 1;
            }
            if end == start {
                end = start + 1;
            }
            self.run_chunk(scratch, &mut ios[start..end]);
            start = end;
        }
    }
}
