//! The vif's XenStore side: the toolstack's frontend and backend nodes, what netback publishes, and what the frontend must write to connect (io/netif.h; libxl_nic.c; Linux xen-netback/xenbus.c, xen-netfront.c `talk_to_netback`).

use super::config::VifSpec;
use crate::toolstack::Entry;
use crate::xenbus_state::{backend_head, frontend_head, node, INITIALISING, INIT_WAIT};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

pub use crate::xenbus_state::{CLOSING, CONNECTED};

pub fn frontend_dir(domid: u16, devid: u32) -> String {
    format!("/local/domain/{domid}/device/vif/{devid}")
}

pub fn backend_dir(domid: u16, devid: u32) -> String {
    format!("/local/domain/0/backend/vif/{domid}/{devid}")
}

/// What a toolstack writes for an interface before the guest boots
/// (libxl_nic.c `libxl__set_xenstore_nic`), plus what netback publishes at
/// probe (xen-netback `netback_probe`, `xen_register_watchers`): the
/// features and `state` = InitWait. `feature-rx-copy` is the one netfront
/// insists on. Multi-queue and split event channels are not offered: the
/// guests have one vCPU each here.
pub fn entries(spec: &VifSpec, domid: u16) -> Vec<Entry> {
    let fe = frontend_dir(domid, spec.devid);
    let be = backend_dir(domid, spec.devid);
    let mac = format!("{}", spec.mac);
    let mut v = backend_head(domid, &fe, &be);
    v.extend([
        node(format!("{be}/script"), "", None),
        node(format!("{be}/mac"), mac.clone(), None),
        node(format!("{be}/handle"), format!("{}", spec.devid), None),
        node(format!("{be}/type"), "vif", None),
        node(format!("{be}/bridge"), "xenolith", None),
        node(format!("{be}/hotplug-status"), "connected", None),
    ]);
    for f in [
        "feature-rx-copy",
        "feature-sg",
        "feature-gso-tcpv4",
        "feature-gso-tcpv6",
        "feature-ipv6-csum-offload",
    ] {
        v.push(node(format!("{be}/{f}"), "1", None));
    }
    v.push(node(format!("{be}/feature-rx-flip"), "0", None));
    v.push(node(format!("{be}/state"), format!("{INIT_WAIT}"), None));
    v.extend(frontend_head(domid, &fe, &be));
    v.extend([
        node(format!("{fe}/handle"), format!("{}", spec.devid), None),
        node(format!("{fe}/mac"), mac, None),
        node(format!("{fe}/trusted"), "1", None),
        node(format!("{fe}/state"), format!("{INITIALISING}"), None),
    ]);
    v
}

/// What the frontend offers for its receive side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// Packets may span several receive slots (`feature-sg`).
    pub sg: bool,
    /// GSO packets may be handed over whole (`feature-gso-tcpv4`, `-tcpv6`).
    pub gso_v4: bool,
    pub gso_v6: bool,
}

/// The frontend's rings: two granted pages and one event channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingRefs {
    pub tx: u32,
    pub rx: u32,
    pub port: u32,
    pub peer: Peer,
}

/// What the backend should do next.
pub type Step = crate::xenbus_state::Step<RingRefs>;

/// Reads what the frontend wrote (xen-netback `connect_data_rings`,
/// `read_xenbus_vif_flags`): single-queue ring refs and channel, receive
/// by copy (the only mode offered) and `feature-rx-notify` (without it the
/// backend would have to poll for receive buffers; Linux netback refuses
/// such frontends too).
pub fn ring_refs(read: &dyn Fn(&str) -> Option<String>) -> Result<RingRefs, &'static str> {
    let num = |key: &str| crate::xenbus_state::read_u32(read, key);
    let flag = |key: &str| read(key).is_some_and(|v| v.trim() == "1");
    if read("multi-queue-num-queues").is_some_and(|v| v.trim() != "1") {
        return Err("more than one queue asked for; none was offered");
    }
    if read("event-channel-tx").is_some() {
        return Err("split event channels asked for; they were not offered");
    }
    if !flag("request-rx-copy") {
        return Err("request-rx-copy is not 1: receive by copy is the only mode");
    }
    if !flag("feature-rx-notify") {
        return Err("feature-rx-notify is not 1");
    }
    Ok(RingRefs {
        tx: num("tx-ring-ref")?,
        rx: num("rx-ring-ref")?,
        port: num("event-channel")?,
        peer: Peer {
            sg: flag("feature-sg"),
            gso_v4: flag("feature-gso-tcpv4"),
            gso_v6: flag("feature-gso-tcpv6"),
        },
    })
}

/// The next step for a backend in `backend` state seeing the frontend in
/// `frontend`; `read` reads a node of the frontend's directory.
pub fn next_step(
    backend: u8,
    connected: bool,
    frontend: Option<u8>,
    read: &dyn Fn(&str) -> Option<String>,
) -> Step {
    crate::xenbus_state::next_step(backend, connected, frontend, || ring_refs(read))
}
