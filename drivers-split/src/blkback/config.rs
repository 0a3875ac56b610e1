//! Which disk goes to which guest: the driver domain's `vbd=` options, and Linux's names for virtual devices.

use alloc::string::String;

/// Where a vbd's bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The RAM disk of this name in the domain table.
    RamDisk(String),
    /// The n-th virtio block device the hypervisor handed over.
    Virtio(usize),
}

/// One `vbd=<guest>:<vdev>:<rw|ro>:<ramdisk:NAME|virtio:N>` option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VbdSpec {
    pub guest: String,
    /// The Linux name, e.g. "xvda".
    pub vdev: String,
    /// The `virtual-device` number for it.
    pub devid: u32,
    pub read_only: bool,
    pub source: Source,
}

/// The `virtual-device` number of a Xen disk name (docs/misc/vbd-interface.txt):
/// xvda..xvdp are 202 << 8 | disk << 4; xvdq and later take the extended
/// form 1 << 28 | disk << 8. Partitions are not exported.
pub fn devid(vdev: &str) -> Option<u32> {
    let letters = vdev.strip_prefix("xvd")?;
    if letters.is_empty() || letters.len() > 2 || !letters.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    // a..z, then aa..zz as in Linux's naming (xvdaa is disk 26).
    let disk = letters
        .bytes()
        .fold(0u32, |acc, b| acc * 26 + u32::from(b - b'a') + 1)
        - 1;
    Some(if disk < 16 {
        202 << 8 | disk << 4
    } else {
        1 << 28 | disk << 8
    })
}

/// Parses one `vbd=` value.
pub fn parse_vbd(text: &str) -> Result<VbdSpec, &'static str> {
    let mut it = text.split(':');
    let (Some(guest), Some(vdev), Some(mode), Some(kind), Some(what), None) = (
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
    ) else {
        return Err("expected <guest>:<vdev>:<rw|ro>:<ramdisk:NAME|virtio:N>");
    };
    if guest.is_empty() {
        return Err("no guest name");
    }
    let devid = devid(vdev).ok_or("the disk name is not xvd<letters>")?;
    let read_only = match mode {
        "rw" | "w" => false,
        "ro" | "r" => true,
        _ => return Err("the mode is neither rw nor ro"),
    };
    let source = match kind {
        "ramdisk" if !what.is_empty() => Source::RamDisk(String::from(what)),
        "virtio" => Source::Virtio(what.parse().map_err(|_| "virtio:N needs a number")?),
        _ => return Err("the source is neither ramdisk:NAME nor virtio:N"),
    };
    Ok(VbdSpec {
        guest: String::from(guest),
        vdev: String::from(vdev),
        devid,
        read_only,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_to_numbers() {
        assert_eq!(devid("xvda"), Some(51712));
        assert_eq!(devid("xvdb"), Some(51728));
        assert_eq!(devid("xvdp"), Some(202 << 8 | 15 << 4));
        assert_eq!(devid("xvdq"), Some(1 << 28 | 16 << 8));
        assert_eq!(devid("xvdaa"), Some(1 << 28 | 26 << 8));
        assert_eq!(devid("sda"), None);
        assert_eq!(devid("xvd"), None);
        assert_eq!(devid("xvdA"), None);
    }

    #[test]
    fn vbd_options() {
        assert_eq!(
            parse_vbd("linux:xvda:rw:virtio:0"),
            Ok(VbdSpec {
                guest: "linux".into(),
                vdev: "xvda".into(),
                devid: 51712,
                read_only: false,
                source: Source::Virtio(0),
            })
        );
        let r = parse_vbd("linux-2:xvdb:ro:ramdisk:data.img").unwrap();
        assert_eq!(
            (r.read_only, r.source),
            (true, Source::RamDisk("data.img".into()))
        );
        assert!(parse_vbd("linux:xvda:rw:virtio").is_err());
        assert!(parse_vbd("linux:xvda:rx:virtio:0").is_err());
        assert!(parse_vbd("linux:hda:rw:virtio:0").is_err());
        assert!(parse_vbd(":xvda:rw:virtio:0").is_err());
        assert!(parse_vbd("linux:xvda:rw:nbd:host").is_err());
    }
}
