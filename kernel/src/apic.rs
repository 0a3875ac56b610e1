//! The boot CPU's local APIC: x2APIC mode where the CPU has it, and its timer calibrated against the TSC.

use x2apic::lapic::{xapic_base, LocalApicBuilder, TimerDivide, TimerMode};

// Vectors at the top of the range, above any the guests' devices will use.
pub const TIMER_VECTOR: usize = 0xf0;
pub const ERROR_VECTOR: usize = 0xfe;
pub const SPURIOUS_VECTOR: usize = 0xff;

const CALIBRATION_MS: u64 = 10;

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
        u64::from(u32::MAX - left) / CALIBRATION_MS
    };
    // SAFETY: reading the APIC ID register has no side effects.
    let id = unsafe { lapic.id() };
    Ok(Apic { id, timer_khz })
}
