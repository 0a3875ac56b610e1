//! Transactions: a private overlay over the live store, checked node by node at commit (xenstored transaction.c).
//!
//! Reads see the live store at the time of first access and every node read
//! or written is remembered with its generation (or its absence). Commit
//! fails with EAGAIN if any of them changed since; otherwise the overlay is
//! copied into the live store and the queued watch events fire. This is
//! xenstored's per-node scheme; as there, the result is serialisable.
//!
//! What a transaction holds is the guest's to grow, so it is bounded
//! (XSA-326): by the nodes it may touch (xenstored quota
//! "transaction-nodes", ENOSPC) and by the bytes its domain may still hold
//! (quota "memory", ENOMEM). A transaction that hits either fails as
//! xenstored's does (`trans->fail`): the request that hit it gets the
//! error, it lets go of everything it held, and only ending it works.

use super::store::{self, Node, Store, View};
use super::watch::Change;
use super::wire::Errno;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

/// Bytes one remembered access costs besides its path (map slot, allocator).
const ACCESS_OVERHEAD: usize = 64;
/// Bytes one overlay entry costs besides its path and node.
const OVERLAY_OVERHEAD: usize = 64;
/// Bytes one queued watch change costs besides its path and permissions.
const CHANGE_OVERHEAD: usize = 64;

/// How far a transaction may grow; `None` in [`TxView`] for the toolstack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLimit {
    /// Most nodes it may touch (xenstored quota "transaction-nodes", 1024).
    pub nodes: usize,
    /// Most bytes it may hold ([`Transaction::bytes`]).
    pub bytes: usize,
}

/// The quotas a commit is checked against again (xenstored transaction.c
/// `do_transaction_end` → domain.c `acc_fix_domains`): what the live store
/// holds may have grown since the transaction's requests were checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitQuota {
    /// The committing domain.
    pub domid: u16,
    /// The toolstack's domain, held to no quota.
    pub toolstack: u16,
    pub max_nodes: usize,
    pub max_memory: usize,
    /// Bytes `domid` holds besides its nodes once this transaction is gone
    /// (watches, other transactions, queued output).
    pub reserved: usize,
}

/// One open transaction of a connection.
#[derive(Clone, Debug, Default)]
pub struct Transaction {
    /// Nodes written (`None` = removed) inside the transaction.
    overlay: BTreeMap<String, Option<Node>>,
    /// Generation at first access of every node touched (`None` = absent).
    accessed: BTreeMap<String, Option<u64>>,
    /// Net change of owned-node counts (for the node quota).
    owned_delta: BTreeMap<u16, isize>,
    /// Net change of owned bytes ([`store::node_cost`], the memory quota).
    memory_delta: BTreeMap<u16, isize>,
    /// Watch events to fire if it commits.
    changes: Vec<Change>,
    /// Heap bytes all of the above hold, charged to the domain's memory.
    bytes: usize,
    /// Why it can no longer commit (xenstored `trans->fail`).
    failed: Option<Errno>,
}

fn change_cost(c: &Change) -> usize {
    let perms: usize = c.visible_via.iter().map(|p| p.entries().len()).sum();
    CHANGE_OVERHEAD + c.path.len() + perms * store::PERM_BYTES
}

fn overlay_cost(abs: &str, n: &Option<Node>) -> usize {
    OVERLAY_OVERHEAD + abs.len() + n.as_ref().map_or(0, |n| store::node_cost(abs, n))
}

fn add(map: &mut BTreeMap<u16, isize>, domid: u16, delta: isize) {
    let d = map.entry(domid).or_insert(0);
    *d = d.saturating_add(delta);
}

impl Transaction {
    /// Heap bytes it holds: remembered accesses, overlay, queued changes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Why it failed, if it did: then every request in it gets this error.
    pub fn failed(&self) -> Option<Errno> {
        self.failed
    }

    /// Fail with `e` and let go of everything (it can never commit).
    fn fail(&mut self, e: Errno) {
        *self = Transaction {
            failed: Some(e),
            ..Transaction::default()
        };
    }

    /// Apply to the live store. ENOMEM if it failed (transaction.c:
    /// `trans->fail`); ENOSPC/ENOMEM if, with `quota` (an unprivileged
    /// domain's commit), a domain's nodes or bytes would pass its quota;
    /// EAGAIN if something it touched changed. On error nothing changes.
    pub fn commit(
        self,
        store: &mut Store,
        quota: Option<CommitQuota>,
    ) -> Result<Vec<Change>, Errno> {
        if self.failed.is_some() {
            return Err(Errno::Enomem);
        }
        if let Some(q) = quota {
            let grows = |m: &BTreeMap<u16, isize>| {
                m.iter()
                    .filter(|&(&d, &delta)| delta > 0 && d != q.toolstack)
                    .map(|(&d, &delta)| (d, delta.unsigned_abs()))
                    .collect::<Vec<_>>()
            };
            for (d, more) in grows(&self.owned_delta) {
                if store.owned(d).saturating_add(more) > q.max_nodes {
                    return Err(Errno::Enospc);
                }
            }
            for (d, more) in grows(&self.memory_delta) {
                let reserved = if d == q.domid { q.reserved } else { 0 };
                let total = store
                    .memory(d)
                    .saturating_add(reserved)
                    .saturating_add(more);
                if total > q.max_memory {
                    return Err(Errno::Enomem);
                }
            }
        }
        for (p, g) in &self.accessed {
            if store.node(p).map(|n| n.generation) != *g {
                return Err(Errno::Eagain);
            }
        }
        for (p, n) in self.overlay {
            store.put(&p, n);
        }
        Ok(self.changes)
    }
}

/// A transaction's view of the store, for the operations in `ops`.
pub struct TxView<'a> {
    pub store: &'a Store,
    pub tx: &'a mut Transaction,
    /// How far the transaction may grow (`None`: the toolstack's, unbounded).
    pub limit: Option<TxLimit>,
}

impl TxView<'_> {
    fn touch(&mut self, abs: &str) {
        if self.tx.failed.is_some() || self.tx.accessed.contains_key(abs) {
            return;
        }
        let cost = ACCESS_OVERHEAD + abs.len();
        if let Some(l) = self.limit {
            if self.tx.accessed.len() >= l.nodes {
                return self.tx.fail(Errno::Enospc);
            }
            if self.tx.bytes.saturating_add(cost) > l.bytes {
                return self.tx.fail(Errno::Enomem);
            }
        }
        let g = self.store.node(abs).map(|n| n.generation);
        self.tx.accessed.insert(String::from(abs), g);
        self.tx.bytes += cost;
    }

    /// Queue the watch events of a request made in the transaction.
    pub fn record(&mut self, changes: Vec<Change>) {
        if self.tx.failed.is_some() {
            return;
        }
        let cost: usize = changes.iter().map(change_cost).sum();
        if self
            .limit
            .is_some_and(|l| self.tx.bytes.saturating_add(cost) > l.bytes)
        {
            return self.tx.fail(Errno::Enomem);
        }
        self.tx.changes.extend(changes);
        self.tx.bytes += cost;
    }
}

impl View for TxView<'_> {
    fn get(&mut self, abs: &str) -> Option<&Node> {
        self.touch(abs);
        match self.tx.overlay.get(abs) {
            Some(n) => n.as_ref(),
            None => self.store.node(abs),
        }
    }

    /// In a failed transaction, writes go nowhere: it never commits.
    fn put(&mut self, abs: &str, node: Option<Node>) {
        let old = self
            .get(abs)
            .map(|n| (n.perms.owner(), store::node_cost(abs, n)));
        if self.tx.failed.is_some() {
            return;
        }
        let was = self.tx.overlay.get(abs).map_or(0, |n| overlay_cost(abs, n));
        let bytes = (self.tx.bytes - was).saturating_add(overlay_cost(abs, &node));
        if self.limit.is_some_and(|l| bytes > l.bytes) {
            return self.tx.fail(Errno::Enomem);
        }
        if let Some((owner, cost)) = old {
            add(&mut self.tx.owned_delta, owner, -1);
            add(&mut self.tx.memory_delta, owner, -(cost as isize));
        }
        if let Some(n) = &node {
            add(&mut self.tx.owned_delta, n.perms.owner(), 1);
            let cost = store::node_cost(abs, n) as isize;
            add(&mut self.tx.memory_delta, n.perms.owner(), cost);
        }
        self.tx.overlay.insert(String::from(abs), node);
        self.tx.bytes = bytes;
    }

    fn owned(&self, domid: u16) -> usize {
        let d = self.tx.owned_delta.get(&domid).copied().unwrap_or(0);
        self.store.owned(domid).saturating_add_signed(d)
    }

    fn memory(&self, domid: u16) -> usize {
        let d = self.tx.memory_delta.get(&domid).copied().unwrap_or(0);
        self.store.memory(domid).saturating_add_signed(d)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ops::{self, Caller};
    use super::*;

    const DOM0: Caller = Caller {
        domid: 0,
        privileged: true,
        max_nodes: 1000,
        max_value: 2048,
        max_perms: 5,
        max_memory: 128 << 10,
        reserved: 0,
        toolstack: 0,
    };

    #[test]
    fn isolated_until_commit() {
        let mut s = Store::new(0);
        let mut tx = Transaction::default();
        let ch = ops::write(
            &mut TxView {
                store: &s,
                tx: &mut tx,
                limit: None,
            },
            &DOM0,
            "/a/b",
            b"1",
        )
        .unwrap();
        tx.changes.extend(ch);
        assert!(s.node("/a").is_none());
        let r = ops::read(
            &mut TxView {
                store: &s,
                tx: &mut tx,
                limit: None,
            },
            &DOM0,
            "/a/b",
        );
        assert_eq!(r.unwrap(), b"1");
        let fired = tx.commit(&mut s, None).unwrap();
        assert_eq!(fired.len(), 1);
        assert_eq!(ops::read(&mut s, &DOM0, "/a/b").unwrap(), b"1");
        s.check_invariants().unwrap();
    }

    #[test]
    fn conflict_is_eagain() {
        let mut s = Store::new(0);
        ops::write(&mut s, &DOM0, "/x", b"0").unwrap();
        let mut tx = Transaction::default();
        ops::read(
            &mut TxView {
                store: &s,
                tx: &mut tx,
                limit: None,
            },
            &DOM0,
            "/x",
        )
        .unwrap();
        ops::write(&mut s, &DOM0, "/x", b"1").unwrap();
        assert_eq!(tx.commit(&mut s, None).unwrap_err(), Errno::Eagain);
        // An untouched node changing does not conflict.
        let mut tx = Transaction::default();
        ops::read(
            &mut TxView {
                store: &s,
                tx: &mut tx,
                limit: None,
            },
            &DOM0,
            "/x",
        )
        .unwrap();
        ops::write(&mut s, &DOM0, "/y", b"1").unwrap();
        assert!(tx.commit(&mut s, None).is_ok());
        // Creation of a node the transaction saw absent conflicts too.
        let mut tx = Transaction::default();
        assert!(ops::read(
            &mut TxView {
                store: &s,
                tx: &mut tx,
                limit: None,
            },
            &DOM0,
            "/z"
        )
        .is_err());
        ops::write(&mut s, &DOM0, "/z", b"1").unwrap();
        assert_eq!(tx.commit(&mut s, None).unwrap_err(), Errno::Eagain);
    }

    #[test]
    fn a_transaction_past_its_limit_fails_and_lets_go() {
        let mut s = Store::new(0);
        ops::write(&mut s, &DOM0, "/x", b"0").unwrap();
        let mut tx = Transaction::default();
        let limit = Some(TxLimit {
            nodes: 2,
            bytes: 1 << 20,
        });
        let mut v = TxView {
            store: &s,
            tx: &mut tx,
            limit,
        };
        ops::write(&mut v, &DOM0, "/x", b"1").unwrap();
        assert!(v.tx.bytes() > 0);
        // A third node touched: failed, and everything it held is gone.
        v.get("/y");
        v.get("/z");
        assert_eq!(v.tx.failed(), Some(Errno::Enospc));
        assert_eq!(v.tx.bytes(), 0);
        // Writes go nowhere now; reads see the live store.
        v.put("/x", None);
        assert_eq!(v.get("/x").map(|n| n.value.clone()), Some(b"0".to_vec()));
        assert_eq!(tx.commit(&mut s, None).unwrap_err(), Errno::Enomem);
        // Bytes likewise.
        let mut tx = Transaction::default();
        let mut v = TxView {
            store: &s,
            tx: &mut tx,
            limit: Some(TxLimit {
                nodes: 100,
                bytes: 200,
            }),
        };
        ops::write(&mut v, &DOM0, "/big", &[b'v'; 300]).unwrap();
        assert_eq!(v.tx.failed(), Some(Errno::Enomem));
        assert!(s.node("/big").is_none());
    }
}
