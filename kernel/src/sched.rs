//! Scheduling several domains on the one host CPU: round-robin slices from the APIC timer; blocked vCPUs cost nothing.

use crate::domain::{Domain, Others};
use crate::vmexit::{self, SliceEnd};
use crate::xen::grants;
use crate::xen::time as xen_time;

/// A domain runs at most this long before the next runnable one gets the CPU.
const SLICE_NS: u64 = 10_000_000;
/// While every domain is blocked, COM1 is looked at this often (its
/// interrupt is not routed: the PICs are masked and there is no IOAPIC driver).
const CONSOLE_POLL_NS: u64 = 10_000_000;
/// While guest output waits for COM1, it is sent on this often: a 16-byte
/// FIFO at 115200 baud empties in 1.4 ms.
const OUTPUT_POLL_NS: u64 = 1_000_000;

/// After the last guest ends, the driver domain runs on this long (in
/// system time) to send what it still buffers of the guests' consoles: it
/// writes COM1 a few hundred bytes a turn, never waiting for the UART, so a
/// guest's last lines (a panic message, say) are still in its buffer.
const DRAIN_NS: u64 = 200_000_000;

/// Runs every domain until all but the driver domain have ended, and the
/// driver domain for `DRAIN_NS` more.
pub fn run(domains: &mut [Domain]) {
    let mut next = 0;
    // Whose extended state and debug registers the CPU holds (fpu.rs, debug_regs.rs).
    let mut fpu_owner: Option<usize> = None;
    let mut drain_until: Option<u64> = None;
    loop {
        // The driver domain serves the others; it does not keep the run going.
        let live = domains
            .iter()
            .filter(|d| d.ending.is_none() && !d.driver)
            .count();
        let driver_alive = domains.iter().any(|d| d.driver && d.ending.is_none());
        let draining = live == 0 && driver_alive && {
            let until = *drain_until.get_or_insert(xen_time::now_ns() + DRAIN_NS);
            xen_time::now_ns() < until
        };
        if live == 0 && !draining {
            // The run is over: every domain's grant mappings go now, so
            // no RAM is freed while another domain's tables still map it.
            for i in 0..domains.len() {
                grants::release_mappings(domains, i);
            }
            return;
        }
        // A domain an event just woke goes first; then the next one, in
        // turn, that is not waiting (or whose wait is over).
        let count = domains.len();
        let boosted = domains.iter().position(|d| d.woken && d.ending.is_none());
        for d in domains.iter_mut() {
            d.woken = false;
        }
        let pick = boosted.or_else(|| {
            (0..count).map(|k| (next + k) % count).find(|&i| {
                let d = &mut domains[i];
                d.ending.is_none() && (d.blocked.is_none() || vmexit::wakeable(d))
            })
        });
        let Some(i) = pick else {
            idle(domains);
            continue;
        };
        // A boosted run is extra: the turn order goes on from where it was,
        // so two domains waking each other cannot starve a third.
        if boosted.is_none() {
            next = (i + 1) % domains.len();
        }
        if fpu_owner != Some(i) {
            if let Some(j) = fpu_owner {
                domains[j].fpu.save();
                domains[j].debug.save();
            }
            domains[i].fpu.restore();
            domains[i].debug.restore();
            fpu_owner = Some(i);
            // Another domain's vCPU: no branch predictions cross (IBPB).
            crate::speculation::switch_domain();
        }
        let until = crate::time::rdtsc() + xen_time::tsc_at(SLICE_NS);
        let (this, mut others) = Others::split(domains, i);
        let end = vmexit::run_slice(this, &mut others, until);
        let id = this.id;
        if end == SliceEnd::Ended {
            ended(domains, i);
        }
        defmt::trace!(
            "d{=u16}: slice ended: {=str}",
            id,
            match end {
                SliceEnd::Ended => "ended",
                SliceEnd::Blocked => "blocked",
                SliceEnd::Expired => "expired",
            }
        );
    }
}

/// Nothing can run: sleep until the earliest guest deadline (or the console
/// poll tick), with the host timer armed for it.
fn idle(domains: &[Domain]) {
    crate::console::pump();
    // Guest output still queued for COM1 goes on draining meanwhile.
    let poll = if crate::console::pending() {
        OUTPUT_POLL_NS
    } else {
        CONSOLE_POLL_NS
    };
    let tick = crate::time::rdtsc() + xen_time::tsc_at(poll);
    let until = domains
        .iter()
        .filter(|d| d.ending.is_none())
        .filter_map(vmexit::next_deadline)
        .fold(tick, u64::min);
    crate::timer::arm(until);
    crate::timer::wait_for_interrupt();
    crate::timer::disarm();
}

/// Domain `i` just ended. Its grant mappings of others' pages go (their
/// granters can reuse them), and its RAM too unless another domain maps
/// some of it. If it was the driver domain, COM1 comes back to the
/// hypervisor, which says so there: the guests run on, without console or
/// XenStore, and their exit counts so far show they keep running.
fn ended(domains: &mut [Domain], i: usize) {
    grants::release_mappings(domains, i);
    let d = &domains[i];
    let (how, _) = crate::domain::Ending::describe(d.ending.as_ref(), d.driver);
    let cpu_ms = d.cpu_tsc / crate::time::tsc_khz().max(1);
    defmt::info!(
        "d{=u16} ended after {=u64} ms of CPU: {=str}",
        d.id,
        cpu_ms,
        how.as_str()
    );
    if !d.driver {
        return;
    }
    crate::console::take_back();
    crate::println!("domain {} ({}) ended: {how}", d.id, d.name);
    for g in domains.iter().filter(|g| !g.driver && g.ending.is_none()) {
        let exits: u64 = g.exits.iter().sum();
        crate::println!(
            "domain {} ({}) runs on without its backends, {exits} exits so far",
            g.id,
            g.name
        );
    }
}
