//! The driver domain: a PVH guest that serves every other domain's XenStore and console, and writes the toolstack's start-of-day entries.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("driver-domain runs as domain 0 of Xenolith: `cargo xtask run`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod blk;
#[cfg(target_os = "none")]
mod dma;
#[cfg(target_os = "none")]
mod grants;
#[cfg(target_os = "none")]
mod hypercall;
#[cfg(target_os = "none")]
mod net;
#[cfg(target_os = "none")]
mod page;
#[cfg(target_os = "none")]
mod serial;
#[cfg(target_os = "none")]
mod service;
#[cfg(target_os = "none")]
mod virtio;
#[cfg(target_os = "none")]
mod xen;

#[cfg(target_os = "none")]
pvh_guest_rt::entry!(main = driver_main, fault = driver_fault);

#[cfg(target_os = "none")]
extern crate alloc;

/// The heap: the XenStore tree, connections and output queues, the disks'
/// scratch buffers, the vifs' queues. An allocation it cannot satisfy
/// ends this domain: `handle_alloc_error`'s default in a `no_std` binary
/// panics ("memory allocation of N bytes failed"), and `panic` below
/// crashes the domain. So nothing a guest sends may size an allocation
/// unchecked: the XenStore holds each guest to its quotas
/// (`xenstore::Config`: node-size, nodes, watches, transactions and the
/// per-domain memory quota that sums them) and copies guest-sized bytes
/// with `try_reserve` (ENOMEM instead of the panic).
#[cfg(target_os = "none")]
const HEAP_BYTES: usize = 8 << 20;

#[cfg(target_os = "none")]
#[repr(align(4096))]
struct HeapArea([u8; HEAP_BYTES]);

#[cfg(target_os = "none")]
static mut HEAP_AREA: HeapArea = HeapArea([0; HEAP_BYTES]);

#[cfg(target_os = "none")]
#[global_allocator]
static HEAP: buddy_system_allocator::LockedHeap<32> = buddy_system_allocator::LockedHeap::empty();

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    // What is buffered goes out first, then this, at once.
    serial::unbuffer();
    log!("panic: {info}");
    hypercall::shutdown(xen_abi::hypercall::SHUTDOWN_CRASH)
}

#[cfg(target_os = "none")]
fn driver_fault() -> ! {
    serial::unbuffer();
    log!("unexpected exception");
    hypercall::shutdown(xen_abi::hypercall::SHUTDOWN_CRASH)
}

#[cfg(target_os = "none")]
fn driver_main(start: u64) -> ! {
    hypercall::init();
    // SAFETY: the heap area is handed to the allocator once, before any allocation.
    unsafe {
        let area = core::ptr::addr_of_mut!(HEAP_AREA.0);
        HEAP.lock().init(area as usize, HEAP_BYTES);
    }
    // SAFETY: `start` is the hvm_start_info the hypervisor passed; it, the
    // command line and module 0 (the domain table and the RAM disks after
    // it) lie in this domain's RAM, which entry.S identity-maps.
    let (cmdline, table) = unsafe {
        (
            pvh_guest_rt::start_info::cmdline(start),
            pvh_guest_rt::start_info::first_module(start),
        )
    };
    log!("driver domain up, cmdline {cmdline:?}");
    if let Err(e) = xen::init() {
        log!("fatal: shared_info or callback vector refused: {e}");
        hypercall::shutdown(xen_abi::hypercall::SHUTDOWN_CRASH);
    }
    let parsed = match drivers_split::domains::parse(table) {
        Ok(t) => t,
        Err(e) => {
            log!("fatal: domain table: {e}");
            hypercall::shutdown(xen_abi::hypercall::SHUTDOWN_CRASH);
        }
    };
    service::run(cmdline, parsed, (table.as_ptr() as u64, table.len()))
}
