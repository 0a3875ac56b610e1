//! `cargo xtask bench blk`: sequential and random disk I/O in the guest kit's Linux, through blkfront, blkback and the driver domain's virtio driver, against the same disk as virtio-blk in a guest QEMU boots directly.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::bench_report::{bench_fields, bench_line, exit_counts, mb_per_s_us};
use crate::judge::numbered;
use crate::linux::{self, GuestMem, LinuxGuest};
use crate::modules::Module;
use crate::run::{self, BootSpec, Payload};
use crate::session::{self, Com1, Launch, Outcome, Paths};
use crate::setup::{self, Need};
use crate::{build, kit, qemu, Accel, BenchArgs, ImageArgs};

/// How long one benchmark boot may take (`bench net` too).
pub const TIMEOUT: Duration = Duration::from_secs(600);
/// The raw disk both guests use (sparse; the test touches its first 128 MiB).
const DISK_MIB: u64 = 256;

/// What starts the driver domain's end-of-run line for the bench's disk.
const BACKEND_DONE: &str = "(d0) domain 1: xvda disconnected after ";

/// One guest's `BENCH blk ...` line; times in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Numbers {
    mib: u64,
    write_us: u64,
    read_us: u64,
    reads: u64,
    random_us: u64,
}

impl Numbers {
    fn parse(line: &str) -> Option<Self> {
        let mut n = Numbers::default();
        for (k, v) in bench_fields(line, "BENCH blk ")? {
            let v: u64 = v.parse().ok()?;
            match k {
                "mib" => n.mib = v,
                "write_us" => n.write_us = v,
                "read_us" => n.read_us = v,
                "reads" => n.reads = v,
                "random_us" => n.random_us = v,
                _ => return None,
            }
        }
        (n.mib > 0 && n.reads > 0).then_some(n)
    }

    fn mb_s(&self, us: u64) -> f64 {
        mb_per_s_us(self.mib, us)
    }

    fn iops(&self) -> f64 {
        self.reads as f64 / (self.random_us.max(1) as f64 / 1e6)
    }
}

/// The ring notifications blkback counted, from the driver domain's
/// end-of-run line for xvda.
fn backend_notifications(line: &str) -> Option<u64> {
    let rest = line.strip_prefix(BACKEND_DONE)?;
    rest.split(" batches, ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Microseconds blkback spent serving the rings and, of those, in the
/// device, from the same line (`..., 416713 us serving, 235387 us in the
/// device`); None where the line does not carry them.
fn backend_times(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix(BACKEND_DONE)?;
    let field = |unit: &str| {
        rest.split(", ")
            .find_map(|f| f.strip_suffix(unit)?.parse::<u64>().ok())
    };
    Some((field(" us serving")?, field(" us in the device")?))
}

fn fresh_disk(path: &Path) -> Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.set_len(DISK_MIB << 20)?;
    Ok(())
}

/// `cargo xtask bench blk`.
pub fn blk(args: &BenchArgs) -> Result<ExitCode> {
    setup::ensure(&[Need::Qemu])?;
    if args.accel == Accel::Kvm {
        qemu::check_kvm()?;
    }
    let kit = kit::ensure()?;
    let image = build::image(&ImageArgs::release(args.image.clone()))?;
    let mem = GuestMem::DEFAULT;
    let mem_mib = linux::machine_mib(Some(mem));
    println!(
        "==> bench blk: 128 MiB written then read in 1 MiB O_DIRECT blocks, then 500 random \
         4 KiB O_DIRECT reads within them (one busybox dd each), on a fresh {DISK_MIB} MiB raw \
         virtio-blk disk"
    );

    // Direct: QEMU boots the kit itself; the guest drives virtio-blk.
    let dir = build::run_dir("bench-blk-direct")?;
    let disk = dir.join("disk.raw");
    fresh_disk(&disk)?;
    let paths = Paths::in_dir(&dir);
    let com1 = Com1::Fifo { echo: false };
    let boot = qemu::Boot::Pvh {
        kernel: kit.vmlinux.clone(),
        initrd: kit.initramfs.clone(),
        cmdline: "console=ttyS0 xenolith.bench=blk-virtio".into(),
    };
    let command = qemu::command(
        &boot,
        args.accel,
        mem_mib,
        &com1,
        &paths,
        &dir,
        &[disk.into()],
    )?;
    let direct_out = run_direct(command, &paths)?;
    let direct = bench_line(&direct_out.lines, "", Numbers::parse).context("direct boot")?;

    // Nested: Xenolith, the driver domain with the disk, the kit as domain 1.
    let dir = build::run_dir("bench-blk-nested")?;
    let disk = dir.join("disk.raw");
    fresh_disk(&disk)?;
    let mut modules = LinuxGuest {
        vmlinux: std::fs::read(&kit.vmlinux)?,
        initrd: std::fs::read(&kit.initramfs)?,
        cmdline: "console=hvc0 xenolith.bench=blk-xen".into(),
    }
    .modules();
    modules.push(build::driver_domain_module()?);
    modules.push(Module {
        name: format!("{}.cmdline", build::DRIVER_DOMAIN_MODULE),
        data: b"vbd=linux:xvda:rw:virtio:0".to_vec(),
    });
    let spec = BootSpec {
        accel: args.accel,
        ..BootSpec::qemu(
            Payload::Modules(modules),
            build::with_driver_domain(&linux::hv_cmdline("", mem)),
            mem_mib,
            vec![disk.into()],
        )
    };
    let nested_out = run::boot_quietly(&spec, &dir, &image, TIMEOUT)?;
    let lines = numbered(&nested_out.lines);
    let nested = bench_line(&lines, "(d1) ", Numbers::parse).context("nested boot")?;

    println!("                         direct virtio-blk   Xenolith blkfront   ratio");
    let row = |what: &str, d: f64, n: f64, unit: &str| {
        println!(
            "  {what:<22} {d:>12.1} {unit:<5} {n:>12.1} {unit:<5} {:>7.2}",
            n / d.max(f64::MIN_POSITIVE)
        )
    };
    row(
        "sequential write",
        direct.mb_s(direct.write_us),
        nested.mb_s(nested.write_us),
        "MB/s",
    );
    row(
        "sequential read",
        direct.mb_s(direct.read_us),
        nested.mb_s(nested.read_us),
        "MB/s",
    );
    row("random 4 KiB read", direct.iops(), nested.iops(), "IOPS");
    let moved_mib = (2 * nested.mib) as f64 + nested.reads as f64 * 4.0 / 1024.0;
    let backend_notes = lines.iter().find_map(|l| backend_notifications(l));
    let backend_line = lines
        .iter()
        .find_map(|l| backend_times(l))
        .map(|(serving, device)| {
            let per_mib = |us: u64| us as f64 / 1000.0 / moved_mib;
            format!(
                "  blkback per MiB moved: {:.2} ms serving rings, of which {:.2} ms in the device \
                 (the rest is grant copies and ring work)",
                per_mib(serving),
                per_mib(device),
            )
        });
    match (exit_counts(&lines, 0), exit_counts(&lines, 1)) {
        (Some((d0_exits, d0_sends)), Some((d1_exits, d1_sends))) => {
            println!(
                "  per MiB moved ({moved_mib:.0} MiB): {:.1} VM exits (guest {:.1}, driver domain {:.1}), \
                 {:.2} event-channel notifications (guest to backend {:.2}, backend to guest {:.2})",
                (d0_exits + d1_exits) as f64 / moved_mib,
                d1_exits as f64 / moved_mib,
                d0_exits as f64 / moved_mib,
                (d0_sends + d1_sends) as f64 / moved_mib,
                d1_sends as f64 / moved_mib,
                d0_sends as f64 / moved_mib,
            );
            if let Some(l) = &backend_line {
                println!("{l}");
            }
            if let Some(n) = backend_notes {
                println!("  blkback sent {n} ring notifications for the whole run");
            }
            println!("  (exits and sends count the whole boot, not only the I/O)");
        }
        _ => {
            println!("  no exit counts from the hypervisor");
            if let Some(l) = &backend_line {
                println!("{l}");
            }
        }
    }
    let seq = (nested.mb_s(nested.write_us) / direct.mb_s(direct.write_us))
        .min(nested.mb_s(nested.read_us) / direct.mb_s(direct.read_us));
    println!(
        "  target: sequential >= 0.80 of direct; measured {seq:.2} ({})",
        if seq >= 0.8 { "met" } else { "not met" }
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs a QEMU that boots the kit directly (no hypervisor, so nothing on COM2).
fn run_direct(command: std::process::Command, paths: &Paths) -> Result<Outcome> {
    session::run(Launch {
        command,
        paths,
        com1: Com1::Fifo { echo: false },
        elf: None,
        echo_hv: false,
        timeout: Some(TIMEOUT),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_lines_parse() {
        let n = Numbers::parse(
            "BENCH blk mib=128 write_us=500000 read_us=250000 reads=500 random_us=2000000",
        )
        .unwrap();
        assert_eq!(
            (n.mib, n.write_us, n.read_us, n.reads, n.random_us),
            (128, 500_000, 250_000, 500, 2_000_000)
        );
        // 128 MiB is 134.217728 MB.
        assert!((n.mb_s(n.write_us) - 268.435_456).abs() < 1e-6);
        assert!((n.mb_s(n.read_us) - 536.870_912).abs() < 1e-6);
        assert!((n.iops() - 250.0).abs() < 1e-9);
        assert_eq!(Numbers::parse("BENCH blk mib=128 bogus=1"), None);
        // The old centisecond keys are refused too.
        assert_eq!(
            Numbers::parse("BENCH blk mib=64 write_cs=50 read_cs=25 reads=500 random_cs=200"),
            None
        );
        assert_eq!(Numbers::parse("BENCH blk mib=0 reads=1"), None);
    }

    #[test]
    fn backend_lines_parse() {
        let long = "(d0) domain 1: xvda disconnected after 631 requests (0 errors), \
            67548 KiB read, 65536 KiB written, 631 batches, 631 notifications, \
            416713 us serving, 235387 us in the device";
        assert_eq!(backend_times(long), Some((416_713, 235_387)));
        assert_eq!(backend_notifications(long), Some(631));
        let short = "(d0) domain 1: xvda disconnected after 631 requests (0 errors), \
            67548 KiB read, 65536 KiB written, 631 batches, 17 notifications";
        assert_eq!(backend_times(short), None);
        assert_eq!(backend_notifications(short), Some(17));
        assert_eq!(backend_times("(d0) domain 1: xvda connected"), None);
    }
}
