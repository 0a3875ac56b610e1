//! The node operations with xenstored semantics (core.c `do_read`, `do_write`, `do_mkdir`, `do_rm`, `send_directory`, `do_get_perms`, `do_set_perms`).

use super::path;
use super::perms::{Perms, READ, WRITE};
use super::store::{self, Node, View};
use super::watch::Change;
use super::wire::{Errno, PAYLOAD_MAX};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// Who is asking, and the limits that apply to them.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub domid: u16,
    /// The toolstack domain: bypasses permissions and quotas.
    pub privileged: bool,
    /// Most nodes this domain may own (xenstored quota "nodes", 1000).
    pub max_nodes: usize,
    /// Largest value (xenstored quota "node-size", 2048).
    pub max_value: usize,
    /// Most entries in a permission list (xenstored "node-permissions", 5).
    pub max_perms: usize,
    /// Most bytes a domain may hold (xenstored quota "memory", XSA-326).
    pub max_memory: usize,
    /// Bytes the caller holds besides its nodes (watches, queued output,
    /// other transactions), charged against `max_memory` with them.
    pub reserved: usize,
    /// The toolstack's domain: the nodes it owns are held to no quota.
    pub toolstack: u16,
}

impl Caller {
    fn access(&self, n: &Node) -> u8 {
        n.perms.access_for(self.domid, self.privileged)
    }

    /// xenstored domain.c `domain_memory_add`: ENOMEM if `more` bytes for
    /// `owner` take it past the memory quota. Only unprivileged callers
    /// are held to it, and not for the toolstack's nodes (which they can
    /// grow only by node-size, where it grants them write access).
    fn check_memory(&self, v: &impl View, owner: u16, more: usize) -> Result<(), Errno> {
        if self.privileged || owner == self.toolstack || more == 0 {
            return Ok(());
        }
        let reserved = if owner == self.domid {
            self.reserved
        } else {
            0
        };
        let total = v
            .memory(owner)
            .saturating_add(reserved)
            .saturating_add(more);
        if total > self.max_memory {
            return Err(Errno::Enomem);
        }
        Ok(())
    }
}

/// A copy of guest-sized bytes, or ENOMEM instead of the allocator's
/// panic if the heap cannot hold it.
pub fn try_copy(bytes: &[u8]) -> Result<Vec<u8>, Errno> {
    let mut v = Vec::new();
    v.try_reserve_exact(bytes.len())
        .map_err(|_| Errno::Enomem)?;
    v.extend_from_slice(bytes);
    Ok(v)
}

/// xenstored `errno_from_parents`: a failure on a node must not leak its
/// existence; report `e` only if the nearest existing ancestor grants
/// `perm`, else EACCES.
fn errno_from_parents(v: &mut impl View, c: &Caller, abs: &str, e: Errno, perm: u8) -> Errno {
    let mut p = abs;
    while p != "/" {
        p = path::parent(p);
        if let Some(n) = v.get(p) {
            return if c.access(n) & perm != 0 {
                e
            } else {
                Errno::Eacces
            };
        }
    }
    Errno::Eacces
}

/// xenstored `get_node` + `get_node_chk_perm`: the node if it exists and
/// grants `perm`; ENOENT if absent (and the parents allow knowing);
/// EACCES otherwise.
fn lookup(v: &mut impl View, c: &Caller, abs: &str, perm: u8) -> Result<Node, Errno> {
    match v.get(abs) {
        Some(n) if c.access(n) & perm == perm => Ok(n.clone()),
        Some(_) => Err(errno_from_parents(v, c, abs, Errno::Eacces, perm)),
        None => Err(errno_from_parents(v, c, abs, Errno::Enoent, perm)),
    }
}

fn parent_perms(v: &mut impl View, abs: &str) -> Option<Perms> {
    if abs == "/" {
        return None;
    }
    v.get(path::parent(abs)).map(|n| n.perms.clone())
}

fn change(v: &mut impl View, abs: &str, node_perms: &[&Perms], exact: bool) -> Change {
    let mut visible_via: Vec<Perms> = node_perms.iter().map(|p| (*p).clone()).collect();
    visible_via.extend(parent_perms(v, abs));
    Change {
        path: String::from(abs),
        exact,
        visible_via,
    }
}

/// `XS_READ`: the value.
pub fn read(v: &mut impl View, c: &Caller, abs: &str) -> Result<Vec<u8>, Errno> {
    lookup(v, c, abs, READ).map(|n| n.value)
}

/// `XS_DIRECTORY`: the child names, each NUL-terminated. A list too long
/// for one reply is E2BIG (core.c `send_reply`) as soon as it is known to
/// be, not after building all of it.
pub fn directory(v: &mut impl View, c: &Caller, abs: &str) -> Result<Vec<u8>, Errno> {
    let n = lookup(v, c, abs, READ)?;
    let mut out = Vec::new();
    for ch in &n.children {
        if out.len() + ch.len() + 1 > PAYLOAD_MAX {
            return Err(Errno::E2big);
        }
        out.extend_from_slice(ch.as_bytes());
        out.push(0);
    }
    Ok(out)
}

/// `XS_GET_PERMS`: the permission strings.
pub fn get_perms(v: &mut impl View, c: &Caller, abs: &str) -> Result<Vec<u8>, Errno> {
    lookup(v, c, abs, READ).map(|n| n.perms.to_wire())
}

/// xenstored `construct_node` + `create_node`: create `abs` and any missing
/// ancestors; each inherits its parent's permissions, with the owner
/// replaced by an unprivileged creator. The path is the guest's: what is
/// missing and what it costs are counted before anything is allocated,
/// then checked against the node quota (ENOSPC) and the memory quota
/// (ENOMEM).
fn create(v: &mut impl View, c: &Caller, abs: &str, value: &[u8]) -> Result<Node, Errno> {
    let mut missing = 1;
    let mut names = abs.len() + path::basename(abs).len();
    let mut parent_path = path::parent(abs);
    let parent = loop {
        if let Some(n) = v.get(parent_path) {
            break n.clone();
        }
        // The root always exists, so this ends there.
        missing += 1;
        names += parent_path.len() + path::basename(parent_path).len();
        parent_path = path::parent(parent_path);
    };
    if !c.privileged {
        if v.owned(c.domid) + missing > c.max_nodes {
            return Err(Errno::Enospc);
        }
        // Each inherits the parent's permission list (`store::cost`).
        let per_node = store::NODE_OVERHEAD + parent.perms.entries().len() * store::PERM_BYTES;
        let bytes = per_node
            .saturating_mul(missing)
            .saturating_add(names)
            .saturating_add(value.len());
        c.check_memory(v, c.domid, bytes)?;
    }
    let value = try_copy(value)?;
    let mut todo = Vec::with_capacity(missing);
    let mut p = abs;
    while p != parent_path {
        todo.push(String::from(p));
        p = path::parent(p);
    }
    let mut parent = parent;
    let mut parent_path = String::from(parent_path);
    let mut value = Some(value);
    while let Some(p) = todo.pop() {
        parent.children.insert(String::from(path::basename(&p)));
        let perms = if c.privileged {
            parent.perms.clone()
        } else {
            parent.perms.with_owner(c.domid)
        };
        v.put(&parent_path, Some(parent));
        let val = if todo.is_empty() {
            value.take().unwrap_or_default()
        } else {
            Vec::new()
        };
        parent = Node::new(val, perms);
        parent_path = p;
    }
    v.put(&parent_path, Some(parent.clone()));
    Ok(parent)
}

/// `XS_WRITE`: set the value, creating the node and missing parents.
pub fn write(v: &mut impl View, c: &Caller, abs: &str, value: &[u8]) -> Result<Vec<Change>, Errno> {
    if !c.privileged && value.len() > c.max_value {
        return Err(Errno::Enospc);
    }
    let node = match lookup(v, c, abs, WRITE) {
        Ok(mut n) => {
            let more = value.len().saturating_sub(n.value.len());
            c.check_memory(v, n.perms.owner(), more)?;
            n.value = try_copy(value)?;
            v.put(abs, Some(n.clone()));
            n
        }
        Err(Errno::Enoent) => create(v, c, abs, value)?,
        Err(e) => return Err(e),
    };
    Ok(vec![change(v, abs, &[&node.perms], false)])
}

/// `XS_MKDIR`: create an empty node; an existing one is fine.
pub fn mkdir(v: &mut impl View, c: &Caller, abs: &str) -> Result<Vec<Change>, Errno> {
    match lookup(v, c, abs, WRITE) {
        Ok(_) => Ok(Vec::new()),
        Err(Errno::Enoent) => {
            let n = create(v, c, abs, &[])?;
            Ok(vec![change(v, abs, &[&n.perms], false)])
        }
        Err(e) => Err(e),
    }
}

/// `XS_RM`: remove the node and everything below it. An absent node is
/// fine if its parent exists; removing "/" is EINVAL.
pub fn rm(v: &mut impl View, c: &Caller, abs: &str) -> Result<Vec<Change>, Errno> {
    match lookup(v, c, abs, WRITE) {
        Ok(_) if abs == "/" => Err(Errno::Einval),
        Ok(_) => {
            let mut changes = Vec::new();
            remove_tree(v, abs, &mut changes);
            let pp = path::parent(abs);
            if let Some(mut parent) = v.get(pp).cloned() {
                parent.children.remove(path::basename(abs));
                v.put(pp, Some(parent));
            }
            Ok(changes)
        }
        Err(Errno::Enoent) if abs != "/" && v.get(path::parent(abs)).is_some() => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Depth-first, children before parents (core.c `delnode_sub` as the walk's
/// exit hook): each removed node fires watches on exactly its path, the
/// root of the removal fires its whole subtree's watchers. An explicit
/// stack, not recursion: the depth is the guest's to choose, and
/// xenstored's recursive delete overflowed its stack (XSA-418, which made
/// core.c `walk_node_tree` iterative).
fn remove_tree(v: &mut impl View, root: &str, changes: &mut Vec<Change>) {
    /// A node on the way down: its permissions and the children not yet
    /// visited, the next one last.
    struct Frame {
        path: String,
        perms: Perms,
        pending: Vec<String>,
    }
    let frame = |path: String, n: &Node| Frame {
        path,
        perms: n.perms.clone(),
        pending: n.children.iter().rev().cloned().collect(),
    };
    let Some(n) = v.get(root) else { return };
    let mut stack = vec![frame(String::from(root), n)];
    while let Some(top) = stack.last_mut() {
        if let Some(child) = top.pending.pop() {
            let p = path::join(&top.path, &child);
            if let Some(n) = v.get(&p) {
                let f = frame(p, n);
                stack.push(f);
            }
            continue;
        }
        let Some(done) = stack.pop() else { break };
        changes.push(change(v, &done.path, &[&done.perms], done.path != root));
        v.put(&done.path, None);
    }
}

/// `XS_SET_PERMS`: replace the list; owner or privileged only, and only the
/// privileged may change the owner (EPERM).
pub fn set_perms(
    v: &mut impl View,
    c: &Caller,
    abs: &str,
    perms: Perms,
) -> Result<Vec<Change>, Errno> {
    if !c.privileged && perms.entries().len() > c.max_perms {
        return Err(Errno::Enospc);
    }
    let mut n = match v.get(abs) {
        Some(n) if c.privileged || n.perms.owner() == c.domid => n.clone(),
        Some(_) => return Err(errno_from_parents(v, c, abs, Errno::Eacces, WRITE)),
        None => return Err(errno_from_parents(v, c, abs, Errno::Enoent, WRITE)),
    };
    if !c.privileged && perms.owner() != n.perms.owner() {
        return Err(Errno::Eperm);
    }
    let more = perms
        .entries()
        .len()
        .saturating_sub(n.perms.entries().len());
    c.check_memory(v, n.perms.owner(), more * store::PERM_BYTES)?;
    let old = core::mem::replace(&mut n.perms, perms);
    let newp = n.perms.clone();
    v.put(abs, Some(n));
    Ok(vec![change(v, abs, &[&newp, &old], false)])
}
