//! Panics: plain text on COM1 (readable without a defmt decoder), then a failure exit.

use core::panic::PanicInfo;

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    crate::cpu::disable_interrupts();
    crate::console::emergency(format_args!("xenolith: PANIC: {info}\n"));
    crate::power::exit(crate::power::ExitStatus::Failure)
}
