//! Server-level tests: every operation and error, permissions between domains, transactions, watches, rings, and property tests.

use super::ring::{self, Ring, RingMemory, PAGE_SIZE, RING_SIZE};
use super::server::{Config, Introduction, Server};
use super::wire::{encode, Errno, Header, MsgType, HEADER_LEN, PAYLOAD_MAX};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

type Page = Box<[u8; PAGE_SIZE]>;
type Srv = Server<Page>;

fn server() -> Srv {
    let mut s = Srv::new(Config::default());
    for d in [1u16, 2] {
        s.introduce(d, None);
        let home = format!("/local/domain/{d}");
        ok(&mut s, 0, MsgType::Mkdir, 0, &z(&home));
        ok(
            &mut s,
            0,
            MsgType::SetPerms,
            0,
            &zz(&[&home, "n0", &format!("r{d}")]),
        );
    }
    s
}

/// "s\0"
fn z(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Each string NUL-terminated.
fn zz(ss: &[&str]) -> Vec<u8> {
    ss.iter().flat_map(|s| z(s)).collect()
}

fn wv(path: &str, value: &str) -> Vec<u8> {
    let mut v = z(path);
    v.extend_from_slice(value.as_bytes());
    v
}

fn parse(msg: &[u8]) -> (Header, Vec<u8>) {
    let h = Header::parse(msg[..HEADER_LEN].try_into().unwrap());
    assert_eq!(h.len as usize, msg.len() - HEADER_LEN);
    (h, msg[HEADER_LEN..].to_vec())
}

/// Send one request; all resulting output of that domain, parsed.
fn call(s: &mut Srv, d: u16, ty: MsgType, tx: u32, p: &[u8]) -> Vec<(Header, Vec<u8>)> {
    s.submit(d, &encode(ty, 77, tx, p));
    s.take_output(d).iter().map(|m| parse(m)).collect()
}

/// The reply payload, which must be a success.
fn ok(s: &mut Srv, d: u16, ty: MsgType, tx: u32, p: &[u8]) -> Vec<u8> {
    let out = call(s, d, ty, tx, p);
    stash(d, &out[1..]);
    let (h, body) = &out[0];
    assert_eq!(
        h.ty,
        ty as u32,
        "{ty:?} failed: {:?}",
        String::from_utf8_lossy(body)
    );
    assert_eq!((h.req_id, h.tx_id), (77, tx));
    body.clone()
}

/// The error name of a failed request.
fn err(s: &mut Srv, d: u16, ty: MsgType, tx: u32, p: &[u8]) -> Errno {
    let out = call(s, d, ty, tx, p);
    stash(d, &out[1..]);
    let (h, body) = &out[0];
    assert_eq!(h.ty, MsgType::Error as u32, "{ty:?} unexpectedly succeeded");
    assert_eq!((h.req_id, h.tx_id), (77, tx), "ids echoed");
    *Errno::ALL
        .iter()
        .find(|e| z(e.name()) == *body)
        .expect("a known error name")
}

std::thread_local! {
    /// Events that followed a reply taken by `ok`/`err`, per domain.
    static STASH: core::cell::RefCell<Vec<(u16, Vec<u8>)>> = const { core::cell::RefCell::new(Vec::new()) };
}

fn stash(d: u16, msgs: &[(Header, Vec<u8>)]) {
    STASH.with(|st| {
        for (h, p) in msgs {
            let mut m = h.to_bytes().to_vec();
            m.extend_from_slice(p);
            st.borrow_mut().push((d, m));
        }
    });
}

/// Watch events delivered to `d` since the last look (payloads).
fn events(s: &mut Srv, d: u16) -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = STASH.with(|st| {
        let mut st = st.borrow_mut();
        let (mine, rest): (Vec<_>, Vec<_>) = st.drain(..).partition(|(x, _)| *x == d);
        *st = rest;
        mine.into_iter().map(|(_, m)| m).collect()
    });
    all.extend(s.take_output(d));
    all.iter()
        .map(|m| {
            let (h, p) = parse(m);
            assert_eq!(
                (h.ty, h.req_id, h.tx_id),
                (MsgType::WatchEvent as u32, 0, 0)
            );
            p
        })
        .collect()
}

#[test]
fn read_write_mkdir_directory() {
    let mut s = server();
    ok(&mut s, 0, MsgType::Write, 0, &wv("/a/b/c", "v"));
    assert_eq!(ok(&mut s, 0, MsgType::Read, 0, &z("/a/b/c")), b"v");
    // Missing parents were created with empty values.
    assert_eq!(ok(&mut s, 0, MsgType::Read, 0, &z("/a/b")), b"");
    assert_eq!(ok(&mut s, 0, MsgType::Directory, 0, &z("/a")), b"b\0");
    ok(&mut s, 0, MsgType::Write, 0, &wv("/a/x", ""));
    assert_eq!(ok(&mut s, 0, MsgType::Directory, 0, &z("/a")), b"b\0x\0");
    assert_eq!(ok(&mut s, 0, MsgType::Directory, 0, &z("/a/x")), b"");
    // Binary values, NULs included, are kept as they are.
    ok(&mut s, 0, MsgType::Write, 0, &wv("/a/x", "1\x002"));
    assert_eq!(ok(&mut s, 0, MsgType::Read, 0, &z("/a/x")), b"1\x002");
    ok(&mut s, 0, MsgType::Mkdir, 0, &z("/m/n"));
    ok(&mut s, 0, MsgType::Mkdir, 0, &z("/a/x")); // existing: fine, value kept
    assert_eq!(ok(&mut s, 0, MsgType::Read, 0, &z("/a/x")), b"1\x002");
    assert_eq!(err(&mut s, 0, MsgType::Read, 0, &z("/nope")), Errno::Enoent);
    assert_eq!(
        err(&mut s, 0, MsgType::Directory, 0, &z("/nope")),
        Errno::Enoent
    );
    s.store().check_invariants().unwrap();
}

#[test]
fn relative_paths_use_the_callers_home() {
    let mut s = server();
    ok(
        &mut s,
        0,
        MsgType::Write,
        0,
        &wv("/local/domain/1/device/vbd/51712/state", "1"),
    );
    ok(
        &mut s,
        0,
        MsgType::SetPerms,
        0,
        &zz(&["/local/domain/1/device", "b1"]),
    );
    assert_eq!(
        ok(&mut s, 1, MsgType::Read, 0, &z("device/vbd/51712/state")),
        b"1"
    );
    assert_eq!(ok(&mut s, 1, MsgType::Directory, 0, &z("device")), b"vbd\0");
    assert_eq!(
        ok(
            &mut s,
            0,
            MsgType::Read,
            0,
            &z("/local/domain/1/device/vbd/51712/state")
        ),
        b"1"
    );
    // dom0's relative paths are below /local/domain/0.
    ok(&mut s, 0, MsgType::Write, 0, &wv("x", "0"));
    assert_eq!(
        ok(&mut s, 0, MsgType::Read, 0, &z("/local/domain/0/x")),
        b"0"
    );
}

#[test]
fn rm_semantics() {
    let mut s = server();
    ok(&mut s, 0, MsgType::Write, 0, &wv("/t/a/b", "1"));
    ok(&mut s, 0, MsgType::Write, 0, &wv("/t/a/c", "2"));
    ok(&mut s, 0, MsgType::Rm, 0, &z("/t/a"));
    assert_eq!(
        err(&mut s, 0, MsgType::Read, 0, &z("/t/a/b")),
        Errno::Enoent
    );
    assert_eq!(ok(&mut s, 0, MsgType::Directory, 0, &z("/t")), b"");
    // Absent node with an existing parent: fine. Absent parent: ENOENT.
    ok(&mut s, 0, MsgType::Rm, 0, &z("/t/a"));
    assert_eq!(err(&mut s, 0, MsgType::Rm, 0, &z("/t/a/b")), Errno::Enoent);
    assert_eq!(err(&mut s, 0, MsgType::Rm, 0, &z("/")), Errno::Einval);
    s.store().check_invariants().unwrap();
}

#[test]
fn permissions_between_two_domains() {
    let mut s = server();
    // Home: n0 r1. Domain 1 may read but not write it, domain 2 neither.
    assert_eq!(ok(&mut s, 1, MsgType::Read, 0, &z("/local/domain/1")), b"");
    assert_eq!(
        err(&mut s, 1, MsgType::Write, 0, &wv("name", "x")),
        Errno::Eacces
    );
    assert_eq!(
        err(&mut s, 2, MsgType::Read, 0, &z("/local/domain/1")),
        Errno::Eacces
    );
    // Absent nodes under an unreadable parent do not leak ENOENT.
    assert_eq!(
        err(&mut s, 2, MsgType::Read, 0, &z("/local/domain/1/nope")),
        Errno::Eacces
    );
    assert_eq!(
        err(&mut s, 1, MsgType::Read, 0, &z("/local/domain/1/nope")),
        Errno::Enoent
    );
    // A writable area for domain 1 ("data", owned by it).
    ok(&mut s, 0, MsgType::Mkdir, 0, &z("/local/domain/1/data"));
    ok(
        &mut s,
        0,
        MsgType::SetPerms,
        0,
        &zz(&["/local/domain/1/data", "n1"]),
    );
    ok(&mut s, 1, MsgType::Write, 0, &wv("data/k", "v"));
    // New nodes inherit the parent's list with the creator as owner.
    assert_eq!(ok(&mut s, 1, MsgType::GetPerms, 0, &z("data/k")), b"n1\0");
    assert_eq!(
        err(&mut s, 2, MsgType::Read, 0, &z("/local/domain/1/data/k")),
        Errno::Eacces
    );
    assert_eq!(
        err(
            &mut s,
            2,
            MsgType::Write,
            0,
            &wv("/local/domain/1/data/k", "x")
        ),
        Errno::Eacces
    );
    assert_eq!(
        err(&mut s, 2, MsgType::Rm, 0, &z("/local/domain/1/data/k")),
        Errno::Eacces
    );
    // Owner grants read to domain 2; only dom0 may change the owner.
    ok(
        &mut s,
        1,
        MsgType::SetPerms,
        0,
        &zz(&["data/k", "n1", "r2"]),
    );
    assert_eq!(
        ok(&mut s, 2, MsgType::Read, 0, &z("/local/domain/1/data/k")),
        b"v"
    );
    assert_eq!(
        err(
            &mut s,
            2,
            MsgType::Write,
            0,
            &wv("/local/domain/1/data/k", "x")
        ),
        Errno::Eacces
    );
    assert_eq!(
        err(
            &mut s,
            2,
            MsgType::SetPerms,
            0,
            &zz(&["/local/domain/1/data/k", "b2"])
        ),
        Errno::Eacces
    );
    assert_eq!(
        err(&mut s, 1, MsgType::SetPerms, 0, &zz(&["data/k", "n2"])),
        Errno::Eperm
    );
    ok(
        &mut s,
        0,
        MsgType::SetPerms,
        0,
        &zz(&["/local/domain/1/data/k", "b2"]),
    );
    assert_eq!(ok(&mut s, 1, MsgType::GetPerms, 0, &z("data/k")), b"b2\0");
    // Default "b" lets anyone write; "w" entries write without read.
    ok(
        &mut s,
        2,
        MsgType::Write,
        0,
        &wv("/local/domain/1/data/k", "2"),
    );
    ok(
        &mut s,
        0,
        MsgType::SetPerms,
        0,
        &zz(&["/local/domain/1/data/k", "n0", "w2"]),
    );
    ok(
        &mut s,
        2,
        MsgType::Write,
        0,
        &wv("/local/domain/1/data/k", "3"),
    );
    assert_eq!(
        err(&mut s, 2, MsgType::Read, 0, &z("/local/domain/1/data/k")),
        Errno::Eacces
    );
    // dom0 does anything.
    assert_eq!(
        ok(&mut s, 0, MsgType::Read, 0, &z("/local/domain/1/data/k")),
        b"3"
    );
    ok(&mut s, 0, MsgType::Rm, 0, &z("/local/domain/1/data"));
    s.store().check_invariants().unwrap();
}

#[test]
fn set_perms_errors() {
    let mut s = server();
    assert_eq!(
        err(&mut s, 0, MsgType::SetPerms, 0, &z("/local")),
        Errno::Einval
    );
    assert_eq!(
        err(&mut s, 0, MsgType::SetPerms, 0, &zz(&["/local", "q0"])),
        Errno::Einval
    );
    assert_eq!(
        err(&mut s, 0, MsgType::SetPerms, 0, &zz(&["/nope", "n0"])),
        Errno::Enoent
    );
    ok(&mut s, 0, MsgType::Mkdir, 0, &z("/local/domain/1/p"));
    ok(
        &mut s,
        0,
        MsgType::SetPerms,
        0,
        &zz(&["/local/domain/1/p", "n1"]),
    );
    let many = zz(&["p", "n1", "r2", "r3", "r4", "r5", "r6"]);
    assert_eq!(err(&mut s, 1, MsgType::SetPerms, 0, &many), Errno::Enospc);
}

#[test]
fn watches_fire_immediately_with_exact_token_and_relative_paths() {
    let mut s = server();
    ok(&mut s, 0, MsgType::Mkdir, 0, &z("/local/domain/1/device"));
    let token = "ffff888003a1b2c0";
    let out = call(&mut s, 1, MsgType::Watch, 0, &zz(&["device", token]));
    assert_eq!(out.len(), 2, "reply, then the initial event");
    assert_eq!(
        (out[0].0.ty, out[0].1.as_slice()),
        (MsgType::Watch as u32, &b"OK\0"[..])
    );
    assert_eq!(out[1].0.ty, MsgType::WatchEvent as u32);
    assert_eq!(out[1].1, zz(&["device", token]));
    // A change below fires with the relative path.
    ok(
        &mut s,
        0,
        MsgType::Write,
        0,
        &wv("/local/domain/1/device/vbd/51712/state", "1"),
    );
    assert_eq!(
        events(&mut s, 1),
        vec![zz(&["device/vbd/51712/state", token])]
    );
    // Absolute registration reports absolute paths.
    ok(
        &mut s,
        0,
        MsgType::Write,
        0,
        &wv("/backend/vbd/1/51712/state", "1"),
    );
    ok(
        &mut s,
        0,
        MsgType::SetPerms,
        0,
        &zz(&["/backend/vbd/1/51712/state", "n0", "r1"]),
    );
    call(
        &mut s,
        1,
        MsgType::Watch,
        0,
        &zz(&["/backend/vbd/1/51712/state", "b"]),
    );
    ok(
        &mut s,
        0,
        MsgType::Write,
        0,
        &wv("/backend/vbd/1/51712/state", "2"),
    );
    assert_eq!(
        events(&mut s, 1),
        vec![zz(&["/backend/vbd/1/51712/state", "b"])]
    );
    // Unrelated and sibling-prefix paths do not fire.
    ok(
        &mut s,
        0,
        MsgType::Write,
        0,
        &wv("/local/domain/1/devices", "x"),
    );
    assert!(events(&mut s, 1).is_empty());
    // Duplicate and unknown watches.
    assert_eq!(
        err(&mut s, 1, MsgType::Watch, 0, &zz(&["device", token])),
        Errno::Eexist
    );
    assert_eq!(
        err(&mut s, 1, MsgType::Unwatch, 0, &zz(&["device", "other"])),
        Errno::Enoent
    );
    ok(&mut s, 1, MsgType::Unwatch, 0, &zz(&["device", token]));
    ok(
        &mut s,
        0,
        MsgType::Write,
        0,
        &wv("/local/domain/1/device/x", "1"),
    );
    assert!(events(&mut s, 1).is_empty());
}

#[test]
fn watch_on_removal_and_permission_filtering() {
    let mut s = server();
    ok(
        &mut s,
        0,
        MsgType::Write,
        0,
        &wv("/local/domain/1/device/vbd/1/state", "1"),
    );
    call(
        &mut s,
        1,
        MsgType::Watch,
        0,
        &zz(&["device/vbd/1/state", "t"]),
    );
    // Removing an ancestor fires the watch with its own path.
    ok(&mut s, 0, MsgType::Rm, 0, &z("/local/domain/1/device"));
    assert_eq!(events(&mut s, 1), vec![zz(&["device/vbd/1/state", "t"])]);
    // Domain 2 watching domain 1's node it cannot read gets nothing.
    ok(
        &mut s,
        0,
        MsgType::Write,
        0,
        &wv("/local/domain/1/secret", "1"),
    );
    let out = call(
        &mut s,
        2,
        MsgType::Watch,
        0,
        &zz(&["/local/domain/1/secret", "t2"]),
    );
    assert_eq!(out.len(), 2); // the initial event is always sent
    ok(
        &mut s,
        0,
        MsgType::Write,
        0,
        &wv("/local/domain/1/secret", "2"),
    );
    assert!(events(&mut s, 2).is_empty());
    // SET_PERMS fires, and a watcher losing access still hears of it.
    ok(
        &mut s,
        0,
        MsgType::SetPerms,
        0,
        &zz(&["/local/domain/1/secret", "n0", "r2"]),
    );
    assert_eq!(events(&mut s, 2).len(), 1);
    ok(
        &mut s,
        0,
        MsgType::SetPerms,
        0,
        &zz(&["/local/domain/1/secret", "n0"]),
    );
    assert_eq!(events(&mut s, 2).len(), 1);
}

#[test]
fn special_watches_and_domain_management() {
    let mut s = server();
    call(
        &mut s,
        0,
        MsgType::Watch,
        0,
        &zz(&["@introduceDomain", "i"]),
    );
    call(&mut s, 0, MsgType::Watch, 0, &zz(&["@releaseDomain", "r"]));
    assert_eq!(
        err(&mut s, 1, MsgType::Watch, 0, &zz(&["@other", "x"])),
        Errno::Einval
    );
    assert_eq!(
        ok(&mut s, 0, MsgType::IsDomainIntroduced, 0, &z("7")),
        b"F\0"
    );
    ok(
        &mut s,
        0,
        MsgType::Introduce,
        0,
        &zz(&["7", "1044476", "1"]),
    );
    assert_eq!(events(&mut s, 0), vec![zz(&["@introduceDomain", "i"])]);
    assert_eq!(
        s.take_introductions(),
        vec![Introduction {
            domid: 7,
            gfn: 1044476,
            port: 1
        }]
    );
    assert_eq!(
        ok(&mut s, 0, MsgType::IsDomainIntroduced, 0, &z("7")),
        b"T\0"
    );
    assert_eq!(
        err(&mut s, 0, MsgType::Introduce, 0, &zz(&["7", "1", "0"])),
        Errno::Einval
    );
    assert_eq!(
        err(&mut s, 0, MsgType::Introduce, 0, &zz(&["7", "1"])),
        Errno::Einval
    );
    ok(&mut s, 0, MsgType::Release, 0, &z("7"));
    assert_eq!(events(&mut s, 0), vec![zz(&["@releaseDomain", "r"])]);
    assert_eq!(err(&mut s, 0, MsgType::Release, 0, &z("7")), Errno::Enoent);
    // Toolstack-only operations.
    for ty in [
        MsgType::Introduce,
        MsgType::Release,
        MsgType::IsDomainIntroduced,
        MsgType::Control,
    ] {
        assert_eq!(err(&mut s, 1, ty, 0, &z("1")), Errno::Eacces);
    }
    assert_eq!(
        ok(&mut s, 1, MsgType::GetDomainPath, 0, &z("5")),
        b"/local/domain/5\0"
    );
    assert_eq!(
        err(&mut s, 1, MsgType::GetDomainPath, 0, &z("x")),
        Errno::Einval
    );
}

#[test]
fn reset_watches_drops_watches_and_transactions() {
    let mut s = server();
    call(&mut s, 1, MsgType::Watch, 0, &zz(&["/local/domain/1", "t"]));
    let id = ok(&mut s, 1, MsgType::TransactionStart, 0, b"\0");
    assert_eq!(id, b"1\0");
    ok(&mut s, 1, MsgType::ResetWatches, 0, b"\0");
    assert!(s.connection(1).unwrap().watches.is_empty());
    assert_eq!(err(&mut s, 1, MsgType::Read, 1, &z("name")), Errno::Enoent);
    ok(
        &mut s,
        0,
        MsgType::Write,
        0,
        &wv("/local/domain/1/name", "x"),
    );
    assert!(events(&mut s, 1).is_empty());
}

#[test]
fn transactions_commit_abort_and_conflict() {
    let mut s = server();
    ok(
        &mut s,
        0,
        MsgType::Write,
        0,
        &wv("/local/domain/1/device/vif/0/state", "1"),
    );
    for n in ["device", "device/vif", "device/vif/0", "device/vif/0/state"] {
        let p = format!("/local/domain/1/{n}");
        ok(&mut s, 0, MsgType::SetPerms, 0, &zz(&[&p, "n1"]));
    }
    call(&mut s, 1, MsgType::Watch, 0, &zz(&["device", "w"]));
    // Linux's xenbus_switch_state: READ state, WRITE it, commit.
    let tx = ok(&mut s, 1, MsgType::TransactionStart, 0, b"\0");
    let tx: u32 = core::str::from_utf8(&tx[..tx.len() - 1])
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(tx, 0);
    assert_eq!(
        ok(&mut s, 1, MsgType::Read, tx, &z("device/vif/0/state")),
        b"1"
    );
    ok(
        &mut s,
        1,
        MsgType::Write,
        tx,
        &wv("device/vif/0/state", "4"),
    );
    ok(
        &mut s,
        1,
        MsgType::Write,
        tx,
        &wv("device/vif/0/tx-ring-ref", "8"),
    );
    assert_eq!(
        ok(&mut s, 1, MsgType::Read, tx, &z("device/vif/0/state")),
        b"4"
    );
    // Not visible outside, no events yet.
    assert_eq!(
        ok(&mut s, 1, MsgType::Read, 0, &z("device/vif/0/state")),
        b"1"
    );
    assert_eq!(
        err(&mut s, 1, MsgType::Read, 0, &z("device/vif/0/tx-ring-ref")),
        Errno::Enoent
    );
    assert!(events(&mut s, 1).is_empty());
    ok(&mut s, 1, MsgType::TransactionEnd, tx, b"T\0");
    assert_eq!(
        ok(&mut s, 1, MsgType::Read, 0, &z("device/vif/0/state")),
        b"4"
    );
    assert_eq!(events(&mut s, 1).len(), 2);
    assert_eq!(
        err(&mut s, 1, MsgType::TransactionEnd, tx, b"T\0"),
        Errno::Enoent
    );

    // Conflict: another domain changes a node the transaction read.
    let tx = ok(&mut s, 1, MsgType::TransactionStart, 0, b"\0");
    let tx: u32 = core::str::from_utf8(&tx[..tx.len() - 1])
        .unwrap()
        .parse()
        .unwrap();
    ok(&mut s, 1, MsgType::Read, tx, &z("device/vif/0/state"));
    ok(
        &mut s,
        1,
        MsgType::Write,
        tx,
        &wv("device/vif/0/state", "5"),
    );
    ok(
        &mut s,
        0,
        MsgType::Write,
        0,
        &wv("/local/domain/1/device/vif/0/state", "6"),
    );
    events(&mut s, 1);
    assert_eq!(
        err(&mut s, 1, MsgType::TransactionEnd, tx, b"T\0"),
        Errno::Eagain
    );
    assert_eq!(
        ok(&mut s, 1, MsgType::Read, 0, &z("device/vif/0/state")),
        b"6"
    );
    assert_eq!(s.connection(1).unwrap().transaction_count(), 0);

    // Abort discards.
    let tx = ok(&mut s, 1, MsgType::TransactionStart, 0, b"\0");
    let tx: u32 = core::str::from_utf8(&tx[..tx.len() - 1])
        .unwrap()
        .parse()
        .unwrap();
    ok(&mut s, 1, MsgType::Rm, tx, &z("device/vif"));
    assert_eq!(
        err(&mut s, 1, MsgType::Read, tx, &z("device/vif/0/state")),
        Errno::Enoent
    );
    ok(&mut s, 1, MsgType::TransactionEnd, tx, b"F\0");
    assert_eq!(
        ok(&mut s, 1, MsgType::Read, 0, &z("device/vif/0/state")),
        b"6"
    );
    assert!(events(&mut s, 1).is_empty());
    s.store().check_invariants().unwrap();
}

#[test]
fn transaction_errors() {
    let mut s = server();
    assert_eq!(err(&mut s, 1, MsgType::Read, 99, &z("name")), Errno::Enoent);
    assert_eq!(
        err(&mut s, 1, MsgType::TransactionEnd, 0, b"T\0"),
        Errno::Enoent
    );
    let tx = ok(&mut s, 1, MsgType::TransactionStart, 0, b"\0");
    let tx: u32 = core::str::from_utf8(&tx[..tx.len() - 1])
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        err(&mut s, 1, MsgType::TransactionStart, tx, b"\0"),
        Errno::Ebusy
    );
    assert_eq!(
        err(&mut s, 1, MsgType::TransactionEnd, tx, b"X\0"),
        Errno::Einval
    );
    assert_eq!(
        err(&mut s, 1, MsgType::TransactionEnd, tx, b"T"),
        Errno::Einval
    );
    // Another domain cannot use it.
    assert_eq!(err(&mut s, 2, MsgType::Read, tx, &z("name")), Errno::Enoent);
    for _ in 1..Config::default().max_transactions {
        ok(&mut s, 1, MsgType::TransactionStart, 0, b"\0");
    }
    assert_eq!(
        err(&mut s, 1, MsgType::TransactionStart, 0, b"\0"),
        Errno::Enospc
    );
}

#[test]
fn quotas() {
    let mut s = Srv::new(Config {
        max_nodes: 5,
        max_watches: 2,
        max_value: 8,
        ..Config::default()
    });
    s.introduce(1, None);
    ok(&mut s, 0, MsgType::Mkdir, 0, &z("/local/domain/1"));
    ok(
        &mut s,
        0,
        MsgType::SetPerms,
        0,
        &zz(&["/local/domain/1", "n1"]),
    );
    // Domain 1 owns its home: 4 more nodes fit, the fifth does not.
    ok(&mut s, 1, MsgType::Write, 0, &wv("a/b/c/d", ""));
    assert_eq!(
        err(&mut s, 1, MsgType::Write, 0, &wv("e", "")),
        Errno::Enospc
    );
    assert_eq!(
        err(&mut s, 1, MsgType::Write, 0, &wv("a", "123456789")),
        Errno::Enospc
    );
    ok(&mut s, 1, MsgType::Write, 0, &wv("a", "12345678"));
    call(&mut s, 1, MsgType::Watch, 0, &zz(&["a", "1"]));
    call(&mut s, 1, MsgType::Watch, 0, &zz(&["a", "2"]));
    assert_eq!(
        err(&mut s, 1, MsgType::Watch, 0, &zz(&["a", "3"])),
        Errno::Enospc
    );
    // dom0 is not limited.
    for i in 0..10 {
        ok(
            &mut s,
            0,
            MsgType::Write,
            0,
            &wv(&format!("/x/{i}"), "0123456789"),
        );
    }
    // Removing frees quota.
    ok(&mut s, 1, MsgType::Rm, 0, &z("a/b"));
    ok(&mut s, 1, MsgType::Write, 0, &wv("e", ""));
    s.store().check_invariants().unwrap();
}

#[test]
fn pending_events_are_bounded() {
    let mut s = Srv::new(Config {
        max_pending_events: 3,
        ..Config::default()
    });
    call(&mut s, 0, MsgType::Watch, 0, &zz(&["/w", "t"]));
    for i in 0..10 {
        s.submit(0, &encode(MsgType::Write, 1, 0, &wv("/w", &format!("{i}"))));
    }
    let out = s.take_output(0);
    assert_eq!(out.len(), 10 + 3);
    assert_eq!(s.connection(0).unwrap().events_dropped, 7);
}

fn raw(ty: u32, req_id: u32, tx_id: u32, p: &[u8]) -> Vec<u8> {
    let mut m = Header {
        ty,
        req_id,
        tx_id,
        len: p.len() as u32,
    }
    .to_bytes()
    .to_vec();
    m.extend_from_slice(p);
    m
}

#[test]
fn malformed_requests_get_errors() {
    let mut s = server();
    let long_rel = "a".repeat(2049);
    let cases: &[(u32, &[u8], Errno)] = &[
        (20, b"\0", Errno::Enosys),
        (27, b"\0", Errno::Enosys),
        (0xffff, b"", Errno::Enosys),
        (MsgType::WatchEvent as u32, b"a\0b\0", Errno::Enosys),
        (MsgType::Error as u32, b"EINVAL\0", Errno::Enosys),
        (MsgType::DirectoryPart as u32, b"a\x000\0", Errno::Enosys),
        (MsgType::Read as u32, b"name", Errno::Einval),
        (MsgType::Read as u32, b"", Errno::Einval),
        (MsgType::Read as u32, b"a\0b\0", Errno::Einval),
        (MsgType::Read as u32, b"bad path\0", Errno::Einval),
        (MsgType::Read as u32, b"a//b\0", Errno::Einval),
        (MsgType::Read as u32, b"a/\0", Errno::Einval),
        (MsgType::Read as u32, b"@introduceDomain\0", Errno::Einval),
        (MsgType::Read as u32, long_rel.as_bytes(), Errno::Einval),
        (MsgType::Write as u32, b"no-nul", Errno::Einval),
        (MsgType::Watch as u32, b"a\0", Errno::Einval),
        (MsgType::Watch as u32, b"a\0t\x001\0", Errno::Einval),
        (MsgType::Unwatch as u32, b"a\0", Errno::Einval),
        (MsgType::GetDomainPath as u32, b"1", Errno::Einval),
        (MsgType::SetPerms as u32, b"a", Errno::Einval),
    ];
    for &(ty, p, e) in cases {
        s.submit(1, &raw(ty, 5, 0, p));
        let out = s.take_output(1);
        assert_eq!(out.len(), 1, "type {ty}");
        let (h, body) = parse(&out[0]);
        assert_eq!((h.ty, h.req_id, h.tx_id), (16, 5, 0), "type {ty}");
        assert_eq!(body, z(e.name()), "type {ty} {p:?}");
    }
    // A length over XENSTORE_PAYLOAD_MAX: E2BIG, ids echoed.
    let mut m = raw(MsgType::Read as u32, 9, 3, b"");
    m[12..16].copy_from_slice(&((PAYLOAD_MAX + 1) as u32).to_le_bytes());
    s.submit(1, &m);
    let (h, body) = parse(&s.take_output(1)[0]);
    assert_eq!((h.ty, h.req_id, h.tx_id, body), (16, 9, 3, z("E2BIG")));
}

#[test]
fn oversized_reply_is_e2big() {
    let mut s = server();
    for i in 0..300 {
        ok(
            &mut s,
            0,
            MsgType::Mkdir,
            0,
            &z(&format!("/big/child-number-{i:04}")),
        );
    }
    assert_eq!(
        err(&mut s, 0, MsgType::Directory, 0, &z("/big")),
        Errno::E2big
    );
}

// ---- Rings ----

fn page() -> Page {
    Box::new([0u8; PAGE_SIZE])
}

/// Guest side (Linux xenbus_comms.c): append request bytes; how many fit.
fn guest_send(srv: &mut Srv, d: u16, data: &[u8]) -> usize {
    let m = ring_mem(srv, d);
    let cons = m.load_u32(ring::REQ_CONS);
    let prod = m.load_u32(ring::REQ_PROD);
    let n = data
        .len()
        .min((RING_SIZE - prod.wrapping_sub(cons)) as usize);
    for (i, b) in data[..n].iter().enumerate() {
        m[ring::REQ + (prod.wrapping_add(i as u32) % RING_SIZE) as usize] = *b;
    }
    m.store_u32(ring::REQ_PROD, prod.wrapping_add(n as u32));
    n
}

/// Guest side: take all response bytes.
fn guest_recv(srv: &mut Srv, d: u16) -> Vec<u8> {
    let m = ring_mem(srv, d);
    let cons = m.load_u32(ring::RSP_CONS);
    let prod = m.load_u32(ring::RSP_PROD);
    let out = (0..prod.wrapping_sub(cons))
        .map(|i| m[ring::RSP + (cons.wrapping_add(i) % RING_SIZE) as usize])
        .collect();
    m.store_u32(ring::RSP_CONS, prod);
    out
}

/// The guest's view of `d`'s ring page (the server owns the box; the test
/// plays the guest through a pointer kept by `with_ring`, as a real guest
/// shares the page). Tied to `&mut Srv` so the server is not running meanwhile.
fn ring_mem(srv: &mut Srv, d: u16) -> &mut [u8; PAGE_SIZE] {
    assert!(srv.connection(d).is_some());
    let p = RINGS.with(|r| r.borrow()[d as usize]);
    assert!(!p.is_null());
    // SAFETY: `p` points into the boxed page the server holds for `d`
    // (boxes do not move), and no server borrow is alive while the
    // returned reference is used.
    unsafe { &mut *p }
}

std::thread_local! {
    static RINGS: core::cell::RefCell<[*mut [u8; PAGE_SIZE]; 8]> =
        const { core::cell::RefCell::new([core::ptr::null_mut(); 8]) };
}

fn with_ring(srv: &mut Srv, d: u16, start: u32) {
    let mut p = page();
    for off in [
        ring::REQ_CONS,
        ring::REQ_PROD,
        ring::RSP_CONS,
        ring::RSP_PROD,
    ] {
        p.store_u32(off, start);
    }
    RINGS.with(|r| r.borrow_mut()[d as usize] = &mut *p as *mut _);
    if srv.connection(d).is_some() {
        srv.attach_ring(d, Ring::new(p));
    } else {
        srv.introduce(d, Some(Ring::new(p)));
    }
}

fn split_msgs(mut b: &[u8]) -> Vec<(Header, Vec<u8>)> {
    let mut v = Vec::new();
    while !b.is_empty() {
        let h = Header::parse(b[..HEADER_LEN].try_into().unwrap());
        let end = HEADER_LEN + h.len as usize;
        v.push((h, b[HEADER_LEN..end].to_vec()));
        b = &b[end..];
    }
    v
}

#[test]
fn ring_round_trip_with_wrapping_indices() {
    let mut s = server();
    with_ring(&mut s, 1, u32::MAX - 20);
    s.submit(
        0,
        &encode(MsgType::Write, 1, 0, &wv("/local/domain/1/name", "guest")),
    );
    s.take_output(0);
    let req = encode(MsgType::Read, 1234, 0, &z("name"));
    guest_send(&mut s, 1, &req);
    let notify = s.poll();
    assert_eq!(notify, vec![1]);
    let msgs = split_msgs(&guest_recv(&mut s, 1));
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        (msgs[0].0.ty, msgs[0].0.req_id),
        (MsgType::Read as u32, 1234)
    );
    assert_eq!(msgs[0].1, b"guest");
    // Nothing to do: nobody to notify, nothing unsolicited.
    assert!(s.poll().is_empty());
    assert!(guest_recv(&mut s, 1).is_empty());
}

#[test]
fn large_reply_streams_through_a_small_ring() {
    let mut s = server();
    with_ring(&mut s, 1, 0);
    let big = "x".repeat(2048);
    s.submit(
        0,
        &encode(MsgType::Write, 1, 0, &wv("/local/domain/1/big", &big)),
    );
    s.take_output(0);
    guest_send(&mut s, 1, &encode(MsgType::Read, 1, 0, &z("big")));
    let mut got = Vec::new();
    for _ in 0..5 {
        s.poll();
        got.extend(guest_recv(&mut s, 1));
    }
    let msgs = split_msgs(&got);
    assert_eq!(msgs[0].1, big.as_bytes());
}

#[test]
fn flooding_guest_does_not_starve_others() {
    let mut s = server();
    let cfg = s.config;
    with_ring(&mut s, 1, 0);
    with_ring(&mut s, 2, 0);
    // Domain 1 fills its ring with tiny requests; domain 2 sends one.
    let one = encode(MsgType::GetDomainPath, 1, 0, &z("1"));
    let mut n = 0;
    while guest_send(&mut s, 1, &one) == one.len() {
        n += 1;
    }
    guest_send(&mut s, 2, &encode(MsgType::GetDomainPath, 2, 0, &z("2")));
    let notify = s.poll();
    assert!(notify.contains(&1) && notify.contains(&2));
    assert_eq!(split_msgs(&guest_recv(&mut s, 2)).len(), 1);
    let first = split_msgs(&guest_recv(&mut s, 1)).len();
    assert!(first <= cfg.requests_per_poll && first < n);
    let mut total = first;
    while total < n {
        s.poll();
        total += split_msgs(&guest_recv(&mut s, 1)).len();
    }
    assert_eq!(total, n);
}

#[test]
fn broken_ring_indices_end_the_connection() {
    let mut s = server();
    with_ring(&mut s, 1, 0);
    ring_mem(&mut s, 1).store_u32(ring::REQ_PROD, 2000);
    s.poll();
    assert!(s.connection(1).unwrap().broken);
    assert_eq!(
        ring_mem(&mut s, 1).load_u32(ring::ERROR),
        ring::ERROR_RINGIDX
    );
    // Others are unaffected.
    with_ring(&mut s, 2, 7);
    guest_send(&mut s, 2, &encode(MsgType::GetDomainPath, 2, 0, &z("2")));
    assert_eq!(s.poll(), vec![2]);
}

#[test]
fn oversized_request_on_the_ring_is_a_protocol_error() {
    let mut s = server();
    with_ring(&mut s, 1, 0);
    let mut m = raw(MsgType::Write as u32, 3, 0, b"");
    m[12..16].copy_from_slice(&5000u32.to_le_bytes());
    guest_send(&mut s, 1, &m);
    s.poll();
    let msgs = split_msgs(&guest_recv(&mut s, 1));
    assert_eq!((msgs[0].0.ty, msgs[0].0.req_id), (16, 3));
    assert_eq!(msgs[0].1, z("E2BIG"));
    assert_eq!(ring_mem(&mut s, 1).load_u32(ring::ERROR), ring::ERROR_PROTO);
    assert!(s.connection(1).unwrap().broken);
}

#[test]
fn watch_events_reach_the_ring() {
    let mut s = server();
    with_ring(&mut s, 1, 100);
    guest_send(
        &mut s,
        1,
        &encode(MsgType::Watch, 8, 0, &zz(&["name", "tok"])),
    );
    s.poll();
    let msgs = split_msgs(&guest_recv(&mut s, 1));
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[1].1, zz(&["name", "tok"]));
    s.submit(
        0,
        &encode(MsgType::Write, 1, 0, &wv("/local/domain/1/name", "n")),
    );
    assert_eq!(s.poll(), vec![1]);
    let msgs = split_msgs(&guest_recv(&mut s, 1));
    assert_eq!(
        (msgs[0].0.ty, msgs[0].1.clone()),
        (15, zz(&["name", "tok"]))
    );
}

// ---- Depth (XSA-418) ----

/// The toolstack's caller, as the store API sees it.
fn toolstack() -> super::ops::Caller {
    super::ops::Caller {
        domid: 0,
        privileged: true,
        max_nodes: 1000,
        max_value: 2048,
        max_perms: 5,
        max_memory: 128 << 10,
        reserved: 0,
        toolstack: 0,
    }
}

/// xenstored's delete recursed once per level until XSA-418 made its tree
/// walk iterative; so must this one be. 5,000 levels (past the wire's
/// path limit, as the toolstack could build them through the store API)
/// go on the driver domain's 64 KiB stack, in the live store and in a
/// transaction.
#[test]
fn deep_tree_removal_needs_no_stack_per_level() {
    use super::ops;
    use super::store::Store;
    use super::transaction::{Transaction, TxView};
    const LEVELS: usize = 5000;
    let mut store = Store::new(0);
    ops::write(&mut store, &toolstack(), &"/d".repeat(LEVELS), b"x").unwrap();
    assert_eq!(store.len(), LEVELS + 1);
    let small_stack = std::thread::Builder::new().stack_size(64 * 1024);
    let (store, live, in_tx) = small_stack
        .spawn(move || {
            let mut tx = Transaction::default();
            let in_tx = ops::rm(
                &mut TxView {
                    store: &store,
                    tx: &mut tx,
                    limit: None,
                },
                &toolstack(),
                "/d",
            )
            .unwrap()
            .len();
            let live = ops::rm(&mut store, &toolstack(), "/d").unwrap().len();
            (store, live, in_tx)
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!((live, in_tx), (LEVELS, LEVELS), "one change per node");
    assert_eq!(store.len(), 1);
    store.check_invariants().unwrap();
}

// ---- Memory (XSA-326) ----

/// `server()` plus a directory domain 1 owns, `/local/domain/1/data`
/// (as libxl's rwperm nodes), so it can create nodes.
fn server_with_data() -> Srv {
    let mut s = server();
    ok(&mut s, 0, MsgType::Mkdir, 0, &z("/local/domain/1/data"));
    ok(
        &mut s,
        0,
        MsgType::SetPerms,
        0,
        &zz(&["/local/domain/1/data", "n1"]),
    );
    s
}

/// The errno of a reply, or None if it succeeded.
fn refused(out: &[(Header, Vec<u8>)]) -> Option<Errno> {
    let (h, body) = &out[0];
    (h.ty == MsgType::Error as u32).then(|| {
        *Errno::ALL
            .iter()
            .find(|e| z(e.name()) == *body)
            .expect("a known error name")
    })
}

/// A node name near the relative path limit and a full-size value: about
/// 4 KiB a node, the shape of the heap-exhaustion report.
fn big_node(tag: &str, i: usize) -> Vec<u8> {
    let name = format!("data/{tag}{i:04}{}", "n".repeat(1990));
    wv(&name, &"v".repeat(2048))
}

#[test]
fn memory_quota_stops_one_domain_and_the_others_are_served() {
    let mut s = server_with_data();
    let quota = Config::default().max_memory;
    let mut stop = None;
    for i in 0..1000 {
        let out = call(&mut s, 1, MsgType::Write, 0, &big_node("a", i));
        if let Some(e) = refused(&out) {
            stop = Some((i, e));
            break;
        }
    }
    let (written, e) = stop.expect("a domain cannot write without bound");
    assert_eq!(e, Errno::Enomem, "xenstored domain_memory_add: ENOMEM");
    assert!(written * 4096 <= quota, "{written} nodes of 4 KiB");
    assert!(s.charged(1) <= quota);
    // Small requests of its own still work where they fit; others' do.
    ok(&mut s, 1, MsgType::Read, 0, &z("data"));
    ok(&mut s, 2, MsgType::GetDomainPath, 0, &z("2"));
    assert_eq!(ok(&mut s, 2, MsgType::Read, 0, &z("/local/domain/2")), b"");
    // Removing frees the quota again.
    let full = s.charged(1);
    ok(&mut s, 1, MsgType::Rm, 0, &z("data"));
    assert!(s.charged(1) < full - written * 4096);
    ok(&mut s, 0, MsgType::Mkdir, 0, &z("/local/domain/1/data"));
    ok(
        &mut s,
        0,
        MsgType::SetPerms,
        0,
        &zz(&["/local/domain/1/data", "n1"]),
    );
    ok(&mut s, 1, MsgType::Write, 0, &big_node("a", 0));
    s.store().check_invariants().unwrap();
}

#[test]
fn ten_filled_transactions_and_an_eleventh_refused() {
    let mut s = server_with_data();
    let quota = Config::default().max_memory;
    let txs: Vec<u32> = (0..Config::default().max_transactions)
        .map(|_| tx_start(&mut s, 1))
        .collect();
    assert_eq!(
        err(&mut s, 1, MsgType::TransactionStart, 0, b"\0"),
        Errno::Enospc
    );
    // Fill all ten at once, a node each in turn, until each has failed.
    let mut open: Vec<u32> = txs.clone();
    for i in 0..1000 {
        if open.is_empty() {
            break;
        }
        let tx = open[i % open.len()];
        let out = call(&mut s, 1, MsgType::Write, tx, &big_node("t", i));
        if let Some(e) = refused(&out) {
            assert_eq!(e, Errno::Enomem, "write {i} in transaction {tx}");
            open.retain(|&t| t != tx);
        }
        assert!(
            s.charged(1) <= quota,
            "{} bytes after write {i}",
            s.charged(1)
        );
        // Other domains are served meanwhile.
        ok(&mut s, 2, MsgType::GetDomainPath, 0, &z("2"));
    }
    assert!(open.is_empty(), "every transaction ran out");
    // A failed transaction serves nothing and commits nothing
    // (transaction.c: ENOMEM); aborting it works.
    let tx = txs[0];
    assert_eq!(err(&mut s, 1, MsgType::Read, tx, &z("data")), Errno::Enomem);
    assert_eq!(
        err(&mut s, 1, MsgType::TransactionEnd, tx, b"T\0"),
        Errno::Enomem
    );
    ok(&mut s, 1, MsgType::TransactionEnd, txs[1], b"F\0");
    assert_eq!(s.connection(1).unwrap().transaction_count(), 8);
    assert_eq!(ok(&mut s, 1, MsgType::Directory, 0, &z("data")), b"");
    s.store().check_invariants().unwrap();
}

/// A snapshot of the whole store, to show nothing changed.
fn snapshot(s: &Srv) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    s.store()
        .iter()
        .map(|(p, n)| (p.clone(), n.value.clone(), n.perms.to_wire()))
        .collect()
}

fn tx_start(s: &mut Srv, d: u16) -> u32 {
    let id = ok(s, d, MsgType::TransactionStart, 0, b"\0");
    core::str::from_utf8(&id[..id.len() - 1])
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn commit_over_the_node_quota_is_refused_and_changes_nothing() {
    let mut s = Srv::new(Config {
        max_nodes: 10,
        ..Config::default()
    });
    s.introduce(1, None);
    ok(&mut s, 0, MsgType::Mkdir, 0, &z("/local/domain/1"));
    ok(
        &mut s,
        0,
        MsgType::SetPerms,
        0,
        &zz(&["/local/domain/1", "n1"]),
    );
    // Disjoint parents, so the two do not conflict. Each transaction alone
    // fits (3 + 4 nodes); both together do not.
    ok(&mut s, 1, MsgType::Mkdir, 0, &z("a"));
    ok(&mut s, 1, MsgType::Mkdir, 0, &z("b"));
    let (a, b) = (tx_start(&mut s, 1), tx_start(&mut s, 1));
    for i in 0..4 {
        ok(&mut s, 1, MsgType::Write, a, &wv(&format!("a/{i}"), "1"));
        ok(&mut s, 1, MsgType::Write, b, &wv(&format!("b/{i}"), "1"));
    }
    ok(&mut s, 1, MsgType::TransactionEnd, a, b"T\0");
    let before = snapshot(&s);
    // transaction.c `do_transaction_end`: acc_fix_domains → ENOSPC.
    assert_eq!(
        err(&mut s, 1, MsgType::TransactionEnd, b, b"T\0"),
        Errno::Enospc
    );
    assert_eq!(snapshot(&s), before);
    assert_eq!(s.connection(1).unwrap().transaction_count(), 0);
    s.store().check_invariants().unwrap();
}

#[test]
fn commit_over_the_memory_quota_is_refused_and_changes_nothing() {
    let mut s = server_with_data();
    let tx = tx_start(&mut s, 1);
    for i in 0..8 {
        ok(&mut s, 1, MsgType::Write, tx, &big_node("t", i));
    }
    // Meanwhile the toolstack (no quota) writes nodes domain 1 owns (they
    // inherit their directory's owner), elsewhere, so nothing conflicts.
    ok(&mut s, 0, MsgType::Mkdir, 0, &z("/local/domain/1/more"));
    ok(
        &mut s,
        0,
        MsgType::SetPerms,
        0,
        &zz(&["/local/domain/1/more", "n1"]),
    );
    for i in 0..40 {
        let p = format!("/local/domain/1/more/big{i}");
        ok(&mut s, 0, MsgType::Write, 0, &wv(&p, &"x".repeat(3000)));
    }
    let before = snapshot(&s);
    assert_eq!(
        err(&mut s, 1, MsgType::TransactionEnd, tx, b"T\0"),
        Errno::Enomem
    );
    assert_eq!(snapshot(&s), before);
    s.store().check_invariants().unwrap();
}

#[test]
fn watches_are_bounded_by_count_and_by_memory() {
    let mut s = server();
    // Count: xenstored's 128, then ENOSPC.
    for i in 0..128 {
        let out = call(
            &mut s,
            1,
            MsgType::Watch,
            0,
            &zz(&["name", &format!("{i}")]),
        );
        assert_eq!(refused(&out), None, "watch {i}");
    }
    assert_eq!(
        err(&mut s, 1, MsgType::Watch, 0, &zz(&["name", "x"])),
        Errno::Enospc
    );
    // Memory: long tokens count against the memory quota (watch.c
    // `add_watch`: domain_memory_add → ENOMEM) long before 128.
    let token = "t".repeat(3000);
    let mut stop = None;
    for i in 0..128 {
        let out = call(
            &mut s,
            2,
            MsgType::Watch,
            0,
            &zz(&["name", &format!("{token}{i}")]),
        );
        if let Some(e) = refused(&out) {
            stop = Some((i, e));
            break;
        }
    }
    let (n, e) = stop.expect("long-token watches are bounded");
    assert_eq!(e, Errno::Enomem);
    assert!(n * 3000 <= Config::default().max_memory);
    assert!(s.charged(2) <= Config::default().max_memory);
    // Unwatching gives the memory back.
    ok(
        &mut s,
        2,
        MsgType::Unwatch,
        0,
        &zz(&["name", &format!("{token}0")]),
    );
    ok(
        &mut s,
        2,
        MsgType::Watch,
        0,
        &zz(&["name", &format!("{token}x")]),
    );
}

#[test]
fn queued_watch_events_are_bounded_by_memory() {
    let mut s = server();
    ok(
        &mut s,
        0,
        MsgType::Write,
        0,
        &wv("/local/domain/1/name", "x"),
    );
    let token = "t".repeat(3000);
    for i in 0..20 {
        call(
            &mut s,
            1,
            MsgType::Watch,
            0,
            &zz(&["name", &format!("{token}{i}")]),
        );
    }
    // Domain 1 does not read: each write fires 20 events of 3 KiB.
    for i in 0..20 {
        ok(
            &mut s,
            0,
            MsgType::Write,
            0,
            &wv("/local/domain/1/name", &format!("{i}")),
        );
    }
    assert!(s.charged(1) <= Config::default().max_memory);
    let queued: usize = s.take_output(1).iter().map(|m| m.len()).sum();
    assert!(
        queued <= Config::default().max_memory,
        "{queued} bytes queued"
    );
    assert!(s.connection(1).unwrap().events_dropped > 0);
    // Once read, events flow again.
    ok(
        &mut s,
        0,
        MsgType::Write,
        0,
        &wv("/local/domain/1/name", "y"),
    );
    assert_eq!(events(&mut s, 1).len(), 20);
}

#[test]
fn a_transaction_touches_a_bounded_number_of_nodes() {
    let mut s = Srv::new(Config {
        max_transaction_nodes: 5,
        ..Config::default()
    });
    s.introduce(1, None);
    for i in 0..6 {
        let p = format!("/local/domain/1/n{i}");
        ok(&mut s, 0, MsgType::Write, 0, &wv(&p, "v"));
        ok(&mut s, 0, MsgType::SetPerms, 0, &zz(&[&p, "n1"]));
    }
    let tx = tx_start(&mut s, 1);
    for i in 0..5 {
        ok(&mut s, 1, MsgType::Read, tx, &z(&format!("n{i}")));
    }
    // transaction.c `access_node`: quota "transaction-nodes" → ENOSPC,
    // and the transaction has failed.
    assert_eq!(err(&mut s, 1, MsgType::Read, tx, &z("n5")), Errno::Enospc);
    assert_eq!(
        err(&mut s, 1, MsgType::TransactionEnd, tx, b"T\0"),
        Errno::Enomem
    );
    // The toolstack's transactions are not limited.
    let tx = tx_start(&mut s, 0);
    for i in 0..6 {
        ok(
            &mut s,
            0,
            MsgType::Read,
            tx,
            &z(&format!("/local/domain/1/n{i}")),
        );
    }
    ok(&mut s, 0, MsgType::TransactionEnd, tx, b"T\0");
}
