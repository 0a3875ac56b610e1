//! Where a virtual disk's bytes live: the `BlockDevice` a vbd serves from, and the RAM disk.

use core::ops::Range;

/// One transfer or command for a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoKind {
    /// From the disk into `buf` of the scratch area.
    Read,
    /// From `buf` of the scratch area to the disk.
    Write,
    /// Make every completed write durable.
    Flush,
    /// Forget `count` sectors from `sector`; they read back as zeros.
    Discard { count: u64 },
}

/// An I/O for `BlockDevice::run`; `ok` says how it went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Io {
    pub kind: IoKind,
    /// In 512-byte sectors.
    pub sector: u64,
    /// Bytes of the scratch area the data is in (empty for commands).
    pub buf: Range<usize>,
    pub ok: bool,
}

/// A disk. Requests are checked against its size before they get here.
pub trait BlockDevice {
    /// Size in 512-byte sectors.
    fn sectors(&self) -> u64;
    fn can_flush(&self) -> bool;
    fn can_discard(&self) -> bool;
    /// Whether the device itself refuses writes.
    fn read_only(&self) -> bool {
        false
    }
    /// Does every I/O of `ios`, in order (a flush covers the writes before
    /// it), with data in `scratch`; sets each one's `ok`.
    fn run(&mut self, scratch: &mut [u8], ios: &mut [Io]);
}

/// `count` sectors from `sector` cut into discards of at most `max`
/// sectors each, for devices with a per-command limit (virtio-blk's
/// `max_discard_sectors`, virtio 1.1 5.2.4), whereas a blkif discard may
/// span the whole disk (io/blkif.h `blkif_request_discard.nr_sectors`).
/// The cuts fall on multiples of the step (`max` rounded down to whole
/// 4 KiB pages): a cut inside a page would leave that page half-discarded
/// on both sides, and a host file system frees only whole pages.
pub fn discard_pieces(sector: u64, count: u64, max: u32) -> impl Iterator<Item = (u64, u32)> {
    let max = u64::from(max.max(1));
    let step = if max >= 8 { max & !7 } else { max };
    let end = sector.saturating_add(count);
    let mut at = sector;
    core::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let stop = ((at / step).saturating_add(1).saturating_mul(step)).min(end);
        let piece = (at, (stop - at) as u32);
        at = stop;
        Some(piece)
    })
}

/// A disk in memory: a boot module, for machines without a disk the
/// driver domain can drive.
pub struct RamDisk<B> {
    bytes: B,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> RamDisk<B> {
    /// The whole 512-byte sectors of `bytes` form the disk.
    pub fn new(bytes: B) -> Self {
        RamDisk { bytes }
    }

    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    fn range(&self, sector: u64, len: usize) -> Option<Range<usize>> {
        let start = usize::try_from(sector.checked_mul(512)?).ok()?;
        let end = start.checked_add(len)?;
        (end <= self.sectors() as usize * 512).then_some(start..end)
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> BlockDevice for RamDisk<B> {
    fn sectors(&self) -> u64 {
        self.bytes.as_ref().len() as u64 / 512
    }

    fn can_flush(&self) -> bool {
        true
    }

    fn can_discard(&self) -> bool {
        true
    }

    fn run(&mut self, scratch: &mut [u8], ios: &mut [Io]) {
        for io in ios.iter_mut() {
            let len = match io.kind {
                IoKind::Discard { count } => {
                    usize::try_from(count.saturating_mul(512)).unwrap_or(usize::MAX)
                }
                _ => io.buf.len(),
            };
            let Some(disk) = self.range(io.sector, len) else {
                io.ok = false;
                continue;
            };
            let Some(buf) = scratch.get_mut(io.buf.clone()) else {
                io.ok = false;
                continue;
            };
            let mem = self.bytes.as_mut();
            match io.kind {
                IoKind::Read => buf.copy_from_slice(&mem[disk]),
                IoKind::Write => mem[disk].copy_from_slice(buf),
                // Memory is as durable as it gets.
                IoKind::Flush => {}
                IoKind::Discard { .. } => mem[disk].fill(0),
            }
            io.ok = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    #[test]
    fn discards_are_cut_at_the_device_limit() {
        let v: Vec<_> = discard_pieces(10, 9, 4).collect();
        assert_eq!(v, [(10, 2), (12, 4), (16, 3)]);
        assert_eq!(discard_pieces(0, 4, 4).collect::<Vec<_>>(), [(0, 4)]);
        // QEMU's 4194303: steps of 4194296, cut on page boundaries.
        let v: Vec<_> = discard_pieces(3, 8_388_600, 4_194_303).collect();
        assert_eq!(v, [(3, 4_194_293), (4_194_296, 4_194_296), (8_388_592, 11)]);
        assert_eq!(discard_pieces(5, 0, 4).count(), 0);
        // A device that claims 0 gets one sector at a time, not a hang.
        assert_eq!(discard_pieces(0, 2, 0).count(), 2);
    }

    proptest! {
        #[test]
        fn discard_pieces_tile_the_range(sector in 0u64..1 << 40, count in 0u64..1 << 24, max in 1u32..1 << 22) {
            let mut at = sector;
            for (s, n) in discard_pieces(sector, count, max) {
                prop_assert_eq!(s, at);
                prop_assert!(n >= 1 && n <= max);
                at += u64::from(n);
                // Every cut inside the range is on a page boundary.
                prop_assert!(max < 8 || at == sector + count || at % 8 == 0);
            }
            prop_assert_eq!(at, sector + count);
        }
    }

    #[test]
    fn ram_disk_reads_what_was_written() {
        let mut d = RamDisk::new(vec![0u8; 8192]);
        assert_eq!(d.sectors(), 16);
        let mut scratch = vec![0u8; 2048];
        scratch[..1024].fill(7);
        let mut ios = [
            Io {
                kind: IoKind::Write,
                sector: 15,
                buf: 0..512,
                ok: false,
            },
            Io {
                kind: IoKind::Read,
                sector: 15,
                buf: 1024..1536,
                ok: false,
            },
            Io {
                kind: IoKind::Write,
                sector: 16,
                buf: 0..512,
                ok: true,
            },
            Io {
                kind: IoKind::Discard { count: 1 },
                sector: 15,
                buf: 0..0,
                ok: false,
            },
            Io {
                kind: IoKind::Read,
                sector: 15,
                buf: 1536..2048,
                ok: false,
            },
        ];
        d.run(&mut scratch, &mut ios);
        assert_eq!(
            ios.iter().map(|i| i.ok).collect::<alloc::vec::Vec<_>>(),
            [true, true, false, true, true]
        );
        assert!(scratch[1024..1536].iter().all(|&b| b == 7));
        assert!(scratch[1536..2048].iter().all(|&b| b == 0));
    }
}
