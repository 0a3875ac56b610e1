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
