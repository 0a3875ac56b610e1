//! Xen system time (ns since the host's TSC was 0) and the pvclock records the guest reads it from.

use super::XenState;
use crate::guest_memory::GuestMemory;
use spin::Once;
use vcpu::AddressSpace;
use xen_abi::shared_info::{vcpu_info_offset, SharedInfo, VcpuTimeInfo, TIME_OFFSET};
use xenolith::pvclock::{self, Versioned, Wallclock};

/// The TSC-to-ns scale, from the TSC frequency calibrated at start of day.
static SCALE: Once<(u32, i8)> = Once::new();
/// UTC seconds at system time 0, from the CMOS clock at the first use.
static WALLCLOCK: Once<Wallclock> = Once::new();

fn scale() -> (u32, i8) {
    *SCALE.call_once(|| pvclock::scale_for(crate::time::tsc_khz().max(1) * 1000))
}

/// Xen system time now, in ns. Guests see the host TSC unchanged (no
/// offset), so their RDTSC and this clock agree.
pub fn now_ns() -> u64 {
    let (mul, shift) = scale();
    pvclock::ns_from_tsc_delta(crate::time::rdtsc(), mul, shift)
}

/// The host TSC at system time `ns` (the inverse of `now_ns`, rounded up so
/// that a timer armed for `ns` never fires before the guest sees `ns`).
pub fn tsc_at(ns: u64) -> u64 {
    let khz = u128::from(crate::time::tsc_khz().max(1));
    (u128::from(ns) * khz)
        .div_ceil(1_000_000)
        .min(u128::from(u64::MAX)) as u64
}

/// A fresh time record for this moment.
fn record() -> VcpuTimeInfo {
    let (mul, shift) = scale();
    let tsc = crate::time::rdtsc();
    // Not TSC_STABLE: the TSC is not known to be invariant on every host.
    pvclock::time_info(
        tsc,
        pvclock::ns_from_tsc_delta(tsc, mul, shift),
        mul,
        shift,
        0,
    )
}

fn wallclock() -> Wallclock {
    *WALLCLOCK.call_once(|| {
        let now = crate::rtc::unix_seconds().unwrap_or(0);
        let since_zero = now_ns() / 1_000_000_000;
        Wallclock {
            sec: now.saturating_sub(since_zero),
            nsec: 0,
        }
    })
}

/// Writes vCPU 0's time record and the wallclock into shared_info.
pub fn publish_shared(xen: &XenState) {
    // SAFETY: the shared_info frame belongs to `xen`; the guest only reads
    // these fields, and the version protocol covers concurrent readers.
    let shared = unsafe { &mut *(xen.shared_info as *mut SharedInfo) };
    pvclock::publish(shared, &wallclock());
    let slot = (xen.shared_info + (vcpu_info_offset(0) + TIME_OFFSET) as u64) as *mut VcpuTimeInfo;
    // SAFETY: as above; the slot lies inside the frame.
    pvclock::publish(unsafe { &mut *slot }, &record());
}

/// Writes vCPU 0's time record where the guest registered its vcpu_info.
pub fn publish_vcpu_info(xen: &XenState, space: &dyn AddressSpace) {
    let Some(gpa) = xen.vcpu_info_gpa else {
        return publish_shared(xen);
    };
    let mut info = VcpuTimeInfo::default();
    let at = gpa + TIME_OFFSET as u64;
    let memory = GuestMemory::new(space);
    let mut bytes = [0u8; 32];
    if memory.read_gpa(at, &mut bytes).is_err() {
        return;
    }
    info.version = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let mut writer = GuestTime {
        memory: &memory,
        at,
        version: info.version,
    };
    pvclock::publish(&mut writer, &record());
}

/// A `vcpu_time_info` in guest memory, written field by field.
struct GuestTime<'a> {
    memory: &'a GuestMemory<'a>,
    at: u64,
    version: u32,
}

impl Versioned for GuestTime<'_> {
    type Record = VcpuTimeInfo;

    fn version(&self) -> u32 {
        self.version
    }

    fn set_version(&mut self, version: u32) {
        self.version = version;
        let _ = self.memory.write_gpa(self.at, &version.to_le_bytes());
    }

    fn write_fields(&mut self, r: &VcpuTimeInfo) {
        let mut bytes = [0u8; 24];
        bytes[0..8].copy_from_slice(&r.tsc_timestamp.to_le_bytes());
        bytes[8..16].copy_from_slice(&r.system_time.to_le_bytes());
        bytes[16..20].copy_from_slice(&r.tsc_to_system_mul.to_le_bytes());
        bytes[20] = r.tsc_shift as u8;
        bytes[21] = r.flags;
        let _ = self.memory.write_gpa(self.at + 8, &bytes);
    }
}
