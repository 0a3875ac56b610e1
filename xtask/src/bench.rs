//! `cargo xtask bench boot`: the guest kit's Linux to its /init marker, booted directly by QEMU and under Xenolith.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use crate::bench_report::{exit_table, median, parse_exits};
use crate::linux::{self, GuestMem, LinuxGuest};
use crate::linux_judge::{self, MARKER};
use crate::modules::Module;
use crate::run::{self, BootSpec, Payload};
use crate::serial::{self, HvExit};
use crate::session::{self, Com1, Launch, Outcome, Paths};
use crate::setup::{self, Need};
use crate::{build, kit, qemu, Accel, BenchBootArgs, Emulator, ImageArgs};

/// QEMU's own PVH loader boots this kernel in seconds.
const DIRECT_TIMEOUT: Duration = Duration::from_secs(120);
/// As the Linux smoke test on QEMU.
const NESTED_TIMEOUT: Duration = Duration::from_secs(300);
/// Both boots run the check list and power off; only the console differs.
const DIRECT_CMDLINE: &str = "console=ttyS0 xenolith.test=1";
const NESTED_CMDLINE: &str = "console=hvc0 xenolith.test=1";

/// One boot's result.
struct Sample {
    /// Emulator start to the marker line on COM1, if it came.
    marker_at: Option<Duration>,
    /// Why there is no marker, or what else went wrong.
    trouble: Option<String>,
    /// The guest's `CHECKS DONE …` line, for a glance at how far it got.
    checks: Option<String>,
    /// The hypervisor's per-reason exit counts for domain 1 (nested only).
    exits: Option<Vec<(String, u64)>>,
    wall: Duration,
}

/// `cargo xtask bench boot`.
pub fn boot(args: &BenchBootArgs) -> Result<ExitCode> {
    setup::ensure(&[Need::Qemu])?;
    let kit = kit::ensure()?;
    // The direct numbers need no hypervisor: a broken image build only
    // takes the nested side out.
    let image = build::image(&ImageArgs::release(args.image.clone()));
    if let Err(err) = &image {
        println!("    the hypervisor image did not build, so only direct boots run: {err:#}");
    }
    // Cleared once a nested boot fails: each failed try can cost the whole
    // timeout, and one tells enough.
    let mut nested_image = image.ok();
    let mem = GuestMem::DEFAULT;
    let nested_modules = LinuxGuest {
        vmlinux: std::fs::read(&kit.vmlinux)?,
        initrd: std::fs::read(&kit.initramfs)?,
        cmdline: NESTED_CMDLINE.into(),
    }
    .modules();
    println!(
        "==> bench boot: {} runs each, alternating; time from emulator start to \"{MARKER}\"",
        args.runs
    );
    let mem_mib = linux::machine_mib(Some(mem));
    println!(
        "    direct: QEMU TCG -cpu EPYC -m {mem_mib}M -kernel vmlinux -initrd initramfs \
         -append {DIRECT_CMDLINE:?}"
    );
    println!(
        "    nested: Xenolith in QEMU TCG -cpu EPYC -m {mem_mib}M, modules linux, linux.initrd, \
         linux.cmdline, cmdline {:?}, guest cmdline {NESTED_CMDLINE:?}",
        linux::hv_cmdline("", mem)
    );
    let mut direct = Vec::new();
    let mut nested = Vec::new();
    for run in 1..=args.runs {
        let sample = direct_boot(run, &kit, mem_mib)?;
        print_sample("direct", run, &sample);
        direct.push(sample);
        let Some(image) = &nested_image else {
            continue;
        };
        let sample = nested_boot(run, image, &nested_modules, mem)?;
        print_sample("nested", run, &sample);
        if sample.marker_at.is_none() {
            println!("    nested boot failed; not trying it again in this bench");
            nested_image = None;
        }
        nested.push(sample);
    }
    Ok(if summarize(&direct, &nested) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_sample(kind: &str, run: u32, s: &Sample) {
    let checks = s
        .checks
        .as_deref()
        .map_or(String::new(), |c| format!("; {c}"));
    match (s.marker_at, &s.trouble) {
        (Some(at), None) => println!(
            "{kind} {run}: {:>7.2} s to {MARKER} (boot ended after {:.2} s{checks})",
            at.as_secs_f64(),
            s.wall.as_secs_f64()
        ),
        (Some(at), Some(trouble)) => println!(
            "{kind} {run}: {:>7.2} s to {MARKER}, but {trouble}{checks}",
            at.as_secs_f64()
        ),
        (None, trouble) => println!(
            "{kind} {run}: FAILED after {:.2} s: {}",
            s.wall.as_secs_f64(),
            trouble.as_deref().unwrap_or("no marker")
        ),
    }
}

/// Prints medians, the ratio and the exit table; true only if every boot of
/// both kinds reached the marker.
fn summarize(direct: &[Sample], nested: &[Sample]) -> bool {
    let times = |s: &[Sample]| -> Vec<Duration> { s.iter().filter_map(|s| s.marker_at).collect() };
    let (d, n) = (times(direct), times(nested));
    let show =
        |m: Option<Duration>| m.map_or("n/a".to_string(), |m| format!("{:.2} s", m.as_secs_f64()));
    println!("median time to {MARKER}:");
    println!(
        "  direct (QEMU PVH loader)        {:>9}   ({} of {} boots reached it)",
        show(median(&d)),
        d.len(),
        direct.len()
    );
    println!(
        "  nested (Xenolith, QEMU TCG)     {:>9}   ({} of {} boots reached it)",
        show(median(&n)),
        n.len(),
        nested.len()
    );
    match (median(&n), median(&d)) {
        (Some(n), Some(d)) if !d.is_zero() => println!(
            "  ratio nested/direct             {:>9.2}x",
            n.as_secs_f64() / d.as_secs_f64()
        ),
        _ => println!("  ratio nested/direct                   n/a   (the nested boot never reached the marker)"),
    }
    let exits: Vec<(u32, Vec<(String, u64)>)> = nested
        .iter()
        .zip(1..)
        .filter_map(|(s, run)| Some((run, s.exits.clone()?)))
        .collect();
    if exits.is_empty() {
        println!("nested exit counts: none (no \"domain 1 exits:\" line on COM1)");
    } else {
        println!("nested exit counts (domain 1):");
        for row in exit_table(&exits) {
            println!("  {row}");
        }
    }
    let all = |s: &[Sample], t: &[Duration]| !s.is_empty() && s.len() == t.len();
    all(direct, &d) && all(nested, &n)
}

/// The kit booted by QEMU itself through the PVH note, console on COM1.
fn direct_boot(run: u32, kit: &kit::Kit, mem_mib: u64) -> Result<Sample> {
    let dir = build::run_dir(&format!("bench-direct-{run}"))?;
    let paths = Paths::in_dir(&dir);
    let com1 = Com1::Fifo { echo: false };
    let boot = qemu::Boot::Pvh {
        kernel: kit.vmlinux.clone(),
        initrd: kit.initramfs.clone(),
        cmdline: DIRECT_CMDLINE.into(),
    };
    let command = qemu::command(&boot, Accel::Tcg, mem_mib, &com1, &paths, &dir, &[])?;
    let outcome = session::run(Launch {
        command,
        paths: &paths,
        com1,
        elf: None,
        echo_hv: false,
        timeout: Some(DIRECT_TIMEOUT),
    })?;
    let marker_at = outcome.first_line_at(|l| l == MARKER);
    let mut trouble = None;
    if marker_at.is_none() {
        trouble = Some(explain(&outcome, DIRECT_TIMEOUT, &dir));
    } else if outcome.timed_out {
        trouble = Some(format!(
            "did not power off within {} s",
            DIRECT_TIMEOUT.as_secs()
        ));
    }
    let checks = outcome
        .lines
        .iter()
        .find(|l| l.starts_with("CHECKS DONE "))
        .cloned();
    Ok(Sample {
        marker_at,
        trouble,
        checks,
        exits: None,
        wall: outcome.wall,
    })
}

/// The kit under Xenolith in QEMU TCG, as `cargo xtask run --guest linux` boots it.
fn nested_boot(run: u32, image: &Path, modules: &[Module], mem: GuestMem) -> Result<Sample> {
    let spec = BootSpec::qemu(
        Payload::Modules(modules.to_vec()),
        linux::hv_cmdline("", mem),
        linux::machine_mib(Some(mem)),
        Vec::new(),
    );
    let dir: PathBuf = build::run_dir(&format!("bench-nested-{run}"))?;
    let outcome = run::boot_quietly(&spec, &dir, image, NESTED_TIMEOUT)?;
    let marker_at = outcome.first_line_at(linux_judge::is_nested_marker);
    let guest: Vec<String> = outcome
        .lines
        .iter()
        .filter_map(|l| l.strip_prefix("(d1) ").map(String::from))
        .collect();
    let mut trouble = None;
    if marker_at.is_none() {
        trouble = Some(explain(&outcome, NESTED_TIMEOUT, &dir));
    } else if run::verdict(Emulator::Qemu, &outcome) != Some(HvExit::Success) {
        trouble = Some(format!(
            "the run did not end with exit success (see {})",
            dir.join("com1.log").display()
        ));
    }
    Ok(Sample {
        marker_at,
        trouble,
        checks: guest
            .iter()
            .find(|l| l.starts_with("CHECKS DONE "))
            .cloned(),
        exits: outcome.lines.iter().find_map(|l| parse_exits(l, 1)),
        wall: outcome.wall,
    })
}

/// Why a boot never showed the marker: how it ended and the last COM1 lines.
fn explain(outcome: &Outcome, timeout: Duration, dir: &Path) -> String {
    let lines = &outcome.lines;
    let ended = if outcome.timed_out {
        format!("timed out after {} s", timeout.as_secs())
    } else {
        match serial::final_exit(lines) {
            Some(HvExit::Success) => "the hypervisor said exit success".to_string(),
            Some(HvExit::Failure) => "the hypervisor said exit failure".to_string(),
            None => match outcome.status {
                Some(status) => format!("QEMU ended ({status})"),
                None => "QEMU was killed".to_string(),
            },
        }
    };
    let shown: Vec<&String> = lines.iter().filter(|l| !l.trim().is_empty()).collect();
    let mut out = format!("no \"{MARKER}\" line; {ended}; ");
    if let Some(trouble) = linux_judge::guest_kernel_trouble(lines) {
        out.push_str(&format!("the guest kernel reported \"{trouble}\"; "));
    }
    out.push_str(&format!("COM1 in {}", dir.join("com1.log").display()));
    for line in &shown[shown.len().saturating_sub(6)..] {
        out.push_str("\n      | ");
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn sample(marker: Option<f64>, exits: Option<&str>) -> Sample {
        Sample {
            marker_at: marker.map(Duration::from_secs_f64),
            trouble: None,
            checks: None,
            exits: exits.and_then(|l| parse_exits(l, 1)),
            wall: Duration::from_secs(3),
        }
    }

    #[test]
    fn success_needs_every_boot_of_both_kinds() {
        let direct = [sample(Some(2.0), None), sample(Some(2.2), None)];
        let line = "domain 1 exits: cpuid=9 total=9 unknown-hypercalls=0";
        let nested = [
            sample(Some(20.0), Some(line)),
            sample(Some(22.0), Some(line)),
        ];
        assert!(summarize(&direct, &nested));
        assert!(!summarize(&direct, &[]), "no nested boot ran");
        assert!(!summarize(&direct, &[sample(None, None)]));
        assert!(!summarize(&[sample(None, None)], &nested));
    }

    #[test]
    fn a_failure_is_explained_with_the_com1_tail() {
        let lines: Vec<String> = (1..=8)
            .map(|i| format!("line {i}"))
            .chain(["".to_string(), "xenolith: exit failure".to_string()])
            .collect();
        let outcome = Outcome {
            lines,
            line_times: Vec::new(),
            hv_log: Default::default(),
            status: Some(std::process::ExitStatus::from_raw(35 << 8)),
            timed_out: false,
            lingered: false,
            caps_after: None,
            wall: Duration::ZERO,
        };
        let text = explain(&outcome, NESTED_TIMEOUT, Path::new("/r"));
        assert!(text.starts_with(
            "no \"XENOLITH-INIT-OK\" line; the hypervisor said exit failure; COM1 in /r/com1.log"
        ));
        let tail: Vec<&str> = text.lines().skip(1).map(str::trim).collect();
        assert_eq!(
            tail,
            [
                "| line 4",
                "| line 5",
                "| line 6",
                "| line 7",
                "| line 8",
                "| xenolith: exit failure"
            ]
        );
    }
}
