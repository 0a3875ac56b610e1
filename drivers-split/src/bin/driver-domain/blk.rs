//! The driver domain's virtual disks: each `vbd=` option's device, its XenStore handshake with the guest's blkfront, and its ring served by grant copy.

use crate::grants::HypervisorGrants;
use crate::page::MappedPage;
use crate::virtio::VirtioBlk;
use crate::{dma, log, xen};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use drivers_split::blkback::blkif::Blkif;
use drivers_split::blkback::config::{parse_vbd, Source, VbdSpec};
use drivers_split::blkback::device::{BlockDevice, Io, RamDisk};
use drivers_split::blkback::request::Limits;
use drivers_split::blkback::xenbus::{self, Step};
use drivers_split::domains::{Guest, Resources};
use drivers_split::toolstack;
use drivers_split::xenbus_state::{frontend_reader, frontend_state};
use drivers_split::xenstore::Server;
use xen_abi::domain_table::DEVICE_VIRTIO_BLK_LEGACY;

/// Bytes of data one batch carries: the largest request (256 indirect
/// segments, 1 MiB) and as much again.
const SCRATCH_BYTES: usize = 2 << 20;
/// Vbds one guest may have: its grant window after the console and
/// XenStore pages holds this many largest rings.
const VBDS_PER_GUEST: usize = ((xen::VIF_PAGES - 2) / xen::RING_PAGES) as usize;

/// A connected ring.
struct Connection {
    blkif: Blkif<MappedPage>,
    rings: xen::Rings,
    /// Time spent serving the ring, for the end-of-run line (the
    /// benchmark splits a MiB's cost with it).
    serving_ns: u64,
}

/// A device that keeps the time its I/O took.
struct Timed {
    dev: Box<dyn BlockDevice>,
    ns: u64,
}

impl BlockDevice for Timed {
    fn sectors(&self) -> u64 {
        self.dev.sectors()
    }

    fn can_flush(&self) -> bool {
        self.dev.can_flush()
    }

    fn can_discard(&self) -> bool {
        self.dev.can_discard()
    }

    fn read_only(&self) -> bool {
        self.dev.read_only()
    }

    fn run(&mut self, scratch: &mut [u8], ios: &mut [Io]) {
        let start = xen::now_ns();
        self.dev.run(scratch, ios);
        self.ns += xen::now_ns().saturating_sub(start);
    }
}

/// One virtual disk of one guest.
struct Vbd {
    spec: VbdSpec,
    domid: u16,
    /// Where its ring is mapped: the guest's window, from this page.
    window_page: u64,
    guest_index: usize,
    limits: Limits,
    dev: Timed,
    scratch: &'static mut [u8],
    /// The backend's XenbusState.
    state: u8,
    conn: Option<Connection>,
}

pub struct Vbds {
    list: Vec<Vbd>,
}

/// The RAM disks of module 0, as disjoint byte slices.
fn ram_disk(res: &Resources, module: (u64, usize), name: &str) -> Option<&'static mut [u8]> {
    let d = res.ramdisks.iter().find(|d| d.name == name)?;
    if d.offset + d.size > module.1 as u64 {
        return None;
    }
    // SAFETY: inside module 0 (checked just above and by the table parser,
    // which also refused overlapping RAM disks); each name is used by one
    // vbd only (checked by `setup`), so the slices never alias.
    Some(unsafe {
        core::slice::from_raw_parts_mut((module.0 + d.offset) as *mut u8, d.size as usize)
    })
}

impl Vbds {
    /// Builds every `vbd=` option's disk and writes its XenStore nodes.
    /// `module` is module 0's address and length.
    pub fn setup(
        cmdline: &str,
        guests: &[Guest],
        res: &Resources,
        module: (u64, usize),
        server: &mut Server<MappedPage>,
    ) -> Vbds {
        if let Some((base, size)) = res.dma {
            dma::init(base, size);
        }
        let mut virtio: Vec<Option<VirtioBlk>> = res
            .devices
            .iter()
            .map(|d| {
                if d.kind != DEVICE_VIRTIO_BLK_LEGACY {
                    return None;
                }
                match VirtioBlk::new(d.io_base) {
                    Ok(v) => {
                        log!(
                            "virtio-blk {:02x}:{:02x}.{}: {} sectors{}{}{}",
                            d.bdf >> 8,
                            (d.bdf >> 3) & 31,
                            d.bdf & 7,
                            v.sectors(),
                            if v.can_flush() { ", flush" } else { "" },
                            if v.can_discard() { ", discard" } else { "" },
                            if v.read_only() { ", read-only" } else { "" }
                        );
                        Some(v)
                    }
                    Err(e) => {
                        log!("virtio-blk at {:#x}: {e}", d.io_base);
                        None
                    }
                }
            })
            .collect();
        let mut used_ramdisks: Vec<String> = Vec::new();
        let mut list = Vec::new();
        for text in cmdline
            .split_ascii_whitespace()
            .filter_map(|w| w.strip_prefix("vbd="))
        {
            let spec = match parse_vbd(text) {
                Ok(s) => s,
                Err(e) => {
                    log!("vbd={text}: {e}");
                    continue;
                }
            };
            let Some((guest_index, g)) = guests
                .iter()
                .enumerate()
                .find(|(_, g)| g.name == spec.guest)
            else {
                log!("vbd={text}: no guest named {}", spec.guest);
                continue;
            };
            let nth = list.iter().filter(|v: &&Vbd| v.domid == g.domid).count();
            if nth >= VBDS_PER_GUEST
                || list
                    .iter()
                    .any(|v: &Vbd| v.domid == g.domid && v.spec.devid == spec.devid)
            {
                log!("vbd={text}: too many disks, or {} given twice", spec.vdev);
                continue;
            }
            let (dev, params, scratch): (Box<dyn BlockDevice>, String, Option<&'static mut [u8]>) =
                match &spec.source {
                    Source::RamDisk(name) => {
                        let bytes = if used_ramdisks.contains(name) {
                            None
                        } else {
                            ram_disk(res, module, name)
                        };
                        let Some(bytes) = bytes else {
                            log!("vbd={text}: no RAM disk {name} (or it is used already)");
                            continue;
                        };
                        used_ramdisks.push(name.clone());
                        let scratch = Vec::leak(vec![0u8; SCRATCH_BYTES]);
                        (
                            Box::new(RamDisk::new(bytes)),
                            format!("ramdisk:{name}"),
                            Some(scratch),
                        )
                    }
                    Source::Virtio(n) => {
                        let Some(v) = virtio.get_mut(*n).and_then(Option::take) else {
                            log!("vbd={text}: no virtio block device {n} (or it is used already)");
                            continue;
                        };
                        (
                            Box::new(v),
                            format!("virtio:{n}"),
                            dma::alloc(SCRATCH_BYTES),
                        )
                    }
                };
            let Some(scratch) = scratch else {
                log!("vbd={text}: no room for its buffers in the DMA pool");
                continue;
            };
            let read_only = spec.read_only || dev.read_only();
            let limits = Limits {
                sectors: dev.sectors(),
                read_only,
                flush: dev.can_flush(),
                discard: dev.can_discard(),
                max_indirect_segments: xenbus::MAX_INDIRECT_SEGMENTS,
            };
            if let Err((path, e)) =
                toolstack::apply(server, &xenbus::entries(&spec, g.domid, &limits, &params))
            {
                log!("vbd={text}: XenStore refused {path}: {e:?}");
                continue;
            }
            log!(
                "domain {} ({}): {} is {params}, {} MiB{}",
                g.domid,
                g.name,
                spec.vdev,
                limits.sectors >> 11,
                if read_only { ", read-only" } else { "" }
            );
            list.push(Vbd {
                domid: g.domid,
                window_page: 2 + nth as u64 * xen::RING_PAGES,
                guest_index,
                spec,
                limits,
                dev: Timed { dev, ns: 0 },
                scratch,
                state: xenbus::INIT_WAIT,
                conn: None,
            });
        }
        Vbds { list }
    }

    /// Moves each vbd's handshake on from what the frontends wrote; true
    /// if anything was written (the caller then flushes XenStore replies).
    pub fn step(&mut self, server: &mut Server<MappedPage>) -> bool {
        let mut wrote = false;
        for v in self.list.iter_mut() {
            let fe = xenbus::frontend_dir(v.domid, v.spec.devid);
            let step = {
                let read = frontend_reader(server.store(), &fe);
                xenbus::next_step(v.state, v.conn.is_some(), frontend_state(&read), &read)
            };
            if step == Step::Nothing {
                continue;
            }
            wrote = true;
            let state = match step {
                Step::Nothing => continue,
                Step::Connect(ring) => match v.connect(&ring) {
                    Ok(()) => {
                        // These entries end with state = Connected.
                        let _ = toolstack::apply(
                            server,
                            &xenbus::connected_entries(v.domid, v.spec.devid, &v.limits),
                        );
                        v.state = xenbus::CONNECTED;
                        log!(
                            "domain {}: {} connected, {} ring page(s), event channel {}",
                            v.domid,
                            v.spec.vdev,
                            ring.grefs.len(),
                            ring.port
                        );
                        continue;
                    }
                    Err(why) => {
                        log!("domain {}: {}: {why}", v.domid, v.spec.vdev);
                        xenbus::CLOSING
                    }
                },
                Step::Fail(why) => {
                    log!("domain {}: {}: {why}", v.domid, v.spec.vdev);
                    xenbus::CLOSING
                }
                Step::Disconnect { state } => {
                    v.disconnect();
                    state
                }
                Step::SetState(state) => state,
            };
            let be = xenbus::backend_dir(v.domid, v.spec.devid);
            let _ = toolstack::set_state(server, &be, state);
            v.state = state;
        }
        wrote
    }

    /// Serves every connected ring; true if any still has work waiting.
    pub fn serve(&mut self, server: &mut Server<MappedPage>) -> bool {
        let mut busy = false;
        for v in self.list.iter_mut() {
            let Some(c) = v.conn.as_mut() else { continue };
            let start = xen::now_ns();
            let served = c.blkif.serve(&mut v.dev, &mut HypervisorGrants, v.scratch);
            c.serving_ns += xen::now_ns().saturating_sub(start);
            match served {
                Ok(notify) => {
                    if notify {
                        xen::send(c.rings.port);
                    }
                    // Served requests alone are no reason to look again:
                    // the ring's final check re-armed the frontend's event.
                    busy |= c.blkif.pending();
                }
                Err(e) => {
                    // The frontend broke the ring protocol: this disk
                    // stops; the guest's other devices and the other
                    // guests carry on.
                    log!(
                        "domain {}: {}: {e:?}; the ring is not served any more",
                        v.domid,
                        v.spec.vdev
                    );
                    v.disconnect();
                    let be = xenbus::backend_dir(v.domid, v.spec.devid);
                    let _ = toolstack::set_state(server, &be, xenbus::CLOSING);
                    v.state = xenbus::CLOSING;
                    busy = true;
                }
            }
        }
        busy
    }
}

impl Vbd {
    /// Maps the ring pages, binds the channel and starts serving.
    fn connect(&mut self, ring: &xenbus::RingSpec) -> Result<(), &'static str> {
        let base = xen::window(self.guest_index, self.window_page);
        let rings = xen::connect_rings(self.domid, &ring.grefs, base, ring.port)?;
        let pages = ring.grefs.len();
        // SAFETY: the pages were just grant-mapped there, contiguously, and
        // stay mapped until `disconnect` drops the ring first.
        let mem = unsafe { MappedPage::span(base, pages) };
        self.conn = Some(Connection {
            blkif: Blkif::new(self.domid, mem, pages * 4096, self.limits),
            rings,
            serving_ns: 0,
        });
        Ok(())
    }

    /// Stops serving the ring: its counters are logged, the channel
    /// closed and the pages unmapped.
    fn disconnect(&mut self) {
        if let Some(c) = self.conn.take() {
            let n = c.blkif.counters;
            log!(
                "domain {}: {} disconnected after {} requests ({} errors), {} KiB read, {} KiB written, {} batches, {} notifications, {} us serving, {} us in the device",
                self.domid,
                self.spec.vdev,
                n.requests,
                n.errors,
                n.bytes_read >> 10,
                n.bytes_written >> 10,
                n.batches,
                n.notifications,
                c.serving_ns / 1000,
                self.dev.ns / 1000
            );
            self.dev.ns = 0;
            // The ring goes before the pages it reads.
            let rings = c.rings;
            drop(c.blkif);
            xen::disconnect_rings(rings);
        }
    }
}
