//! `kernel_entry`: the 64-bit Rust entry both boot paths reach, and the order of start of day.

use crate::power::{exit, fatal, ExitStatus};
use crate::{apic, boot, console, cpu, gdt, idt, log, memory, paging, pic, println, selftest, time};
use xenolith::boot_info::{BootInfo, RegionKind};
use xenolith::caps_line::CpuSummary;
use xenolith::{cmdline, fnv, memory_map};

/// The boot page tables map the low 4 GiB; memory above is usable only once
/// the hypervisor's own tables are in place.
const BOOT_MAPPED: u64 = 1 << 32;

#[no_mangle]
extern "C" fn kernel_entry(kind: u32, info: u64) -> ! {
    console::init();
    log::init();
    gdt::init();
    idt::init();
    pic::mask_all();
    let loader = boot::loader(kind);
    println!(
        "Xenolith {} booted via {}",
        env!("CARGO_PKG_VERSION"),
        loader.name()
    );
    defmt::info!(
        "Xenolith {=str} booted via {=str}",
        env!("CARGO_PKG_VERSION"),
        loader.name()
    );

    let boot = boot::read(kind, info).unwrap_or_else(|e| fatal(format_args!("{e}")));
    println!("cmdline: {}", boot.cmdline);
    for m in &boot.modules {
        println!(
            "module: name={} size={} fnv1a={:016x}",
            m.name,
            m.data.len(),
            fnv::fnv1a64(m.data)
        );
        defmt::info!("module {=str}: {=usize} bytes", m.name, m.data.len());
    }
    if let Some(rsdp) = boot.rsdp {
        defmt::info!("ACPI RSDP at {=u64:#x}", rsdp);
    }

    init_memory(&boot);

    if let Some(name) = cmdline::option(boot.cmdline, "selftest") {
        println!("selftest: {name}");
        if selftest::run(name).is_err() {
            fatal(format_args!("unknown selftest {name:?}"));
        }
        fatal(format_args!("selftest {name} did not fault"));
    }

    let tsc_khz = time::calibrate();
    let features = cpu::features();
    let apic = apic::init().unwrap_or_else(|e| fatal(format_args!("local APIC: {e}")));
    let summary = CpuSummary {
        vendor: features.vendor(),
        virt: features.virt,
        x2apic: features.x2apic,
        xsave: features.xsave,
        invariant_tsc: features.invariant_tsc,
        tsc_khz,
        apic_timer_khz: apic.timer_khz,
    };
    println!("{}", summary);
    defmt::info!(
        "cpu {=str}: virt {}, apic id {=u32}, tsc {=u64} kHz, apic timer {=u64} kHz",
        summary.vendor,
        features.virt,
        apic.id,
        tsc_khz,
        apic.timer_khz
    );

    // Guests arrive with the next steps; with none to run, the run is over.
    println!("no domains to run");
    exit(ExitStatus::Success)
}

/// Heap, frames and page tables over the usable RAM of the memory map.
fn init_memory(boot: &BootInfo) {
    let limit = match cmdline::option(boot.cmdline, "mem") {
        None => u64::MAX,
        Some(text) => cmdline::parse_size(text)
            .unwrap_or_else(|| fatal(format_args!("bad mem= value {text:?}"))),
    };
    let mut reserved = boot.reserved.clone();
    if reserved.try_push(paging::image_range()).is_err() {
        fatal(format_args!("too many boot structures"));
    }
    let usable = memory_map::usable(&boot.memory, &reserved, limit);
    let total = memory_map::total(&usable);
    if total < memory::MIN_USABLE || !memory::init(&usable, BOOT_MAPPED) {
        fatal(format_args!(
            "not enough usable memory: {} KiB usable, {} KiB needed",
            total >> 10,
            memory::MIN_USABLE >> 10
        ));
    }
    let top = boot
        .memory
        .iter()
        .filter(|r| r.kind != RegionKind::Other(0))
        .map(|r| r.range.end)
        .max()
        .unwrap_or(0)
        .max(BOOT_MAPPED);
    paging::init(top).unwrap_or_else(|_| fatal(format_args!("out of frames for page tables")));
    memory::add_above(&usable, BOOT_MAPPED);
    println!(
        "memory: {} KiB usable in {} ranges, heap {} KiB",
        total >> 10,
        usable.len(),
        memory::heap_bytes() >> 10
    );
    defmt::info!(
        "memory: {=u64} KiB usable in {=usize} ranges",
        total >> 10,
        usable.len()
    );
}
