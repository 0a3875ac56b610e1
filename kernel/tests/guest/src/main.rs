//! The test guest: runs a check list against the hypervisor and reports each result on its console.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("test-guest runs as a guest of Xenolith: `cargo xtask run --guest test`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod blk_garbage;
#[cfg(target_os = "none")]
mod checks;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod evtchn_fifo;
#[cfg(target_os = "none")]
mod frontend;
#[cfg(target_os = "none")]
mod fuzz;
#[cfg(target_os = "none")]
mod fuzz_xenstore;
#[cfg(target_os = "none")]
mod hypercall;
#[cfg(target_os = "none")]
mod idt;
#[cfg(target_os = "none")]
mod mmio;
#[cfg(target_os = "none")]
mod net_garbage;
#[cfg(target_os = "none")]
mod paging_modes;

#[cfg(target_os = "none")]
pvh_guest_rt::entry!(main = guest_main, fault = guest_unexpected);

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("panic: {info}");
    fuzz::report_last();
    hypercall::shutdown(xen_abi::hypercall::SHUTDOWN_CRASH)
}

#[cfg(target_os = "none")]
fn guest_main(start_info: u64) -> ! {
    hypercall::init();
    idt::init();
    // SAFETY: `start_info` is the hvm_start_info the hypervisor passed, in
    // this guest's RAM, which entry.S identity-maps.
    let cmdline = unsafe { pvh_guest_rt::start_info::cmdline(start_info) };
    println!("test guest up, cmdline {cmdline:?}");
    let word = |w: &str| cmdline.split_ascii_whitespace().any(|x| x == w);
    checks::configure(
        word(checks::DR6_LOST_WORD),
        word(checks::DATA_BREAKPOINT_WORD),
        word(checks::ALIGNMENT_CHECK_WORD),
    );
    let (passed, failed) = checks::run_all();
    println!("{passed} passed, {failed} failed");
    type Pair = fn() -> Result<&'static str, &'static str>;
    let pairs: [(&str, &str, Pair); 6] = [
        ("evtchn-listen", "evtchn", checks::evtchn_listen),
        ("evtchn-send", "evtchn", checks::evtchn_send),
        ("grant-give", "grant", checks::grant_give),
        ("grant-take", "grant", checks::grant_take),
        ("blk-garbage", "blk", blk_garbage::run),
        ("net-garbage", "net", net_garbage::run),
    ];
    for (mode, label, run) in pairs {
        if word(mode) {
            match run() {
                Ok(what) => println!("{label}: {what}: ok"),
                Err(why) => {
                    println!("{label}: FAIL {why}");
                    hypercall::shutdown(xen_abi::hypercall::SHUTDOWN_CRASH)
                }
            }
        }
    }
    // The fuzz modes (`fuzz-hypercalls=N:SEED` and the like, fuzz.rs).
    let fuzzed = fuzz::run(cmdline);
    if word("oob") {
        println!("reading beyond guest RAM at 0x40000000 with an instruction not emulated: the hypervisor must end this domain");
        pvh_guest_rt::fatal::access_unemulated()
    }
    if word("odd-shutdown") && failed == 0 {
        // A reason Xen has no name for: Xen keeps its low byte
        // (domain_shutdown(d, (u8)reason)) and ends the domain with it.
        println!("shutting down with reason 0x1234");
        hypercall::shutdown(0x1234)
    }
    let reason = if failed == 0 && fuzzed != Some(false) {
        xen_abi::hypercall::SHUTDOWN_POWEROFF
    } else {
        xen_abi::hypercall::SHUTDOWN_CRASH
    };
    hypercall::shutdown(reason)
}

#[cfg(target_os = "none")]
fn guest_unexpected() -> ! {
    println!("unexpected exception or interrupt");
    fuzz::report_last();
    hypercall::shutdown(xen_abi::hypercall::SHUTDOWN_CRASH)
}
