//! A domain's Xen ABI state: shared_info, where its vcpu_info lives, event channels, HVM params, grant frames, time.

pub mod console_ring;
pub mod event_bits;
pub mod grants;
pub mod time;

use crate::guest_memory::{Fault, GuestMemory};
use crate::memory::HostFrames;
use alloc::boxed::Box;
use arrayvec::ArrayVec;
use ept::{Gpa, Hpa, MemType, PageSize, Perms};
use event_bits::DomainBits;
use vcpu::{AddressSpace, FrameAlloc};
use xen_abi::shared_info::{vcpu_info_offset, UPCALL_PENDING_OFFSET};
use xenolith::evtchn::{EventChannels, Notify, Port};

/// Grant-table frames a domain may have (Xen's default `max_grant_frames` is 64;
/// Linux asks for what `query_size` reports).
pub const MAX_GRANT_FRAMES: usize = 32;
/// The backend domain of the pre-created console and XenStore channels: the
/// driver domain, domain 0, once it exists.
const BACKEND_DOMID: u16 = 0;

pub struct XenState {
    /// The hypervisor-owned shared_info frame (host-physical, identity-mapped).
    pub shared_info: u64,
    /// Where the guest mapped shared_info, if it has.
    pub shared_info_gfn: Option<u64>,
    /// vCPU 0's vcpu_info after VCPUOP_register_vcpu_info (guest-physical).
    pub vcpu_info_gpa: Option<u64>,
    /// The callback vector from HVM_PARAM_CALLBACK_IRQ type 2.
    pub callback_vector: Option<u8>,
    pub callback_irq: u64,
    pub evtchn: Box<EventChannels>,
    /// The singleshot timer's deadline in Xen system time (ns).
    pub timer_deadline_ns: Option<u64>,
    /// The runstate area's guest-physical address (translated once at registration).
    pub runstate_gpa: Option<u64>,
    /// Grant-table frames (host-physical) and where each is mapped in the guest.
    pub grant_frames: ArrayVec<(u64, Option<u64>), MAX_GRANT_FRAMES>,
    /// Pins of this domain's grants by others, and its mappings of theirs.
    pub grants: Box<grants::GrantState>,
    pub console_gfn: u64,
    pub console_port: Port,
    pub store_gfn: u64,
    pub store_port: Port,
    /// The driver domain serves this domain's console and XenStore (else
    /// the hypervisor serves the console and there is no XenStore).
    pub served_by_driver: bool,
}

impl XenState {
    /// Start-of-day Xen state for a domain: a live shared_info page (time and
    /// wallclock valid before the guest ever maps it), the console and
    /// XenStore channels pre-created unbound towards the backend domain
    /// (../shared/spec/xen-pvh-abi.md 10, items 6 and 7).
    pub fn new(domid: u16, console_gfn: u64, store_gfn: u64) -> Option<XenState> {
        let shared_info = HostFrames.alloc_zeroed(1)?;
        let mut evtchn = Box::new(EventChannels::new(domid, 1));
        let console_port = evtchn.alloc_unbound(BACKEND_DOMID).ok()?;
        let store_port = evtchn.alloc_unbound(BACKEND_DOMID).ok()?;
        let mut state = XenState {
            shared_info,
            shared_info_gfn: None,
            vcpu_info_gpa: None,
            callback_vector: None,
            callback_irq: 0,
            evtchn,
            timer_deadline_ns: None,
            runstate_gpa: None,
            grant_frames: ArrayVec::new(),
            // On the heap: its tables are tens of KiB, too big to move on the stack.
            grants: Box::new(grants::GrantState::new()),
            console_gfn,
            console_port,
            store_gfn,
            store_port,
            served_by_driver: false,
        };
        // Every event channel starts masked, as Xen's reset state (the guest unmasks).
        for word in 0..xen_abi::shared_info::EVTCHN_WORDS {
            state
                .shared_word(xen_abi::shared_info::EVTCHN_MASK_OFFSET + word * 8)
                .store(u64::MAX, core::sync::atomic::Ordering::Relaxed);
        }
        time::publish_shared(&state);
        // Grant frame 0 exists from the start, with refs 0 and 1 granting the
        // console and XenStore pages to the backend domain, as libxenguest's
        // xc_dom_gnttab_seed does; the guest maps the frame when it sets up
        // its grant table (XENMEM_add_to_physmap) and never uses refs 0-7.
        let frame0 = HostFrames.alloc_zeroed(1)?;
        state.grant_frames.push((frame0, None));
        let mut entries = grants::FrameEntries {
            frames: &state.grant_frames,
        };
        xenolith::grant_table::seed_reserved(
            &mut entries,
            Some((BACKEND_DOMID, console_gfn)),
            Some((BACKEND_DOMID, store_gfn)),
        )
        .ok()?;
        defmt::debug!(
            "d{=u16}: console GFN {=u64:#x} port {=u32}, XenStore GFN {=u64:#x} port {=u32}",
            domid,
            state.console_gfn,
            state.console_port,
            state.store_gfn,
            state.store_port
        );
        Some(state)
    }

    fn shared_word(&self, offset: usize) -> &core::sync::atomic::AtomicU64 {
        // SAFETY: `offset` is an 8-aligned offset inside the shared_info frame,
        // which this state owns; the guest may access it concurrently, so
        // only atomic operations are used.
        unsafe { &*((self.shared_info + offset as u64) as *const core::sync::atomic::AtomicU64) }
    }

    /// The event bits of this domain, over shared_info and its vcpu_info.
    pub fn bits<'a>(&self, space: &'a dyn AddressSpace) -> DomainBits<'a> {
        event_bits_of(self.shared_info, self.vcpu_info_gpa, space)
    }

    /// Whether vCPU 0's `evtchn_upcall_pending` is set.
    pub fn upcall_pending(&self, space: &dyn AddressSpace) -> bool {
        let mut b = [0u8];
        let read = match self.vcpu_info_gpa {
            Some(gpa) => {
                GuestMemory::new(space).read_gpa(gpa + UPCALL_PENDING_OFFSET as u64, &mut b)
            }
            None => {
                // SAFETY: a byte inside the owned shared_info frame.
                b[0] = unsafe {
                    core::ptr::read_volatile(
                        (self.shared_info + (vcpu_info_offset(0) + UPCALL_PENDING_OFFSET) as u64)
                            as *const u8,
                    )
                };
                Ok(())
            }
        };
        read.is_ok() && b[0] != 0
    }

    /// Raises VIRQ `virq` on vCPU 0.
    pub fn raise_virq(&mut self, space: &dyn AddressSpace, virq: u32) -> Notify {
        let mut bits = self.bits(space);
        self.evtchn.raise_virq(&mut bits, virq, 0)
    }

    /// Frees the hypervisor-owned frames, and drops the FIFO ABI's hold on
    /// the guest frames it uses (they are the domain's RAM, freed with it).
    pub fn destroy(&mut self) {
        self.evtchn.release_fifo();
        HostFrames.free(self.shared_info, 1);
        for (hpa, _) in &self.grant_frames {
            HostFrames.free(*hpa, 1);
        }
    }
}

/// The event bits over a shared_info frame and a vcpu_info location (split
/// from `XenState` so the channel table can be borrowed mutably beside them).
pub fn event_bits_of(
    shared_info: u64,
    vcpu_info_gpa: Option<u64>,
    space: &dyn AddressSpace,
) -> DomainBits<'_> {
    DomainBits::new(shared_info, vcpu_info_gpa, space)
}

/// Puts the host frame `hpa` at guest frame `gfn` (replacing whatever was
/// there: a RAM page, or nothing in a hole), read-write, write-back.
pub fn map_frame(space: &mut dyn AddressSpace, gfn: u64, hpa: u64) -> Result<ept::Flush, Fault> {
    let gpa = gfn.checked_mul(4096).ok_or(Fault)?;
    space
        .map(
            &mut HostFrames,
            Gpa(gpa),
            Hpa(hpa),
            PageSize::Size4K,
            Perms::RW,
            MemType::WriteBack,
        )
        .map_err(|_| Fault)
}
