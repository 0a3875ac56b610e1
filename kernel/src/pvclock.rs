//! The Xen pvclock: TSC→ns scale, `vcpu_time_info` records and their version protocol (Xen arch/x86/time.c, Linux arch/x86/kernel/pvclock.c).

use core::sync::atomic::{fence, Ordering};
use xen_abi::shared_info::{SharedInfo, VcpuTimeInfo};

const NS_PER_SEC: u64 = 1_000_000_000;

/// The `(tsc_to_system_mul, tsc_shift)` for a TSC running at `tsc_hz`, as
/// Xen's `set_time_scale`: halve the rate while it exceeds 2·10⁹ (shift −1
/// each), double it while it is at most 10⁹ (shift +1 each), then
/// mul = (10⁹ << 32) / rate. The rate ends in (10⁹, 2·10⁹], so mul is in
/// [2³¹, 2³²): never 0, which Linux would divide by. 0 Hz is taken as 1 Hz.
pub fn scale_for(tsc_hz: u64) -> (u32, i8) {
    let mut rate = tsc_hz.max(1);
    let mut shift: i8 = 0;
    while rate > 2 * NS_PER_SEC {
        rate >>= 1;
        shift -= 1;
    }
    while rate <= NS_PER_SEC {
        rate <<= 1;
        shift += 1;
    }
    // div_frac(10⁹, rate): the 0.32 fraction 10⁹ / rate, which is < 1.
    let mul = (NS_PER_SEC << 32) / rate;
    (mul as u32, shift)
}

/// Nanoseconds for `delta` TSC ticks (Xen `scale_delta`, Linux
/// `pvclock_scale_delta`): shift `delta` left by `shift` (right if
/// negative), then take bits 95:32 of the 64×32-bit product with `mul`.
/// Shift counts wrap modulo 64 like the x86 shift instructions.
pub fn ns_from_tsc_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    let delta = if shift < 0 {
        delta.wrapping_shr(shift.unsigned_abs() as u32)
    } else {
        delta.wrapping_shl(shift as u32)
    };
    ((u128::from(delta) * u128::from(mul)) >> 32) as u64
}

/// The TSC frequency Linux derives from a record (`pvclock_tsc_khz`, which
/// it then trusts as the exact TSC rate): (10⁶ << 32) / mul, shifted right
/// by `shift` (left if negative). `None` for mul = 0, where the guest takes a
/// divide error.
pub fn tsc_khz(mul: u32, shift: i8) -> Option<u64> {
    if mul == 0 {
        return None;
    }
    let khz = (1_000_000u64 << 32) / u64::from(mul);
    Some(if shift < 0 {
        khz.wrapping_shl(shift.unsigned_abs() as u32)
    } else {
        khz.wrapping_shr(shift as u32)
    })
}

/// A `vcpu_time_info` saying that at guest TSC `tsc` the system time was
/// `system_time` ns, with scale (`mul`, `shift`) and `XEN_PVCLOCK_*`
/// `flags`. `tsc` is what the guest's RDTSC returned (offset and scaling
/// applied). The version is left 0; [`publish`] sets it.
pub fn time_info(tsc: u64, system_time: u64, mul: u32, shift: i8, flags: u8) -> VcpuTimeInfo {
    VcpuTimeInfo {
        tsc_timestamp: tsc,
        system_time,
        tsc_to_system_mul: mul,
        tsc_shift: shift,
        flags,
        ..VcpuTimeInfo::default()
    }
}

/// The system time a guest computes from `info` at guest TSC `tsc`
/// (Linux `__pvclock_read_cycles`; wrapping like its unsigned arithmetic).
pub fn system_time_at(info: &VcpuTimeInfo, tsc: u64) -> u64 {
    let delta = tsc.wrapping_sub(info.tsc_timestamp);
    info.system_time.wrapping_add(ns_from_tsc_delta(
        delta,
        info.tsc_to_system_mul,
        info.tsc_shift,
    ))
}

/// Xen's `version_update_begin`: the next odd version (update in progress).
pub const fn version_update_begin(version: u32) -> u32 {
    version.wrapping_add(1) | 1
}

/// Xen's `version_update_end`: the even version that completes an update.
pub const fn version_update_end(version: u32) -> u32 {
    version.wrapping_add(1)
}

/// A guest-visible record protected by a version counter that readers
/// re-read around the fields and retry on while odd or changed: the
/// `vcpu_time_info` and the `shared_info` wallclock. Implementations over
/// guest memory write with volatile stores.
pub trait Versioned {
    /// What one update writes.
    type Record;
    fn version(&self) -> u32;
    fn set_version(&mut self, version: u32);
    /// Writes every field of the record except the version.
    fn write_fields(&mut self, record: &Self::Record);
}

/// Updates `dst` as Xen does (`__update_vcpu_system_time`,
/// `update_domain_wallclock_time`): version to the next odd value, write
/// barrier, the fields, write barrier, version to the following even value.
/// Returns that even version.
pub fn publish<V: Versioned + ?Sized>(dst: &mut V, record: &V::Record) -> u32 {
    let odd = version_update_begin(dst.version());
    dst.set_version(odd);
    fence(Ordering::Release); // smp_wmb(); a compiler barrier on x86 (stores are not reordered)
    dst.write_fields(record);
    fence(Ordering::Release);
    let even = version_update_end(odd);
    dst.set_version(even);
    even
}

impl Versioned for VcpuTimeInfo {
    type Record = VcpuTimeInfo;

    fn version(&self) -> u32 {
        self.version
    }

    fn set_version(&mut self, version: u32) {
        self.version = version;
    }

    fn write_fields(&mut self, record: &VcpuTimeInfo) {
        *self = VcpuTimeInfo {
            version: self.version,
            ..*record
        };
    }
}

/// The `shared_info` wallclock: UTC at system time 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wallclock {
    pub sec: u64,
    pub nsec: u32,
}

/// `wc_version` protects `wc_sec`, `wc_nsec` and `wc_sec_hi`.
impl Versioned for SharedInfo {
    type Record = Wallclock;

    fn version(&self) -> u32 {
        self.wc_version
    }

    fn set_version(&mut self, version: u32) {
        self.wc_version = version;
    }

    fn write_fields(&mut self, wc: &Wallclock) {
        self.wc_sec = wc.sec as u32;
        self.wc_nsec = wc.nsec;
        self.wc_sec_hi = (wc.sec >> 32) as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use xen_abi::shared_info::PVCLOCK_TSC_STABLE;

    /// |Linux's kHz × 1000 − f| ≤ f / 1000.
    fn khz_close(f: u64) -> bool {
        let (mul, shift) = scale_for(f);
        let hz = tsc_khz(mul, shift).unwrap() * 1000;
        hz.abs_diff(f) * 1000 <= f
    }

    #[test]
    fn scale_matches_xen_for_known_rates() {
        // 1 GHz is doubled once (the loop runs while rate <= 10⁹): mul = ½.
        assert_eq!(scale_for(1_000_000_000), (1 << 31, 1));
        assert_eq!(scale_for(2_000_000_000), (1 << 31, 0));
        // 4 MHz (Bochs): ×256 = 1.024 GHz, mul = 10⁹/1.024·10⁹ of 2³².
        assert_eq!(scale_for(4_000_000), (4_194_304_000, 8));
        // 10 GHz: ÷8 = 1.25 GHz, mul = 0.8 of 2³².
        assert_eq!(scale_for(10_000_000_000), (3_435_973_836, -3));
        assert_eq!(scale_for(0), scale_for(1));
        assert_eq!(scale_for(1).1, 30);
    }

    #[test]
    fn linux_recovers_the_frequency() {
        assert_eq!(tsc_khz(4_194_304_000, 8), Some(4_000));
        assert_eq!(tsc_khz(3_435_973_836, -3), Some(10_000_000));
        assert_eq!(tsc_khz(1 << 31, 1), Some(1_000_000));
        assert_eq!(tsc_khz(0, 0), None);
        for f in [
            1_000_000,
            4_000_000,
            2_302_943_000,
            2_300_000_000,
            3_000_000_000,
            10_000_000_000,
        ] {
            assert!(khz_close(f), "{f} Hz");
        }
        // Linux's division truncates: it may see 1 kHz less than the truth.
        let (mul, shift) = scale_for(2_302_943_000);
        assert_eq!(tsc_khz(mul, shift), Some(2_302_942));
    }

    #[test]
    fn delta_scaling() {
        let (mul, shift) = scale_for(4_000_000);
        assert_eq!(ns_from_tsc_delta(4_000_000, mul, shift), 1_000_000_000);
        assert_eq!(ns_from_tsc_delta(4, mul, shift), 1_000);
        assert_eq!(ns_from_tsc_delta(0, mul, shift), 0);
        let (mul, shift) = scale_for(10_000_000_000);
        assert_eq!(ns_from_tsc_delta(10_000_000_000, mul, shift), 999_999_999);
        // The 96-bit product: ~58 years of a 10 GHz TSC without overflow.
        let years = 58 * 365 * 86_400u64;
        let ns = ns_from_tsc_delta(years * 10_000_000_000, mul, shift);
        assert!(ns.abs_diff(years * NS_PER_SEC) < NS_PER_SEC);
        // Shift counts wrap as on x86.
        assert_eq!(ns_from_tsc_delta(8, 1 << 31, 64), 4);
        assert_eq!(ns_from_tsc_delta(8, 1 << 31, -64), 4);
    }

    #[test]
    fn time_info_and_reading() {
        let (mul, shift) = scale_for(2_000_000_000);
        let info = time_info(1_000, 5_000, mul, shift, PVCLOCK_TSC_STABLE);
        assert_eq!(info.version, 0);
        assert_eq!(info.tsc_timestamp, 1_000);
        assert_eq!(info.system_time, 5_000);
        assert_eq!(
            (info.tsc_to_system_mul, info.tsc_shift, info.flags),
            (mul, shift, 1)
        );
        assert_eq!((info.pad0, info.pad1), (0, [0; 2]));
        assert_eq!(system_time_at(&info, 1_000), 5_000);
        assert_eq!(system_time_at(&info, 3_000), 6_000);
    }

    #[test]
    fn version_protocol() {
        assert_eq!(version_update_begin(0), 1);
        assert_eq!(version_update_begin(1), 3);
        assert_eq!(version_update_begin(2), 3);
        assert_eq!(version_update_end(3), 4);
        assert_eq!(version_update_begin(u32::MAX), 1);

        let mut t = VcpuTimeInfo::default();
        let (mul, shift) = scale_for(3_000_000_000);
        let rec = VcpuTimeInfo {
            version: 77,
            ..time_info(9, 10, mul, shift, 0)
        };
        assert_eq!(publish(&mut t, &rec), 2);
        assert_eq!(t, VcpuTimeInfo { version: 2, ..rec });
        assert_eq!(publish(&mut t, &rec), 4);
        // A record caught mid-update (odd) is completed to the next even value.
        t.version = 5;
        assert_eq!(publish(&mut t, &rec), 8);

        let mut s = SharedInfo::ZERO;
        let wc = Wallclock {
            sec: 0x1_2345_6789,
            nsec: 999_999_999,
        };
        assert_eq!(publish(&mut s, &wc), 2);
        assert_eq!(
            (s.wc_sec, s.wc_sec_hi, s.wc_nsec),
            (0x2345_6789, 1, 999_999_999)
        );
        assert_eq!(s.vcpu_info[0].time, VcpuTimeInfo::default());
    }

    /// Records each write, to check what a concurrent reader could see.
    #[derive(Default)]
    struct Log {
        version: u32,
        writes: Vec<(u32, Option<u64>)>,
    }

    impl Versioned for Log {
        type Record = u64;
        fn version(&self) -> u32 {
            self.version
        }
        fn set_version(&mut self, version: u32) {
            self.version = version;
            self.writes.push((version, None));
        }
        fn write_fields(&mut self, r: &u64) {
            self.writes.push((self.version, Some(*r)));
        }
    }

    proptest! {
        #[test]
        fn mul_never_zero_and_shift_bounded(f in any::<u64>()) {
            let (mul, shift) = scale_for(f);
            prop_assert!(mul >= 1 << 31);
            prop_assert!((-34..=30).contains(&shift));
        }

        #[test]
        fn linux_khz_within_a_thousandth(f in 1_000_000u64..=10_000_000_000) {
            prop_assert!(khz_close(f), "{} Hz", f);
        }

        #[test]
        fn one_second_of_ticks_is_one_second(f in 1_000_000u64..=10_000_000_000) {
            let (mul, shift) = scale_for(f);
            prop_assert!(ns_from_tsc_delta(f, mul, shift).abs_diff(NS_PER_SEC) <= 2);
        }

        #[test]
        fn scaling_is_monotonic(
            f in 1_000_000u64..=10_000_000_000, a in 0u64..1 << 50, b in 0u64..1 << 50
        ) {
            let (mul, shift) = scale_for(f);
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(ns_from_tsc_delta(lo, mul, shift) <= ns_from_tsc_delta(hi, mul, shift));
        }

        #[test]
        fn fields_are_written_only_under_an_odd_version(start in any::<u32>(), r in any::<u64>()) {
            let mut log = Log { version: start, ..Log::default() };
            let end = publish(&mut log, &r);
            prop_assert_eq!(log.writes.len(), 3);
            let (odd, _) = log.writes[0];
            prop_assert_eq!(odd % 2, 1);
            prop_assert_ne!(odd, start);
            prop_assert_eq!(log.writes[1], (odd, Some(r)));
            prop_assert_eq!(log.writes[2], (end, None));
            prop_assert_eq!(end % 2, 0);
            prop_assert_eq!(end, odd.wrapping_add(1));
        }
    }
}
