//! `cargo xtask bench net`: TCP from one Linux guest to another through netfront, the driver domain's netback and switch, against loopback inside the guest, and the ping time between them.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::bench_blk::TIMEOUT;
use crate::bench_report::{bench_fields, bench_line, exit_counts, mb_per_s};
use crate::judge::numbered;
use crate::net_test::{self, ADDRS, PORT};
use crate::run::{self, BootSpec, Payload};
use crate::setup::{self, Need};
use crate::{build, BenchArgs, Emulator, ImageArgs};

/// What linux2 sends linux1, then itself through loopback.
const MIB: u64 = 256;
/// Each guest's RAM.
const MEM_MIB: u64 = 256;
/// The guests' console; /init's words follow.
const CMDLINE: &str = "console=hvc0";
/// The guest to guest throughput the target asks for, as a share of loopback's.
const TARGET: f64 = 0.5;

/// linux2's `BENCH net ...` line.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Numbers {
    mib: u64,
    /// Centiseconds for `mib` MiB to linux1.
    xen_cs: u64,
    /// Centiseconds for `mib` MiB through loopback.
    loop_cs: u64,
    /// The mean of 20 back-to-back pings, if any came back.
    rtt_avg_ms: Option<f64>,
}

impl Numbers {
    fn parse(line: &str) -> Option<Self> {
        let mut n = Numbers::default();
        for (k, v) in bench_fields(line, "BENCH net ")? {
            match k {
                "mib" => n.mib = v.parse().ok()?,
                "xen_cs" => n.xen_cs = v.parse().ok()?,
                "loop_cs" => n.loop_cs = v.parse().ok()?,
                // ping_stats prints "-" when no ping came back.
                "rtt_avg_ms" => n.rtt_avg_ms = v.parse().ok(),
                _ => return None,
            }
        }
        (n.mib > 0).then_some(n)
    }
}

/// /init's words: linux1 receives, linux2 pings it and sends.
fn guest_words() -> [String; 2] {
    let [a, b] = ADDRS;
    [
        format!("xenolith.ip={a}/24 xenolith.bench=net-recv:{PORT}"),
        format!("xenolith.ip={b}/24 xenolith.bench=net-send:{a}:{PORT}:{MIB}"),
    ]
}

/// The results as printed: throughput both ways, their ratio against the
/// target, the ping time, and exits and notifications per MiB moved
/// (from the hypervisor's `domain N exits:` lines, whole boot).
fn report(n: &Numbers, lines: &[String]) -> Vec<String> {
    let xen = mb_per_s(n.mib, n.xen_cs);
    let lo = mb_per_s(n.mib, n.loop_cs);
    let ratio = xen / lo.max(f64::MIN_POSITIVE);
    let mut out = vec![
        format!("  guest to guest (netfront, netback, switch) {xen:>9.1} MB/s"),
        format!("  loopback inside linux2                     {lo:>9.1} MB/s"),
        format!(
            "  ratio                                      {ratio:>9.2}   target >= {TARGET:.2}: {}",
            if ratio >= TARGET { "met" } else { "not met" }
        ),
        match n.rtt_avg_ms {
            Some(ms) => format!("  ping round trip, mean of 20               {ms:>9.3} ms"),
            None => "  ping round trip: no ping came back".into(),
        },
    ];
    let counts: Vec<Option<(u64, u64)>> = (0..3).map(|d| exit_counts(lines, d)).collect();
    let Some(counts) = counts.into_iter().collect::<Option<Vec<_>>>() else {
        out.push("  no exit counts from the hypervisor".into());
        return out;
    };
    let mib = n.mib as f64;
    let per = |what: &str, pick: fn(&(u64, u64)) -> u64| {
        let v: Vec<f64> = counts.iter().map(|c| pick(c) as f64 / mib).collect();
        format!(
            "{:.1} {what} (linux1 {:.1}, linux2 {:.1}, driver domain {:.1})",
            v.iter().sum::<f64>(),
            v[1],
            v[2],
            v[0]
        )
    };
    out.push(format!(
        "  per MiB moved ({} MiB): {}, {}",
        n.mib,
        per("VM exits", |c| c.0),
        per("event-channel notifications", |c| c.1)
    ));
    out.push("  (exits and sends count the whole boot, not only the transfer)".into());
    out
}

/// `cargo xtask bench net`.
pub fn net(args: &BenchArgs) -> Result<ExitCode> {
    setup::ensure(&[Need::Qemu])?;
    if args.accel == crate::Accel::Kvm {
        crate::qemu::check_kvm()?;
    }
    let image = build::image(&ImageArgs::release(args.image.clone()))?;
    println!(
        "==> bench net: {MIB} MiB of zeros from linux2 to linux1 (busybox dd | nc, 64 KiB \
         writes) through netfront, the driver domain's netback and switch, then the same \
         through loopback inside linux2; 20 pings back to back; QEMU {}",
        if args.accel == crate::Accel::Kvm {
            "KVM -cpu host"
        } else {
            "TCG -cpu EPYC"
        }
    );
    let config = net_test::two_linux(MEM_MIB, CMDLINE, guest_words());
    let parts = run::config_boot(&config, Emulator::Qemu, "")?;
    let spec = BootSpec {
        accel: args.accel,
        ..BootSpec::qemu(
            Payload::Modules(parts.modules),
            parts.cmdline,
            parts.mem_mib,
            parts.drives,
        )
    };
    let dir = build::run_dir("bench-net")?;
    let outcome = run::boot_quietly(&spec, &dir, &image, TIMEOUT)?;
    let lines = numbered(&outcome.lines);
    let numbers = bench_line(&lines, "(d2) ", Numbers::parse)
        .with_context(|| format!("COM1 in {}", dir.join("com1.log").display()))?;
    if !lines.iter().any(|l| l == "(d1) BENCH net-recv done") {
        println!("  (linux1 never said its receiver was done)");
    }
    for line in report(&numbers, &lines) {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_lines_parse() {
        let n =
            Numbers::parse("BENCH net mib=256 xen_cs=1000 loop_cs=400 rtt_avg_ms=0.873").unwrap();
        assert_eq!(
            n,
            Numbers {
                mib: 256,
                xen_cs: 1000,
                loop_cs: 400,
                rtt_avg_ms: Some(0.873)
            }
        );
        let lost = Numbers::parse("BENCH net mib=8 xen_cs=1 loop_cs=1 rtt_avg_ms=-").unwrap();
        assert_eq!(lost.rtt_avg_ms, None);
        assert_eq!(Numbers::parse("BENCH net mib=8 xen_cs=x"), None);
        assert_eq!(Numbers::parse("BENCH net mib=8 bogus=1"), None);
        assert_eq!(Numbers::parse("BENCH net mib=0"), None);
        assert_eq!(Numbers::parse("BENCH net-recv done"), None);
    }

    #[test]
    fn the_report_compares_and_counts_per_mib() {
        let n = Numbers::parse("BENCH net mib=256 xen_cs=1000 loop_cs=400 rtt_avg_ms=0.5").unwrap();
        let lines: Vec<String> = [
            "domain 1 exits: hlt=1 total=2560 sends=256",
            "domain 2 exits: hlt=1 total=5120 sends=512",
            "domain 0 exits: hlt=1 total=256 sends=1024",
        ]
        .map(String::from)
        .to_vec();
        let out = report(&n, &lines);
        assert!(out[0].ends_with("26.8 MB/s"), "{out:?}");
        assert!(out[1].ends_with("67.1 MB/s"), "{out:?}");
        assert!(out[2].contains("0.40   target >= 0.50: not met"), "{out:?}");
        assert!(out[3].ends_with("0.500 ms"), "{out:?}");
        assert_eq!(
            out[4],
            "  per MiB moved (256 MiB): 31.0 VM exits (linux1 10.0, linux2 20.0, driver domain 1.0), \
             7.0 event-channel notifications (linux1 1.0, linux2 2.0, driver domain 4.0)"
        );
        let fast = Numbers { loop_cs: 1000, ..n };
        assert!(report(&fast, &[])[2].ends_with("met"));
        assert!(report(&fast, &[])[4].contains("no exit counts"));
    }

    #[test]
    fn guests_listen_and_send_on_the_test_addresses() {
        let [recv, send] = guest_words();
        assert_eq!(recv, "xenolith.ip=10.0.0.1/24 xenolith.bench=net-recv:5001");
        assert_eq!(
            send,
            "xenolith.ip=10.0.0.2/24 xenolith.bench=net-send:10.0.0.1:5001:256"
        );
        let config = net_test::two_linux(MEM_MIB, CMDLINE, guest_words());
        assert_eq!(config.vif_words(), ["vif=linux1", "vif=linux2"]);
    }
}
