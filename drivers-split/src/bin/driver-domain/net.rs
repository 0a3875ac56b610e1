//! The driver domain's network: each `vif=` option's interface, its XenStore handshake with the guest's netfront, and the switch that joins them.

use crate::grants::HypervisorGrants;
use crate::page::MappedPage;
use crate::{log, xen};
use alloc::vec::Vec;
use drivers_split::domains::Guest;
use drivers_split::netback::config::{parse_vif, VifSpec};
use drivers_split::netback::switch::{Forward, Switch};
use drivers_split::netback::vif::{Packet, Vif};
use drivers_split::netback::xenbus::{self, RingRefs, Step};
use drivers_split::toolstack;
use drivers_split::xenbus_state::{frontend_reader, frontend_state, CLOSING, INIT_WAIT};
use drivers_split::xenstore::Server;

/// Packets one interface may send per turn of the loop, so one busy
/// guest cannot keep the driver domain from the others.
const PACKETS_PER_TURN: usize = 64;
/// Malformed packets logged per interface; the rest are only counted.
const ERRORS_LOGGED: u64 = 8;

/// A connected interface.
struct Connection {
    vif: Vif<MappedPage>,
    /// The transmit and receive ring pages, and the channel.
    rings: xen::Rings,
}

/// One interface of one guest; its index in `Nets::list` is its switch port.
struct Net {
    spec: VifSpec,
    domid: u16,
    guest_index: usize,
    /// The backend's XenbusState.
    state: u8,
    conn: Option<Connection>,
}

pub struct Nets {
    list: Vec<Net>,
    switch: Switch,
}

impl Nets {
    /// Reads every `vif=` option and writes its XenStore nodes.
    pub fn setup(cmdline: &str, guests: &[Guest], server: &mut Server<MappedPage>) -> Nets {
        let mut list: Vec<Net> = Vec::new();
        for text in cmdline
            .split_ascii_whitespace()
            .filter_map(|w| w.strip_prefix("vif="))
        {
            let name = text.split(':').next().unwrap_or("");
            let Some((guest_index, g)) = guests.iter().enumerate().find(|(_, g)| g.name == name)
            else {
                log!("vif={text}: no guest named {name}");
                continue;
            };
            let devid = list.iter().filter(|n| n.domid == g.domid).count() as u32;
            let spec = match parse_vif(text, devid) {
                Ok(s) => s,
                Err(e) => {
                    log!("vif={text}: {e}");
                    continue;
                }
            };
            if let Err((path, e)) = toolstack::apply(server, &xenbus::entries(&spec, g.domid)) {
                log!("vif={text}: XenStore refused {path}: {e:?}");
                continue;
            }
            log!(
                "domain {} ({}): vif{} is {}",
                g.domid,
                g.name,
                spec.devid,
                spec.mac
            );
            list.push(Net {
                spec,
                domid: g.domid,
                guest_index,
                state: INIT_WAIT,
                conn: None,
            });
        }
        Nets {
            list,
            switch: Switch::new(),
        }
    }

    /// Moves each interface's handshake on; true if anything was written.
    pub fn step(&mut self, server: &mut Server<MappedPage>) -> bool {
        let mut wrote = false;
        for port in 0..self.list.len() {
            let n = &mut self.list[port];
            let fe = xenbus::frontend_dir(n.domid, n.spec.devid);
            let step = {
                let read = frontend_reader(server.store(), &fe);
                xenbus::next_step(n.state, n.conn.is_some(), frontend_state(&read), &read)
            };
            if step == Step::Nothing {
                continue;
            }
            wrote = true;
            let be = xenbus::backend_dir(n.domid, n.spec.devid);
            let state = match step {
                Step::Nothing => continue,
                Step::Connect(refs) => match n.connect(&refs) {
                    Ok(()) => {
                        log!(
                            "domain {}: vif{} connected, {}, event channel {}",
                            n.domid,
                            n.spec.devid,
                            n.spec.mac,
                            refs.port
                        );
                        xenbus::CONNECTED
                    }
                    Err(why) => {
                        log!("domain {}: vif{}: {why}", n.domid, n.spec.devid);
                        CLOSING
                    }
                },
                Step::Fail(why) => {
                    log!("domain {}: vif{}: {why}", n.domid, n.spec.devid);
                    CLOSING
                }
                Step::Disconnect { state } => {
                    n.disconnect();
                    self.switch.forget_port(port);
                    state
                }
                Step::SetState(state) => state,
            };
            let _ = toolstack::set_state(server, &be, state);
            self.list[port].state = state;
        }
        wrote
    }

    /// Sends what the interfaces transmitted through the switch and fills
    /// receive rings; true if anything moved or waits.
    pub fn serve(&mut self, server: &mut Server<MappedPage>) -> bool {
        let mut busy = false;
        let mut sent: Vec<(usize, Packet)> = Vec::new();
        for port in 0..self.list.len() {
            let n = &mut self.list[port];
            let Some(c) = n.conn.as_mut() else { continue };
            match c.vif.take_tx(&mut HypervisorGrants, PACKETS_PER_TURN) {
                Ok(packets) => {
                    busy |= !packets.is_empty();
                    sent.extend(packets.into_iter().map(|p| (port, p)));
                    if let Some(why) = c.vif.last_error.take() {
                        busy = true;
                        if c.vif.counters.tx_errors <= ERRORS_LOGGED {
                            log!(
                                "domain {}: vif{}: a packet dropped: {why}",
                                n.domid,
                                n.spec.devid
                            );
                        }
                    }
                }
                Err(e) => {
                    self.broken(port, server, e);
                    busy = true;
                }
            }
        }
        for (from, p) in sent {
            match self.switch.forward(from, p.src(), p.dst()) {
                Forward::Port(to) => self.enqueue(to, p),
                Forward::Flood => {
                    for to in (0..self.list.len()).filter(|&to| to != from) {
                        self.enqueue(to, p.clone());
                    }
                }
                Forward::Drop => {}
            }
        }
        for port in 0..self.list.len() {
            let Some(c) = self.list[port].conn.as_mut() else {
                continue;
            };
            let before = c.vif.counters.rx_packets;
            let result = c.vif.deliver(&mut HypervisorGrants);
            if c.vif.push() {
                xen::send(c.rings.port);
            }
            busy |= c.vif.counters.rx_packets != before;
            if let Err(e) = result {
                self.broken(port, server, e);
                busy = true;
            }
        }
        if !busy {
            for port in 0..self.list.len() {
                let Some(c) = self.list[port].conn.as_mut() else {
                    continue;
                };
                match c.vif.idle_check() {
                    Ok(work) => busy |= work,
                    Err(e) => {
                        self.broken(port, server, e);
                        busy = true;
                    }
                }
            }
        }
        busy
    }

    /// Queues `p` for port `to` if it is connected; refusals are counted.
    fn enqueue(&mut self, to: usize, p: Packet) {
        if let Some(c) = self.list[to].conn.as_mut() {
            let _ = c.vif.enqueue(p);
        }
    }

    /// The frontend broke a ring's protocol: this interface stops; the
    /// guest's other devices and the other guests carry on.
    fn broken(&mut self, port: usize, server: &mut Server<MappedPage>, e: impl core::fmt::Debug) {
        let n = &mut self.list[port];
        log!(
            "domain {}: vif{}: {e:?}; the rings are not served any more",
            n.domid,
            n.spec.devid
        );
        n.disconnect();
        n.state = CLOSING;
        let be = xenbus::backend_dir(n.domid, n.spec.devid);
        let _ = toolstack::set_state(server, &be, CLOSING);
        self.switch.forget_port(port);
    }
}

impl Net {
    /// Maps both rings, binds the channel and starts serving.
    fn connect(&mut self, refs: &RingRefs) -> Result<(), &'static str> {
        let base = xen::window(
            self.guest_index,
            xen::VIF_PAGES + 2 * u64::from(self.spec.devid),
        );
        let rings = xen::connect_rings(self.domid, &[refs.tx, refs.rx], base, refs.port)?;
        // SAFETY: both pages were just grant-mapped there and stay mapped
        // until `disconnect` drops the vif first.
        let (tx, rx) = unsafe { (MappedPage::new(base), MappedPage::new(base + 4096)) };
        self.conn = Some(Connection {
            vif: Vif::new(self.domid, self.spec.mac, refs.peer, tx, rx),
            rings,
        });
        Ok(())
    }

    /// Stops serving: counters logged, channel closed, pages unmapped.
    fn disconnect(&mut self) {
        if let Some(c) = self.conn.take() {
            let n = c.vif.counters;
            log!(
                "domain {}: vif{} disconnected after {} packets sent ({} KiB, {} GSO, {} checksums completed, {} errors, {} spoofed), {} received ({} KiB), {} dropped",
                self.domid,
                self.spec.devid,
                n.tx_packets,
                n.tx_bytes >> 10,
                n.gso_packets,
                n.checksums,
                n.tx_errors,
                n.spoofed,
                n.rx_packets,
                n.rx_bytes >> 10,
                n.dropped
            );
            // The rings go before the pages they read.
            let rings = c.rings;
            drop(c.vif);
            xen::disconnect_rings(rings);
        }
    }
}
