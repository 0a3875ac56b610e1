//! The boot CPU's local APIC: x2APIC mode where the CPU has it, and its timer calibrated against the TSC.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use x2apic::lapic::{xapic_base, LocalApicBuilder, TimerDivide, TimerMode};

// Vectors at the top of the range, above any the guests' devices will use.
pub const TIMER_VECTOR: usize = 0xf0;
pub const ERROR_VECTOR: usize = 0xfe;
pub const SPURIOUS_VECTOR: usize = 0xff;

const CALIBRATION_MS: u64 = 10;

// Register access after start of day: in x2APIC mode the MSRs 0x800 + offset/16,
// in xAPIC mode the identity-mapped page at the APIC base (SDM Vol. 3A 12.12.1.2).
static X2APIC_MODE: AtomicBool = AtomicBool::new(false);
static XAPIC_BASE: AtomicU64 = AtomicU64::new(0);
static TIMER_KHZ: AtomicU64 = AtomicU64::new(0);
/// The timer runs in TSC-deadline mode (CPUID.1:ECX[24], SDM Vol. 3A 12.5.4.1).
static TSC_DEADLINE: AtomicBool = AtomicBool::new(false);
const IA32_TSC_DEADLINE: u32 = 0x6e0;
const REG_EOI: u32 = 0x0b0;
const REG_TIMER_INITIAL: u32 = 0x380;

fn write_register(offset: u32, value: u32) {
    if X2APIC_MODE.load(Ordering::Relaxed) {
        // SAFETY: x2APIC mode is on; the register exists and is writable.
        unsafe { x86::msr::wrmsr(0x800 + offset / 16, u64::from(value)) };
    } else {
        let address = XAPIC_BASE.load(Ordering::Relaxed) + u64::from(offset);
        // SAFETY: the xAPIC page is identity-mapped (uncached by the MTRRs).
        unsafe { core::ptr::write_volatile(address as *mut u32, value) };
    }
}

/// Signals the end of the interrupt being handled.
pub fn end_of_interrupt() {
    write_register(REG_EOI, 0);
}

/// Starts the one-shot timer with `count` ticks (0 stops it).
pub fn start_one_shot(count: u32) {
    write_register(REG_TIMER_INITIAL, count);
}

/// Arms the timer for TSC value `deadline` in TSC-deadline mode (0 disarms);
/// false if the CPU has no such mode and the caller must count ticks.
pub fn set_tsc_deadline(deadline: u64) -> bool {
    if !TSC_DEADLINE.load(Ordering::Relaxed) {
        return false;
    }
    // SAFETY: the MSR exists in TSC-deadline mode; writing it only arms the timer.
    unsafe { x86::msr::wrmsr(IA32_TSC_DEADLINE, deadline) };
    true
}

/// APIC timer ticks per millisecond at divide-by-1.
pub fn timer_khz() -> u64 {
    TIMER_KHZ.load(Ordering::Relaxed)
}

pub struct Apic {
    pub id: u32,
    /// APIC timer ticks per millisecond at divide-by-1.
    pub timer_khz: u64,
}

/// Enables the local APIC (the x2apic crate picks x2APIC mode when CPUID
/// offers it, else xAPIC at the IA32_APIC_BASE address, identity-mapped) and
/// measures its timer over 10 ms of TSC time. The timer is left stopped and
/// masked, so nothing is pending when interrupts are enabled later.
pub fn init() -> Result<Apic, &'static str> {
    let mut lapic = LocalApicBuilder::new()
        .timer_vector(TIMER_VECTOR)
        .error_vector(ERROR_VECTOR)
        .spurious_vector(SPURIOUS_VECTOR)
        .timer_mode(TimerMode::OneShot)
        .timer_divide(TimerDivide::Div1)
        .timer_initial(0)
        // SAFETY: reading IA32_APIC_BASE has no side effects.
        .set_xapic_base(unsafe { xapic_base() })
        .build()?;
    // SAFETY: interrupts are disabled; the APIC belongs to the hypervisor.
    let timer_khz = unsafe {
        lapic.enable();
        lapic.disable_timer();
        lapic.set_timer_initial(u32::MAX);
        crate::time::spin_ms(CALIBRATION_MS);
        let left = lapic.timer_current();
        lapic.set_timer_initial(0);
        // From here on the timer is the host's deadline timer (timer.rs):
        // unmasked, so its interrupt can end a guest's run. TSC-deadline mode
        // where the CPU has it: the deadline is written as a TSC value.
        if raw_cpuid::CpuId::new()
            .get_feature_info()
            .is_some_and(|f| f.has_tsc_deadline())
        {
            lapic.set_timer_mode(TimerMode::TscDeadline);
            TSC_DEADLINE.store(true, Ordering::Relaxed);
        }
        defmt::info!(
            "host timer: {=str}",
            if TSC_DEADLINE.load(Ordering::Relaxed) {
                "TSC-deadline"
            } else {
                "one-shot"
            }
        );
        lapic.enable_timer();
        u64::from(u32::MAX - left) / CALIBRATION_MS
    };
    TIMER_KHZ.store(timer_khz, Ordering::Relaxed);
    X2APIC_MODE.store(
        raw_cpuid::CpuId::new()
            .get_feature_info()
            .is_some_and(|f| f.has_x2apic()),
        Ordering::Relaxed,
    );
    // SAFETY: reading IA32_APIC_BASE has no side effects.
    XAPIC_BASE.store(unsafe { xapic_base() }, Ordering::Relaxed);
    // SAFETY: reading the APIC ID register has no side effects.
    let id = unsafe { lapic.id() };
    Ok(Apic { id, timer_khz })
}
