//! Serving one connected blkif ring: requests in batches, data by grant copy through a scratch area, responses in order of completion.
//!
//! A batch is as many requests as are waiting and fit the scratch area.
//! Its writes' data is copied from the guest in one grant-copy call, the
//! device runs the whole batch, the reads' data goes back in one more
//! call, and the responses are published together with at most one
//! notification. A request that fails (a grant the guest does not own,
//! a bad segment) gets an error response; the others in the batch go on.

use super::device::{BlockDevice, Io, IoKind};
use super::request::{self, Limits, Op, Piece, Refusal};
use crate::ring::{BackRing, RingError};
use crate::xenstore::RingMemory;
use alloc::vec;
use alloc::vec::Vec;
use xen_abi::blkif::*;
use xen_abi::grant_table::GNTST_OKAY;

pub use crate::grant_copy::Grants;

/// Counters of one ring, for the end-of-run report and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub errors: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub batches: u64,
    pub notifications: u64,
}

/// A request taken off the ring: its id and operation, and what it asks
/// or the status it gets.
struct Taken {
    id: u64,
    operation: u8,
    work: Result<Op, Refusal>,
}

/// A request of a batch on its way: where its data is in the scratch area.
struct Job {
    id: u64,
    operation: u8,
    op: Option<Op>,
    at: usize,
    status: i16,
}

/// Batches one `serve` call runs at most.
pub const BATCHES_PER_TURN: usize = 8;

/// One connected ring of a vbd.
pub struct Blkif<M: RingMemory> {
    pub domid: u16,
    ring: BackRing<M>,
    limits: Limits,
    /// A request that did not fit the last batch's scratch area.
    carry: Option<Taken>,
    /// Indirect pages are copied here.
    indirect: Vec<u8>,
    pub counters: Counters,
}

impl<M: RingMemory> Blkif<M> {
    /// Serves `mem`, a ring of `bytes` bytes the frontend granted.
    pub fn new(domid: u16, mem: M, bytes: usize, limits: Limits) -> Self {
        Blkif {
            domid,
            ring: BackRing::attach(mem, bytes, BLKIF_SLOT_SIZE),
            limits,
            carry: None,
            indirect: vec![0; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * 4096],
            counters: Counters::default(),
        }
    }

    /// Serves every waiting request; true if the frontend is to be
    /// notified. A ring the frontend overran is an error: the caller
    /// stops serving it.
    pub fn serve(
        &mut self,
        dev: &mut dyn BlockDevice,
        grants: &mut dyn Grants,
        scratch: &mut [u8],
    ) -> Result<bool, RingError> {
        let mut notify = false;
        // A frontend that never stops producing must not keep the driver
        // domain from its other rings: after this many batches the caller
        // gets control back (and `pending` tells it to come back without
        // waiting for an event).
        for _ in 0..BATCHES_PER_TURN {
            let batch = self.take_batch(scratch.len())?;
            if batch.is_empty() {
                if self.ring.final_check()? {
                    continue;
                }
                break;
            }
            let jobs = self.run_batch(batch, dev, grants, scratch);
            for j in &jobs {
                let rsp = BlkifResponse {
                    id: j.id,
                    operation: j.operation,
                    status: j.status,
                    ..Default::default()
                };
                self.ring.put_response(&rsp.to_bytes());
            }
            self.counters.batches += 1;
            if self.ring.push_responses() {
                notify = true;
            }
        }
        if notify {
            self.counters.notifications += 1;
        }
        Ok(notify)
    }

    /// Whether requests wait that the last `serve` left (it stops after
    /// [`BATCHES_PER_TURN`]): the caller comes back without an event. A
    /// broken ring counts as waiting, so the next `serve` reports it.
    pub fn pending(&self) -> bool {
        self.carry.is_some() || self.ring.unconsumed().map_or(true, |n| n > 0)
    }

    /// Takes requests off the ring while their data fits `room` bytes.
    fn take_batch(&mut self, room: usize) -> Result<Vec<Taken>, RingError> {
        let mut batch = Vec::new();
        let mut used = 0usize;
        loop {
            let next = match self.carry.take() {
                Some(t) => t,
                None => {
                    if self.ring.unconsumed()? == 0 {
                        break;
                    }
                    let mut slot = [0u8; BLKIF_SLOT_SIZE];
                    self.ring.take_request(&mut slot);
                    let (id, operation, work) = request::parse(&slot, &self.limits);
                    Taken {
                        id,
                        operation,
                        work,
                    }
                }
            };
            let need = match &next.work {
                Ok(Op::Read { pieces, .. }) | Ok(Op::Write { pieces, .. }) => {
                    request::bytes(pieces) as usize
                }
                Ok(Op::Indirect { nr_segments, .. }) => usize::from(*nr_segments) * 4096,
                _ => 0,
            };
            if used + need > room && !batch.is_empty() {
                self.carry = Some(next);
                break;
            }
            used += need;
            batch.push(next);
        }
        Ok(batch)
    }

    fn run_batch(
        &mut self,
        batch: Vec<Taken>,
        dev: &mut dyn BlockDevice,
        grants: &mut dyn Grants,
        scratch: &mut [u8],
    ) -> Vec<Job> {
        let mut jobs: Vec<Job> = Vec::with_capacity(batch.len());
        let mut at = 0usize;
        for t in batch {
            let mut job = Job {
                id: t.id,
                operation: t.operation,
                op: None,
                at,
                status: BLKIF_RSP_OKAY,
            };
            let op = t.work.and_then(|op| self.resolve_indirect(op, grants));
            match op {
                Ok(op) => {
                    if let Op::Read { pieces, .. } | Op::Write { pieces, .. } = &op {
                        at += request::bytes(pieces) as usize;
                    }
                    job.op = Some(op);
                }
                Err(r) => job.status = r.status(),
            }
            self.counters.requests += 1;
            jobs.push(job);
        }
        if at > scratch.len() {
            // take_batch keeps a batch within the scratch area, save for a
            // lone request larger than it: refuse that one.
            for j in jobs.iter_mut().filter(|j| j.op.is_some()) {
                j.op = None;
                j.status = BLKIF_RSP_ERROR;
            }
        }
        self.copy_data(&mut jobs, false, grants, scratch);
        // The device's I/Os and, for each, the job it belongs to.
        let mut ios: Vec<Io> = Vec::new();
        let mut owner: Vec<usize> = Vec::new();
        for (i, j) in jobs.iter().enumerate() {
            let Some(op) = &j.op else { continue };
            let io = |kind, sector, len| Io {
                kind,
                sector,
                buf: j.at..j.at + len,
                ok: false,
            };
            match op {
                Op::Read { sector, pieces } => {
                    ios.push(io(IoKind::Read, *sector, request::bytes(pieces) as usize));
                    owner.push(i);
                }
                Op::Write { sector, pieces } => {
                    ios.push(io(IoKind::Write, *sector, request::bytes(pieces) as usize));
                    owner.push(i);
                    // A barrier, or a flush carrying data, is a write made
                    // durable before its response.
                    if j.operation == BLKIF_OP_WRITE_BARRIER
                        || j.operation == BLKIF_OP_FLUSH_DISKCACHE
                    {
                        ios.push(io(IoKind::Flush, 0, 0));
                        owner.push(i);
                    }
                }
                Op::Flush => {
                    ios.push(io(IoKind::Flush, 0, 0));
                    owner.push(i);
                }
                Op::Discard { sector, count } => {
                    ios.push(io(IoKind::Discard { count: *count }, *sector, 0));
                    owner.push(i);
                }
                Op::Indirect { .. } => {}
            }
        }
        dev.run(scratch, &mut ios);
        for (io, &i) in ios.iter().zip(&owner) {
            if !io.ok {
                jobs[i].status = BLKIF_RSP_ERROR;
            }
        }
        self.copy_data(&mut jobs, true, grants, scratch);
        for j in &jobs {
            match (&j.op, j.status) {
                (Some(Op::Read { pieces, .. }), BLKIF_RSP_OKAY) => {
                    self.counters.bytes_read += request::bytes(pieces)
                }
                (Some(Op::Write { pieces, .. }), BLKIF_RSP_OKAY) => {
                    self.counters.bytes_written += request::bytes(pieces)
                }
                (_, BLKIF_RSP_OKAY) => {}
                _ => self.counters.errors += 1,
            }
        }
        jobs
    }

    /// An indirect request's segments, copied out of its pages and checked.
    fn resolve_indirect(&mut self, op: Op, grants: &mut dyn Grants) -> Result<Op, Refusal> {
        let Op::Indirect {
            write,
            sector,
            nr_segments,
            pages,
        } = op
        else {
            return Ok(op);
        };
        let wanted: Vec<(Piece, usize)> = pages
            .iter()
            .enumerate()
            .map(|(i, &gref)| {
                (
                    Piece {
                        gref,
                        offset: 0,
                        len: 4096,
                    },
                    i * 4096,
                )
            })
            .collect();
        let mut status = vec![0i16; wanted.len()];
        grants.copy_in(self.domid, &wanted, &mut self.indirect, &mut status);
        if status.iter().any(|&s| s != GNTST_OKAY) {
            return Err(Refusal::Invalid("indirect page not granted"));
        }
        let pieces = request::indirect_pieces(
            &self.limits,
            write,
            sector,
            nr_segments,
            &self.indirect[..pages.len() * 4096],
        )?;
        Ok(if write {
            Op::Write { sector, pieces }
        } else {
            Op::Read { sector, pieces }
        })
    }

    /// Grant-copies the data of the batch's writes in (`to_guest` false)
    /// or of its successful reads out; a piece that fails fails its request.
    fn copy_data(
        &self,
        jobs: &mut [Job],
        to_guest: bool,
        grants: &mut dyn Grants,
        scratch: &mut [u8],
    ) {
        let mut wanted: Vec<(Piece, usize)> = Vec::new();
        let mut owner: Vec<usize> = Vec::new();
        for (i, j) in jobs.iter().enumerate() {
            let pieces = match (&j.op, to_guest) {
                (Some(Op::Read { pieces, .. }), true) if j.status == BLKIF_RSP_OKAY => pieces,
                (Some(Op::Write { pieces, .. }), false) => pieces,
                _ => continue,
            };
            let mut at = j.at;
            for p in pieces {
                wanted.push((*p, at));
                owner.push(i);
                at += usize::from(p.len);
            }
        }
        if wanted.is_empty() {
            return;
        }
        let mut status = vec![0i16; wanted.len()];
        if to_guest {
            grants.copy_out(self.domid, &wanted, scratch, &mut status);
        } else {
            grants.copy_in(self.domid, &wanted, scratch, &mut status);
        }
        for (s, &i) in status.iter().zip(&owner) {
            if *s != GNTST_OKAY {
                jobs[i].status = BLKIF_RSP_ERROR;
                // A write whose data did not arrive must not reach the disk.
                if !to_guest {
                    jobs[i].op = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
