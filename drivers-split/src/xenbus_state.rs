//! The backend half of the XenbusState handshake every split device follows (io/xenbus.h; Linux xen-blkback and xen-netback `frontend_changed`).

use crate::toolstack::Entry;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Reads a frontend node `key` that must hold a u32 (a grant ref, a port).
pub fn read_u32(read: &dyn Fn(&str) -> Option<String>, key: &str) -> Result<u32, &'static str> {
    read(key)
        .ok_or("a ring node is missing")?
        .trim()
        .parse::<u32>()
        .map_err(|_| "a ring node is not a number")
}

/// Reads nodes of the frontend directory `fe` in `store` by their key, as
/// a backend's handshake reads them (values as text).
pub fn frontend_reader<'a>(
    store: &'a crate::xenstore::store::Store,
    fe: &'a str,
) -> impl Fn(&str) -> Option<String> + 'a {
    move |key: &str| {
        store
            .node(&format!("{fe}/{key}"))
            .map(|n| String::from_utf8_lossy(&n.value).into_owned())
    }
}

/// The frontend's `state` node as a XenbusState (`None`: gone or garbage).
pub fn frontend_state(read: &dyn Fn(&str) -> Option<String>) -> Option<u8> {
    read("state").and_then(|s| s.trim().parse::<u8>().ok())
}

// XenbusState (io/xenbus.h).
pub const INITIALISING: u8 = 1;
pub const INIT_WAIT: u8 = 2;
pub const INITIALISED: u8 = 3;
pub const CONNECTED: u8 = 4;
pub const CLOSING: u8 = 5;
pub const CLOSED: u8 = 6;

/// A XenStore node to write; `perms` only where a directory starts.
pub fn node(path: String, value: impl Into<String>, perms: Option<&[String]>) -> Entry {
    Entry {
        path,
        value: value.into(),
        perms: perms.map(<[String]>::to_vec),
    }
}

/// The first nodes of a device's backend directory `be` (libxl_device.c
/// `libxl__device_generic_add`): the directory, owned by the driver
/// domain and readable by guest `domid`, pointing at the frontend's `fe`.
pub fn backend_head(domid: u16, fe: &str, be: &str) -> Vec<Entry> {
    let perms = [String::from("n0"), format!("r{domid}")];
    alloc::vec![
        node(String::from(be), "", Some(&perms)),
        node(format!("{be}/frontend"), fe, None),
        node(format!("{be}/frontend-id"), format!("{domid}"), None),
        node(format!("{be}/online"), "1", None),
    ]
}

/// The first nodes of the frontend directory `fe`: owned by the guest,
/// readable by the driver domain, pointing at the backend's `be`.
pub fn frontend_head(domid: u16, fe: &str, be: &str) -> Vec<Entry> {
    let perms = [format!("n{domid}"), String::from("r0")];
    alloc::vec![
        node(String::from(fe), "", Some(&perms)),
        node(format!("{fe}/backend"), be, None),
        node(format!("{fe}/backend-id"), "0", None),
    ]
}

/// What the backend should do next; `T` is what it needs to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step<T> {
    Nothing,
    /// Map the rings, bind the channel, then publish Connected.
    Connect(T),
    /// The frontend's nodes are unusable: go to Closing.
    Fail(&'static str),
    /// Drop the connection if there is one, then set `state`.
    Disconnect {
        state: u8,
    },
    /// Set the backend's `state` only.
    SetState(u8),
}

/// The next step for a backend in `backend` state (`connected` if it holds
/// rings) seeing the frontend in `frontend` (`None`: the node is gone).
/// `read_rings` reads what the frontend published, when it is time to.
/// Netfront goes from Initialising straight to Connected; blkfront passes
/// Initialised; both mean "my rings are there".
pub fn next_step<T>(
    backend: u8,
    connected: bool,
    frontend: Option<u8>,
    read_rings: impl FnOnce() -> Result<T, &'static str>,
) -> Step<T> {
    match frontend {
        None | Some(CLOSED) if connected || backend != CLOSED => Step::Disconnect { state: CLOSED },
        Some(INITIALISING) if backend == CLOSED || backend == CLOSING => {
            // The frontend came back (a driver reload): offer the device again.
            Step::SetState(INIT_WAIT)
        }
        Some(INITIALISED | CONNECTED) if backend == INIT_WAIT && !connected => match read_rings() {
            Ok(spec) => Step::Connect(spec),
            Err(why) => Step::Fail(why),
        },
        Some(CLOSING) if connected || backend != CLOSING => Step::Disconnect { state: CLOSING },
        _ => Step::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolstack::{apply, set_state};
    use crate::xenstore::ring::PAGE_SIZE;
    use crate::xenstore::{Config, Server};
    use alloc::boxed::Box;

    #[test]
    fn a_frontend_directory_reads_as_text_and_its_state_as_a_number() {
        let mut s = Server::<Box<[u8; PAGE_SIZE]>>::new(Config::default());
        let fe = "/local/domain/1/device/vbd/51712";
        apply(&mut s, &[node(format!("{fe}/ring-ref"), " 8 ", None)]).unwrap();
        {
            let read = frontend_reader(s.store(), fe);
            assert_eq!(read("ring-ref").as_deref(), Some(" 8 "));
            assert_eq!(read("event-channel"), None);
            // No state node yet: the frontend is gone as far as the backend sees.
            assert_eq!(frontend_state(&read), None);
        }
        set_state(&mut s, fe, CONNECTED).unwrap();
        assert_eq!(
            frontend_state(&frontend_reader(s.store(), fe)),
            Some(CONNECTED)
        );
        apply(&mut s, &[node(format!("{fe}/state"), "four", None)]).unwrap();
        assert_eq!(frontend_state(&frontend_reader(s.store(), fe)), None);
    }
}
