//! The node tree: path → value, children and permissions, with generation counters (xenstored `struct node`).

use super::path;
use super::perms::Perms;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;

/// Heap bytes a node takes besides its path, name and value, as charged to
/// its owner: the map slot with the `Node` (~100), its name's slot in the
/// parent's child list (~40), and allocator rounding. xenstored charges
/// its node header the same way (core.c `calc_node_acc_size`).
pub const NODE_OVERHEAD: usize = 160;
/// Bytes charged per permission entry (xenstored: `struct xs_permissions`).
pub const PERM_BYTES: usize = 8;

/// What a node at `abs` with a `value_len`-byte value and `perms` entries
/// costs its owner (xenstored core.c `db_write`: name + node size): the
/// path (the map key), the name again (the parent's child list), the value,
/// the permissions and `NODE_OVERHEAD`.
pub fn cost(abs: &str, value_len: usize, perms: usize) -> usize {
    NODE_OVERHEAD + abs.len() + path::basename(abs).len() + value_len + perms * PERM_BYTES
}

/// [`cost`] of an existing node.
pub fn node_cost(abs: &str, n: &Node) -> usize {
    cost(abs, n.value.len(), n.perms.entries().len())
}

/// One node. Every node has a value (possibly empty) and may have children
/// (xenstore.txt: "nonempty values at nodes which also have children").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub value: Vec<u8>,
    /// Child names (one path component each), sorted.
    pub children: BTreeSet<String>,
    pub perms: Perms,
    /// Bumped from the store's counter on every change; transactions compare it.
    pub generation: u64,
}

impl Node {
    pub fn new(value: Vec<u8>, perms: Perms) -> Self {
        Node {
            value,
            children: BTreeSet::new(),
            perms,
            generation: 0,
        }
    }
}

/// Where operations read and write nodes: the live [`Store`], or a
/// transaction's view of it (`transaction::TxView`).
pub trait View {
    /// The node at an absolute path.
    fn get(&mut self, abs: &str) -> Option<&Node>;
    /// Replace (`Some`) or delete (`None`) the node at an absolute path.
    /// Parent/child links are the caller's business.
    fn put(&mut self, abs: &str, node: Option<Node>);
    /// Nodes owned by `domid` (the per-domain node quota).
    fn owned(&self, domid: u16) -> usize;
    /// Bytes of the nodes owned by `domid` ([`node_cost`]; the per-domain
    /// memory quota).
    fn memory(&self, domid: u16) -> usize;
}

/// The live tree. Starts with the root "/" owned by `root_owner` ("n0").
#[derive(Clone, Debug)]
pub struct Store {
    nodes: BTreeMap<String, Node>,
    generation: u64,
    /// Writes and removals so far, for callers that act on changes.
    changes: u64,
    owned: BTreeMap<u16, usize>,
    /// [`node_cost`] summed per owner.
    memory: BTreeMap<u16, usize>,
}

impl Store {
    pub fn new(root_owner: u16) -> Self {
        let mut s = Store {
            nodes: BTreeMap::new(),
            generation: 0,
            changes: 0,
            owned: BTreeMap::new(),
            memory: BTreeMap::new(),
        };
        s.put(
            "/",
            Some(Node::new(Vec::new(), Perms::owned_by(root_owner))),
        );
        s
    }

    /// A count that moves on every write and removal: a caller that saw
    /// the same value before has nothing new to read.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Read-only lookup.
    pub fn node(&self, abs: &str) -> Option<&Node> {
        self.nodes.get(abs)
    }

    /// Number of nodes, root included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// All (path, node) pairs in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    /// Consistency check for tests: every child link points at a node, every
    /// non-root node is its parent's child, owner counts and bytes match.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut owned = BTreeMap::new();
        let mut memory = BTreeMap::new();
        for (p, n) in &self.nodes {
            *owned.entry(n.perms.owner()).or_insert(0usize) += 1;
            *memory.entry(n.perms.owner()).or_insert(0usize) += node_cost(p, n);
            for c in &n.children {
                if !self.nodes.contains_key(&path::join(p, c)) {
                    return Err(alloc::format!("{p}: dangling child {c}"));
                }
            }
            if p != "/" {
                let parent = self.nodes.get(path::parent(p));
                if !parent.is_some_and(|q| q.children.contains(path::basename(p))) {
                    return Err(alloc::format!("{p}: not linked from its parent"));
                }
            }
        }
        owned.retain(|_, v| *v != 0);
        let mut mine = self.owned.clone();
        mine.retain(|_, v| *v != 0);
        if owned != mine {
            return Err(alloc::format!("owner counts {mine:?} != {owned:?}"));
        }
        let mut mine = self.memory.clone();
        mine.retain(|_, v| *v != 0);
        if memory != mine {
            return Err(alloc::format!("owner bytes {mine:?} != {memory:?}"));
        }
        Ok(())
    }

    /// Account a node of `owner` costing `bytes` coming (`sign` 1) or going (-1).
    fn count(&mut self, owner: u16, bytes: usize, sign: isize) {
        let c = self.owned.entry(owner).or_insert(0);
        *c = c.saturating_add_signed(sign);
        let m = self.memory.entry(owner).or_insert(0);
        *m = if sign > 0 {
            m.saturating_add(bytes)
        } else {
            m.saturating_sub(bytes)
        };
    }
}

impl View for Store {
    fn get(&mut self, abs: &str) -> Option<&Node> {
        self.nodes.get(abs)
    }

    fn put(&mut self, abs: &str, node: Option<Node>) {
        self.changes += 1;
        let old = match node {
            Some(mut n) => {
                self.generation += 1;
                n.generation = self.generation;
                self.count(n.perms.owner(), node_cost(abs, &n), 1);
                self.nodes.insert(String::from(abs), n)
            }
            None => self.nodes.remove(abs),
        };
        if let Some(o) = old {
            self.count(o.perms.owner(), node_cost(abs, &o), -1);
        }
    }

    fn owned(&self, domid: u16) -> usize {
        self.owned.get(&domid).copied().unwrap_or(0)
    }

    fn memory(&self, domid: u16) -> usize {
        self.memory.get(&domid).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_and_counts() {
        let mut s = Store::new(0);
        assert_eq!(s.owned(0), 1);
        let g0 = s.node("/").unwrap().generation;
        s.put("/a", Some(Node::new(b"x".to_vec(), Perms::owned_by(3))));
        let mut root = s.node("/").unwrap().clone();
        root.children.insert("a".into());
        s.put("/", Some(root));
        assert!(s.node("/").unwrap().generation > g0);
        assert_eq!(s.owned(3), 1);
        assert_eq!(s.memory(3), cost("/a", 1, 1));
        assert_eq!(s.memory(3), NODE_OVERHEAD + 2 + 1 + 1 + PERM_BYTES);
        s.check_invariants().unwrap();
        s.put("/a", Some(Node::new(b"y".to_vec(), Perms::owned_by(4))));
        assert_eq!((s.owned(3), s.owned(4)), (0, 1));
        assert_eq!((s.memory(3), s.memory(4)), (0, cost("/a", 1, 1)));
        let c = s.changes();
        s.put("/a", None);
        assert_eq!((s.owned(4), s.memory(4)), (0, 0));
        assert_eq!(s.changes(), c + 1, "a removal is a change too");
        assert!(s.check_invariants().is_err()); // root still lists "a"
    }
}
