//! The vbd's XenStore side: the toolstack's frontend and backend nodes, the features blkback publishes, and the XenbusState handshake (io/xenbus.h, io/blkif.h; Linux xen-blkback/xenbus.c `frontend_changed`).

use super::config::VbdSpec;
use super::request::Limits;
use crate::toolstack::Entry;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use xen_abi::blkif::{BLKIF_MAX_RING_PAGE_ORDER, VDISK_READONLY};

use crate::xenbus_state::{backend_head, frontend_head, node};
pub use crate::xenbus_state::{CLOSED, CLOSING, CONNECTED, INITIALISED, INITIALISING, INIT_WAIT};

/// Segments per indirect request this backend accepts (1 MiB requests;
/// Linux's blkfront asks for at most its `max_indirect_segments`, 32 by default).
pub const MAX_INDIRECT_SEGMENTS: u16 = 256;

pub fn frontend_dir(domid: u16, devid: u32) -> String {
    format!("/local/domain/{domid}/device/vbd/{devid}")
}

pub fn backend_dir(domid: u16, devid: u32) -> String {
    format!("/local/domain/0/backend/vbd/{domid}/{devid}")
}

/// What a toolstack writes for a disk before the guest boots
/// (libxl_disk.c `libxl__device_disk_add`, libxl_device.c
/// `libxl__device_generic_add`), plus what blkback publishes at probe
/// (xen-blkback `xen_blkbk_probe`, `xen_blkbk_discard`): the features and
/// `state` = InitWait, so the frontend connects as soon as it probes.
pub fn entries(spec: &VbdSpec, domid: u16, limits: &Limits, params: &str) -> Vec<Entry> {
    let fe = frontend_dir(domid, spec.devid);
    let be = backend_dir(domid, spec.devid);
    let mut v = backend_head(domid, &fe, &be);
    v.extend([
        node(format!("{be}/removable"), "0", None),
        node(format!("{be}/bootable"), "1", None),
        node(format!("{be}/dev"), spec.vdev.clone(), None),
        node(format!("{be}/type"), "phy", None),
        node(
            format!("{be}/mode"),
            if spec.read_only { "r" } else { "w" },
            None,
        ),
        node(format!("{be}/device-type"), "disk", None),
        node(format!("{be}/params"), params, None),
        node(
            format!("{be}/max-ring-page-order"),
            format!("{BLKIF_MAX_RING_PAGE_ORDER}"),
            None,
        ),
        node(
            format!("{be}/feature-max-indirect-segments"),
            format!("{}", limits.max_indirect_segments),
            None,
        ),
        node(
            format!("{be}/feature-flush-cache"),
            if limits.flush { "1" } else { "0" },
            None,
        ),
        node(format!("{be}/feature-persistent"), "0", None),
    ]);
    if limits.discard && !limits.read_only {
        v.push(node(format!("{be}/discard-enable"), "1", None));
        v.push(node(format!("{be}/feature-discard"), "1", None));
        v.push(node(format!("{be}/discard-granularity"), "512", None));
        v.push(node(format!("{be}/discard-alignment"), "0", None));
        v.push(node(format!("{be}/discard-secure"), "0", None));
    }
    v.push(node(format!("{be}/state"), format!("{INIT_WAIT}"), None));
    v.extend(frontend_head(domid, &fe, &be));
    v.extend([
        node(
            format!("{fe}/virtual-device"),
            format!("{}", spec.devid),
            None,
        ),
        node(format!("{fe}/device-type"), "disk", None),
        node(format!("{fe}/trusted"), "1", None),
        node(format!("{fe}/state"), format!("{INITIALISING}"), None),
    ]);
    v
}

/// What blkback writes on connecting (xen-blkback `connect`): the disk's
/// size and kind, then `state` = Connected.
pub fn connected_entries(domid: u16, devid: u32, limits: &Limits) -> Vec<Entry> {
    let be = backend_dir(domid, devid);
    let info = if limits.read_only { VDISK_READONLY } else { 0 };
    alloc::vec![
        node(format!("{be}/sectors"), format!("{}", limits.sectors), None),
        node(format!("{be}/info"), format!("{info}"), None),
        node(format!("{be}/sector-size"), "512", None),
        node(format!("{be}/physical-sector-size"), "512", None),
        node(format!("{be}/state"), format!("{CONNECTED}"), None),
    ]
}

/// The frontend's ring: its granted pages and its unbound event channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingSpec {
    pub grefs: Vec<u32>,
    pub port: u32,
}

/// What the backend should do next.
pub type Step = crate::xenbus_state::Step<RingSpec>;

/// Reads the frontend's ring nodes (blkback `read_per_ring_refs`,
/// `connect_ring`): `ring-page-order` with `ring-ref0..`, or one
/// `ring-ref`; `event-channel`; `protocol`, if there, must be the native
/// x86_64 ABI. Multi-queue is not offered, so queue directories are not read.
pub fn ring_spec(read: &dyn Fn(&str) -> Option<String>) -> Result<RingSpec, &'static str> {
    let num = |key: &str| crate::xenbus_state::read_u32(read, key);
    if let Some(p) = read("protocol") {
        if p != "x86_64-abi" {
            return Err("protocol is not x86_64-abi");
        }
    }
    let port = num("event-channel")?;
    let grefs = match read("ring-page-order") {
        None => alloc::vec![num("ring-ref")?],
        Some(order) => {
            let order: u32 = order
                .trim()
                .parse()
                .map_err(|_| "ring-page-order is not a number")?;
            if order > BLKIF_MAX_RING_PAGE_ORDER {
                return Err("ring-page-order above max-ring-page-order");
            }
            (0..1u32 << order)
                .map(|i| num(&format!("ring-ref{i}")))
                .collect::<Result<Vec<u32>, _>>()?
        }
    };
    Ok(RingSpec { grefs, port })
}

/// The next step for a backend in `backend` state (`connected` if it holds
/// a ring) seeing the frontend in `frontend` (`None`: the node is gone).
/// `read` reads a node of the frontend's directory.
pub fn next_step(
    backend: u8,
    connected: bool,
    frontend: Option<u8>,
    read: &dyn Fn(&str) -> Option<String>,
) -> Step {
    crate::xenbus_state::next_step(backend, connected, frontend, || ring_spec(read))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blkback::config::parse_vbd;
    use alloc::collections::BTreeMap;

    const LIMITS: Limits = Limits {
        sectors: 2048,
        read_only: false,
        flush: true,
        discard: true,
        max_indirect_segments: MAX_INDIRECT_SEGMENTS,
    };

    fn reader(nodes: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = nodes
            .iter()
            .map(|(k, v)| (String::from(*k), String::from(*v)))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn toolstack_nodes_cross_reference() {
        let spec = parse_vbd("linux:xvda:rw:virtio:0").unwrap();
        let e = entries(&spec, 3, &LIMITS, "virtio:0");
        let find = |p: &str| e.iter().find(|x| x.path == p).map(|x| x.value.clone());
        assert_eq!(
            find("/local/domain/3/device/vbd/51712/backend").as_deref(),
            Some("/local/domain/0/backend/vbd/3/51712")
        );
        assert_eq!(
            find("/local/domain/0/backend/vbd/3/51712/frontend").as_deref(),
            Some("/local/domain/3/device/vbd/51712")
        );
        assert_eq!(
            find("/local/domain/3/device/vbd/51712/device-type").as_deref(),
            Some("disk")
        );
        assert_eq!(
            find("/local/domain/3/device/vbd/51712/state").as_deref(),
            Some("1")
        );
        assert_eq!(
            find("/local/domain/0/backend/vbd/3/51712/state").as_deref(),
            Some("2")
        );
        assert_eq!(
            find("/local/domain/0/backend/vbd/3/51712/feature-discard").as_deref(),
            Some("1")
        );
        let fe = e
            .iter()
            .find(|x| x.path == "/local/domain/3/device/vbd/51712")
            .unwrap();
        assert_eq!(fe.perms.as_deref(), Some(&["n3".into(), "r0".into()][..]));
        let ro = parse_vbd("linux:xvdb:ro:virtio:0").unwrap();
        let e = entries(
            &ro,
            3,
            &Limits {
                read_only: true,
                ..LIMITS
            },
            "x",
        );
        assert!(e.iter().all(|x| !x.path.ends_with("feature-discard")));
        let c = connected_entries(
            3,
            51728,
            &Limits {
                read_only: true,
                ..LIMITS
            },
        );
        assert_eq!(c[1].value, "4");
        assert_eq!(c.last().unwrap().value, "4");
    }

    #[test]
    fn ring_nodes() {
        let one = reader(&[
            ("ring-ref", "8"),
            ("event-channel", "5"),
            ("protocol", "x86_64-abi"),
        ]);
        assert_eq!(
            ring_spec(&one),
            Ok(RingSpec {
                grefs: alloc::vec![8],
                port: 5
            })
        );
        let four = reader(&[
            ("ring-page-order", "2"),
            ("ring-ref0", "8"),
            ("ring-ref1", "9"),
            ("ring-ref2", "10"),
            ("ring-ref3", "11"),
            ("event-channel", "5"),
        ]);
        assert_eq!(ring_spec(&four).unwrap().grefs, [8, 9, 10, 11]);
        let short = reader(&[
            ("ring-page-order", "1"),
            ("ring-ref0", "8"),
            ("event-channel", "5"),
        ]);
        assert!(ring_spec(&short).is_err());
        let big = reader(&[("ring-page-order", "5"), ("event-channel", "5")]);
        assert!(ring_spec(&big).is_err());
        let i386 = reader(&[
            ("ring-ref", "8"),
            ("event-channel", "5"),
            ("protocol", "x86_32-abi"),
        ]);
        assert!(ring_spec(&i386).is_err());
        let junk = reader(&[("ring-ref", "-1"), ("event-channel", "5")]);
        assert!(ring_spec(&junk).is_err());
    }

    #[test]
    fn the_state_machine() {
        let ring = reader(&[("ring-ref", "8"), ("event-channel", "5")]);
        let none = reader(&[]);
        // Frontend still probing: wait.
        assert_eq!(
            next_step(INIT_WAIT, false, Some(INITIALISING), &ring),
            Step::Nothing
        );
        assert!(matches!(
            next_step(INIT_WAIT, false, Some(INITIALISED), &ring),
            Step::Connect(_)
        ));
        assert!(matches!(
            next_step(INIT_WAIT, false, Some(INITIALISED), &none),
            Step::Fail(_)
        ));
        assert_eq!(
            next_step(CONNECTED, true, Some(CONNECTED), &ring),
            Step::Nothing
        );
        assert_eq!(
            next_step(CONNECTED, true, Some(CLOSING), &ring),
            Step::Disconnect { state: CLOSING }
        );
        assert_eq!(
            next_step(CLOSING, false, Some(CLOSING), &ring),
            Step::Nothing
        );
        assert_eq!(
            next_step(CLOSING, false, Some(CLOSED), &ring),
            Step::Disconnect { state: CLOSED }
        );
        assert_eq!(next_step(CLOSED, false, Some(CLOSED), &ring), Step::Nothing);
        assert_eq!(
            next_step(CLOSED, false, Some(INITIALISING), &ring),
            Step::SetState(INIT_WAIT)
        );
        assert_eq!(
            next_step(CONNECTED, true, None, &ring),
            Step::Disconnect { state: CLOSED }
        );
        assert_eq!(next_step(CLOSED, false, None, &ring), Step::Nothing);
    }
}
