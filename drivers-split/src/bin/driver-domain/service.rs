//! The driver domain's work: start of day for every guest, then one loop serving consoles, typed input and the XenStore.

use crate::blk::Vbds;
use crate::net::Nets;
use crate::page::MappedPage;
use crate::{log, serial, xen};
use alloc::vec::Vec;
use drivers_split::console::{ConsoleRing, InputSwitch, Key, LineTagger};
use drivers_split::domains::{Guest, Table};
use drivers_split::toolstack;
use drivers_split::xenstore::{Config, Ring, Server};
use xen_abi::event_channel::VIRQ_TIMER;
use xen_abi::grant_table::{GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE};

/// How often COM1 is looked at for typed input, and how a partial line
/// (a shell prompt) ages: the UART's interrupt is not routed to this domain.
const TICK_NS: u64 = 20_000_000;
/// A partial line is shown after this many quiet ticks (100 ms).
const PARTIAL_TICKS: u32 = 5;
/// How soon to look again when console output waits for a busy UART (its
/// interrupt is not routed here either): some ten bytes at 115200 baud.
const DRAIN_NS: u64 = 1_000_000;

/// One guest's backends.
struct Backend {
    guest: Guest,
    console: ConsoleRing<MappedPage>,
    console_port: u32,
    store_port: u32,
    tagger: LineTagger,
    quiet_ticks: u32,
}

/// Maps the guest's console and XenStore pages (its reserved grant refs 0
/// and 1), binds its two unbound channels, writes its XenStore entries and
/// connects its XenStore ring.
fn connect(
    server: &mut Server<MappedPage>,
    g: &Guest,
    slot: usize,
) -> Result<Backend, &'static str> {
    toolstack::apply(server, &toolstack::guest_entries(g))
        .map_err(|_| "toolstack entries refused")?;
    let (console, _) = xen::map_grant(g.domid, GNTTAB_RESERVED_CONSOLE, xen::window(slot, 0))
        .map_err(|_| "console page grant not mappable")?;
    let (store, _) = xen::map_grant(g.domid, GNTTAB_RESERVED_XENSTORE, xen::window(slot, 1))
        .map_err(|_| "XenStore page grant not mappable")?;
    let console_port = xen::bind_interdomain(g.domid, g.console_port)
        .map_err(|_| "console channel not bindable")?;
    let store_port = xen::bind_interdomain(g.domid, g.store_port)
        .map_err(|_| "XenStore channel not bindable")?;
    xen::unmask(console_port);
    xen::unmask(store_port);
    // SAFETY: both pages were just grant-mapped at these addresses and stay
    // mapped while this domain lives.
    let (console, store) = unsafe { (MappedPage::new(console), MappedPage::new(store)) };
    server.introduce(g.domid, Some(Ring::new(store)));
    let dir = alloc::format!("/local/domain/0/backend/console/{}/0", g.domid);
    // XenbusStateConnected (io/xenbus.h).
    let _ = toolstack::set_state(server, &dir, 4);
    Ok(Backend {
        guest: g.clone(),
        console: ConsoleRing::new(console),
        console_port,
        store_port,
        tagger: LineTagger::new(&g.name),
        quiet_ticks: 0,
    })
}

/// `crash-on=TEXT`: end this domain on purpose when a guest prints TEXT (a
/// test of surviving a driver-domain crash).
fn crash_text(cmdline: &str) -> Option<&str> {
    cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("crash-on="))
}

fn crash_on_purpose() -> ! {
    // The line that asked for it, and this one, go out first.
    serial::unbuffer();
    log!("crashing on purpose (crash-on=)");
    // SAFETY: deliberately reads a guest-physical address this domain does
    // not own (entry.S maps it in this domain's own tables): the
    // hypervisor must end this domain and nothing else.
    let v = unsafe { core::ptr::read_volatile(0x4000_0000 as *const u64) };
    log!("read {v:#x} outside RAM and lived");
    crate::hypercall::shutdown(xen_abi::hypercall::SHUTDOWN_CRASH)
}

pub fn run(cmdline: &str, table: Table, module: (u64, usize)) -> ! {
    let guests = table.guests;
    let crash = crash_text(cmdline);
    let mut server: Server<MappedPage> = Server::new(Config::default());
    if toolstack::apply(&mut server, &toolstack::driver_entries()).is_err() {
        log!("fatal: the driver domain's own XenStore entries were refused");
        crate::hypercall::shutdown(xen_abi::hypercall::SHUTDOWN_CRASH);
    }
    let mut backends: Vec<Backend> = Vec::new();
    for (slot, g) in guests.iter().enumerate() {
        match connect(&mut server, g, slot) {
            Ok(b) => {
                log!(
                    "domain {} ({}): console port {}, XenStore port {}, {} KiB",
                    g.domid,
                    g.name,
                    b.console_port,
                    b.store_port,
                    g.memory_kib
                );
                backends.push(b);
            }
            Err(why) => log!("domain {} ({}): not served: {why}", g.domid, g.name),
        }
    }
    let mut vbds = Vbds::setup(cmdline, &guests, &table.resources, module, &mut server);
    let mut nets = Nets::setup(cmdline, &guests, &mut server);
    log!("xenstore-ls -p:");
    for line in toolstack::listing(server.store(), "/") {
        log!("{line}");
    }
    let timer = xen::bind_virq(VIRQ_TIMER).ok();
    if let Some(port) = timer {
        xen::unmask(port);
    }
    let mut input = InputSwitch::new(backends.len());
    let mut command = CommandLine::default();
    if let Some(b) = backends.first() {
        log!(
            "typed input goes to {}; Ctrl-A three times moves it to the next guest",
            b.guest.name
        );
    }
    // From here on console output is buffered and the loop drains it: a
    // guest's output must not make this domain wait for the UART.
    serial::buffer(backends.iter().map(|b| b.guest.name.as_str()));
    let mut next_tick = 0;
    // Whether the tick must be set again: at the start, and whenever the
    // timer's port fired (the hypervisor forgets a deadline it raised).
    // Its clock and this domain's may differ by a little, so `now` alone
    // could read just short of a deadline that already fired, and leave
    // no tick armed.
    let mut rearm = true;
    // The timer's deadline is the console drain's (sooner than the tick's,
    // which it replaced); once it fired, the tick's must be put back.
    let mut drain_deadline = false;
    let mut restore_tick = false;
    let mut seen_changes = u64::MAX;
    loop {
        let fired = xen::take_pending(timer);
        if fired && core::mem::take(&mut drain_deadline) {
            restore_tick = true;
        } else {
            rearm |= fired;
        }
        let mut busy = false;
        for (i, b) in backends.iter_mut().enumerate() {
            let mut crashed = false;
            // Only what surely fits in the guest's share of the output
            // buffer: the rest waits in its ring, and the guest with it.
            let max = b.tagger.max_input(serial::guest_room(i));
            let drained = b.console.drain(max, |bytes| {
                b.tagger.feed(bytes, |line| {
                    serial::guest_line(i, line);
                    crashed |= crash.is_some_and(|t| contains(line, t.as_bytes()));
                })
            });
            if crashed {
                crash_on_purpose();
            }
            match drained {
                Ok(0) => {}
                Ok(_) => {
                    b.quiet_ticks = 0;
                    xen::send(b.console_port);
                    busy = true;
                }
                Err(_) => {}
            }
        }
        while let Some(byte) = serial::try_read() {
            match input.key(byte) {
                Key::Deliver(bytes, n) if input.at_toolstack() => {
                    for &b in &bytes[..n] {
                        if let Some(line) = command.push(b) {
                            run_command(&mut server, &guests, &line);
                        }
                    }
                }
                Key::Deliver(bytes, n) => {
                    if let Some(b) = backends.get_mut(input.focus) {
                        if b.console.push_input(&bytes[..n]).is_ok() {
                            xen::send(b.console_port);
                        }
                    }
                }
                Key::Switched(i) => {
                    if let Some(b) = backends.get(i) {
                        log!("typed input goes to {}", b.guest.name);
                    } else if input.at_toolstack() {
                        log!("typed input goes to the toolstack: mem-set <domain> <mem>");
                    }
                }
                Key::Held => {}
            }
        }
        for domid in server.poll() {
            if let Some(b) = backends.iter().find(|b| b.guest.domid == domid) {
                xen::send(b.store_port);
                busy = true;
            }
        }
        // The handshakes follow XenStore writes (the frontends', and the
        // backends' own after a ring error), so they move only when the
        // store changed: under an emulator every turn of this loop costs,
        // and a disk's request takes several. What they write back goes
        // out on the next turn.
        let changes = server.store().changes();
        if changes != seen_changes {
            seen_changes = changes;
            busy |= vbds.step(&mut server);
            busy |= nets.step(&mut server);
        }
        busy |= vbds.serve(&mut server);
        busy |= nets.serve(&mut server);
        // A budget of console output, only what the UART takes now. While
        // more waits, turn again at once rather than sleep: each turn still
        // serves every ring first, so no guest waits for the UART, and
        // Bochs' UART was seen to stop transmitting while the CPU sat in
        // HLT (its LSR stayed 0 for 2 s of a sleeping driver domain), so a
        // sleep between bytes can stall the output for good.
        busy |= serial::drain();
        if busy {
            continue;
        }
        let now = xen::now_ns();
        if timer.is_some() && (rearm || now >= next_tick) {
            rearm = false;
            (restore_tick, drain_deadline) = (false, false);
            next_tick = now + TICK_NS;
            xen::set_timer(next_tick);
            for (i, b) in backends.iter_mut().enumerate() {
                if b.tagger.has_partial() {
                    b.quiet_ticks += 1;
                    if b.quiet_ticks >= PARTIAL_TICKS {
                        b.tagger.flush(|line| serial::guest_line(i, line));
                    }
                }
            }
        } else if timer.is_some() && core::mem::take(&mut restore_tick) {
            // Never a deadline in the past (see `rearm`): the tick runs
            // at most DRAIN_NS late.
            xen::set_timer(next_tick.max(now + DRAIN_NS));
        }
        if timer.is_some() && serial::pending() {
            // The UART was busy (or a prompt was just queued): come back
            // for the rest soon rather than at the tick, never spinning on
            // the UART meanwhile.
            xen::set_timer(now + DRAIN_NS);
            drain_deadline = true;
        }
        xen::idle();
    }
}

/// A toolstack command being typed: printable bytes up to CR or LF.
#[derive(Default)]
struct CommandLine(Vec<u8>);

impl CommandLine {
    /// The finished line, at CR or LF; longer lines than a command needs are cut.
    fn push(&mut self, b: u8) -> Option<alloc::string::String> {
        match b {
            b'\r' | b'\n' => {
                let line = core::mem::take(&mut self.0);
                Some(alloc::string::String::from_utf8_lossy(&line).into_owned())
            }
            0x20..=0x7e if self.0.len() < 128 => {
                self.0.push(b);
                None
            }
            _ => None,
        }
    }
}

/// Runs one toolstack command and says what came of it.
fn run_command(server: &mut Server<MappedPage>, guests: &[Guest], line: &str) {
    match toolstack::parse_command(line) {
        Ok(toolstack::Command::MemSet { domain, kib }) => {
            match toolstack::mem_set(server, guests, &domain, kib) {
                Ok(done) => log!("{done}"),
                Err(why) => log!("{why}"),
            }
        }
        Err("") => {}
        Err(why) => log!("{why}"),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
