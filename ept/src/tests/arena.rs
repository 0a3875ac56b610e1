//! A vector standing in for host memory: table frames handed out and taken back, with leak and misuse checks.

use crate::{Hpa, TableMemory};
use std::boxed::Box;
use std::vec::Vec;

/// Frames start here so that a table address is never 0 and never mistaken
/// for the small host addresses the tests map.
const BASE: u64 = 0x7700_0000_0000;

pub struct Arena {
    frames: Vec<Option<Box<[u64; 512]>>>,
    /// Allocation fails once this many frames are live.
    pub limit: usize,
}

impl Arena {
    pub fn new() -> Arena {
        Arena {
            frames: Vec::new(),
            limit: usize::MAX,
        }
    }

    /// Frames allocated and not freed.
    pub fn live(&self) -> usize {
        self.frames.iter().filter(|f| f.is_some()).count()
    }

    fn slot(&self, table: Hpa) -> usize {
        assert!(
            table.0 >= BASE && table.0.is_multiple_of(4096),
            "{table:x?} is not an arena frame"
        );
        ((table.0 - BASE) / 4096) as usize
    }
}

impl TableMemory for Arena {
    fn alloc_zeroed_table(&mut self) -> Option<Hpa> {
        if self.live() >= self.limit {
            return None;
        }
        let slot = match self.frames.iter().position(Option::is_none) {
            Some(slot) => slot,
            None => {
                self.frames.push(None);
                self.frames.len() - 1
            }
        };
        self.frames[slot] = Some(Box::new([0; 512]));
        Some(Hpa(BASE + slot as u64 * 4096))
    }

    fn free_table(&mut self, table: Hpa) {
        let slot = self.slot(table);
        assert!(
            self.frames[slot].take().is_some(),
            "double free of {table:x?}"
        );
    }

    fn table(&self, table: Hpa) -> &[u64; 512] {
        self.frames[self.slot(table)]
            .as_deref()
            .expect("use of a freed table")
    }

    fn table_mut(&mut self, table: Hpa) -> &mut [u64; 512] {
        let slot = self.slot(table);
        self.frames[slot]
            .as_deref_mut()
            .expect("use of a freed table")
    }
}
