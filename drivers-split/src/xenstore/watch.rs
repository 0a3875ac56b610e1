//! Watches: registration, matching and event payloads (xenstore.txt "WATCH", xenstored watch.c).

use super::path;
use super::perms::{Perms, READ};
use alloc::string::String;
use alloc::vec::Vec;

/// A registered watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    /// Absolute (or `@…`) path watched.
    pub abs: String,
    /// Opaque token, echoed byte for byte (Linux parses it as a pointer).
    pub token: Vec<u8>,
    /// Bytes to strip from event paths: the caller's home plus "/" when the
    /// watch was registered with a relative path (watch.c `prefix_len`), so
    /// events come back relative too.
    pub prefix_len: usize,
}

impl Watch {
    /// The path as the client registered it.
    pub fn registered_path(&self) -> &str {
        &self.abs[self.prefix_len..]
    }

    /// Does a change at `c` fire this watch? (watch.c `fire_watches`:
    /// MATCH_SUBTREE for the changed node, MATCH_EXACT for nodes removed
    /// below it.)
    pub fn matches(&self, c: &Change) -> bool {
        if c.exact {
            c.path == self.abs
        } else {
            path::is_at_or_below(&c.path, &self.abs)
        }
    }

    /// The length of [`Watch::event_payload`], without building it.
    pub fn payload_len(&self, abs: &str) -> usize {
        abs.get(self.prefix_len..).unwrap_or(abs).len() + self.token.len() + 2
    }

    /// The `XS_WATCH_EVENT` payload for a change at `abs` (which matched):
    /// "path NUL token NUL".
    pub fn event_payload(&self, abs: &str) -> Vec<u8> {
        let p = abs.get(self.prefix_len..).unwrap_or(abs);
        let mut v = Vec::with_capacity(p.len() + self.token.len() + 2);
        v.extend_from_slice(p.as_bytes());
        v.push(0);
        v.extend_from_slice(&self.token);
        v.push(0);
        v
    }
}

/// One modification that may fire watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Absolute path of the node that changed (or `@…`).
    pub path: String,
    /// Match only watches on exactly this path (nodes removed below the
    /// root of an `RM`).
    pub exact: bool,
    /// Permission lists any of which lets a watcher see the event: the
    /// node's (old and new, for SET_PERMS) and its parent's (watch.c
    /// `watch_permitted`). Empty = privileged watchers only (special paths).
    pub visible_via: Vec<Perms>,
}

impl Change {
    /// May `domid` learn about this change?
    pub fn visible_to(&self, domid: u16, privileged: bool) -> bool {
        privileged
            || self
                .visible_via
                .iter()
                .any(|p| p.access_for(domid, false) & READ != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn change(p: &str, exact: bool) -> Change {
        Change {
            path: p.into(),
            exact,
            visible_via: vec![],
        }
    }

    #[test]
    fn matching() {
        let w = Watch {
            abs: "/local/domain/5/device".into(),
            token: b"ffff8880deadbeef".to_vec(),
            prefix_len: "/local/domain/5/".len(),
        };
        assert_eq!(w.registered_path(), "device");
        assert!(w.matches(&change("/local/domain/5/device", false)));
        assert!(w.matches(&change("/local/domain/5/device/vbd/1", false)));
        assert!(!w.matches(&change("/local/domain/5/devices", false)));
        assert!(!w.matches(&change("/local/domain/5", false)));
        assert!(!w.matches(&change("/local/domain/5/device/vbd", true)));
        assert!(w.matches(&change("/local/domain/5/device", true)));
        assert_eq!(
            w.event_payload("/local/domain/5/device/vbd"),
            b"device/vbd\0ffff8880deadbeef\0"
        );
        assert_eq!(w.payload_len("/local/domain/5/device/vbd"), 28);
    }

    #[test]
    fn visibility() {
        let mut c = change("/a", false);
        assert!(!c.visible_to(3, false));
        assert!(c.visible_to(3, true));
        c.visible_via.push(Perms::owned_by(3));
        assert!(c.visible_to(3, false));
        assert!(!c.visible_to(4, false));
    }
}
