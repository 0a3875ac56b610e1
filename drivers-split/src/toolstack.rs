//! Start of day as Xen's toolstack does it: each guest's `/local/domain/N` tree, `/vm` and `/libxl` entries, and the backend nodes (libxl_create.c `libxl__domain_make`, libxl_dom.c `libxl__build_post`, libxl_console.c).

use crate::domains::Guest;
use crate::xenstore::wire::{Errno, MsgType};
use crate::xenstore::{RingMemory, Server};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// One node the toolstack writes: its value and, for nodes whose
/// permissions differ from their parent's, the permission list
/// (xenstore.txt: owner first; "n0 r5" = owned by 0, domain 5 may read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub value: String,
    pub perms: Option<Vec<String>>,
}

fn entry(path: String, value: impl Into<String>) -> Entry {
    Entry {
        path,
        value: value.into(),
        perms: None,
    }
}

fn with_perms(path: String, value: impl Into<String>, perms: &[String]) -> Entry {
    Entry {
        path,
        value: value.into(),
        perms: Some(perms.to_vec()),
    }
}

/// xl's console ring limit (libxl_console.c `LIBXENLIGHT_CONSOLE_LIMIT`... the
/// 1 MiB "limit" xl writes for xenconsoled's log buffer).
const CONSOLE_LIMIT: &str = "1048576";

/// The domain's UUID, for `/vm/<uuid>`: its handle
/// (`xen_abi::domain_handle`, which the hypervisor also answers
/// `XENVER_guest_handle` with) in the 8-4-4-4-12 text form.
pub fn uuid(name: &str) -> String {
    let h = xen_abi::domain_handle::domain_handle(name.as_bytes());
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    format!(
        "{}-{}-{}-{}-{}",
        hex(&h[..4]),
        hex(&h[4..6]),
        hex(&h[6..8]),
        hex(&h[8..10]),
        hex(&h[10..])
    )
}

/// The driver domain's own nodes: Xen's dom0 has a name and a domid.
pub fn driver_entries() -> Vec<Entry> {
    let me = String::from("/local/domain/0");
    let ro = [String::from("n0")];
    alloc::vec![
        with_perms(me.clone(), "", &ro),
        entry(format!("{me}/name"), "Domain-0"),
        entry(format!("{me}/domid"), "0"),
        entry(format!("{me}/backend"), ""),
        with_perms(String::from("/local/pool/0/name"), "Pool-0", &ro),
    ]
}

/// Everything a toolstack writes for guest `g` before unpausing it.
pub fn guest_entries(g: &Guest) -> Vec<Entry> {
    let n = g.domid;
    let home = format!("/local/domain/{n}");
    let vm = format!("/vm/{}", uuid(&g.name));
    // libxl__domain_make: the home directory belongs to dom0 and the guest
    // may read it ("roperm"); the nodes the guest writes are its own ("rwperm").
    let ro = [String::from("n0"), format!("r{n}")];
    let rw = [format!("n{n}")];
    let none = [String::from("n0")];
    let vm_perms = ro.clone();
    let console_backend = format!("/local/domain/0/backend/console/{n}/0");
    let mut v = alloc::vec![
        with_perms(vm.clone(), "", &vm_perms),
        entry(format!("{vm}/uuid"), uuid(&g.name)),
        entry(format!("{vm}/name"), g.name.clone()),
        with_perms(format!("/libxl/{n}"), "", &none),
        entry(format!("/libxl/{n}/type"), "pvh"),
        with_perms(home.clone(), "", &ro),
        entry(format!("{home}/vm"), vm),
        entry(format!("{home}/name"), g.name.clone()),
        entry(format!("{home}/domid"), format!("{n}")),
        entry(format!("{home}/cpu"), ""),
        entry(format!("{home}/memory"), ""),
        // KiB (libxl__build_post): static-max from maxmem, target from
        // memory; the guest's balloon driver follows target.
        entry(
            format!("{home}/memory/static-max"),
            format!("{}", g.static_max_kib)
        ),
        entry(format!("{home}/memory/target"), format!("{}", g.memory_kib)),
        entry(format!("{home}/memory/videoram"), "0"),
        entry(format!("{home}/store/port"), format!("{}", g.store_port)),
        entry(format!("{home}/store/ring-ref"), format!("{}", g.store_gfn)),
        entry(format!("{home}/console/backend"), console_backend.clone()),
        with_perms(
            format!("{home}/console/backend-id"),
            "0",
            &[format!("n{n}"), String::from("r0")]
        ),
        entry(format!("{home}/console/limit"), CONSOLE_LIMIT),
        entry(format!("{home}/console/type"), "xenconsoled"),
        entry(format!("{home}/console/output"), "pty"),
        entry(format!("{home}/console/tty"), ""),
        entry(
            format!("{home}/console/port"),
            format!("{}", g.console_port)
        ),
        entry(
            format!("{home}/console/ring-ref"),
            format!("{}", g.console_gfn)
        ),
        entry(format!("{home}/device"), ""),
        entry(format!("{home}/control"), ""),
        with_perms(format!("{home}/control/shutdown"), "", &rw),
        with_perms(format!("{home}/control/feature-poweroff"), "", &rw),
        with_perms(format!("{home}/control/feature-reboot"), "", &rw),
        with_perms(format!("{home}/control/feature-suspend"), "", &rw),
        with_perms(format!("{home}/control/sysrq"), "", &rw),
        entry(
            format!("{home}/control/platform-feature-multiprocessor-suspend"),
            "1"
        ),
        entry(
            format!("{home}/control/platform-feature-xs_reset_watches"),
            "1"
        ),
        with_perms(format!("{home}/device/suspend/event-channel"), "", &rw),
        with_perms(format!("{home}/data"), "", &rw),
        with_perms(format!("{home}/drivers"), "", &rw),
        with_perms(format!("{home}/feature"), "", &rw),
        with_perms(format!("{home}/attr"), "", &rw),
        with_perms(format!("{home}/error"), "", &rw),
        // The console backend (this domain), as libxl__device_console_add
        // leaves it for xenconsoled.
        with_perms(console_backend.clone(), "", &ro),
        entry(
            format!("{console_backend}/frontend"),
            format!("{home}/console")
        ),
        entry(format!("{console_backend}/frontend-id"), format!("{n}")),
        entry(format!("{console_backend}/online"), "1"),
        entry(format!("{console_backend}/state"), "1"),
        entry(format!("{console_backend}/domain"), g.name.clone()),
        entry(format!("{console_backend}/protocol"), "vt100"),
    ];
    for cpu in 0..g.vcpus {
        v.push(entry(format!("{home}/cpu/{cpu}/availability"), "online"));
    }
    v
}

/// Writes `entries` through the store's own request path as the
/// privileged domain: WRITE, then SET_PERMS where given.
pub fn apply<M: RingMemory>(
    server: &mut Server<M>,
    entries: &[Entry],
) -> Result<(), (String, Errno)> {
    for e in entries {
        let mut p = Vec::with_capacity(e.path.len() + 1 + e.value.len());
        p.extend_from_slice(e.path.as_bytes());
        p.push(0);
        p.extend_from_slice(e.value.as_bytes());
        server
            .local(MsgType::Write, &p)
            .map_err(|err| (e.path.clone(), err))?;
        if let Some(perms) = &e.perms {
            let mut p = Vec::new();
            p.extend_from_slice(e.path.as_bytes());
            p.push(0);
            for s in perms {
                p.extend_from_slice(s.as_bytes());
                p.push(0);
            }
            server
                .local(MsgType::SetPerms, &p)
                .map_err(|err| (e.path.clone(), err))?;
        }
    }
    Ok(())
}

/// Sets a backend's `state` node (xenbus.h XenbusState: 4 = Connected).
pub fn set_state<M: RingMemory>(server: &mut Server<M>, dir: &str, state: u8) -> Result<(), Errno> {
    let mut p = Vec::new();
    p.extend_from_slice(dir.as_bytes());
    p.extend_from_slice(b"/state\0");
    p.extend_from_slice(format!("{state}").as_bytes());
    server.local(MsgType::Write, &p).map(|_| ())
}

/// A toolstack command typed on COM1 at the toolstack's stop of the
/// Ctrl-A cycle, in xl's syntax (`xl` itself may be left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `mem-set <domain> <mem>`: the domain's balloon target.
    MemSet { domain: String, kib: u64 },
}

/// Parses one typed line.
pub fn parse_command(line: &str) -> Result<Command, &'static str> {
    let mut words = line.split_ascii_whitespace().peekable();
    if words.peek() == Some(&"xl") {
        words.next();
    }
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some("mem-set"), Some(domain), Some(mem), None) => Ok(Command::MemSet {
            domain: String::from(domain),
            kib: parse_mem_kb(mem).ok_or("mem-set: bad size (digits, then b, k, m, g or t)")?,
        }),
        (Some("mem-set"), ..) => Err("usage: mem-set <domain> <mem>"),
        (None, ..) => Err(""),
        _ => Err("unknown command (the toolstack knows mem-set <domain> <mem>)"),
    }
}

/// A size as xl's `parse_mem_size_kb` reads it: digits, then an optional
/// unit, b, k, m, g or t (either case); without one, KiB. In KiB, rounded down.
pub fn parse_mem_kb(text: &str) -> Option<u64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = text[..digits].parse().ok()?;
    let shift_up = match text[digits..].to_ascii_lowercase().as_str() {
        "" | "k" => return Some(n),
        "b" => return Some(n / 1024),
        "m" => 10,
        "g" => 20,
        "t" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift_up)
}

/// `xl mem-set`: writes the guest's `memory/target` (KiB), which its
/// balloon driver watches. The domain is named or given by id; a target
/// above `memory/static-max` is refused, as libxl_set_memory_target does
/// ("memory_dynamic_max must be less than or equal to memory_static_max").
pub fn mem_set<M: RingMemory>(
    server: &mut Server<M>,
    guests: &[Guest],
    domain: &str,
    kib: u64,
) -> Result<String, String> {
    let g = guests
        .iter()
        .find(|g| g.name == domain || format!("{}", g.domid) == domain)
        .ok_or_else(|| format!("mem-set: no domain {domain:?}"))?;
    if kib > g.static_max_kib {
        return Err(format!(
            "mem-set: {kib} KiB is above {}'s static-max of {} KiB",
            g.name, g.static_max_kib
        ));
    }
    if kib == 0 {
        return Err(String::from("mem-set: a target of 0"));
    }
    let path = format!("/local/domain/{}/memory/target", g.domid);
    apply(server, &[entry(path, format!("{kib}"))])
        .map_err(|(p, e)| format!("mem-set: writing {p} failed: {e:?}"))?;
    Ok(format!(
        "{} (domain {}): memory/target = {kib} KiB",
        g.name, g.domid
    ))
}

/// The tree under `root` as `xenstore-ls -p` prints it: one node per line,
/// indented one space per level, `name = "value"` and the permission list.
pub fn listing(store: &crate::xenstore::store::Store, root: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Some(node) = store.node(root) else {
        return out;
    };
    let mut stack: Vec<(String, usize)> = node
        .children
        .iter()
        .rev()
        .map(|c| (crate::xenstore::path::join(root, c), 0))
        .collect();
    while let Some((path, depth)) = stack.pop() {
        let Some(n) = store.node(&path) else { continue };
        let value: String = n
            .value
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        let perms: Vec<u8> = n
            .perms
            .to_wire()
            .iter()
            .map(|&b| if b == 0 { b' ' } else { b })
            .collect();
        out.push(format!(
            "{:indent$}{} = \"{}\"  ({})",
            "",
            crate::xenstore::path::basename(&path),
            value,
            core::str::from_utf8(&perms).unwrap_or("?").trim_end(),
            indent = depth
        ));
        for c in n.children.iter().rev() {
            stack.push((crate::xenstore::path::join(&path, c), depth + 1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xenstore::ring::PAGE_SIZE;
    use crate::xenstore::Config;
    use alloc::boxed::Box;
    use std::println;

    type Srv = Server<Box<[u8; PAGE_SIZE]>>;

    fn guest(domid: u16, name: &str) -> Guest {
        Guest {
            domid,
            name: name.into(),
            vcpus: 1,
            memory_kib: 262_144,
            static_max_kib: 262_144,
            console_gfn: 0xfeffc,
            console_port: 1,
            store_gfn: 0xfeffd,
            store_port: 2,
        }
    }

    fn built() -> Srv {
        let mut s = Srv::new(Config::default());
        apply(&mut s, &driver_entries()).unwrap();
        for g in [guest(1, "linux"), guest(2, "linux-2")] {
            apply(&mut s, &guest_entries(&g)).unwrap();
            s.introduce(g.domid, None);
        }
        s
    }

    fn ask(s: &mut Srv, domid: u16, ty: MsgType, payload: &[u8]) -> (u32, Vec<u8>) {
        let msg = crate::xenstore::wire::encode(ty, 7, 0, payload);
        s.submit(domid, &msg);
        let out = s.take_output(domid);
        let m = out.last().expect("a reply");
        let h = crate::xenstore::Header::parse(m[..16].try_into().unwrap());
        (h.ty, m[16..].to_vec())
    }

    #[test]
    fn mem_set_parses_as_xl_does_and_writes_the_target() {
        assert_eq!(parse_mem_kb("262144"), Some(262_144));
        assert_eq!(parse_mem_kb("192m"), Some(196_608));
        assert_eq!(parse_mem_kb("1G"), Some(1 << 20));
        assert_eq!(parse_mem_kb("4096b"), Some(4));
        assert_eq!(parse_mem_kb("12x"), None);
        assert_eq!(parse_mem_kb("m"), None);
        assert_eq!(parse_mem_kb("99999999999999999999t"), None);
        assert_eq!(
            parse_command("xl mem-set linux 192m"),
            Ok(Command::MemSet {
                domain: "linux".into(),
                kib: 196_608
            })
        );
        assert!(parse_command("mem-set linux").is_err());
        assert!(parse_command("destroy linux").is_err());
        let mut s = built();
        let guests = [guest(1, "linux"), guest(2, "linux-2")];
        assert!(mem_set(&mut s, &guests, "linux", 196_608).is_ok());
        let (_, v) = ask(&mut s, 1, MsgType::Read, b"memory/target\0");
        assert_eq!(v, b"196608");
        assert!(mem_set(&mut s, &guests, "2", 100_000).is_ok());
        let (_, v) = ask(&mut s, 2, MsgType::Read, b"memory/target\0");
        assert_eq!(v, b"100000");
        // Above static-max, an unknown domain, zero: refused, nothing written.
        assert!(mem_set(&mut s, &guests, "linux", 262_145).is_err());
        assert!(mem_set(&mut s, &guests, "nobody", 1024).is_err());
        assert!(mem_set(&mut s, &guests, "linux", 0).is_err());
        let (_, v) = ask(&mut s, 1, MsgType::Read, b"memory/target\0");
        assert_eq!(v, b"196608");
    }

    #[test]
    fn a_guest_reads_its_tree_and_writes_only_its_own_nodes() {
        let mut s = built();
        let (ty, v) = ask(&mut s, 1, MsgType::Read, b"memory/target\0");
        assert_eq!((ty, v.as_slice()), (MsgType::Read as u32, &b"262144"[..]));
        let (ty, v) = ask(&mut s, 1, MsgType::Read, b"cpu/0/availability\0");
        assert_eq!((ty, v.as_slice()), (MsgType::Read as u32, &b"online"[..]));
        // What Linux writes at boot (drivers/xen/manage.c).
        let (ty, _) = ask(&mut s, 1, MsgType::Write, b"control/feature-poweroff\x001");
        assert_eq!(ty, MsgType::Write as u32);
        // Not its to change.
        let (ty, v) = ask(&mut s, 1, MsgType::Write, b"memory/target\x00999999");
        assert_eq!(
            (ty, v.as_slice()),
            (MsgType::Error as u32, &b"EACCES\0"[..])
        );
        // Another guest's tree is closed to it.
        let (ty, v) = ask(&mut s, 1, MsgType::Read, b"/local/domain/2/name\0");
        assert_eq!(
            (ty, v.as_slice()),
            (MsgType::Error as u32, &b"EACCES\0"[..])
        );
        let (ty, v) = ask(&mut s, 2, MsgType::Directory, b"device\0");
        assert_eq!(ty, MsgType::Directory as u32);
        assert_eq!(v, b"suspend\0");
    }

    #[test]
    fn listing_looks_like_xenstore_ls() {
        let s = built();
        let lines = listing(s.store(), "/");
        for l in &lines {
            println!("{l}");
        }
        assert!(lines.contains(&String::from("local = \"\"  (n0)")));
        assert!(lines.contains(&String::from("   name = \"linux-2\"  (n0 r2)")));
        assert!(lines.contains(&String::from("    shutdown = \"\"  (n1)")));
        // Children in name order, under their parent.
        let i = lines.iter().position(|l| l == "  0 = \"\"  (n0)").unwrap();
        assert_eq!(lines[i + 1], "   backend = \"\"  (n0)");
        let j = lines
            .iter()
            .position(|l| l == "  1 = \"\"  (n0 r1)")
            .unwrap();
        assert!(lines[i..j].contains(&String::from("   name = \"Domain-0\"  (n0)")));
    }

    #[test]
    fn uuids_are_stable_and_distinct() {
        assert_eq!(uuid("linux"), uuid("linux"));
        assert_ne!(uuid("linux"), uuid("linux-2"));
        assert_eq!(uuid("x").len(), 36);
        // As the toolstack wrote it before the handle moved to xen-abi.
        assert_eq!(uuid("linux"), "5cad04a9-f1a5-405d-94c8-7c860a6c26d4");
    }
}
