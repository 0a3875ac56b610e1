//! Scheduling several domains on the one host CPU: round-robin slices from the APIC timer; blocked vCPUs cost nothing.

use crate::domain::{Domain, Others};
use crate::vmexit::{self, SliceEnd};
use crate::xen::time as xen_time;

/// A domain runs at most this long before the next runnable one gets the CPU.
const SLICE_NS: u64 = 10_000_000;
/// While every domain is blocked, COM1 is looked at this often (its
/// interrupt is not routed: the PICs are masked and there is no IOAPIC driver).
const CONSOLE_POLL_NS: u64 = 10_000_000;

/// Runs every domain until all have ended.
pub fn run(domains: &mut [Domain]) {
    let mut next = 0;
    // Whose extended state the CPU holds (fpu.rs).
    let mut fpu_owner: Option<usize> = None;
    loop {
        let live = domains.iter().filter(|d| d.ending.is_none()).count();
        if live == 0 {
            return;
        }
        // The next domain, in turn, that is not waiting (or whose wait is over).
        let count = domains.len();
        let pick = (0..count).map(|k| (next + k) % count).find(|&i| {
            let d = &mut domains[i];
            d.ending.is_none() && (d.blocked.is_none() || vmexit::wakeable(d))
        });
        let Some(i) = pick else {
            idle(domains);
            continue;
        };
        next = (i + 1) % domains.len();
        if fpu_owner != Some(i) {
            if let Some(j) = fpu_owner {
                domains[j].fpu.save();
            }
            domains[i].fpu.restore();
            fpu_owner = Some(i);
        }
        let until = crate::time::rdtsc() + xen_time::tsc_at(SLICE_NS);
        let (this, mut others) = Others::split(domains, i);
        let end = vmexit::run_slice(this, &mut others, until);
        let id = this.id;
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
    let tick = crate::time::rdtsc() + xen_time::tsc_at(CONSOLE_POLL_NS);
    let until = domains
        .iter()
        .filter(|d| d.ending.is_none())
        .filter_map(vmexit::next_deadline)
        .fold(tick, u64::min);
    crate::timer::arm(until);
    crate::timer::wait_for_interrupt();
    crate::timer::disarm();
}
