//! Transactions: a private overlay over the live store, checked node by node at commit (xenstored transaction.c).
//!
//! Reads see the live store at the time of first access and every node read
//! or written is remembered with its generation (or its absence). Commit
//! fails with EAGAIN if any of them changed since; otherwise the overlay is
//! copied into the live store and the queued watch events fire. This is
//! xenstored's per-node scheme; as there, the result is serialisable.

use super::store::{Node, Store, View};
use super::watch::Change;
use super::wire::Errno;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

/// One open transaction of a connection.
#[derive(Clone, Debug, Default)]
pub struct Transaction {
    /// Nodes written (`None` = removed) inside the transaction.
    overlay: BTreeMap<String, Option<Node>>,
    /// Generation at first access of every node touched (`None` = absent).
    accessed: BTreeMap<String, Option<u64>>,
    /// Net change of owned-node counts (for the node quota).
    owned_delta: BTreeMap<u16, isize>,
    /// Watch events to fire if it commits.
    pub changes: Vec<Change>,
}

impl Transaction {
    /// Apply to the live store, or EAGAIN if something it touched changed.
    pub fn commit(self, store: &mut Store) -> Result<Vec<Change>, Errno> {
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
}

impl TxView<'_> {
    fn touch(&mut self, abs: &str) {
        if !self.tx.accessed.contains_key(abs) {
            let g = self.store.node(abs).map(|n| n.generation);
            self.tx.accessed.insert(String::from(abs), g);
        }
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

    fn put(&mut self, abs: &str, node: Option<Node>) {
        let old_owner = self.get(abs).map(|n| n.perms.owner());
        if let Some(o) = old_owner {
            *self.tx.owned_delta.entry(o).or_insert(0) -= 1;
        }
        if let Some(n) = &node {
            *self.tx.owned_delta.entry(n.perms.owner()).or_insert(0) += 1;
        }
        self.tx.overlay.insert(String::from(abs), node);
    }

    fn owned(&self, domid: u16) -> usize {
        let d = self.tx.owned_delta.get(&domid).copied().unwrap_or(0);
        self.store.owned(domid).saturating_add_signed(d)
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
    };

    #[test]
    fn isolated_until_commit() {
        let mut s = Store::new(0);
        let mut tx = Transaction::default();
        let ch = ops::write(
            &mut TxView {
                store: &s,
                tx: &mut tx,
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
            },
            &DOM0,
            "/a/b",
        );
        assert_eq!(r.unwrap(), b"1");
        let fired = tx.commit(&mut s).unwrap();
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
            },
            &DOM0,
            "/x",
        )
        .unwrap();
        ops::write(&mut s, &DOM0, "/x", b"1").unwrap();
        assert_eq!(tx.commit(&mut s).unwrap_err(), Errno::Eagain);
        // An untouched node changing does not conflict.
        let mut tx = Transaction::default();
        ops::read(
            &mut TxView {
                store: &s,
                tx: &mut tx,
            },
            &DOM0,
            "/x",
        )
        .unwrap();
        ops::write(&mut s, &DOM0, "/y", b"1").unwrap();
        assert!(tx.commit(&mut s).is_ok());
        // Creation of a node the transaction saw absent conflicts too.
        let mut tx = Transaction::default();
        assert!(ops::read(
            &mut TxView {
                store: &s,
                tx: &mut tx
            },
            &DOM0,
            "/z"
        )
        .is_err());
        ops::write(&mut s, &DOM0, "/z", b"1").unwrap();
        assert_eq!(tx.commit(&mut s).unwrap_err(), Errno::Eagain);
    }
}
