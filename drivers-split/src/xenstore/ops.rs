//! The node operations with xenstored semantics (core.c `do_read`, `do_write`, `do_mkdir`, `do_rm`, `send_directory`, `do_get_perms`, `do_set_perms`).

use super::path;
use super::perms::{Perms, READ, WRITE};
use super::store::{Node, View};
use super::watch::Change;
use super::wire::Errno;
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
}

impl Caller {
    fn access(&self, n: &Node) -> u8 {
        n.perms.access_for(self.domid, self.privileged)
    }
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

/// `XS_DIRECTORY`: the child names, each NUL-terminated.
pub fn directory(v: &mut impl View, c: &Caller, abs: &str) -> Result<Vec<u8>, Errno> {
    let n = lookup(v, c, abs, READ)?;
    let mut out = Vec::new();
    for ch in &n.children {
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
/// replaced by an unprivileged creator.
fn create(v: &mut impl View, c: &Caller, abs: &str, value: Vec<u8>) -> Result<Node, Errno> {
    let mut missing = vec![String::from(abs)];
    let mut parent_path = path::parent(abs);
    let parent = loop {
        if let Some(n) = v.get(parent_path) {
            break n.clone();
        }
        // The root always exists, so this ends there.
        missing.push(String::from(parent_path));
        parent_path = path::parent(parent_path);
    };
    if !c.privileged && v.owned(c.domid) + missing.len() > c.max_nodes {
        return Err(Errno::Enospc);
    }
    let mut parent = parent;
    let mut parent_path = String::from(parent_path);
    let mut value = Some(value);
    while let Some(p) = missing.pop() {
        parent.children.insert(String::from(path::basename(&p)));
        let perms = if c.privileged {
            parent.perms.clone()
        } else {
            parent.perms.with_owner(c.domid)
        };
        v.put(&parent_path, Some(parent));
        let val = if missing.is_empty() {
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
            n.value = value.to_vec();
            v.put(abs, Some(n.clone()));
            n
        }
        Err(Errno::Enoent) => create(v, c, abs, value.to_vec())?,
        Err(e) => return Err(e),
    };
    Ok(vec![change(v, abs, &[&node.perms], false)])
}

/// `XS_MKDIR`: create an empty node; an existing one is fine.
pub fn mkdir(v: &mut impl View, c: &Caller, abs: &str) -> Result<Vec<Change>, Errno> {
    match lookup(v, c, abs, WRITE) {
        Ok(_) => Ok(Vec::new()),
        Err(Errno::Enoent) => {
            let n = create(v, c, abs, Vec::new())?;
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
            remove_tree(v, abs, abs, &mut changes);
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
/// root of the removal fires its whole subtree's watchers.
fn remove_tree(v: &mut impl View, root: &str, abs: &str, changes: &mut Vec<Change>) {
    let Some(n) = v.get(abs).cloned() else { return };
    for ch in &n.children {
        remove_tree(v, root, &path::join(abs, ch), changes);
    }
    changes.push(change(v, abs, &[&n.perms], abs != root));
    v.put(abs, None);
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
    let old = core::mem::replace(&mut n.perms, perms);
    let newp = n.perms.clone();
    v.put(abs, Some(n));
    Ok(vec![change(v, abs, &[&newp, &old], false)])
}
