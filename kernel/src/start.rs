//! `kernel_entry`: the 64-bit Rust entry both boot paths reach, and the order of start of day.

use crate::domain::{self, Ending};
use crate::memory::HostFrames;
use crate::power::{exit, fatal, ExitStatus};
use crate::{
    apic, boot, console, cpu, gdt, idt, log, memory, paging, pic, println, sched, selftest,
    speculation, time,
};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use vcpu::Exit;
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
    crate::hypercall::xen_version::save_command_line(boot.cmdline);

    if let Some(name) = cmdline::option(boot.cmdline, "selftest") {
        println!("selftest: {name}");
        if selftest::run(name).is_err() {
            fatal(format_args!("unknown selftest {name:?}"));
        }
        fatal(format_args!("selftest {name} did not fault"));
    }

    let tsc_khz = time::calibrate();
    cpu::enable_xsave();
    let features = cpu::features();
    let apic = apic::init().unwrap_or_else(|e| fatal(format_args!("local APIC: {e}")));
    let spec = speculation::init();
    let summary = CpuSummary {
        vendor: features.vendor(),
        virt: features.virt,
        x2apic: features.x2apic,
        xsave: features.xsave,
        invariant_tsc: features.invariant_tsc,
        tsc_khz,
        apic_timer_khz: apic.timer_khz,
        spec,
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

    let status = run_guests(&boot);
    exit(status)
}

/// RAM a guest gets unless `guest_mem=` says otherwise.
const DEFAULT_GUEST_RAM: u64 = 8 << 20;

/// The text of module `name`, if there is one and it is UTF-8.
fn module_text<'a>(boot: &BootInfo<'a>, name: &str) -> Option<&'a str> {
    let m = boot.modules.iter().find(|m| m.name == name)?;
    core::str::from_utf8(m.data).ok().map(str::trim)
}

/// Builds and runs every `guest=<module>[:<args>]` domain in turn. Success
/// when every domain powered off (or halted for good).
fn run_guests(boot: &BootInfo) -> ExitStatus {
    let mut guests = cmdline::options(boot.cmdline, "guest").peekable();
    if guests.peek().is_none() {
        println!("no domains to run");
        return ExitStatus::Success;
    }
    // Each backend answers only for its own vendor's CPUs.
    let spec = speculation::entry();
    let backend =
        vmx::backend(&mut HostFrames, spec).or_else(|| svm::backend(&mut HostFrames, spec));
    let mut backend = match backend {
        None => fatal(format_args!("this CPU has neither VMX nor SVM")),
        Some(Err(why)) => fatal(format_args!("hardware virtualization: {why}")),
        Some(Ok(backend)) => backend,
    };
    let ram = match cmdline::option(boot.cmdline, "guest_mem") {
        None => DEFAULT_GUEST_RAM,
        Some(text) => cmdline::parse_size(text)
            .filter(|s| s % xenolith::memory_map::PAGE_SIZE == 0 && *s > 0)
            .unwrap_or_else(|| fatal(format_args!("bad guest_mem= value {text:?}"))),
    };
    let mut status = ExitStatus::Success;
    let mut domains: Vec<domain::Domain> = Vec::new();
    for (index, spec) in guests.enumerate() {
        let id = index as u16 + 1;
        let (module, args) = cmdline::guest_spec(spec);
        // `<module>.cmdline` and `<module>.initrd` travel as modules of their own.
        let mut words: Vec<&str> = module_text(boot, &format!("{module}.cmdline"))
            .into_iter()
            .collect();
        words.extend(args);
        let guest_cmdline = words.join(" ");
        let initrd_name = format!("{module}.initrd");
        let initrd = boot
            .modules
            .iter()
            .find(|m| m.name == initrd_name)
            .map(|m| m.data);
        let Some(image) = boot.modules.iter().find(|m| m.name == module) else {
            println!("domain {id}: no boot module named {module:?}");
            status = ExitStatus::Failure;
            continue;
        };
        let created = time::rdtsc();
        // `<module>.mem` (a size such as "512M") overrides guest_mem= for one domain.
        let ram = match module_text(boot, &format!("{module}.mem")) {
            None => ram,
            Some(text) => match cmdline::parse_size(text)
                .filter(|s| s % xenolith::memory_map::PAGE_SIZE == 0 && *s > 0)
            {
                Some(size) => size,
                None => {
                    println!("domain {id} ({module}): bad memory size {text:?} in {module}.mem");
                    status = ExitStatus::Failure;
                    continue;
                }
            },
        };
        // `<module>.maxmem` (xl.cfg `maxmem`) caps what ballooning may grow
        // it to; without it, `memory` is the cap, as in xl.
        let max = match module_text(boot, &format!("{module}.maxmem")) {
            None => ram,
            Some(text) => match cmdline::parse_size(text)
                .filter(|s| s % xenolith::memory_map::PAGE_SIZE == 0 && *s >= ram)
            {
                Some(size) => size,
                None => {
                    println!("domain {id} ({module}): bad maxmem {text:?} in {module}.maxmem");
                    status = ExitStatus::Failure;
                    continue;
                }
            },
        };
        // Names are unique (the driver domain tags console lines with them):
        // a module booted twice is "linux", then "linux-2".
        let name = if domains.iter().any(|d| d.name == module) {
            format!("{module}-{id}")
        } else {
            String::from(module)
        };
        let spec = domain::Spec {
            id,
            name: &name,
            image: image.data,
            cmdline: &guest_cmdline,
            initrd,
            ram_bytes: ram,
            max_bytes: max,
            passthrough_ports: &[],
        };
        let mut dom = match domain::create(backend.as_mut(), &spec) {
            Ok(dom) => dom,
            Err(e) => {
                println!("domain {id} ({module}): not created: {e}");
                status = ExitStatus::Failure;
                continue;
            }
        };
        let build_us = (time::rdtsc() - created) * 1000 / time::tsc_khz().max(1);
        println!(
            "domain {id} ({name}): started, {} KiB, built in {} ms",
            ram >> 10,
            build_us / 1000
        );
        defmt::info!("domain {=u16} built in {=u64} us", id, build_us);
        // Typed input goes to the first domain's console (switching comes
        // with the driver domain's console backend).
        dom.console_input = domains.is_empty();
        domains.push(dom);
    }
    if let Some(module) = cmdline::option(boot.cmdline, "dom0") {
        match driver_domain(boot, backend.as_mut(), module, &mut domains) {
            Ok(dom) => domains.insert(0, dom),
            Err(why) => {
                println!("domain 0 ({module}): not created: {why}");
                return ExitStatus::Failure;
            }
        }
    }
    sched::run(&mut domains);
    for dom in domains {
        if !report(&dom) {
            status = ExitStatus::Failure;
        }
        dom.destroy();
    }
    status
}

/// RAM the driver domain gets unless `<module>.mem` says otherwise.
const DRIVER_DOMAIN_RAM: u64 = 32 << 20;

/// The driver domain's identity-mapped DMA pool, when it has a device:
/// bounce buffers for 4 vbds of 2 MiB each, and the virtqueues.
const DMA_POOL_BYTES: u64 = 10 << 20;

/// Where the driver domain's grant window starts (its own layout,
/// drivers-split `xen.rs`): the identity-mapped pool must end below it.
const DRIVER_GRANT_WINDOW: u64 = 0x8000_0000;

/// Host frames for the DMA pool whose addresses, used as guest-physical
/// ones, lie above the driver domain's RAM (`ram` bytes from 0) and below
/// its grant window. The allocator hands out low frames first: frames that
/// fall inside the RAM's range are held until a fitting block turns up,
/// then given back.
fn alloc_dma_pool(ram: u64) -> Option<u64> {
    let frames = (DMA_POOL_BYTES / memory_map::PAGE_SIZE) as usize;
    let mut held = Vec::new();
    let found = loop {
        let Some(base) = memory::alloc_frames(frames) else {
            break None;
        };
        if base >= ram && base + DMA_POOL_BYTES <= DRIVER_GRANT_WINDOW {
            break Some(base);
        }
        held.push(base);
        if base + DMA_POOL_BYTES > DRIVER_GRANT_WINDOW || held.len() > 64 {
            break None;
        }
    };
    for base in held {
        memory::free_frames(base, frames);
    }
    found
}

/// COM1's eight registers: the driver domain's console port.
static COM1_PORTS: [u16; 8] = [0x3f8, 0x3f9, 0x3fa, 0x3fb, 0x3fc, 0x3fd, 0x3fe, 0x3ff];

/// Builds domain 0, the driver domain, from boot module `module`: it gets
/// COM1, and as its module 0 the domain table describing every guest
/// (xen_abi::domain_table), whose consoles and XenStore it then serves.
fn driver_domain(
    boot: &BootInfo,
    backend: &mut dyn vcpu::Backend,
    module: &str,
    guests: &mut [domain::Domain],
) -> Result<domain::Domain, String> {
    use xen_abi::domain_table::*;
    let image = boot
        .modules
        .iter()
        .find(|m| m.name == module)
        .ok_or_else(|| format!("no boot module named {module:?}"))?;
    if guests.len() > DOMAIN_TABLE_MAX {
        return Err(format!("more than {DOMAIN_TABLE_MAX} guests"));
    }
    let mut table = Vec::from(header(guests.len()).to_bytes());
    for g in guests.iter_mut() {
        g.xen.served_by_driver = true;
        g.console_input = false;
        let entry = DomainTableEntry {
            domid: g.id,
            vcpus: 1,
            console_port: g.xen.console_port,
            store_port: g.xen.store_port,
            reserved: 0,
            memory_kib: g.map_ram_kib(),
            // maxmem - memory on top of the RAM in its map, as xl's
            // static-max is maxmem to its target's memory.
            static_max_kib: g.map_ram_kib()
                + (g.ram.max_pages().saturating_sub(g.ram.tot_pages()) << 2),
            console_gfn: g.xen.console_gfn,
            store_gfn: g.xen.store_gfn,
            name: name_field(&g.name),
        };
        table.extend_from_slice(&entry.to_bytes());
    }
    let devices = crate::pci::virtio_block_devices();
    let mut res = DriverResources {
        nr_devices: devices.len() as u32,
        ..Default::default()
    };
    res.devices[..devices.len()].copy_from_slice(&devices);
    // RAM disks follow the table in the same module, page-aligned. The
    // module can be far larger than the heap: it is assembled in frames.
    let res_at = table.len();
    table.extend_from_slice(&res.to_bytes());
    let mut end = table.len();
    let mut disks: Vec<&[u8]> = Vec::new();
    for name in cmdline::options(boot.cmdline, "ramdisk") {
        let m = boot
            .modules
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| format!("no boot module named {name:?} for ramdisk="))?;
        let i = res.nr_ramdisks as usize;
        if i == MAX_RAMDISKS {
            return Err(format!("more than {MAX_RAMDISKS} RAM disks"));
        }
        let offset = end.next_multiple_of(4096);
        res.ramdisks[i] = RamDiskEntry {
            offset: offset as u64,
            size: m.data.len() as u64,
            name: name_field(name),
        };
        res.nr_ramdisks += 1;
        disks.push(m.data);
        end = offset + m.data.len();
    }
    let frames = end.div_ceil(4096);
    let module_hpa = memory::alloc_frames(frames).ok_or("no memory for the domain table")?;
    // SAFETY: fresh frames, owned here until freed below, identity-mapped.
    let blob = unsafe { core::slice::from_raw_parts_mut(module_hpa as *mut u8, end) };
    blob.fill(0);
    blob[..table.len()].copy_from_slice(&table);
    for (d, bytes) in res.ramdisks.iter().zip(&disks) {
        blob[d.offset as usize..d.offset as usize + bytes.len()].copy_from_slice(bytes);
    }
    drop(table);
    let table = blob;
    let ram = match module_text(boot, &format!("{module}.mem")) {
        None => DRIVER_DOMAIN_RAM,
        Some(text) => cmdline::parse_size(text)
            .filter(|s| s % memory_map::PAGE_SIZE == 0 && *s > 0)
            .ok_or_else(|| format!("bad memory size {text:?} in {module}.mem"))?,
    };
    // The RAM disks live in the driver domain's RAM, on top of what it needs.
    let ram = ram + (table.len() as u64).next_multiple_of(2 << 20);
    let pool = if devices.is_empty() {
        None
    } else {
        Some(
            alloc_dma_pool(ram)
                .ok_or("no room for the DMA pool between the driver domain's RAM and 2 GiB")?,
        )
    };
    if let Some(base) = pool {
        res.dma_base = base;
        res.dma_size = DMA_POOL_BYTES;
    }
    table[res_at..res_at + DriverResources::SIZE].copy_from_slice(&res.to_bytes());
    let mut ports = Vec::from(COM1_PORTS);
    for d in &devices {
        ports.extend(d.io_base..d.io_base + d.io_size);
    }
    let spec = domain::Spec {
        id: 0,
        name: "Domain-0",
        image: image.data,
        cmdline: module_text(boot, &format!("{module}.cmdline")).unwrap_or(""),
        initrd: Some(table),
        ram_bytes: ram,
        max_bytes: ram,
        // Built once per run and kept by the vCPU's I/O bitmap for its life.
        passthrough_ports: Vec::leak(ports),
    };
    let created = domain::create(backend, &spec).map_err(|e| format!("{e}"));
    // Start of day copied the module into the domain's RAM.
    memory::free_frames(module_hpa, frames);
    let mut dom = match created {
        Ok(dom) => dom,
        Err(e) => {
            if let Some(base) = pool {
                memory::free_frames(base, (DMA_POOL_BYTES / memory_map::PAGE_SIZE) as usize);
            }
            return Err(e);
        }
    };
    dom.driver = true;
    if let Some(base) = pool {
        dom.give_dma_pool(base, DMA_POOL_BYTES)?;
    }
    for d in &devices {
        println!(
            "domain 0 (Domain-0): virtio block device {:02x}:{:02x}.{} (ports {:#x}+{:#x})",
            d.bdf >> 8,
            (d.bdf >> 3) & 31,
            d.bdf & 7,
            d.io_base,
            d.io_size
        );
    }
    if let Some(base) = pool {
        println!(
            "domain 0 (Domain-0): DMA pool of {} KiB identity-mapped at {base:#x}",
            DMA_POOL_BYTES >> 10
        );
    }
    println!(
        "domain 0 (Domain-0): driver domain from {module}, {} KiB, serving {} guests; COM1 is its console from here on",
        ram >> 10,
        guests.len()
    );
    crate::console::hand_over();
    Ok(dom)
}

/// Prints how the domain ended and its exits per reason; true for a clean end.
fn report(dom: &domain::Domain) -> bool {
    let (text, clean) = Ending::describe(dom.ending.as_ref(), dom.driver);
    crate::hypercall::end_console_line();
    println!("domain {} ({}): {text}", dom.id, dom.name);
    let mut line = String::new();
    let mut total = 0;
    for (name, count) in Exit::REASONS.iter().zip(dom.exits) {
        total += count;
        if count > 0 {
            line.push_str(&format!(" {name}={count}"));
            defmt::info!("d{=u16} exits {=str}: {=u64}", dom.id, name, count);
        }
    }
    let cpu_ms = dom.cpu_tsc / time::tsc_khz().max(1);
    defmt::info!("d{=u16} ran {=u64} ms", dom.id, cpu_ms);
    println!(
        "domain {} exits:{line} total={total} unknown-hypercalls={} cpu={cpu_ms}ms sends={}",
        dom.id, dom.unknown_hypercalls, dom.evtchn_sends
    );
    let mut ports = dom.io_ports.clone();
    ports.sort_unstable_by_key(|(_, n)| core::cmp::Reverse(*n));
    for (port, count) in ports.iter().take(4) {
        defmt::info!(
            "d{=u16} I/O exits on port {=u16:#x}: {=u64}",
            dom.id,
            port,
            count
        );
    }
    clean
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
