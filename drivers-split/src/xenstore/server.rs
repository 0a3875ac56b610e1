//! The XenStore server: per-domain connections, request dispatch, watch delivery, quotas and fair polling (xenstored core.c, domain.c).

use super::ops::{self, Caller};
use super::path::{self, canonicalize, INTRODUCE_DOMAIN, RELEASE_DOMAIN};
use super::perms::Perms;
use super::ring::{MessageReader, ReadError, Ring, RingMemory, ERROR_PROTO, ERROR_RINGIDX};
use super::store::{Store, View};
use super::transaction::{CommitQuota, Transaction, TxLimit, TxView};
use super::watch::{Change, Watch};
use super::wire::{
    self, encode, error_reply, one_arg, parse_domid, Errno, Header, MsgType, PAYLOAD_MAX,
};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Bytes charged per queued message besides the message (queue slot, allocator).
const MSG_OVERHEAD: usize = 32;
/// Bytes charged per watch besides its path and token.
const WATCH_OVERHEAD: usize = 64;

/// Limits. Defaults are xenstored's (domain.c `quotas`), except the
/// pending-event bound, which xenstored does not have, and the memory
/// quota, which is sized for this domain's heap (see `max_memory`).
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// The toolstack domain (the driver domain): bypasses permission checks
    /// and quotas and may use INTRODUCE/RELEASE/IS_DOMAIN_INTRODUCED.
    pub privileged: u16,
    pub max_nodes: usize,
    pub max_watches: usize,
    pub max_transactions: usize,
    pub max_value: usize,
    pub max_perms: usize,
    /// Bytes a domain may hold (xenstored quota "memory", XSA-326): the
    /// nodes it owns (path, name, value, permissions and a fixed overhead
    /// each, `store::cost`), its watches, its open transactions and its
    /// queued replies and events. Past it: ENOMEM, and events are dropped.
    /// xenstored's 2.5 MB is a third of this domain's whole 8 MiB heap;
    /// 128 KiB is some ten times what a Linux guest with a disk and a NIC
    /// uses, and 8 guests at their quota hold 1 MiB (up to twice that on
    /// the heap, which rounds allocations up to powers of two).
    pub max_memory: usize,
    /// Nodes one transaction may touch (xenstored quota
    /// "transaction-nodes"); ENOSPC past it.
    pub max_transaction_nodes: usize,
    /// Watch events queued for a client that is not reading; further
    /// events are dropped and counted (`Connection::events_dropped`).
    pub max_pending_events: usize,
    /// Requests handled per connection per `poll` (fairness).
    pub requests_per_poll: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            privileged: 0,
            max_nodes: 1000,
            max_watches: 128,
            max_transactions: 10,
            max_value: 2048,
            max_perms: 5,
            max_memory: 128 << 10,
            max_transaction_nodes: 1024,
            max_pending_events: 256,
            requests_per_poll: 8,
        }
    }
}

/// An `XS_INTRODUCE` the host must act on: map `gfn` of `domid` as its
/// ring page and bind `port`, then call [`Server::attach_ring`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Introduction {
    pub domid: u16,
    pub gfn: u64,
    pub port: u32,
}

/// One client domain.
pub struct Connection<M> {
    pub domid: u16,
    ring: Option<Ring<M>>,
    reader: MessageReader,
    /// Framed messages waiting for room in the ring (or for `take_output`);
    /// true for watch events.
    out: VecDeque<(Vec<u8>, bool)>,
    /// Bytes `out` holds, as charged to the memory quota.
    out_bytes: usize,
    /// Bytes the watches hold, likewise.
    watch_bytes: usize,
    /// Bytes of `out[0]` already written.
    out_off: usize,
    pending_events: usize,
    pub watches: Vec<Watch>,
    transactions: BTreeMap<u32, Transaction>,
    next_tx: u32,
    /// A protocol error ended this connection (until it is re-introduced).
    pub broken: bool,
    pub events_dropped: u64,
}

impl<M> Connection<M> {
    fn new(domid: u16, ring: Option<Ring<M>>) -> Self {
        Connection {
            domid,
            ring,
            reader: MessageReader::default(),
            out: VecDeque::new(),
            out_bytes: 0,
            watch_bytes: 0,
            out_off: 0,
            pending_events: 0,
            watches: Vec::new(),
            transactions: BTreeMap::new(),
            next_tx: 1,
            broken: false,
            events_dropped: 0,
        }
    }

    /// Queue `msg` at `at` (the back if past it), charged to the memory.
    fn queue_at(&mut self, at: usize, msg: Vec<u8>, is_event: bool) {
        self.out_bytes += MSG_OVERHEAD + msg.len();
        if is_event {
            self.pending_events += 1;
        }
        self.out.insert(at.min(self.out.len()), (msg, is_event));
    }

    /// Whether an event of `len` framed bytes may be queued (watch.c
    /// `send_event`): not too long for the wire, fewer than `max` waiting,
    /// and, with `room` (the memory quota less the nodes it owns), within
    /// it. Counted as dropped if not.
    fn event_fits(&mut self, len: usize, max: usize, room: Option<usize>) -> bool {
        let fits = len <= wire::HEADER_LEN + PAYLOAD_MAX
            && self.pending_events < max
            && room.is_none_or(|r| self.reserved(0) + MSG_OVERHEAD + len <= r);
        if !fits {
            self.events_dropped += 1;
        }
        fits
    }

    /// Bytes held besides its nodes: watches, open transactions (all but
    /// `except`), queued output.
    fn reserved(&self, except: u32) -> usize {
        let tx: usize = self
            .transactions
            .iter()
            .filter(|&(&id, _)| id != except)
            .map(|(_, t)| t.bytes())
            .sum();
        self.watch_bytes + self.out_bytes + tx
    }

    /// Open transactions.
    pub fn transaction_count(&self) -> usize {
        self.transactions.len()
    }
}

impl<M: RingMemory> Connection<M> {
    /// Move queued output into the ring. True if anything was written.
    fn flush(&mut self) -> bool {
        let Some(ring) = self.ring.as_mut() else {
            return false;
        };
        let mut wrote = false;
        while let Some((msg, _)) = self.out.front() {
            match ring.write(&msg[self.out_off..]) {
                Ok(0) => break,
                Ok(n) => {
                    wrote = true;
                    self.out_off += n;
                    if self.out_off == msg.len() {
                        if let Some((msg, is_event)) = self.out.pop_front() {
                            self.out_bytes =
                                self.out_bytes.saturating_sub(MSG_OVERHEAD + msg.len());
                            if is_event {
                                self.pending_events = self.pending_events.saturating_sub(1);
                            }
                        }
                        self.out_off = 0;
                    }
                }
                Err(_) => {
                    ring.set_error(ERROR_RINGIDX);
                    self.broken = true;
                    break;
                }
            }
        }
        wrote
    }
}

/// The server: the store and every connection.
pub struct Server<M> {
    pub config: Config,
    store: Store,
    conns: BTreeMap<u16, Connection<M>>,
    introductions: Vec<Introduction>,
    /// The initial watch event, queued right after the WATCH reply.
    after_reply: Option<Vec<u8>>,
}

impl<M: RingMemory> Server<M> {
    /// A store holding only "/" (owned by the privileged domain, "n0"),
    /// and a ring-less connection for the privileged domain itself.
    pub fn new(config: Config) -> Self {
        let mut conns = BTreeMap::new();
        conns.insert(config.privileged, Connection::new(config.privileged, None));
        Server {
            config,
            store: Store::new(config.privileged),
            conns,
            introductions: Vec::new(),
            after_reply: None,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn connection(&self, domid: u16) -> Option<&Connection<M>> {
        self.conns.get(&domid)
    }

    /// Bytes charged to `domid`'s memory quota: the nodes it owns, its
    /// watches, its open transactions, its queued output.
    pub fn charged(&self, domid: u16) -> usize {
        let extra = self.conns.get(&domid).map_or(0, |c| c.reserved(0));
        self.store.memory(domid) + extra
    }

    /// Introduce a domain from the host side (as `XS_INTRODUCE` does);
    /// replaces any previous connection of that domain. Fires
    /// `@introduceDomain`.
    pub fn introduce(&mut self, domid: u16, ring: Option<Ring<M>>) {
        self.conns.insert(domid, Connection::new(domid, ring));
        self.fire_special(INTRODUCE_DOMAIN);
    }

    /// Give an introduced domain its mapped ring page.
    pub fn attach_ring(&mut self, domid: u16, ring: Ring<M>) -> bool {
        match self.conns.get_mut(&domid) {
            Some(c) => {
                c.ring = Some(ring);
                true
            }
            None => false,
        }
    }

    /// Drop a domain's connection (watches, transactions, ring); fires
    /// `@releaseDomain`. Its nodes stay: the toolstack removes them.
    pub fn release(&mut self, domid: u16) -> Option<Ring<M>> {
        if domid == self.config.privileged {
            return None;
        }
        let c = self.conns.remove(&domid)?;
        self.fire_special(RELEASE_DOMAIN);
        c.ring
    }

    /// `XS_INTRODUCE` requests waiting for the host.
    pub fn take_introductions(&mut self) -> Vec<Introduction> {
        core::mem::take(&mut self.introductions)
    }

    /// Queued output of a connection without a ring (the local toolstack
    /// connection, tests): framed replies and events, oldest first.
    pub fn take_output(&mut self, domid: u16) -> Vec<Vec<u8>> {
        match self.conns.get_mut(&domid) {
            Some(c) if c.ring.is_none() => {
                c.pending_events = 0;
                c.out_bytes = 0;
                c.out.drain(..).map(|(m, _)| m).collect()
            }
            _ => Vec::new(),
        }
    }

    /// One request from the local toolstack (the privileged domain's own
    /// connection, no ring): its reply payload, or the error it got.
    /// Watch events queued for the toolstack are dropped.
    pub fn local(&mut self, ty: MsgType, payload: &[u8]) -> Result<Vec<u8>, Errno> {
        let me = self.config.privileged;
        let h = Header {
            ty: ty as u32,
            req_id: 0,
            tx_id: 0,
            len: payload.len() as u32,
        };
        self.handle(me, h, payload);
        let mut reply = Err(Errno::Eio);
        for msg in self.take_output(me) {
            let Some(head) = msg.get(..wire::HEADER_LEN) else {
                continue;
            };
            let head = Header::parse(head.try_into().expect("header length"));
            let body = msg[wire::HEADER_LEN..].to_vec();
            if head.ty == MsgType::Error as u32 {
                let name = body.strip_suffix(&[0]).unwrap_or(&body);
                let e = Errno::ALL.into_iter().find(|e| e.name().as_bytes() == name);
                reply = Err(e.unwrap_or(Errno::Eio));
            } else if head.ty == ty as u32 {
                reply = Ok(body);
            }
        }
        reply
    }

    /// Handle one framed message (header + payload) from `domid`, as if
    /// read from its ring. Malformed framing gets an error reply.
    pub fn submit(&mut self, domid: u16, msg: &[u8]) {
        let mut src = msg;
        let mut reader = MessageReader::default();
        match reader.poll(&mut src) {
            Ok(Some(m)) => self.handle(domid, m.header, &m.payload),
            Ok(None) => {
                let mut h = [0u8; 16];
                let n = msg.len().min(16);
                h[..n].copy_from_slice(&msg[..n]);
                let h = Header::parse(&h);
                self.reply_err(domid, h, Errno::Einval);
            }
            Err(ReadError::TooLong(h)) => self.reply_err(domid, h, Errno::E2big),
            Err(ReadError::BadIndex) => {}
        }
    }

    /// Serve every connection with a ring: flush output, handle at most
    /// `requests_per_poll` requests each (a flooding guest cannot starve
    /// the others), flush again. Returns the domains whose event channel
    /// must be notified (their ring moved: replies written or requests
    /// consumed). Call again when it returns busy domains or on any event.
    pub fn poll(&mut self) -> Vec<u16> {
        let mut notify = Vec::new();
        let ids: Vec<u16> = self.conns.keys().copied().collect();
        for id in ids {
            let mut moved = false;
            for _ in 0..self.config.requests_per_poll {
                let Some(c) = self.conns.get_mut(&id) else {
                    break;
                };
                if c.broken || c.ring.is_none() {
                    break;
                }
                moved |= c.flush();
                // Back-pressure: a client that does not read its replies
                // gets no more requests served.
                if !c.out.is_empty() {
                    break;
                }
                let Some(ring) = c.ring.as_mut() else { break };
                let before = ring.pending_requests().unwrap_or(0);
                let r = c.reader.poll(ring);
                let after = c.ring.as_ref().and_then(|r| r.pending_requests().ok());
                moved |= after != Some(before);
                match r {
                    Ok(Some(m)) => self.handle(id, m.header, &m.payload),
                    Ok(None) => break,
                    Err(e) => {
                        self.fail(id, e);
                        break;
                    }
                }
            }
            if moved {
                notify.push(id);
            }
        }
        for (id, c) in self.conns.iter_mut() {
            if !c.broken && c.flush() && !notify.contains(id) {
                notify.push(*id);
            }
        }
        notify
    }

    fn fail(&mut self, id: u16, e: ReadError) {
        if let ReadError::TooLong(h) = e {
            self.reply_err(id, h, Errno::E2big);
        }
        if let Some(c) = self.conns.get_mut(&id) {
            c.flush();
            c.broken = true;
            let code = match e {
                ReadError::BadIndex => ERROR_RINGIDX,
                ReadError::TooLong(_) => ERROR_PROTO,
            };
            if let Some(r) = c.ring.as_mut() {
                r.set_error(code);
            }
        }
    }

    /// The caller `domid` (which must be connected), holding `reserved`
    /// bytes besides its nodes.
    fn caller(&self, domid: u16, reserved: usize) -> Caller {
        Caller {
            domid,
            privileged: domid == self.config.privileged,
            max_nodes: self.config.max_nodes,
            max_value: self.config.max_value,
            max_perms: self.config.max_perms,
            max_memory: self.config.max_memory,
            reserved,
            toolstack: self.config.privileged,
        }
    }

    /// Queue a reply. Replies are charged but never refused: a client gets
    /// at most one at a time past its ring (`poll` serves no request while
    /// output waits), and an error must reach it (core.c `send_reply`).
    fn push(&mut self, domid: u16, msg: Vec<u8>) {
        if let Some(c) = self.conns.get_mut(&domid) {
            c.queue_at(usize::MAX, msg, false);
        }
    }

    fn reply_err(&mut self, domid: u16, h: Header, e: Errno) {
        self.push(domid, error_reply(h.req_id, h.tx_id, e));
    }

    /// Process one request from `domid` (which must be connected): the
    /// reply (type echoed, or ERROR) and any watch events are queued.
    pub fn handle(&mut self, domid: u16, h: Header, payload: &[u8]) {
        // Events the request fires go straight to their connections; on
        // the requester's own they must follow its reply, which goes here.
        let Some(mark) = self.conns.get(&domid).map(|c| c.out.len()) else {
            return;
        };
        let reply = match self.dispatch(domid, h, payload) {
            // core.c `send_reply`: too long for the wire → E2BIG.
            Ok((_, body)) if body.len() > PAYLOAD_MAX => {
                error_reply(h.req_id, h.tx_id, Errno::E2big)
            }
            Ok((ty, body)) => encode(ty, h.req_id, h.tx_id, &body),
            Err(e) => error_reply(h.req_id, h.tx_id, e),
        };
        let initial = self.after_reply.take();
        let privileged = domid == self.config.privileged;
        let (max_events, max_memory) = (self.config.max_pending_events, self.config.max_memory);
        let nodes = self.store.memory(domid);
        if let Some(c) = self.conns.get_mut(&domid) {
            c.queue_at(mark, reply, false);
            if let Some(ev) = initial {
                let room = (!privileged).then(|| max_memory.saturating_sub(nodes));
                if c.event_fits(ev.len(), max_events, room) {
                    c.queue_at(mark + 1, ev, true);
                }
            }
        }
    }

    fn dispatch(&mut self, domid: u16, h: Header, p: &[u8]) -> Result<(MsgType, Vec<u8>), Errno> {
        use MsgType::*;
        let ok = || b"OK\0".to_vec();
        let ty = MsgType::from_u32(h.ty).ok_or(Errno::Enosys)?;
        let privileged = domid == self.config.privileged;
        // core.c `wire_funcs`: XS_FLAG_PRIV types.
        if matches!(
            ty,
            Control
                | Introduce
                | Release
                | IsDomainIntroduced
                | Resume
                | SetTarget
                | SetFeature
                | GetQuota
                | SetQuota
        ) && !privileged
        {
            return Err(Errno::Eacces);
        }
        // Every type but WATCH/UNWATCH (XS_FLAG_NOTID) names its transaction.
        if !matches!(ty, Watch | Unwatch) && h.tx_id != 0 {
            let c = self.conns.get(&domid).ok_or(Errno::Einval)?;
            if !c.transactions.contains_key(&h.tx_id) {
                return Err(Errno::Enoent);
            }
        }
        let body = match ty {
            Read | Directory | GetPerms | Write | Mkdir | Rm | SetPerms => {
                return self.node_op(domid, ty, h.tx_id, p).map(|b| (ty, b));
            }
            Watch => self.watch(domid, p)?,
            Unwatch => self.unwatch(domid, p)?,
            TransactionStart => self.tx_start(domid, h.tx_id)?,
            TransactionEnd => self.tx_end(domid, h.tx_id, p)?,
            GetDomainPath => {
                let d = parse_domid(one_arg(p)?)?;
                let mut v = path::home(d).into_bytes();
                v.push(0);
                v
            }
            ResetWatches => {
                let c = self.conns.get_mut(&domid).ok_or(Errno::Einval)?;
                c.watches.clear();
                c.watch_bytes = 0;
                c.transactions.clear();
                ok()
            }
            Introduce => self.do_introduce(p)?,
            Release => {
                let d = parse_domid(one_arg(p)?)?;
                if d == self.config.privileged {
                    return Err(Errno::Einval);
                }
                // domain.c `find_connected_domain`: unknown → ENOENT.
                if !self.conns.contains_key(&d) {
                    return Err(Errno::Enoent);
                }
                self.conns.remove(&d);
                self.fire_special(RELEASE_DOMAIN);
                ok()
            }
            IsDomainIntroduced => {
                let d = parse_domid(one_arg(p)?)?;
                if self.conns.contains_key(&d) {
                    b"T\0".to_vec()
                } else {
                    b"F\0".to_vec()
                }
            }
            _ => return Err(Errno::Enosys),
        };
        Ok((ty, body))
    }

    fn do_introduce(&mut self, p: &[u8]) -> Result<Vec<u8>, Errno> {
        let (v, n) = wire::strings::<3>(p);
        if n < 3 {
            return Err(Errno::Einval);
        }
        let domid = parse_domid(v[0])?;
        let gfn = core::str::from_utf8(v[1])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(Errno::Einval)?;
        let port = wire::parse_u32(v[2])
            .filter(|&p| p > 0)
            .ok_or(Errno::Einval)?;
        if domid == self.config.privileged {
            return Err(Errno::Einval);
        }
        if let alloc::collections::btree_map::Entry::Vacant(e) = self.conns.entry(domid) {
            e.insert(Connection::new(domid, None));
            self.fire_special(INTRODUCE_DOMAIN);
            self.introductions.push(Introduction { domid, gfn, port });
        }
        Ok(b"OK\0".to_vec())
    }

    fn node_op(&mut self, domid: u16, ty: MsgType, tx_id: u32, p: &[u8]) -> Result<Vec<u8>, Errno> {
        let reserved = self.conns.get(&domid).ok_or(Errno::Einval)?.reserved(tx_id);
        let caller = self.caller(domid, reserved);
        // Argument parsing (core.c: `onearg` for one-path requests,
        // `get_strings` for WRITE and SET_PERMS).
        let (raw, rest): (&[u8], &[u8]) = match ty {
            MsgType::Write | MsgType::SetPerms => {
                let i = p.iter().position(|&b| b == 0).ok_or(Errno::Einval)?;
                (&p[..i], &p[i + 1..])
            }
            _ => (one_arg(p)?, &[]),
        };
        let abs = canonicalize(domid, raw, false)?.abs;
        let perms = if ty == MsgType::SetPerms {
            let (_, n) = wire::strings::<0>(rest);
            let mut it = rest.split(|&b| b == 0);
            Some(Perms::parse((0..n).map_while(|_| it.next()))?)
        } else {
            None
        };
        let Server {
            store,
            conns,
            config,
            ..
        } = self;
        let (reply, changes) = if tx_id != 0 {
            let c = conns.get_mut(&domid).ok_or(Errno::Einval)?;
            let tx = c.transactions.get_mut(&tx_id).ok_or(Errno::Enoent)?;
            // A failed transaction serves nothing more (transaction.c
            // `trans->fail`); ending it is all that is left.
            if let Some(e) = tx.failed() {
                return Err(e);
            }
            // It may grow into what the domain has left (XSA-326: nodes
            // in transactions count too), touching at most so many nodes.
            let limit = (!caller.privileged).then(|| TxLimit {
                nodes: config.max_transaction_nodes,
                bytes: config
                    .max_memory
                    .saturating_sub(store.memory(domid).saturating_add(reserved)),
            });
            let mut view = TxView { store, tx, limit };
            let r = run(&mut view, &caller, ty, &abs, rest, perms).map(|(reply, changes)| {
                view.record(changes);
                reply
            });
            if let Some(e) = view.tx.failed() {
                return Err(e);
            }
            (r?, Vec::new())
        } else {
            run(store, &caller, ty, &abs, rest, perms)?
        };
        self.fire(&changes);
        Ok(reply)
    }

    fn watch(&mut self, domid: u16, p: &[u8]) -> Result<Vec<u8>, Errno> {
        // Two strings; a third (depth) needs XENSTORE_SERVER_FEATURE_WATCHDEPTH,
        // which is not offered, so it is EINVAL as in watch.c `do_watch`.
        let (v, n) = wire::strings::<2>(p);
        if n != 2 {
            return Err(Errno::Einval);
        }
        let cp = canonicalize(domid, v[0], true)?;
        let max = self.config.max_watches;
        let privileged = domid == self.config.privileged;
        let room = self
            .config
            .max_memory
            .saturating_sub(self.store.memory(domid));
        let c = self.conns.get_mut(&domid).ok_or(Errno::Einval)?;
        if c.watches.iter().any(|w| w.abs == cp.abs && w.token == v[1]) {
            return Err(Errno::Eexist);
        }
        if !privileged && c.watches.len() >= max {
            return Err(Errno::Enospc);
        }
        // watch.c `add_watch`: the path and token count against the
        // domain's memory (ENOMEM).
        let cost = WATCH_OVERHEAD + cp.abs.len() + v[1].len();
        if !privileged && c.reserved(0).saturating_add(cost) > room {
            return Err(Errno::Enomem);
        }
        let prefix_len = if cp.relative {
            path::home(domid).len() + 1
        } else {
            0
        };
        let w = Watch {
            abs: cp.abs,
            token: ops::try_copy(v[1])?,
            prefix_len,
        };
        // The reply goes first, then the initial event (watch.c: "We fire
        // once up front"), with the path as registered and the exact token.
        let ev = encode(MsgType::WatchEvent, 0, 0, &w.event_payload(&w.abs));
        c.watches.try_reserve(1).map_err(|_| Errno::Enomem)?;
        c.watches.push(w);
        c.watch_bytes += cost;
        self.after_reply = Some(ev);
        Ok(b"OK\0".to_vec())
    }

    fn unwatch(&mut self, domid: u16, p: &[u8]) -> Result<Vec<u8>, Errno> {
        let (v, n) = wire::strings::<2>(p);
        if n != 2 {
            return Err(Errno::Einval);
        }
        let abs = canonicalize(domid, v[0], true)?.abs;
        let c = self.conns.get_mut(&domid).ok_or(Errno::Einval)?;
        let i = c
            .watches
            .iter()
            .position(|w| w.abs == abs && w.token == v[1])
            .ok_or(Errno::Enoent)?;
        let w = c.watches.remove(i);
        let cost = WATCH_OVERHEAD + w.abs.len() + w.token.len();
        c.watch_bytes = c.watch_bytes.saturating_sub(cost);
        Ok(b"OK\0".to_vec())
    }

    fn tx_start(&mut self, domid: u16, tx_id: u32) -> Result<Vec<u8>, Errno> {
        // transaction.c: no nesting (EBUSY), quota (ENOSPC).
        if tx_id != 0 {
            return Err(Errno::Ebusy);
        }
        let max = self.config.max_transactions;
        let privileged = domid == self.config.privileged;
        let c = self.conns.get_mut(&domid).ok_or(Errno::Einval)?;
        if !privileged && c.transactions.len() >= max {
            return Err(Errno::Enospc);
        }
        let mut id = c.next_tx;
        while id == 0 || c.transactions.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        c.next_tx = id.wrapping_add(1);
        c.transactions.insert(id, Transaction::default());
        let mut v = format!("{id}").into_bytes();
        v.push(0);
        Ok(v)
    }

    fn tx_end(&mut self, domid: u16, tx_id: u32, p: &[u8]) -> Result<Vec<u8>, Errno> {
        let arg = one_arg(p)?;
        if arg != b"T" && arg != b"F" {
            return Err(Errno::Einval);
        }
        if tx_id == 0 {
            return Err(Errno::Enoent);
        }
        let c = self.conns.get_mut(&domid).ok_or(Errno::Einval)?;
        // Ended either way, as in transaction.c `do_transaction_end`.
        let tx = c.transactions.remove(&tx_id).ok_or(Errno::Enoent)?;
        if arg == b"T" {
            // The quotas again: the store may have grown since (XSA-326).
            let quota = (domid != self.config.privileged).then(|| CommitQuota {
                domid,
                toolstack: self.config.privileged,
                max_nodes: self.config.max_nodes,
                max_memory: self.config.max_memory,
                reserved: c.reserved(0),
            });
            let changes = tx.commit(&mut self.store, quota)?;
            self.fire(&changes);
        }
        Ok(b"OK\0".to_vec())
    }

    /// Queue `XS_WATCH_EVENT`s for every watch, of every connection, that
    /// the changes fire and whose owner may see them. Each is checked
    /// before it is built (watch.c `send_event`): an event past its
    /// connection's limits is dropped and counted, never allocated.
    fn fire(&mut self, changes: &[Change]) {
        let Server {
            config,
            store,
            conns,
            ..
        } = self;
        for c in conns.values_mut() {
            let privileged = c.domid == config.privileged;
            let room =
                (!privileged).then(|| config.max_memory.saturating_sub(store.memory(c.domid)));
            for ch in changes {
                if !ch.visible_to(c.domid, privileged) {
                    continue;
                }
                for i in 0..c.watches.len() {
                    let w = &c.watches[i];
                    if !w.matches(ch) {
                        continue;
                    }
                    let len = wire::HEADER_LEN + w.payload_len(&ch.path);
                    if c.event_fits(len, config.max_pending_events, room) {
                        let payload = c.watches[i].event_payload(&ch.path);
                        let ev = encode(MsgType::WatchEvent, 0, 0, &payload);
                        c.queue_at(usize::MAX, ev, true);
                    }
                }
            }
        }
    }

    /// `@introduceDomain` / `@releaseDomain` (domain.c
    /// `fire_special_watches`): to the privileged domain's watches only,
    /// as the special nodes are owned by dom0 with no access for others.
    fn fire_special(&mut self, name: &str) {
        self.fire(&[Change {
            path: String::from(name),
            exact: true,
            visible_via: Vec::new(),
        }]);
    }
}

/// Run one node operation on a view; (reply payload, watch changes).
fn run(
    v: &mut impl super::store::View,
    c: &Caller,
    ty: MsgType,
    abs: &str,
    value: &[u8],
    perms: Option<Perms>,
) -> Result<(Vec<u8>, Vec<Change>), Errno> {
    let ok = || b"OK\0".to_vec();
    Ok(match ty {
        MsgType::Read => (ops::read(v, c, abs)?, Vec::new()),
        MsgType::Directory => (ops::directory(v, c, abs)?, Vec::new()),
        MsgType::GetPerms => (ops::get_perms(v, c, abs)?, Vec::new()),
        MsgType::Write => (ok(), ops::write(v, c, abs, value)?),
        MsgType::Mkdir => (ok(), ops::mkdir(v, c, abs)?),
        MsgType::Rm => (ok(), ops::rm(v, c, abs)?),
        MsgType::SetPerms => (
            ok(),
            ops::set_perms(v, c, abs, perms.ok_or(Errno::Einval)?)?,
        ),
        _ => return Err(Errno::Enosys),
    })
}
