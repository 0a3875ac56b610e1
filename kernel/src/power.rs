//! Ending the run: a status the emulator (and so `cargo xtask`) can see.

use x86::io::{outb, outl};

#[derive(Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum ExitStatus {
    Success,
    Failure,
}

/// QEMU `-device isa-debug-exit,iobase=0xf4`: QEMU exits with `(value << 1) | 1`,
/// so 0x10 gives 33 and 0x11 gives 35 (hw/misc/debugexit.c).
const DEBUG_EXIT_PORT: u16 = 0xf4;
/// Bochs ends the simulation when "Shutdown" is written to this port (iodev/unmapped.cc).
const BOCHS_SHUTDOWN_PORT: u16 = 0x8900;

pub fn exit(status: ExitStatus) -> ! {
    defmt::info!("exit {}", status);
    let (word, code) = match status {
        ExitStatus::Success => ("success", 0x10),
        ExitStatus::Failure => ("failure", 0x11),
    };
    crate::console::print(format_args!("xenolith: exit {word}\n"));
    // Emulators stop at once on the writes below: let the UARTs finish first.
    crate::console::drain();
    crate::log::drain();
    // SAFETY: both ports are debug devices of emulators and unused on real
    // PCs; after them the CPU stops.
    unsafe {
        outl(DEBUG_EXIT_PORT, code);
        for b in b"Shutdown" {
            outb(BOCHS_SHUTDOWN_PORT, *b);
        }
    }
    halt_forever()
}

pub fn halt_forever() -> ! {
    loop {
        crate::cpu::disable_interrupts();
        // SAFETY: with interrupts off, HLT only waits for NMI/SMI/INIT.
        unsafe { x86::halt() };
    }
}

/// Prints `xenolith: fatal: …` on the console and in the log, then exits with failure.
pub fn fatal(args: core::fmt::Arguments) -> ! {
    crate::console::print(format_args!("xenolith: fatal: {args}\n"));
    defmt::error!("fatal error at start of day (see COM1)");
    exit(ExitStatus::Failure)
}
