//! How much a domain may print through `console_io`: a token bucket, so a chatty or hostile guest cannot hold the shared console.
//!
//! Xen's release builds refuse `console_io` to every domain but the
//! console domain (xsm/dummy.h `xsm_console_io`); Linux's `earlyprintk=xen`
//! writes its early boot log through it, so Xenolith keeps it open but
//! bounded: a burst large enough for a boot log, then a trickle. Bytes over
//! the budget are dropped and counted, as Xen's rate-limited guest printk
//! drops lines ("printk: N messages suppressed").

/// Bytes a domain may print at once: several Linux boot logs' worth (about
/// 7.5 KiB reach `console_io` before hvc0 takes over).
pub const BURST: u64 = 64 * 1024;
/// Bytes per second the budget refills by.
pub const RATE: u64 = 8 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsoleQuota {
    tokens: u64,
    /// The time `tokens` was last brought up to date, in ns.
    at_ns: u64,
    /// Bytes dropped since output was last allowed.
    dropped: u64,
}

/// What a domain may print of one write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// How many of the bytes may go out.
    pub allowed: u64,
    /// Bytes dropped before this write that have not been reported yet:
    /// the caller says so before printing `allowed` bytes.
    pub dropped_before: u64,
}

impl ConsoleQuota {
    pub fn new(now_ns: u64) -> ConsoleQuota {
        ConsoleQuota {
            tokens: BURST,
            at_ns: now_ns,
            dropped: 0,
        }
    }

    /// Takes up to `len` bytes of budget at time `now_ns`.
    pub fn take(&mut self, now_ns: u64, len: u64) -> Grant {
        let elapsed = now_ns.saturating_sub(self.at_ns);
        // RATE bytes per 10^9 ns; u128 so no elapsed time can overflow.
        let earned = (u128::from(elapsed) * u128::from(RATE) / 1_000_000_000) as u64;
        if earned > 0 {
            self.tokens = self.tokens.saturating_add(earned).min(BURST);
            // Keep the remainder of a partial token: advance only by the
            // time the whole tokens took.
            let used_ns = (u128::from(earned) * 1_000_000_000 / u128::from(RATE)) as u64;
            self.at_ns = self.at_ns.saturating_add(used_ns.min(elapsed));
        }
        if self.tokens == BURST {
            self.at_ns = now_ns.max(self.at_ns);
        }
        let allowed = len.min(self.tokens);
        self.tokens -= allowed;
        let dropped_before = if allowed > 0 {
            core::mem::take(&mut self.dropped)
        } else {
            0
        };
        self.dropped = self.dropped.saturating_add(len - allowed);
        Grant {
            allowed,
            dropped_before,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_burst_then_the_rate() {
        let mut q = ConsoleQuota::new(0);
        assert_eq!(q.take(0, BURST).allowed, BURST);
        let g = q.take(0, 100);
        assert_eq!(g.allowed, 0);
        // One second later: RATE more, and the 100 dropped bytes reported.
        let g = q.take(SECOND, 2 * RATE);
        assert_eq!(
            g,
            Grant {
                allowed: RATE,
                dropped_before: 100
            }
        );
        // The RATE bytes cut from that write are dropped and reported next time.
        assert_eq!(q.take(2 * SECOND, 1).dropped_before, RATE);
    }

    #[test]
    fn a_16_kib_write_loop_is_held_to_the_rate() {
        // A guest writing 16 KiB every millisecond for ten seconds gets the
        // burst and ten seconds' rate, no more.
        let mut q = ConsoleQuota::new(0);
        let mut out = 0;
        for ms in 0..10_000u64 {
            out += q.take(ms * 1_000_000, 16 * 1024).allowed;
        }
        assert!(out <= BURST + 10 * RATE, "{out}");
        assert!(out >= BURST + 9 * RATE, "{out}");
    }

    #[test]
    fn time_going_backwards_or_huge_gaps_do_not_overflow() {
        let mut q = ConsoleQuota::new(u64::MAX - 5);
        assert_eq!(q.take(0, 10).allowed, 10);
        assert_eq!(q.take(u64::MAX, u64::MAX).allowed, BURST - 10);
    }

    proptest! {
        /// Against a model: over any run of writes, what is allowed never
        /// exceeds the burst plus the rate times the time elapsed, every
        /// byte is either allowed or dropped, and every dropped byte is
        /// reported once (or still pending).
        #[test]
        fn budget_holds(steps in proptest::collection::vec((0u64..2 * SECOND, 0u64..40_000), 1..200)) {
            let mut q = ConsoleQuota::new(0);
            let (mut now, mut allowed, mut asked, mut reported) = (0u64, 0u64, 0u64, 0u64);
            for (gap, len) in steps {
                now += gap;
                let g = q.take(now, len);
                prop_assert!(g.allowed <= len);
                allowed += g.allowed;
                asked += len;
                reported += g.dropped_before;
                prop_assert!(allowed <= BURST + now / SECOND * RATE + RATE);
            }
            prop_assert_eq!(asked, allowed + reported + q.dropped);
        }
    }
}
