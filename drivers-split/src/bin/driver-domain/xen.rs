//! This domain's side of the Xen ABI: shared_info and the upcall, event channels, grant maps, the singleshot timer.

use crate::hypercall::{call, call_with};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use xen_abi::event_channel::*;
use xen_abi::grant_table::*;
use xen_abi::hvm::*;
use xen_abi::hypercall::*;
use xen_abi::memory::*;
use xen_abi::shared_info::*;
use xen_abi::vcpu::*;

/// Where shared_info is put: a hole in this domain's physical map, inside
/// the 4 GiB entry.S maps.
const SHARED_INFO_GFN: u64 = 0xc_0000;
/// Guests' pages are grant-mapped from here up, `WINDOW_PAGES` per guest:
/// console, XenStore, `RING_PAGES` for each of its vbds, and from
/// `VIF_PAGES` two pages for each of its vifs.
const GRANT_WINDOW: u64 = 0x8000_0000;
pub const WINDOW_PAGES: u64 = 128;
/// The most pages one ring may have (blkif `max-ring-page-order` 4).
pub const RING_PAGES: u64 = 16;
/// Where the vifs' transmit and receive ring pages start in a window.
pub const VIF_PAGES: u64 = 120;

/// Where page `page` of guest number `guest`'s window is.
pub fn window(guest: usize, page: u64) -> u64 {
    GRANT_WINDOW + (guest as u64 * WINDOW_PAGES + page) * 4096
}

/// The byte the upcall stub clears.
#[no_mangle]
static UPCALL_PENDING_BYTE: AtomicU64 = AtomicU64::new(0);

// The event-channel upcall (HVM callback vector): acknowledge it by
// clearing vcpu_info.evtchn_upcall_pending, as Linux's
// __xen_evtchn_do_upcall does; the main loop scans the pending bits.
core::arch::global_asm!(
    ".global upcall_stub",
    "upcall_stub:",
    "push %rax",
    "mov UPCALL_PENDING_BYTE(%rip), %rax",
    "movb $0, (%rax)",
    "pop %rax",
    "iretq",
    options(att_syntax)
);

extern "C" {
    fn upcall_stub();
}

fn shared() -> u64 {
    SHARED_INFO_GFN << 12
}

fn word(offset: usize) -> &'static AtomicU64 {
    // SAFETY: an 8-aligned offset inside the shared_info page, which `init`
    // mapped at SHARED_INFO_GFN (identity-mapped by entry.S) for the life
    // of the domain; the hypervisor changes it concurrently, so only atomics.
    unsafe { &*((shared() + offset as u64) as *const AtomicU64) }
}

fn byte(offset: usize) -> &'static AtomicU8 {
    // SAFETY: as `word`.
    unsafe { &*((shared() + offset as u64) as *const AtomicU8) }
}

/// Maps shared_info, installs the IDT and asks for upcalls on
/// `LINUX_CALLBACK_VECTOR` (HVM_PARAM_CALLBACK_IRQ type 2).
pub fn init() -> Result<(), i64> {
    let mut xatp = XenAddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space: XENMAPSPACE_SHARED_INFO,
        idx: 0,
        gpfn: SHARED_INFO_GFN,
    };
    check(call_with(MEMORY_OP, XENMEM_ADD_TO_PHYSMAP, &mut xatp))?;
    UPCALL_PENDING_BYTE.store(
        shared() + (vcpu_info_offset(0) + UPCALL_PENDING_OFFSET) as u64,
        Ordering::Relaxed,
    );
    pvh_guest_rt::idt::install(&[(LINUX_CALLBACK_VECTOR, upcall_stub)]);
    let mut p = XenHvmParam {
        domid: DOMID_SELF,
        pad: 0,
        index: HVM_PARAM_CALLBACK_IRQ,
        value: callback_irq_vector(LINUX_CALLBACK_VECTOR),
    };
    check(call_with(HVM_OP, HVMOP_SET_PARAM, &mut p))
}

fn check(r: i64) -> Result<(), i64> {
    if r == 0 {
        Ok(())
    } else {
        Err(r)
    }
}

/// Lets `port` raise upcalls (every channel starts masked).
///
/// Only the hypervisor clears the mask bit (EVTCHNOP_unmask, Xen
/// `evtchn_2l_unmask`): it re-raises the port if it went pending while
/// masked, which every newly bound interdomain port has (bind sets it
/// pending). That re-raise happens only if the bit was still set when the
/// hypervisor looked, so clearing it here first would leave such a port
/// pending with its selector bit clear: every later notification on it
/// finds it pending already and wakes nobody.
pub fn unmask(port: u32) {
    let mut arg = port;
    call_with(EVENT_CHANNEL_OP, EVTCHNOP_UNMASK, &mut arg);
}

/// Clears what is pending (2-level ABI: the selector first, then the words
/// it names, as Linux's evtchn_2l does); the loop then looks at everything.
/// Returns whether `port` was among the ports taken.
pub fn take_pending(port: Option<u32>) -> bool {
    byte(vcpu_info_offset(0) + UPCALL_PENDING_OFFSET).store(0, Ordering::SeqCst);
    let sel = word(vcpu_info_offset(0) + PENDING_SEL_OFFSET).swap(0, Ordering::SeqCst);
    let mut seen = false;
    for w in 0..64 {
        if sel & (1 << w) != 0 {
            let bits = word(EVTCHN_PENDING_OFFSET + w * 8).swap(0, Ordering::SeqCst);
            seen |= port.is_some_and(|p| p as usize / 64 == w && bits & (1 << (p % 64)) != 0);
        }
    }
    seen
}

/// Whether an event came in since the last `take_pending`.
pub fn events_waiting() -> bool {
    word(vcpu_info_offset(0) + PENDING_SEL_OFFSET).load(Ordering::SeqCst) != 0
}

/// Sleeps until an upcall (or any interrupt): HLT with interrupts on, after
/// checking under CLI that nothing is pending (STI's one-instruction shadow
/// keeps the check and the HLT together).
pub fn idle() {
    // SAFETY: interrupts are off only between the check and HLT.
    unsafe { core::arch::asm!("cli") };
    if events_waiting() {
        // SAFETY: as above.
        unsafe { core::arch::asm!("sti") };
        return;
    }
    // SAFETY: as above; the upcall stub only clears a byte.
    unsafe { core::arch::asm!("sti; hlt") };
}

pub fn bind_interdomain(remote_dom: u16, remote_port: u32) -> Result<u32, i64> {
    let mut a = EvtchnBindInterdomain {
        remote_dom,
        pad: 0,
        remote_port,
        local_port: 0,
    };
    check(call_with(
        EVENT_CHANNEL_OP,
        EVTCHNOP_BIND_INTERDOMAIN,
        &mut a,
    ))?;
    Ok(a.local_port)
}

pub fn bind_virq(virq: u32) -> Result<u32, i64> {
    let mut a = EvtchnBindVirq {
        virq,
        vcpu: 0,
        port: 0,
    };
    check(call_with(EVENT_CHANNEL_OP, EVTCHNOP_BIND_VIRQ, &mut a))?;
    Ok(a.port)
}

pub fn send(port: u32) {
    let mut a = EvtchnSend { port };
    call_with(EVENT_CHANNEL_OP, EVTCHNOP_SEND, &mut a);
}

/// Maps grant `gref` of `domid` read-write at `host_addr` (in the
/// window); returns the address and the grant handle.
pub fn map_grant(domid: u16, gref: u32, host_addr: u64) -> Result<(u64, u32), i16> {
    let mut op = GnttabMapGrantRef {
        host_addr,
        flags: GNTMAP_HOST_MAP,
        r#ref: gref,
        dom: domid,
        status: 0,
        handle: 0,
        dev_bus_addr: 0,
    };
    let r = call(
        GRANT_TABLE_OP,
        GNTTABOP_MAP_GRANT_REF,
        &mut op as *mut _ as u64,
        1,
    );
    if r != 0 {
        return Err(GNTST_GENERAL_ERROR);
    }
    if op.status != GNTST_OKAY {
        return Err(op.status);
    }
    Ok((host_addr, op.handle))
}

/// Unmaps a page `map_grant` mapped.
pub fn unmap_grant(host_addr: u64, handle: u32) {
    let mut op = GnttabUnmapGrantRef {
        host_addr,
        dev_bus_addr: 0,
        handle,
        status: 0,
        pad: 0,
    };
    call(
        GRANT_TABLE_OP,
        GNTTABOP_UNMAP_GRANT_REF,
        &mut op as *mut _ as u64,
        1,
    );
}

/// GNTTABOP_copy of `ops` (at most 512 per call, the hypervisor's batch).
pub fn grant_copy(ops: &mut [GnttabCopy]) {
    for chunk in ops.chunks_mut(512) {
        let r = call(
            GRANT_TABLE_OP,
            GNTTABOP_COPY,
            chunk.as_mut_ptr() as u64,
            chunk.len() as u64,
        );
        if r != 0 {
            for op in chunk.iter_mut() {
                op.status = GNTST_GENERAL_ERROR;
            }
        }
    }
}

/// A frontend's rings mapped and its channel bound: each page's address
/// and grant handle, and the bound port.
pub struct Rings {
    pub maps: Vec<(u64, u32)>,
    pub port: u32,
}

/// Maps `grefs` of `domid` on consecutive pages from `base` and binds its
/// port `remote_port`, unmasked; on any failure undoes what it did.
pub fn connect_rings(
    domid: u16,
    grefs: &[u32],
    base: u64,
    remote_port: u32,
) -> Result<Rings, &'static str> {
    let mut maps = Vec::new();
    for (i, &gref) in grefs.iter().enumerate() {
        match map_grant(domid, gref, base + i as u64 * 4096) {
            Ok(m) => maps.push(m),
            Err(_) => {
                unmap_all(&maps);
                return Err("a ring page is not granted to this domain");
            }
        }
    }
    let Ok(port) = bind_interdomain(domid, remote_port) else {
        unmap_all(&maps);
        return Err("the event channel is not bindable");
    };
    unmask(port);
    Ok(Rings { maps, port })
}

/// Closes the channel and unmaps the pages (their users dropped first).
pub fn disconnect_rings(rings: Rings) {
    close(rings.port);
    unmap_all(&rings.maps);
}

fn unmap_all(maps: &[(u64, u32)]) {
    for &(addr, handle) in maps {
        unmap_grant(addr, handle);
    }
}

/// Closes a port of this domain.
pub fn close(port: u32) {
    let mut a = EvtchnClose { port };
    call_with(EVENT_CHANNEL_OP, EVTCHNOP_CLOSE, &mut a);
}

/// Xen system time in ns, from vCPU 0's pvclock (shared_info.h
/// `vcpu_time_info`: system_time + scaled TSC delta, version-checked).
pub fn now_ns() -> u64 {
    let base = vcpu_info_offset(0) + TIME_OFFSET;
    let ti = shared() + base as u64;
    loop {
        // SAFETY: reads of the time record inside the mapped shared_info page.
        let (v1, tsc_ts, sys, mul, shift, v2) = unsafe {
            let v1 = (*(ti as *const AtomicU32)).load(Ordering::Acquire);
            let tsc_ts = core::ptr::read_volatile((ti + 8) as *const u64);
            let sys = core::ptr::read_volatile((ti + 16) as *const u64);
            let mul = core::ptr::read_volatile((ti + 24) as *const u32);
            let shift = core::ptr::read_volatile((ti + 28) as *const i8);
            let v2 = (*(ti as *const AtomicU32)).load(Ordering::Acquire);
            (v1, tsc_ts, sys, mul, shift, v2)
        };
        if v1 != v2 || v1 & 1 != 0 {
            continue;
        }
        // SAFETY: RDTSC has no memory effects.
        let tsc = unsafe { core::arch::x86_64::_rdtsc() };
        let mut delta = tsc.wrapping_sub(tsc_ts);
        if shift >= 0 {
            delta <<= shift;
        } else {
            delta >>= -shift;
        }
        return sys.wrapping_add(((u128::from(delta) * u128::from(mul)) >> 32) as u64);
    }
}

/// Fires VIRQ_TIMER at system time `deadline_ns`.
pub fn set_timer(deadline_ns: u64) {
    let mut t = VcpuSetSingleshotTimer {
        timeout_abs_ns: deadline_ns,
        flags: 0,
        pad: 0,
    };
    call(
        VCPU_OP,
        VCPUOP_SET_SINGLESHOT_TIMER,
        0,
        &mut t as *mut _ as u64,
    );
}
