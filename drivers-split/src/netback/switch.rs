//! The learning switch between the guests' interfaces: source addresses are learned per port, unicast goes where its address was last seen, the rest is flooded.
//!
//! A port is an interface's index in the driver domain's list. Each port
//! may send only from its own configured address (the backend checks that
//! before the switch sees a frame), so a guest cannot take another's
//! address and with it that guest's traffic.

use super::config::Mac;
use alloc::vec::Vec;

/// Learned addresses kept at most; the oldest is forgotten first.
pub const TABLE_SIZE: usize = 256;
/// A learned address is forgotten after this many frames switched
/// without hearing from it (there is no clock in here).
pub const AGE_LIMIT: u64 = 1 << 20;

/// Where a frame goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forward {
    /// To this port only.
    Port(usize),
    /// To every other port.
    Flood,
    /// Nowhere: it is for the port it came from.
    Drop,
}

struct Learned {
    mac: Mac,
    port: usize,
    /// `Switch::clock` when last heard from.
    seen: u64,
}

#[derive(Default)]
pub struct Switch {
    table: Vec<Learned>,
    /// Frames switched so far.
    clock: u64,
}

impl Switch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Learns where `src` is and says where a frame from `port` to `dst` goes.
    pub fn forward(&mut self, port: usize, src: Mac, dst: Mac) -> Forward {
        self.clock += 1;
        if !src.is_group() {
            self.learn(port, src);
        }
        if dst.is_group() {
            return Forward::Flood;
        }
        let clock = self.clock;
        match self
            .table
            .iter()
            .find(|l| l.mac == dst && clock - l.seen < AGE_LIMIT)
        {
            Some(l) if l.port == port => Forward::Drop,
            Some(l) => Forward::Port(l.port),
            None => Forward::Flood,
        }
    }

    fn learn(&mut self, port: usize, src: Mac) {
        if let Some(l) = self.table.iter_mut().find(|l| l.mac == src) {
            l.port = port;
            l.seen = self.clock;
            return;
        }
        if self.table.len() == TABLE_SIZE {
            let oldest = (0..self.table.len())
                .min_by_key(|&i| self.table[i].seen)
                .expect("a full table");
            self.table.swap_remove(oldest);
        }
        self.table.push(Learned {
            mac: src,
            port,
            seen: self.clock,
        });
    }

    /// A port went away: what was learned on it is forgotten.
    pub fn forget_port(&mut self, port: usize) {
        self.table.retain(|l| l.port != port);
    }

    /// Addresses known now.
    pub fn learned(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> Mac {
        Mac([0x00, 0x16, 0x3e, 0, 0, n])
    }

    #[test]
    fn learns_floods_and_forgets() {
        let mut s = Switch::new();
        // Nobody known yet: flood; the sender is learned.
        assert_eq!(s.forward(0, mac(1), mac(2)), Forward::Flood);
        assert_eq!(s.forward(1, mac(2), mac(1)), Forward::Port(0));
        assert_eq!(s.forward(0, mac(1), mac(2)), Forward::Port(1));
        assert_eq!(s.forward(0, mac(1), Mac::BROADCAST), Forward::Flood);
        // For the port it came from: hairpin traffic is dropped.
        assert_eq!(s.forward(0, mac(2), mac(1)), Forward::Drop);
        // mac(2) moved to port 0 by that frame.
        assert_eq!(s.forward(1, mac(3), mac(2)), Forward::Port(0));
        s.forget_port(0);
        assert_eq!(s.forward(1, mac(3), mac(1)), Forward::Flood);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut s = Switch::new();
        for i in 0..(TABLE_SIZE as u32 + 50) {
            let m = Mac([0x02, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            s.forward((i % 3) as usize, m, Mac::BROADCAST);
        }
        assert_eq!(s.learned(), TABLE_SIZE);
        // The newest are kept.
        let newest = TABLE_SIZE as u32 + 49;
        let m = Mac([0x02, 0, 0, 0, (newest >> 8) as u8, newest as u8]);
        assert_eq!(
            s.forward(5, mac(9), m),
            Forward::Port((newest % 3) as usize)
        );
    }
}
