//! `cargo xtask fuzz hypercalls|xenstore|blkif|netif`: the test guest's seeded fuzz modes (kernel/tests/guest/src/fuzz.rs) against the hypervisor and the driver domain, next to a Linux guest running its checks; and the judging the fuzz smoke tests share.
//!
//! Each run boots, from a domain configuration as `run --config` does, the
//! driver domain, the guest kit's Linux as domain 1 (`xenolith.test=1`: its
//! check list, then power off) and the test guest as domain 2 with
//! `fuzz-<target>=N:SEED`. It passes only if the hypervisor runs on (no
//! panic, fatal error or exception), Linux passes every check and powers
//! off, the driver domain is still serving at the end, the fuzzer printed
//! its final line with the count and seed and no `fuzz: FAIL`, and it
//! powered off. A failure prints the seed, the fuzzer's last lines and the
//! command that replays the run printing every call from the last progress
//! mark.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use crate::domain_config::{kit_domain, Config, DiskSpec, Domain, Kernel, NicSpec};
use crate::judge::{self, Case, Expect};
use crate::run::{self, BootSpec, ConfigBoot, Payload};
use crate::session::Outcome;
use crate::{build, label, linux, serial, Accel, Cpu, Emulator, ImageArgs};

/// What a fuzz run attacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Every hypercall family and sub-operation, with valid and garbage arguments.
    Hypercalls,
    /// The driver domain's XenStore, over the guest's own ring.
    Xenstore,
    /// The driver domain's blkback, over a vbd of the guest's own.
    Blkif,
    /// The driver domain's netback, over a vif of the guest's own.
    Netif,
}

impl Target {
    /// The name in the guest's words and lines.
    pub fn name(self) -> &'static str {
        match self {
            Target::Hypercalls => "hypercalls",
            Target::Xenstore => "xenstore",
            Target::Blkif => "blkif",
            Target::Netif => "netif",
        }
    }

    /// Calls per second the run may be assumed to reach at least on QEMU
    /// TCG, for its timeout: about a third of the slowest rate measured
    /// (docs/testing.md, "Fuzzing").
    fn min_rate(self) -> u64 {
        match self {
            Target::Hypercalls => 3000,
            Target::Xenstore => 500,
            Target::Blkif => 500,
            Target::Netif => 1500,
        }
    }
}

/// One fuzz run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuzzRun {
    pub target: Target,
    pub calls: u64,
    pub seed: u64,
    /// Print every call from this index on (a replay).
    pub trace_from: Option<u64>,
}

/// The fuzzing test guest's domain name, and its number.
pub const FUZZER: &str = "fuzz";
const FUZZER_DOMAIN: u16 = 2;
/// The Linux guest (domain 1): the kit with its check list, 256 MiB.
const LINUX: &str = "linux";
const LINUX_MIB: u64 = 256;
/// The Linux guest's address when it has a NIC (the netif fuzzer sends
/// it ARP requests); the fuzzer needs far less RAM than Linux.
const LINUX_IP: &str = "10.0.0.1/24";
const FUZZER_MIB: u64 = 8;
/// The fuzzer's disk (blkif): a sparse raw image in the run's directory.
const DISK_FILE: &str = "fuzz-disk.img";
const DISK_MIB: u64 = 16;
/// Linux's boot and checks, as the Linux smokes allow them on QEMU (on
/// Bochs, ten times that).
const BASE_TIMEOUT: Duration = Duration::from_secs(300);

impl FuzzRun {
    /// The test guest's word: `fuzz-<target>=N:SEED[:TRACE]`.
    pub fn guest_word(&self) -> String {
        let mut w = format!("fuzz-{}={}:{}", self.target.name(), self.calls, self.seed);
        if let Some(t) = self.trace_from {
            w.push_str(&format!(":{t}"));
        }
        w
    }

    /// The domains: Linux (domain 1) and the fuzzer (domain 2), each
    /// with a NIC for netif and the fuzzer with a disk in `dir` for blkif.
    pub fn config(&self, dir: &Path) -> Config {
        let nics = usize::from(self.target == Target::Netif);
        let mut cmdline = format!("{} xenolith.test=1", linux::DEFAULT_CMDLINE);
        if nics > 0 {
            cmdline.push_str(&format!(" xenolith.ip={LINUX_IP}"));
        }
        let disks = match self.target {
            Target::Blkif => vec![DiskSpec {
                path: dir.join(DISK_FILE),
                vdev: "xvda".into(),
                read_only: false,
            }],
            _ => Vec::new(),
        };
        Config {
            domains: vec![
                kit_domain(LINUX, LINUX_MIB, cmdline, nics),
                Domain {
                    name: FUZZER.into(),
                    memory_mib: FUZZER_MIB,
                    maxmem_mib: None,
                    kernel: Kernel::TestGuest,
                    ramdisk: None,
                    cmdline: Some(self.guest_word()),
                    disks,
                    nics: vec![NicSpec::default(); nics],
                },
            ],
        }
    }

    /// How long the boot may take: Linux's boot and checks, and the calls
    /// at a third of the rate measured on QEMU (ten times that on Bochs).
    pub fn timeout(&self, emulator: Emulator) -> Duration {
        let calls = Duration::from_secs(self.calls / self.target.min_rate());
        let traced = if self.trace_from.is_some() { 4 } else { 1 };
        let t = BASE_TIMEOUT + calls * traced;
        match emulator {
            Emulator::Qemu => t,
            Emulator::Bochs => t * 10,
        }
    }

    /// The modules, command line, machine size and drives of this run's
    /// boot, with its disk made in `dir` first (blkif).
    pub fn boot_parts(&self, emulator: Emulator, dir: &Path) -> Result<ConfigBoot> {
        if self.target == Target::Blkif {
            let path = dir.join(DISK_FILE);
            let file = std::fs::File::create(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            file.set_len(DISK_MIB << 20)?;
        }
        run::config_boot(&self.config(dir), emulator, "")
    }

    /// The fuzzer's final line.
    pub fn done_line(&self) -> String {
        format!(
            "fuzz: {} {} calls, seed {}, done",
            self.target.name(),
            self.calls,
            self.seed
        )
    }

    /// The command that replays this run, printing every call from `from`.
    pub fn replay(&self, from: u64) -> String {
        format!(
            "cargo xtask fuzz {} --calls {} --seed {} --trace-from {from}",
            self.target.name(),
            self.calls,
            self.seed
        )
    }
}

/// The fuzzer's console lines, without their `(d2) ` prefix: from the
/// hypervisor's log while the driver domain owns COM1, from COM1 after.
pub fn fuzzer_lines<'a>(lines: &'a [String], hv_lines: &'a [String]) -> Vec<&'a str> {
    let tag = format!("(d{FUZZER_DOMAIN}) ");
    hv_lines
        .iter()
        .filter_map(|l| l.split_once(" INFO ").map(|(_, text)| text))
        .chain(lines.iter().map(String::as_str))
        .filter_map(|l| l.strip_prefix(tag.as_str()))
        .collect()
}

/// What the fuzzer and the driver domain must have shown (COM1 numbered
/// as `judge::numbered` makes it); Linux is judged by the caller.
pub fn problems(lines: &[String], hv_lines: &[String], run: FuzzRun) -> Vec<String> {
    let mut problems = Vec::new();
    for fatal in lines.iter().filter(|l| serial::is_fatal(l)).take(5) {
        problems.push(format!("the hypervisor failed: {fatal}"));
    }
    let guest = fuzzer_lines(lines, hv_lines);
    if !guest.iter().any(|l| l.ends_with(" passed, 0 failed")) {
        problems.push(format!(
            "no \"(d{FUZZER_DOMAIN}) N passed, 0 failed\": the fuzzer's checks did not all pass"
        ));
    }
    for fail in guest
        .iter()
        .filter(|l| l.starts_with("fuzz: FAIL"))
        .take(20)
    {
        problems.push(format!("the fuzzer found: {fail}"));
    }
    let done = run.done_line();
    if !guest.contains(&done.as_str()) {
        problems.push(format!("no \"(d{FUZZER_DOMAIN}) {done}\" line"));
    }
    // The hypervisor's end-of-run lines may follow an unfinished console
    // line of the driver domain's on COM1: they are looked for at line ends.
    let off = format!("domain {FUZZER_DOMAIN} ({FUZZER}): poweroff");
    if !lines.iter().any(|l| l.ends_with(&off)) {
        let how = lines
            .iter()
            .find(|l| l.starts_with(&format!("domain {FUZZER_DOMAIN} ({FUZZER}): ")));
        problems.push(match how {
            Some(l) => format!("{l:?}, expected {off:?}"),
            None => format!("missing {off:?}"),
        });
    }
    if let Some(l) = lines
        .iter()
        .find(|l| l.contains("domain 0 (Domain-0) ended:"))
    {
        problems.push(format!("the driver domain died: {l}"));
    } else if !lines
        .iter()
        .any(|l| l.ends_with("domain 0 (Domain-0): still serving"))
    {
        problems.push("no \"domain 0 (Domain-0): still serving\" at the end".into());
    }
    problems
}

/// Calls per second from the fuzzer's first and final lines, by the
/// hypervisor log's timestamps (seconds since it started).
pub fn rate(hv_lines: &[String], run: FuzzRun) -> Option<f64> {
    let tag = format!("(d{FUZZER_DOMAIN}) ");
    let start = format!("{tag}fuzz: {}: ", run.target.name());
    let done = format!("{tag}{}", run.done_line());
    let at = |want: &dyn Fn(&str) -> bool| {
        hv_lines.iter().find_map(|l| {
            let (time, text) = l.split_once(" INFO ")?;
            want(text).then(|| time.trim().parse::<f64>().ok())?
        })
    };
    let t0 = at(&|t| t.starts_with(&start))?;
    let t1 = at(&|t| t == done)?;
    (t1 > t0).then(|| run.calls as f64 / (t1 - t0))
}

/// The calls done at a progress mark, `fuzz: <target> <done>/<total>`.
fn progress_mark(line: &str, run: FuzzRun) -> Option<u64> {
    let rest = line
        .strip_prefix("fuzz: ")?
        .strip_prefix(run.target.name())?;
    let (done, total) = rest.strip_prefix(' ')?.split_once('/')?;
    total.parse::<u64>().ok()?;
    done.parse().ok()
}

/// A seed from the clock and the process id, when none is given.
fn time_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut z = nanos ^ (u64::from(std::process::id()) << 32);
    // splitmix64's finaliser: nearby clocks give unrelated seeds.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seed as decimal or 0x-hex.
fn parse_seed(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|e| format!("{text:?} is not a 64-bit number: {e}"))
}

/// Options of `cargo xtask fuzz <target>`.
#[derive(Args)]
pub struct FuzzArgs {
    /// Calls (hypercalls, XenStore requests, blkif requests, netif TX slots).
    #[arg(long, default_value_t = 20_000)]
    pub calls: u64,
    /// The seed, decimal or 0x-hex [default: from the clock, printed].
    #[arg(long, value_parser = parse_seed)]
    pub seed: Option<u64>,
    /// Print every call from this index on (to find the last one before a
    /// hang or a hypervisor crash; the failure report gives the command).
    #[arg(long, value_name = "INDEX")]
    pub trace_from: Option<u64>,
    #[arg(long, value_enum, default_value_t = Emulator::Qemu)]
    pub emulator: Emulator,
    /// CPU model [default: epyc on QEMU, skylake on Bochs].
    #[arg(long, value_enum)]
    pub cpu: Option<Cpu>,
    /// Kill the emulator after this many seconds [default: from the count].
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Boot this prebuilt hypervisor ELF instead of building the image.
    #[arg(long, value_name = "ELF")]
    pub image: Option<PathBuf>,
}

/// How many lines of each log a failure shows.
const SHOW_LINES: usize = 40;

/// `cargo xtask fuzz <target>`.
pub fn command(target: Target, args: &FuzzArgs) -> Result<ExitCode> {
    if args.calls == 0 {
        bail!("--calls must be at least 1");
    }
    let (cpu, boot) = run::resolve(args.emulator, args.cpu, None, Accel::Tcg)?;
    let seed = args.seed.unwrap_or_else(time_seed);
    let run = FuzzRun {
        target,
        calls: args.calls,
        seed,
        trace_from: args.trace_from,
    };
    let timeout = args
        .timeout
        .map_or_else(|| run.timeout(args.emulator), Duration::from_secs);
    println!(
        "xtask: fuzz {}: {} calls, seed {seed}, on {} {}, timeout {} s",
        target.name(),
        run.calls,
        label(args.emulator),
        label(cpu),
        timeout.as_secs()
    );
    let image = build::image(&ImageArgs::release(args.image.clone()))?;
    let dir = build::run_dir(&format!("fuzz-{}", target.name()))?;
    let parts = run.boot_parts(args.emulator, &dir)?;
    let spec = BootSpec {
        emulator: args.emulator,
        cpu,
        boot,
        accel: Accel::Tcg,
        payload: Payload::Modules(parts.modules.clone()),
        cmdline: parts.cmdline,
        mem_mib: parts.mem_mib,
        drives: parts.drives,
    };
    let outcome = run::boot_quietly(&spec, &dir, &image, timeout)?;
    let case = Case {
        emulator: args.emulator,
        cpu,
        boot,
        expect: Expect::Fuzz(run),
        modules: &parts.modules,
        timeout,
    };
    let problems = judge::problems(&case, &outcome);
    let wall = outcome.wall.as_secs_f64();
    let rate = rate(&outcome.hv_log.lines, run);
    let rate_text = rate.map_or_else(|| "rate unknown".to_string(), |r| format!("{r:.0} calls/s"));
    if problems.is_empty() {
        println!(
            "PASS fuzz {}: {} calls, seed {seed}, {rate_text}, {wall:.1} s; artifacts in {}",
            target.name(),
            run.calls,
            dir.display()
        );
        // The histogram and the final line; not the progress marks.
        for l in fuzzer_lines(&judge::numbered(&outcome.lines), &outcome.hv_log.lines)
            .iter()
            .filter(|l| l.starts_with("fuzz: ") && progress_mark(l, run).is_none())
        {
            println!("    {l}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    // A replay must boot the same machine.
    let machine = match args.emulator {
        Emulator::Qemu => String::new(),
        Emulator::Bochs => format!(" --emulator bochs --cpu {}", label(cpu)),
    };
    report(run, &problems, &outcome, &dir, &machine);
    println!(
        "FAIL fuzz {}: seed {seed}, {rate_text}, {wall:.1} s",
        target.name()
    );
    Ok(ExitCode::FAILURE)
}

/// The calls done at the fuzzer's last progress mark (0 if none).
fn last_mark(outcome: &Outcome, run: FuzzRun) -> u64 {
    let numbered = judge::numbered(&outcome.lines);
    fuzzer_lines(&numbered, &outcome.hv_log.lines)
        .iter()
        .rev()
        .find_map(|l| progress_mark(l, run))
        .unwrap_or(0)
}

/// One line for a failed smoke: the seed and the command that replays it.
pub fn replay_hint(run: FuzzRun, outcome: &Outcome) -> String {
    format!(
        "seed {}; replay printing every call from the last progress mark: {}",
        run.seed,
        run.replay(last_mark(outcome, run))
    )
}

/// What a failed run shows: the problems, the seed, the fuzzer's last
/// lines (its last call if it could still print it), what the hypervisor
/// said, and how to replay it.
/// `machine` is appended to the replay command (the emulator options).
pub fn report(run: FuzzRun, problems: &[String], outcome: &Outcome, dir: &Path, machine: &str) {
    for p in problems {
        println!("    - {p}");
    }
    let numbered = judge::numbered(&outcome.lines);
    let guest = fuzzer_lines(&numbered, &outcome.hv_log.lines);
    println!("    seed: {}", run.seed);
    let last_mark = last_mark(outcome, run);
    // What it found, with its details, and its last call if it crashed.
    let details = format!("fuzz: {} #", run.target.name());
    for l in guest.iter().filter(|l| {
        l.starts_with("fuzz: last ")
            || l.starts_with("fuzz: FAIL")
            || l.starts_with(&details)
            || l.starts_with("unexpected")
            || l.starts_with("panic")
    }) {
        println!("    fuzzer: {l}");
    }
    if outcome.timed_out {
        println!(
            "    the run hung (timed out); the fuzzer's last progress mark: {last_mark} calls"
        );
    }
    println!("    replay: {}{machine}", run.replay(last_mark));
    let tail = |what: &str, path: PathBuf, lines: &[String]| {
        let skip = lines.len().saturating_sub(SHOW_LINES);
        println!(
            "    --- {what}: {} (last {} lines) ---",
            path.display(),
            lines.len() - skip
        );
        for l in &lines[skip..] {
            println!("    | {l}");
        }
    };
    tail("COM1", dir.join("com1.log"), &outcome.lines);
    tail(
        "hypervisor log (COM2)",
        dir.join("com2.log"),
        &outcome.hv_log.lines,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: FuzzRun = FuzzRun {
        target: Target::Hypercalls,
        calls: 20_000,
        seed: 7,
        trace_from: None,
    };

    fn good(run: FuzzRun) -> (Vec<String>, Vec<String>) {
        let lines = [
            "domain 2 (fuzz): poweroff",
            "domain 0 (Domain-0): still serving",
            "xenolith: exit success",
        ]
        .map(String::from)
        .to_vec();
        let hv = vec![
            "10.5 INFO (d2) 20 passed, 0 failed".to_string(),
            format!(
                "11.000000 INFO (d2) fuzz: {}: 20000 calls, seed 7",
                run.target.name()
            ),
            format!("15.000000 INFO (d2) {}", run.done_line()),
        ];
        (lines, hv)
    }

    #[test]
    fn a_good_run_passes_and_gives_its_rate() {
        let (lines, hv) = good(RUN);
        assert_eq!(problems(&lines, &hv, RUN), Vec::<String>::new());
        assert_eq!(rate(&hv, RUN), Some(5000.0));
        assert_eq!(RUN.guest_word(), "fuzz-hypercalls=20000:7");
        let traced = FuzzRun {
            trace_from: Some(12),
            ..RUN
        };
        assert_eq!(traced.guest_word(), "fuzz-hypercalls=20000:7:12");
        assert_eq!(
            RUN.replay(4000),
            "cargo xtask fuzz hypercalls --calls 20000 --seed 7 --trace-from 4000"
        );
    }

    #[test]
    fn what_the_fuzzer_found_and_a_dead_driver_domain_fail_it() {
        let (mut lines, mut hv) = good(RUN);
        hv.insert(
            2,
            "12.0 INFO (d2) fuzz: FAIL #17: XENVER_version changed".into(),
        );
        lines[1] = "domain 0 (Domain-0) ended: crashed: triple fault".into();
        let got = problems(&lines, &hv, RUN);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].contains("#17"), "{got:?}");
        assert!(got[1].contains("driver domain died"), "{got:?}");
        // A fuzzer that stopped early: another count in its final line.
        let (lines, mut hv) = good(RUN);
        hv[2] = "15.0 INFO (d2) fuzz: hypercalls 19999 calls, seed 7, done".into();
        assert_eq!(problems(&lines, &hv, RUN).len(), 1);
        // A hypervisor panic, and a crashed fuzzer whose lines went to COM1.
        let lines = [
            "(d2) fuzz: last call #5: 0x1d (0x2, 0x0, 0x0, 0x0, 0x0)",
            "xenolith: PANIC at kernel/src/x.rs:1: boom",
        ]
        .map(String::from)
        .to_vec();
        let got = problems(&lines, &[], RUN);
        assert!(got[0].contains("PANIC"), "{got:?}");
        assert_eq!(
            fuzzer_lines(&lines, &[])[0],
            "fuzz: last call #5: 0x1d (0x2, 0x0, 0x0, 0x0, 0x0)"
        );
    }

    #[test]
    fn each_target_boots_linux_and_the_fuzzer() {
        for target in [
            Target::Hypercalls,
            Target::Xenstore,
            Target::Blkif,
            Target::Netif,
        ] {
            let run = FuzzRun { target, ..RUN };
            let c = run.config(Path::new("/run"));
            assert_eq!(c.hv_cmdline(""), "guest=linux guest=fuzz");
            assert_eq!(
                c.domains[1].cmdline.as_deref(),
                Some(run.guest_word().as_str())
            );
            let linux = c.domains[0].cmdline.as_deref().unwrap();
            assert!(linux.starts_with("console=hvc0 earlyprintk=xen xenolith.test=1"));
            assert_eq!(
                c.domains[1].disks.len(),
                usize::from(target == Target::Blkif)
            );
            assert_eq!(
                c.domains[1].nics.len(),
                usize::from(target == Target::Netif)
            );
            assert_eq!(
                c.domains[0].nics.len(),
                usize::from(target == Target::Netif)
            );
            assert_eq!(linux.contains("xenolith.ip="), target == Target::Netif);
        }
        assert!(RUN.timeout(Emulator::Qemu) < Duration::from_secs(400));
        assert_eq!(parse_seed("0x10"), Ok(16));
        assert!(parse_seed("x").is_err());
    }
}
