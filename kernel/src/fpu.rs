//! Each domain's x87/SSE/AVX state and XCR0, swapped with XSAVE/XRSTOR when the CPU goes to another domain.
//!
//! VM entry and exit leave the extended state alone (Intel SDM Vol. 3C 28.3;
//! AMD APM Vol. 2 15.5), and the hypervisor itself is soft-float, so a
//! guest's registers simply stay in the CPU while it is the only one running.
//! Between domains they must be saved and restored: otherwise one guest
//! reads another's XMM/YMM registers.

use alloc::alloc::{alloc_zeroed, Layout};
use core::arch::asm;

/// XSAVE areas are 64-byte aligned (SDM Vol. 1 13.4).
const ALIGN: usize = 64;
/// MXCSR's place in the legacy region and its reset value (SDM Vol. 1 10.2.3.1).
const MXCSR_OFFSET: usize = 24;
const MXCSR_RESET: u32 = 0x1f80;
/// The legacy FXSAVE region, used when the CPU has no XSAVE.
const FXSAVE_SIZE: usize = 512;
/// XSTATE_BV, the first word of the XSAVE header after the legacy region
/// (SDM Vol. 1 13.4.2).
const XSTATE_BV_OFFSET: usize = 512;

pub struct FpuState {
    area: *mut u8,
    size: usize,
    xcr0: u64,
}

/// Whether XSAVE is on (CR4.OSXSAVE, set at start of day where the CPU has it).
fn xsave_enabled() -> bool {
    // SAFETY: reading CR4 has no side effects.
    let cr4 = unsafe { x86::controlregs::cr4() }.bits();
    cr4 & (1 << 18) != 0
}

impl FpuState {
    /// The init state: a zero XSAVE header makes XRSTOR load every component's
    /// initial values; MXCSR is loaded from the area, so it gets its reset value.
    pub fn new() -> Option<FpuState> {
        let size = if xsave_enabled() {
            // CPUID.(EAX=0DH,ECX=0).ECX: the area for every supported component.
            core::arch::x86_64::__cpuid_count(0xd, 0).ecx as usize
        } else {
            FXSAVE_SIZE
        };
        let layout = Layout::from_size_align(size.max(FXSAVE_SIZE + 64), ALIGN).ok()?;
        // SAFETY: a non-zero size; the pointer is checked below.
        let area = unsafe { alloc_zeroed(layout) };
        if area.is_null() {
            return None;
        }
        // SAFETY: offset 24 lies inside the fresh area.
        unsafe {
            area.add(MXCSR_OFFSET)
                .cast::<u32>()
                .write_unaligned(MXCSR_RESET)
        };
        Some(FpuState {
            area,
            size: layout.size(),
            xcr0: 1,
        })
    }

    /// Saves the CPU's extended state (the running guest's) here.
    pub fn save(&mut self) {
        if xsave_enabled() {
            // SAFETY: XGETBV(0) reads XCR0; XSAVE64 writes at most `size`
            // bytes (CPUID 0xD ECX) to the 64-byte-aligned area.
            unsafe {
                let (lo, hi): (u32, u32);
                asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack));
                self.xcr0 = (u64::from(hi) << 32) | u64::from(lo);
                asm!("xsave64 [{}]", in(reg) self.area, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack));
            }
            // XSAVE writes XSTATE_BV only for the components XCR0 enables
            // and leaves the others' bits as they were (SDM Vol. 1 13.7): a
            // guest that saved with XCR0 = 7, then set XCR0 = 1, leaves bits
            // 1 and 2 set, and XRSTOR of XSTATE_BV bits outside XCR0 is #GP
            // (13.8) in the hypervisor (found by XTF's
            // fpu-exception-emulation). Clear them: those components are
            // off, their state is not the guest's to keep.
            // SAFETY: the header lies inside the area (size ≥ 512 + 64).
            unsafe {
                let bv = self.area.add(XSTATE_BV_OFFSET).cast::<u64>();
                bv.write(bv.read() & self.xcr0);
            }
        } else {
            // SAFETY: FXSAVE64 writes 512 bytes to the 16-byte-aligned area.
            unsafe { asm!("fxsave64 [{}]", in(reg) self.area, options(nostack)) };
        }
    }

    /// Loads this state (and XCR0) into the CPU for its domain.
    pub fn restore(&self) {
        if xsave_enabled() {
            // SAFETY: XCR0 was read from this CPU or is the x87-only reset
            // value; the area holds an XSAVE image (or the zero-header init
            // image) of the same format.
            unsafe {
                asm!("xsetbv", in("ecx") 0, in("eax") self.xcr0 as u32, in("edx") (self.xcr0 >> 32) as u32, options(nomem, nostack));
                asm!("xrstor64 [{}]", in(reg) self.area, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack));
            }
        } else {
            // SAFETY: as for `save`.
            unsafe { asm!("fxrstor64 [{}]", in(reg) self.area, options(nostack)) };
        }
    }
}

impl Drop for FpuState {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this size and alignment.
        unsafe {
            alloc::alloc::dealloc(
                self.area,
                Layout::from_size_align_unchecked(self.size, ALIGN),
            )
        };
    }
}
