//! Judging a boot: what COM1 and the emulator's status must show for a smoke test to pass.

use std::time::Duration;

use crate::defmt_log::HvLog;
use crate::expect;
use crate::linux_judge;
use crate::modules::Module;
use crate::net_test::{self, NetTest};
use crate::serial::{self, BootPath, HvExit};
use crate::session::Outcome;
use crate::{Boot, Cpu, Emulator};

/// What a smoke test expects from the hypervisor.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// Boot, list the modules, report capabilities, exit with success.
    Boots,
    /// Stop with a fatal error starting with this text, and exit with failure.
    Fatal(&'static str),
    /// Print a CPU exception report starting with this text, and exit with failure.
    Exception(&'static str),
    /// Test-guest domains working in pairs (event channels, grants): these
    /// lines on COM1, then success.
    Lines(&'static [&'static str]),
    /// Boot this many Linux guests at once (domains 1..=N), each judged as
    /// `LinuxGuest` judges domain 1.
    LinuxGuests(u16),
    /// Boot the test guest twice: domain 1 passes every check and powers off,
    /// domain 2 passes them too, then reads outside its RAM and is crashed,
    /// which makes the run's status failure.
    TestGuest,
    /// Boot the guest kit's Linux with xenolith.test=1: /init passes every
    /// check and the guest powers off (see `linux_judge`); exit success.
    LinuxGuest,
    /// As `LinuxGuest`, for a kernel other than the kit's standard one:
    /// `uname -r` prints this release.
    LinuxRelease(&'static str),
    /// As `LinuxGuest`, and /init's disk test in this mode (write, verify
    /// or both) ends with `DISK DONE <mode>`: no `DISK FAIL` on the way,
    /// the files' sums checked where the mode verifies, an fstrim that
    /// trimmed at least the file it deleted where it writes, and the driver
    /// domain saw the disk connect and, once the guest unbound it, disconnect.
    LinuxDisk(&'static str),
    /// `LinuxDisk("both")` for domain 1 while domain 2, the test guest with
    /// `blk-garbage`, attacks its own vbd: its checks pass, its garbage is
    /// refused, its overrun ring is dropped, and it powers off.
    DiskGarbage,
    /// Two Linux guests on the driver domain's switch (domains 1 and 2),
    /// each judged as `LinuxGuest` judges domain 1, then /init's network
    /// words: eth0 up, every ping answered, linux1 received the bytes
    /// linux2 sent, both vifs connected (see `net_test`). With `garbage`,
    /// domain 3 is the test guest with `net-garbage`: its checks pass, its
    /// hostile netfront gets what it expects, and it powers off.
    LinuxNet(NetTest),
    /// The driver domain, the kit's Linux as domain 1 (judged as
    /// `LinuxGuest` judges it) and the test guest as domain 2 in a fuzz mode
    /// (`fuzz::problems`: no hypervisor failure, the fuzzer's final line
    /// and nothing found, it powers off, the driver domain still serves).
    Fuzz(crate::fuzz::FuzzRun),
    /// As `LinuxGuest`, and the balloon round trip of /init's
    /// `xenolith.balloon=MIB`: the toolstack's `mem-set` (typed on COM1 by
    /// the smoke) lowered `memory/target` by MIB MiB and /init saw
    /// MemTotal fall by at least that much, then raised it back and /init
    /// saw MemTotal return to where it was.
    LinuxBalloon(u64),
    /// As `LinuxGuest`, but the driver domain crashes on purpose when the
    /// guest asks (after its checks): the hypervisor takes COM1 back and
    /// says so, the guest keeps running (more exits at its end than when
    /// the driver domain died) and powers off; exit failure (domain 0 crashed).
    DriverCrash,
}

/// The KiB after `key` in a line such as `BALLOON-SHRUNK MemTotal=1234 kB`.
fn kib_after(line: &str, key: &str) -> Option<u64> {
    line.split(key)
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The balloon smoke's lines: MemTotal fell by `mib` MiB or more after
/// the first mem-set, came back to where it was after the second, and the
/// toolstack said it wrote both targets.
pub fn check_balloon(lines: &[String], mib: u64, problems: &mut Vec<String>) {
    let find = |key: &str| lines.iter().find(|l| l.contains(key));
    if let Some(fail) = find("BALLOON-FAIL") {
        problems.push(format!("the guest says {fail:?}"));
    }
    let ready = find("BALLOON-READY").and_then(|l| kib_after(l, "MemTotal="));
    let shrunk = find("BALLOON-SHRUNK").and_then(|l| kib_after(l, "MemTotal="));
    let grown = find("BALLOON-GROWN").and_then(|l| kib_after(l, "MemTotal="));
    match (ready, shrunk, grown) {
        (Some(r), Some(s), Some(g)) => {
            if s + mib * 1024 > r {
                problems.push(format!(
                    "MemTotal fell from {r} to {s} kB, less than {mib} MiB"
                ));
            }
            if g != r {
                problems.push(format!("MemTotal came back to {g} kB, not {r} kB"));
            }
        }
        _ => problems.push(format!(
            "missing BALLOON-READY/SHRUNK/GROWN lines with MemTotal (got {ready:?}, {shrunk:?}, {grown:?})"
        )),
    }
    let targets = lines
        .iter()
        .filter(|l| l.contains("memory/target = "))
        .count();
    if targets < 2 {
        problems.push(format!(
            "the toolstack wrote memory/target {targets} times, expected 2 (mem-set down and back)"
        ));
    }
}

/// The text the driver domain's `crash-on=` test option waits for, printed
/// by the guest kit's /init with xenolith.crash_driver=1.
pub const DRIVER_CRASH_TEXT: &str = "XENOLITH-CRASH-DRIVER-DOMAIN";

/// How the hypervisor ends a guest that called
/// `pvh_guest_rt::fatal::access_unemulated` (a `push qword [0x40000000]`:
/// space that is not RAM, read by an instruction the MMIO emulator does not
/// carry out), around the RIP it names.
const UNEMULATED_START: &str = "crashed: read access at GPA 0x40000000 (not RAM) at rip ";
/// `pvh_guest_rt::fatal::UNEMULATED_REASON`.
const UNEMULATED_END: &str = ": instruction not emulated: Push [ff, 30]";

/// Whether a line says that `who` (e.g. "domain 2 (test-guest.elf-2): ")
/// ended through `access_unemulated`.
fn ended_unemulated(lines: &[String], who: &str) -> bool {
    let start = format!("{who}{UNEMULATED_START}");
    lines
        .iter()
        .any(|l| l.starts_with(&start) && l.ends_with(UNEMULATED_END))
}

fn check_driver_crash(lines: &[String], problems: &mut Vec<String>) {
    problems.extend(
        linux_judge::problems(lines)
            .into_iter()
            .map(|p| format!("domain 1: {p}")),
    );
    if !lines
        .iter()
        .any(|l| l == "(d0) crashing on purpose (crash-on=)")
    {
        problems.push("missing line \"(d0) crashing on purpose (crash-on=)\"".into());
    }
    if !ended_unemulated(lines, "domain 0 (Domain-0) ended: ") {
        problems.push(format!(
            "missing line \"domain 0 (Domain-0) ended: {UNEMULATED_START}…{UNEMULATED_END}\""
        ));
    }
    let at_crash = lines.iter().find_map(|l| {
        l.strip_prefix("domain 1 (linux) runs on without its backends, ")?
            .strip_suffix(" exits so far")?
            .parse::<u64>()
            .ok()
    });
    let at_end = lines.iter().find_map(|l| {
        let rest = l.strip_prefix("domain 1 exits:")?;
        let total = rest
            .split_whitespace()
            .find_map(|f| f.strip_prefix("total="))?;
        total.parse::<u64>().ok()
    });
    match (at_crash, at_end) {
        (Some(a), Some(b)) if b > a => {}
        (Some(a), Some(b)) => problems.push(format!(
            "domain 1 made no exits after the driver domain died ({a} then, {b} at the end)"
        )),
        _ => problems.push(
            "no \"domain 1 (linux) runs on ...\" line or no final exit count for domain 1".into(),
        ),
    }
}

/// COM1 with the driver domain's `[name] text` console lines written as
/// the hypervisor's own `(dN) text`, domain numbers taken from the
/// hypervisor's `domain N (name): started` lines (`[Domain-0]` is domain 0),
/// so one judge serves boots with and without a driver domain.
pub fn numbered(lines: &[String]) -> Vec<String> {
    let mut ids: Vec<(String, u16)> = vec![("Domain-0".into(), 0)];
    for l in lines {
        let Some(rest) = l.strip_prefix("domain ") else {
            continue;
        };
        let Some((n, rest)) = rest.split_once(" (") else {
            continue;
        };
        let Some((name, _)) = rest.split_once("): started") else {
            continue;
        };
        if let Ok(n) = n.parse() {
            ids.push((name.to_string(), n));
        }
    }
    lines
        .iter()
        .map(|l| {
            if let Some(rest) = l.strip_prefix('[') {
                if let Some((name, text)) = rest.split_once("] ") {
                    if let Some((_, n)) = ids.iter().find(|(m, _)| m == name) {
                        return format!("(d{n}) {text}");
                    }
                }
            }
            l.clone()
        })
        .collect()
}

/// COM1 as domain `k` alone would have printed it, renumbered as domain 1:
/// other domains' console lines and end-of-domain lines are dropped, so the
/// one-domain Linux judge serves each domain of a several-domain boot.
pub fn as_domain_one(lines: &[String], k: u16) -> Vec<String> {
    let mine = format!("(d{k}) ");
    let mine_end = format!("domain {k} ");
    lines
        .iter()
        .filter_map(|l| {
            if let Some(rest) = l.strip_prefix(&mine) {
                Some(format!("(d1) {rest}"))
            } else if let Some(rest) = l.strip_prefix(&mine_end) {
                // A repeated module's domain is named "<module>-<k>".
                let rest = rest.replacen(&format!("-{k}): "), "): ", 1);
                Some(format!("domain 1 {rest}"))
            } else if l.starts_with("(d") || l.starts_with("domain ") {
                None
            } else {
                Some(l.clone())
            }
        })
        .collect()
}

/// The test guest's checks (kernel/tests/guest/src/checks.rs), in order.
pub const TEST_GUEST_CHECKS: [&str; 36] = [
    "cpuid",
    "msr-allowed",
    "msr-forbidden",
    "io-port",
    "hypercall",
    "hypercall-gva",
    "hypercall-efault",
    "xen-version-subops",
    "privileged-hypercalls",
    "hypercall-page",
    "grant-reserved",
    "grant-version",
    "grant-copy-batch",
    "irq-hlt",
    "irq-window",
    "xsetbv-invalid",
    "xcr0-shrink",
    "debug-single-step",
    "debug-breakpoint",
    "debug-regs-own",
    "cache-flush",
    "undefined-instructions",
    "event-redelivery",
    "spec-ctrl",
    "console-io-continued",
    "hypercall-compat",
    "alignment-check",
    "cr4-reserved",
    "msr-debugctl",
    "msr-fixed-values",
    "balloon",
    "paging-modes",
    "mmio-unbacked",
    "mmio-random",
    "xapic-mmio",
    "evtchn-fifo",
];

/// Exits the checks above must have caused in each test-guest domain, as
/// the end-of-run report counts them: the single step's #DB (intercepted on
/// both vendors against XSA-156), INVD and WBINVD, the virtualization
/// instructions and MONITOR/MWAIT answered #UD (eight on AMD even where
/// SKINIT faults natively, fourteen on Intel), the five refused MOVs to
/// CR4 of `cr4-reserved` (on VMX only refused writes exit; on SVM every
/// write does), and the nested page faults of `event-redelivery` (1),
/// `mmio-unbacked` (15: each emulated instruction, the whole `rep movsd`
/// and the fetch), `mmio-random` (1096: 548 rounds of an emulated form and
/// a read back) and `xapic-mmio` (13 accesses to the xAPIC page).
/// A check that passes with the instruction run natively fails here.
pub const TEST_GUEST_EXITS: [(&str, u64); 5] = [
    ("exception", 1),
    ("cache-flush", 2),
    ("undefined", 8),
    ("npf", 1125),
    ("cr4-write", 5),
];

/// The count of exit reason `reason` in an end-of-run `domain N exits:` line.
pub fn exit_count(line: &str, reason: &str) -> u64 {
    line.split_ascii_whitespace()
        .filter_map(|word| word.split_once('='))
        .find(|(name, _)| *name == reason)
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

/// The hypervisor command line for the grant pair.
pub const GRANT_PAIR_CMDLINE: &str =
    "guest=test-guest.elf:grant-give guest=test-guest.elf:grant-take";

/// What the grant pair must print.
pub const GRANT_PAIR_LINES: &[&str] = &[
    "(d2) grant: mapped domain 1's grant read-only, read it, unmapped, copied it: ok",
    "(d1) grant: granted a page to domain 2, it was mapped, read and released: ok",
    "domain 1 (test-guest.elf): poweroff",
    "domain 2 (test-guest.elf-2): poweroff",
];

/// The hypervisor command line for the event-channel pair.
pub const EVTCHN_PAIR_CMDLINE: &str =
    "guest=test-guest.elf:evtchn-listen guest=test-guest.elf:evtchn-send";

/// What the event-channel pair must print.
pub const EVTCHN_PAIR_LINES: &[&str] = &[
    "(d1) evtchn: event from domain 2 on port 3: ok",
    "(d2) evtchn: bound to domain 1 port 3, sent, closed: ok",
    "domain 1 (test-guest.elf): poweroff",
    "domain 2 (test-guest.elf-2): poweroff",
];

/// The hypervisor command line for `Expect::TestGuest`.
/// On QEMU 7.2 `debug-breakpoint` arms no data breakpoint: QEMU does not
/// re-arm a guest's watchpoints on VMRUN and #VMEXIT and once in about
/// twenty runs died right after the test guest armed one
/// (kernel/tests/guest/src/checks.rs, `DATA_BREAKPOINT_WORD`).
/// Domain 3 passes the checks too, then shuts down with the reason 0x1234,
/// which Xen takes and keeps the low byte of.
pub const TEST_GUEST_CMDLINE: &str =
    "guest=test-guest.elf guest=test-guest.elf:oob guest=test-guest.elf:odd-shutdown";

/// Bochs' Intel model: the data breakpoint armed, and #AC (which QEMU's
/// TCG never raises) checked.
pub const TEST_GUEST_CMDLINE_BOCHS: &str = "guest=test-guest.elf:data-breakpoint,alignment-check \
     guest=test-guest.elf:oob,data-breakpoint,alignment-check \
     guest=test-guest.elf:odd-shutdown,data-breakpoint,alignment-check";

/// The same on Bochs' AMD model, whose SVM loses DR6 on an intercepted #DB
/// (kernel/tests/guest/src/checks.rs, `DR6_LOST_WORD`): there the #DB must
/// still reach the guest, but its DR6 is not judged.
pub const TEST_GUEST_CMDLINE_BOCHS_SVM: &str =
    "guest=test-guest.elf:svm-dr6-lost,data-breakpoint,alignment-check \
     guest=test-guest.elf:oob,svm-dr6-lost,data-breakpoint,alignment-check \
     guest=test-guest.elf:odd-shutdown,svm-dr6-lost,data-breakpoint,alignment-check";

fn check_test_guest(lines: &[String], problems: &mut Vec<String>) {
    let has = |want: &str| lines.iter().any(|l| l == want);
    // With the data breakpoint and #AC checked too (the Bochs runs), each
    // domain has three intercepted exceptions: two #DB and one #AC.
    let all_exceptions = lines
        .iter()
        .any(|l| l.starts_with("cmdline:") && l.contains("alignment-check"));
    for domain in [1, 2, 3] {
        for check in TEST_GUEST_CHECKS {
            let want = format!("(d{domain}) check {check}: ok");
            if !has(&want) {
                problems.push(format!("missing {want:?}"));
            }
        }
        let summary = format!("(d{domain}) {} passed, 0 failed", TEST_GUEST_CHECKS.len());
        if !has(&summary) {
            problems.push(format!("missing {summary:?}"));
        }
        let exits = format!("domain {domain} exits:");
        match lines.iter().find(|l| l.starts_with(&exits)) {
            None => problems.push(format!("no per-reason exit counts ({exits:?})")),
            Some(line) => {
                for (reason, least) in TEST_GUEST_EXITS {
                    let least = if reason == "exception" && all_exceptions {
                        3
                    } else {
                        least
                    };
                    let n = exit_count(line, reason);
                    if n < least {
                        problems.push(format!(
                            "domain {domain}: {n} {reason} exits, want at least {least}"
                        ));
                    }
                }
            }
        }
    }
    for want in [
        "domain 1 (test-guest.elf): poweroff",
        // SCHEDOP_shutdown(0x1234): any reason ends the domain, its low byte kept.
        "domain 3 (test-guest.elf-3): shutdown reason 52",
    ] {
        if !has(want) {
            problems.push(format!("missing {want:?}"));
        }
    }
    if !ended_unemulated(lines, "domain 2 (test-guest.elf-2): ") {
        problems.push(format!(
            "missing \"domain 2 (test-guest.elf-2): {UNEMULATED_START}…{UNEMULATED_END}\""
        ));
    }
}

/// One boot's setup, as far as judging it goes.
pub struct Case<'a> {
    pub emulator: Emulator,
    pub cpu: Cpu,
    pub boot: Boot,
    pub expect: Expect,
    /// The modules handed over (none for a raw initrd).
    pub modules: &'a [Module],
    pub timeout: Duration,
}

/// Everything wrong with a run, as readable sentences; empty means PASS.
pub fn problems(case: &Case<'_>, outcome: &Outcome) -> Vec<String> {
    let mut problems = Vec::new();
    if outcome.timed_out {
        problems.push(format!(
            "timed out after {} s; emulator killed",
            case.timeout.as_secs()
        ));
    }
    if outcome.lingered {
        problems.push(
            "the emulator kept running 10 s after the exit line (exit ports 0xf4/0x8900 \
             did not stop it); killed"
                .into(),
        );
    }
    let numbered = numbered(&outcome.lines);
    let lines = &numbered;
    let qemu_status = outcome.status.and_then(|s| s.code());
    let want_exit = match case.expect {
        Expect::Boots
        | Expect::LinuxGuest
        | Expect::LinuxRelease(_)
        | Expect::LinuxGuests(_)
        | Expect::Lines(_)
        | Expect::LinuxDisk(_)
        | Expect::DiskGarbage
        | Expect::LinuxNet(_)
        | Expect::LinuxBalloon(_)
        | Expect::Fuzz(_) => HvExit::Success,
        Expect::Fatal(_) | Expect::Exception(_) | Expect::TestGuest | Expect::DriverCrash => {
            HvExit::Failure
        }
    };
    match case.expect {
        Expect::Boots => {
            let want_path = match case.boot {
                Boot::Pvh => BootPath::Pvh,
                Boot::Grub => BootPath::Multiboot2,
            };
            check_banner(lines, want_path, &mut problems);
            check_modules(lines, case.modules, &mut problems);
            check_caps(lines, case.cpu, &mut problems);
            check_hv_log(&outcome.hv_log, &mut problems);
            for line in lines.iter().filter(|l| serial::is_fatal(l)).take(5) {
                problems.push(format!("unexpected error line: {line}"));
            }
        }
        Expect::Fatal(prefix) | Expect::Exception(prefix) => {
            if !lines.iter().any(|l| l.starts_with(prefix)) {
                problems.push(format!("no line starting with {prefix:?}"));
            }
        }
        Expect::DriverCrash => {
            check_caps(lines, case.cpu, &mut problems);
            check_driver_crash(lines, &mut problems);
        }
        Expect::TestGuest => {
            check_caps(lines, case.cpu, &mut problems);
            check_hv_log(&outcome.hv_log, &mut problems);
            check_test_guest(lines, &mut problems);
            for line in lines.iter().filter(|l| serial::is_fatal(l)).take(5) {
                problems.push(format!("unexpected error line: {line}"));
            }
        }
        Expect::Lines(wanted) => {
            check_caps(lines, case.cpu, &mut problems);
            for want in wanted {
                if !lines.iter().any(|l| l == want) {
                    problems.push(format!("missing {want:?}"));
                }
            }
        }
        Expect::LinuxGuests(count) => {
            check_modules(lines, case.modules, &mut problems);
            check_caps(lines, case.cpu, &mut problems);
            check_hv_log(&outcome.hv_log, &mut problems);
            check_linux_domains(lines, count, &mut problems);
        }
        Expect::LinuxNet(net) => {
            check_modules(lines, case.modules, &mut problems);
            check_caps(lines, case.cpu, &mut problems);
            check_hv_log(&outcome.hv_log, &mut problems);
            check_linux_domains(lines, 2, &mut problems);
            problems.extend(net_test::problems(lines, net));
            if net.garbage {
                let hostile = Hostile {
                    domain: 3,
                    name: net_test::HOSTILE_NAME,
                    label: "net",
                };
                hostile.check(lines, &outcome.hv_log.lines, &mut problems);
            }
        }
        Expect::Fuzz(run) => {
            check_modules(lines, case.modules, &mut problems);
            check_caps(lines, case.cpu, &mut problems);
            check_hv_log(&outcome.hv_log, &mut problems);
            check_linux_domains(lines, 1, &mut problems);
            problems.extend(crate::fuzz::problems(lines, &outcome.hv_log.lines, run));
        }
        Expect::DiskGarbage => {
            check_modules(lines, case.modules, &mut problems);
            check_caps(lines, case.cpu, &mut problems);
            check_hv_log(&outcome.hv_log, &mut problems);
            problems.extend(linux_judge::problems(lines));
            check_disk(lines, "both", &mut problems);
            check_garbage(lines, &outcome.hv_log.lines, &mut problems);
        }
        Expect::LinuxBalloon(mib) => {
            check_modules(lines, case.modules, &mut problems);
            check_caps(lines, case.cpu, &mut problems);
            check_hv_log(&outcome.hv_log, &mut problems);
            problems.extend(linux_judge::problems(lines));
            check_balloon(lines, mib, &mut problems);
        }
        Expect::LinuxDisk(mode) => {
            check_modules(lines, case.modules, &mut problems);
            check_caps(lines, case.cpu, &mut problems);
            check_hv_log(&outcome.hv_log, &mut problems);
            problems.extend(linux_judge::problems(lines));
            check_disk(lines, mode, &mut problems);
        }
        Expect::LinuxGuest | Expect::LinuxRelease(_) => {
            check_modules(lines, case.modules, &mut problems);
            check_caps(lines, case.cpu, &mut problems);
            check_hv_log(&outcome.hv_log, &mut problems);
            let release = match case.expect {
                Expect::LinuxRelease(release) => release,
                _ => crate::kit::KERNEL_RELEASE,
            };
            problems.extend(linux_judge::problems_with_release(lines, release));
            for line in lines.iter().filter(|l| serial::is_fatal(l)).take(5) {
                problems.push(format!("unexpected error line: {line}"));
            }
        }
    }
    match serial::final_exit(lines) {
        Some(got) if got == want_exit => {}
        Some(got) => problems.push(format!("last line says {got:?}, expected {want_exit:?}")),
        None => problems.push(format!(
            "COM1 does not end with \"xenolith: exit {}\"",
            match want_exit {
                HvExit::Success => "success",
                HvExit::Failure => "failure",
            }
        )),
    }
    if case.emulator == Emulator::Qemu && !outcome.timed_out && !outcome.lingered {
        let want_code = match want_exit {
            HvExit::Success => 33,
            HvExit::Failure => 35,
        };
        if qemu_status != Some(want_code) {
            problems.push(format!(
                "QEMU exited with {}, expected {want_code} (isa-debug-exit)",
                qemu_status.map_or("a signal".to_string(), |c| c.to_string())
            ));
        }
    }
    problems
}

/// Domains 1..=`count` each judged as the Linux judge judges domain 1.
fn check_linux_domains(lines: &[String], count: u16, problems: &mut Vec<String>) {
    for domain in 1..=count {
        let seen = as_domain_one(lines, domain);
        problems.extend(
            linux_judge::problems(&seen)
                .into_iter()
                .map(|p| format!("domain {domain}: {p}")),
        );
    }
}

/// A test-guest domain run as a hostile frontend next to Linux guests.
struct Hostile<'a> {
    domain: u16,
    /// Its domain name in the hypervisor's lines.
    name: &'a str,
    /// What its verdict line starts with: `<label>: … ok` or `<label>: FAIL …`.
    label: &'a str,
}

impl Hostile<'_> {
    /// Its checks pass, its verdict is ok, and it powers off. It writes with
    /// `console_io`, which reaches the hypervisor's log (COM2) once the
    /// driver domain owns COM1.
    fn check(&self, lines: &[String], hv_lines: &[String], problems: &mut Vec<String>) {
        let mine = format!("({}) ", self.tag());
        let guest: Vec<&str> = hv_lines
            .iter()
            .filter_map(|l| l.split_once(" INFO ").map(|(_, text)| text))
            .filter_map(|t| t.strip_prefix(&mine))
            .collect();
        let summary = format!("{} passed, 0 failed", TEST_GUEST_CHECKS.len());
        if !guest.contains(&summary.as_str()) {
            problems.push(format!(
                "missing \"({}) {summary}\" in the hypervisor log",
                self.tag()
            ));
        }
        let verdict = format!("{}: ", self.label);
        match guest.iter().find(|l| l.starts_with(&verdict)) {
            Some(l) if l.ends_with(": ok") => {}
            Some(l) => problems.push(format!("the hostile frontend: ({}) {l}", self.tag())),
            None => problems.push(format!(
                "no \"({}) {verdict}...\" line from the hostile frontend",
                self.tag()
            )),
        }
        let off = format!("domain {} ({}): poweroff", self.domain, self.name);
        if !lines.contains(&off) {
            problems.push(format!("missing {off:?}"));
        }
    }

    fn tag(&self) -> String {
        format!("d{}", self.domain)
    }
}

/// The hostile blkfront (domain 2, the test guest with `blk-garbage`):
/// its verdict, and the driver domain's report of its overrun ring.
fn check_garbage(lines: &[String], hv_lines: &[String], problems: &mut Vec<String>) {
    let hostile = Hostile {
        domain: 2,
        name: crate::build::TEST_GUEST_MODULE,
        label: "blk",
    };
    hostile.check(lines, hv_lines, problems);
    if !lines
        .iter()
        .any(|l| l.starts_with("(d0) domain 2: xvda: Overrun"))
    {
        problems.push("the driver domain did not report domain 2's overrun ring".into());
    }
}

/// The disk test's lines from domain 1 and the driver domain.
pub fn check_disk(lines: &[String], mode: &str, problems: &mut Vec<String>) {
    for l in lines
        .iter()
        .filter(|l| l.starts_with("(d1) DISK FAIL") || l.starts_with("(d1) DISK VERIFY FAIL"))
        .take(5)
    {
        problems.push(format!("the guest's disk test failed: {l}"));
    }
    let done = format!("(d1) DISK DONE {mode}");
    if !lines.contains(&done) {
        problems.push(format!("no {done:?} line"));
    }
    if mode != "write" && !lines.iter().any(|l| l == "(d1) DISK VERIFY ok 14 files") {
        problems.push("no \"(d1) DISK VERIFY ok 14 files\" line".into());
    }
    // Every boot that writes also deletes a file and runs fstrim.
    if mode != "verify" && !lines.iter().any(|l| l.starts_with("(d1) DISK TRIM ")) {
        problems.push("no \"(d1) DISK TRIM <n> bytes\" line: fstrim did not run".into());
    }
    for (want, what) in [
        (
            "(d0) domain 1: xvda connected",
            "the driver domain never connected xvda",
        ),
        (
            "(d0) domain 1: xvda disconnected after",
            "the driver domain never saw xvda close",
        ),
    ] {
        if !lines.iter().any(|l| l.starts_with(want)) {
            problems.push(what.into());
        }
    }
}

fn check_banner(lines: &[String], want: BootPath, problems: &mut Vec<String>) {
    match lines.iter().find_map(|l| serial::parse_banner(l)) {
        None => problems.push("no banner line \"Xenolith <version> booted via ...\"".into()),
        Some((_, got)) if got != want => {
            problems.push(format!("banner says booted via {got:?}, expected {want:?}"))
        }
        Some(_) => {}
    }
}

fn check_modules(lines: &[String], modules: &[Module], problems: &mut Vec<String>) {
    let mut seen = Vec::new();
    for parsed in lines.iter().filter_map(|l| serial::parse_module(l)) {
        match parsed {
            Ok(m) => seen.push(m),
            Err(err) => problems.push(format!("{err:#}")),
        }
    }
    for want in modules {
        let matches: Vec<_> = seen.iter().filter(|m| m.name == want.name).collect();
        match matches[..] {
            [] => problems.push(format!("no module line for {}", want.name)),
            [got] => {
                if got.size != want.data.len() as u64 || got.fnv1a != want.fnv1a() {
                    problems.push(format!(
                        "module {}: got size={} fnv1a={:016x}, expected size={} fnv1a={:016x}",
                        want.name,
                        got.size,
                        got.fnv1a,
                        want.data.len(),
                        want.fnv1a()
                    ));
                }
            }
            _ => problems.push(format!(
                "module {} is listed {} times",
                want.name,
                matches.len()
            )),
        }
    }
    for got in &seen {
        if !modules.iter().any(|m| m.name == got.name) {
            problems.push(format!("unexpected module line for {:?}", got.name));
        }
    }
}

fn check_caps(lines: &[String], cpu: Cpu, problems: &mut Vec<String>) {
    let Some(line) = lines.iter().find(|l| serial::is_caps_line(l)) else {
        problems.push("no capability line \"cpu: ...\"".into());
        return;
    };
    match serial::parse_caps(line) {
        Ok(caps) => problems.extend(expect::mismatches(expect::for_cpu(cpu), &caps)),
        Err(err) => problems.push(format!("bad capability line: {err:#}")),
    }
}

/// COM2 must carry a clean defmt stream that the image's own table decodes.
fn check_hv_log(log: &HvLog, problems: &mut Vec<String>) {
    if !log.had_table {
        problems.push("the image has no defmt table, so COM2 cannot be decoded".into());
    } else if log.frames == 0 {
        problems.push("no defmt frame was decoded from COM2".into());
    }
    if log.malformed > 0 {
        problems.push(format!("{} malformed defmt frames on COM2", log.malformed));
    }
}

#[cfg(test)]
mod renumber_tests {
    use super::*;

    #[test]
    fn keeps_one_domain_renumbered() {
        let lines: Vec<String> = [
            "xenolith: x",
            "(d1) a",
            "(d2) b",
            "domain 1 (linux): halted",
            "domain 2 (linux): poweroff",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            as_domain_one(&lines, 2),
            ["xenolith: x", "(d1) b", "domain 1 (linux): poweroff"]
        );
        assert_eq!(
            as_domain_one(&lines, 1),
            ["xenolith: x", "(d1) a", "domain 1 (linux): halted"]
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exit_counts_are_read_by_reason() {
        let line = "domain 1 exits: cpuid=6 exception=2 cache-flush=2 undefined=6 total=16 cpu=8ms";
        assert_eq!(exit_count(line, "exception"), 2);
        assert_eq!(exit_count(line, "undefined"), 6);
        assert_eq!(exit_count(line, "hlt"), 0);
        assert_eq!(exit_count(line, "cpu"), 0, "not a number");
    }

    use super::*;

    #[test]
    fn driver_domain_lines_are_numbered_by_name() {
        let lines: Vec<String> = [
            "domain 1 (linux): started, 262144 KiB, built in 5 ms",
            "domain 2 (linux-2): started, 262144 KiB, built in 5 ms",
            "[Domain-0] driver domain up",
            "[linux-2] XENOLITH-INIT-OK",
            "[linux] hello",
            "[nobody] stays",
            "domain 2 (linux-2): poweroff",
        ]
        .map(String::from)
        .to_vec();
        let n = numbered(&lines);
        assert_eq!(n[2], "(d0) driver domain up");
        assert_eq!(n[3], "(d2) XENOLITH-INIT-OK");
        assert_eq!(n[4], "(d1) hello");
        assert_eq!(n[5], "[nobody] stays");
        let two = as_domain_one(&n, 2);
        assert!(two.contains(&"(d1) XENOLITH-INIT-OK".to_string()));
        assert!(two.contains(&"domain 1 (linux): poweroff".to_string()));
    }

    #[test]
    fn a_disk_boot_that_writes_must_have_trimmed() {
        let base = [
            "(d0) domain 1: xvda connected, 1 page ring",
            "(d1) DISK VERIFY ok 14 files",
            "(d1) DISK DONE both",
            "(d0) domain 1: xvda disconnected after 3 requests",
        ]
        .map(String::from);
        let mut problems = Vec::new();
        check_disk(&base, "both", &mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("fstrim did not run"), "{problems:?}");
        let mut trimmed = base.to_vec();
        trimmed.insert(1, "(d1) DISK TRIM 4194304 bytes".into());
        problems.clear();
        check_disk(&trimmed, "both", &mut problems);
        assert_eq!(problems, Vec::<String>::new());
        // A boot that only reads back does not trim.
        let verify: Vec<String> = base
            .iter()
            .map(|l| l.replace("DONE both", "DONE verify"))
            .collect();
        problems.clear();
        check_disk(&verify, "verify", &mut problems);
        assert_eq!(problems, Vec::<String>::new());
    }

    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use crate::modules;

    const QEMU: Duration = Duration::from_secs(60);

    fn case(
        emulator: Emulator,
        boot: Boot,
        cpu: Cpu,
        expect: Expect,
        modules: &[Module],
    ) -> Case<'_> {
        Case {
            emulator,
            cpu,
            boot,
            expect,
            modules,
            timeout: QEMU,
        }
    }

    fn outcome(lines: &[String], code: Option<i32>) -> Outcome {
        Outcome {
            lines: lines.to_vec(),
            line_times: Vec::new(),
            hv_log: HvLog {
                lines: vec!["INFO booted".into()],
                had_table: true,
                frames: 1,
                malformed: 0,
            },
            // A wait status keeps the exit code in bits 8..16.
            status: code.map(|c| ExitStatus::from_raw(c << 8)),
            timed_out: false,
            lingered: false,
            caps_after: None,
            wall: Duration::ZERO,
        }
    }

    fn good_lines(path: &str, caps: &str) -> Vec<String> {
        let mut lines = vec![
            "  Booting `Xenolith'".to_string(),
            format!("Xenolith 0.1.0 booted via {path}"),
        ];
        for m in modules::test_set() {
            lines.push(format!(
                "module: name={} size={} fnv1a={:016x}",
                m.name,
                m.data.len(),
                m.fnv1a()
            ));
        }
        lines.push(caps.to_string());
        lines.push("xenolith: exit success".to_string());
        lines
    }

    const EPYC: &str = "cpu: vendor=AuthenticAMD vmx=no svm=yes ept=no npt=yes vpid=0 asids=16 \
        unrestricted=yes nrips=no x2apic=no xsave=yes invtsc=no tsc_khz=1 apic_timer_khz=1 \
        spec=rsb";

    #[test]
    fn a_good_pvh_boot_passes() {
        let mods = modules::test_set();
        let c = case(Emulator::Qemu, Boot::Pvh, Cpu::Epyc, Expect::Boots, &mods);
        let o = outcome(&good_lines("pvh", EPYC), Some(33));
        let problems = problems(&c, &o);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn wrong_boot_path_status_and_digest_are_caught() {
        let mods = modules::test_set();
        let c = case(Emulator::Qemu, Boot::Grub, Cpu::Epyc, Expect::Boots, &mods);
        let mut lines = good_lines("pvh", EPYC);
        let (head, _) = lines[2].rsplit_once("fnv1a=").unwrap();
        lines[2] = format!("{head}fnv1a=0000000000000000");
        let o = outcome(&lines, Some(35));
        let problems = problems(&c, &o);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("Pvh"));
        assert!(problems[1].contains("alpha.bin"));
        assert!(problems[2].contains("QEMU exited with 35"));
    }

    #[test]
    fn caps_expectations_apply() {
        let mods = modules::test_set();
        let c = case(
            Emulator::Bochs,
            Boot::Grub,
            Cpu::Ryzen,
            Expect::Boots,
            &mods,
        );
        let o = outcome(&good_lines("multiboot2", EPYC), Some(1));
        let problems = problems(&c, &o);
        // Bochs' status is ignored; the EPYC line lacks NRIPS.
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("nrips"));
    }

    #[test]
    fn fatal_tests_need_the_message_failure_and_35() {
        let fatal = Expect::Fatal("xenolith: fatal: bad module archive");
        let c = case(Emulator::Qemu, Boot::Pvh, Cpu::Epyc, fatal, &[]);
        let lines: Vec<String> = [
            "Xenolith 0.1.0 booted via pvh",
            "xenolith: fatal: bad module archive: no cpio magic",
            "xenolith: exit failure",
        ]
        .map(String::from)
        .to_vec();
        let ok = problems(&c, &outcome(&lines, Some(35)));
        assert!(ok.is_empty(), "{ok:?}");
        let bad = problems(&c, &outcome(&lines[..1], Some(33)));
        assert_eq!(bad.len(), 3, "{bad:?}");
    }

    #[test]
    fn com2_must_decode_cleanly() {
        let mods = modules::test_set();
        let c = case(Emulator::Qemu, Boot::Pvh, Cpu::Epyc, Expect::Boots, &mods);
        let mut o = outcome(&good_lines("pvh", EPYC), Some(33));
        o.hv_log.malformed = 2;
        assert_eq!(problems(&c, &o), ["2 malformed defmt frames on COM2"]);
        o.hv_log = HvLog::default();
        assert_eq!(
            problems(&c, &o),
            ["the image has no defmt table, so COM2 cannot be decoded"]
        );
        o.hv_log.had_table = true;
        assert_eq!(problems(&c, &o), ["no defmt frame was decoded from COM2"]);
    }

    #[test]
    fn a_linux_boot_needs_modules_caps_and_the_guest_lines() {
        let mods = vec![Module {
            name: "linux".into(),
            data: b"elf".to_vec(),
        }];
        let c = case(
            Emulator::Qemu,
            Boot::Pvh,
            Cpu::Epyc,
            Expect::LinuxGuest,
            &mods,
        );
        let m = &mods[0];
        let mut lines = vec![
            format!("module: name=linux size=3 fnv1a={:016x}", m.fnv1a()),
            EPYC.to_string(),
            "(d1) XENOLITH-INIT-OK".to_string(),
            format!("(d1) {}", crate::kit::KERNEL_RELEASE),
        ];
        for check in linux_judge::CHECKS {
            lines.push(format!("(d1) CHECK {check}: ok"));
        }
        lines.extend(
            [
                "(d1) CHECKS DONE 6 passed, 0 failed",
                "domain 1 (linux): poweroff",
                "domain 1 exits: cpuid=1 total=1 unknown-hypercalls=0",
                "xenolith: exit success",
            ]
            .map(String::from),
        );
        let ok = problems(&c, &outcome(&lines, Some(33)));
        assert!(ok.is_empty(), "{ok:?}");
        // Another kernel is judged the same, by its own release.
        let cloud = crate::kit::CLOUD_KERNEL_RELEASE;
        let c2 = case(
            Emulator::Qemu,
            Boot::Pvh,
            Cpu::Epyc,
            Expect::LinuxRelease(cloud),
            &mods,
        );
        let wrong = problems(&c2, &outcome(&lines, Some(33)));
        assert_eq!(wrong, [format!("missing \"(d1) {cloud}\" (uname -r)")]);
        let mut cloud_lines = lines.clone();
        cloud_lines[3] = format!("(d1) {cloud}");
        let ok = problems(&c2, &outcome(&cloud_lines, Some(33)));
        assert!(ok.is_empty(), "{ok:?}");
        // The hypervisor as it is before it takes Linux guests.
        let early = [
            EPYC,
            "domain 1 (linux): not created: bad ELF",
            "xenolith: exit failure",
        ]
        .map(String::from);
        let bad = problems(&c, &outcome(&early, Some(35)));
        assert!(
            bad.iter().any(|p| p.contains("no module line for linux")),
            "{bad:?}"
        );
        assert!(
            bad.iter().any(|p| p.contains("XENOLITH-INIT-OK")),
            "{bad:?}"
        );
        assert!(
            bad.iter().any(|p| p.contains("not created: bad ELF")),
            "{bad:?}"
        );
        assert!(
            bad.iter().any(|p| p.contains("QEMU exited with 35")),
            "{bad:?}"
        );
    }

    #[test]
    fn a_timeout_is_a_failure() {
        let fatal = Expect::Fatal("xenolith: fatal: not enough usable memory");
        let c = case(Emulator::Qemu, Boot::Pvh, Cpu::Epyc, fatal, &[]);
        let mut o = outcome(&[], None);
        o.timed_out = true;
        let problems = problems(&c, &o);
        assert!(problems[0].contains("timed out"), "{problems:?}");
    }

    #[test]
    fn a_net_run_with_a_hostile_netfront() {
        let net = NetTest {
            mem_mib: 256,
            pings: 10,
            mib: 1,
            garbage: true,
        };
        let c = case(
            Emulator::Qemu,
            Boot::Pvh,
            Cpu::Epyc,
            Expect::LinuxNet(net),
            &[],
        );
        let sum = "ab".repeat(32);
        let mut lines = vec![EPYC.to_string()];
        for (n, name) in [(1, "linux1"), (2, "linux2"), (3, "test-guest")] {
            lines.push(format!(
                "domain {n} ({name}): started, 262144 KiB, built in 9 ms"
            ));
        }
        for n in 1..=2 {
            lines.push(format!("[linux{n}] XENOLITH-INIT-OK"));
            lines.push(format!("[linux{n}] {}", crate::kit::KERNEL_RELEASE));
            for check in linux_judge::CHECKS {
                lines.push(format!("[linux{n}] CHECK {check}: ok"));
            }
            lines.push(format!("[linux{n}] CHECKS DONE 6 passed, 0 failed"));
            lines.push(format!(
                "[linux{n}] NET eth0 00:16:3e:00:00:0{n} 10.0.0.{n}/24"
            ));
            let peer = 3 - n;
            lines.push(format!(
                "[linux{n}] NET PING 10.0.0.{peer} sent 10 received 10 loss 0% avg 3.5"
            ));
            lines.push(format!("[Domain-0] domain {n}: vif0 connected"));
        }
        lines.extend([
            format!("[linux2] NET TCP SENT {sum} 1048576"),
            "[linux2] NET TCP DONE".into(),
            format!("[linux1] NET TCP RECV {sum} 1048576"),
            "domain 3 (test-guest): poweroff".into(),
            "domain 2 (linux2): poweroff".into(),
            "domain 1 (linux1): halted with interrupts off".into(),
        ]);
        for n in 0..=3 {
            lines.push(format!("domain {n} exits: hlt=1 total=1 sends=1"));
        }
        lines.push("xenolith: exit success".into());
        let mut o = outcome(&lines, Some(33));
        o.hv_log.lines = vec![
            format!(
                "0.100 INFO (d3) {} passed, 0 failed",
                TEST_GUEST_CHECKS.len()
            ),
            "0.200 INFO (d3) net: garbage refused, the switch carried on: ok".into(),
        ];
        assert_eq!(problems(&c, &o), Vec::<String>::new());
        o.hv_log.lines[1] = "0.200 INFO (d3) net: FAIL the backend took a bad ring".into();
        assert_eq!(
            problems(&c, &o),
            ["the hostile frontend: (d3) net: FAIL the backend took a bad ring"]
        );
        // Without its verdict, and with linux2 crashed.
        o.hv_log.lines.pop();
        let crashed = lines
            .iter()
            .map(|l| l.replace("(linux2): poweroff", "(linux2): crashed: triple fault"))
            .collect::<Vec<_>>();
        o.lines = crashed;
        let got = problems(&c, &o);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].starts_with("domain 2: domain 1 ended with \"crashed"),
            "{got:?}"
        );
        assert!(got[1].contains("no \"(d3) net: ...\" line"), "{got:?}");
    }
}
