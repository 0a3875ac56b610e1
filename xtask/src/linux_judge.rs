//! Judging a Linux guest boot: the kit /init's lines on the guest console, and how domain 1 ended.

use crate::kit::KERNEL_RELEASE;
use crate::linux::KERNEL_MODULE;

/// The boot marker /init prints first.
pub const MARKER: &str = "XENOLITH-INIT-OK";

/// The checks of the kit's /init (xtask/src/guest_init.sh), in order.
pub const CHECKS: [&str; 5] = ["xen", "clocksource", "hvc", "dmesg-clean", "xenbus"];

/// The guest console lines of domain 1, without their `(d1) ` prefix.
fn console(lines: &[String]) -> impl Iterator<Item = &str> {
    lines.iter().filter_map(|l| l.strip_prefix("(d1) "))
}

/// How a kernel message starts when Linux reports a bug, a warning splat or
/// a panic (the same reports /init's dmesg-clean check looks for).
const KERNEL_TROUBLE: [&str; 6] = [
    "kernel BUG at",
    "BUG: ",
    "WARNING: CPU:",
    "Kernel panic",
    "PANIC: ",
    "Oops",
];

/// The first console line in which the guest kernel reports trouble, without
/// its timestamp: the quickest pointer to why /init never ran.
fn kernel_trouble<'a>(guest: &[&'a str]) -> Option<&'a str> {
    guest.iter().find_map(|line| {
        let message = match line.strip_prefix('[') {
            Some(rest) => rest.split_once("] ").map_or(*line, |(_, m)| m),
            None => line,
        };
        KERNEL_TROUBLE
            .iter()
            .any(|t| message.starts_with(t))
            .then_some(message)
    })
}

/// [`kernel_trouble`] on the console lines of domain 1 among all of COM1.
pub fn guest_kernel_trouble(lines: &[String]) -> Option<&str> {
    kernel_trouble(&console(lines).collect::<Vec<_>>())
}

/// Whether a COM1 line is the marker from domain 1.
pub fn is_nested_marker(line: &str) -> bool {
    line.strip_prefix("(d1) ") == Some(MARKER)
}

/// Everything the Linux smoke tests require of COM1, as readable sentences.
pub fn problems(lines: &[String]) -> Vec<String> {
    problems_with_release(lines, KERNEL_RELEASE)
}

/// [`problems`] for a kernel other than the kit's: `uname -r` must say `release`.
pub fn problems_with_release(lines: &[String], release: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let guest: Vec<&str> = console(lines).collect();
    if guest.is_empty() {
        problems.push("domain 1 printed nothing on its console (no \"(d1) \" line)".into());
    }
    if let Some(trouble) = kernel_trouble(&guest) {
        problems.push(format!("the guest kernel reported: {trouble}"));
    }
    if !guest.contains(&MARKER) {
        problems.push(format!(
            "missing \"(d1) {MARKER}\": Linux never ran the kit's /init"
        ));
    }
    if !guest.contains(&release) {
        problems.push(format!("missing \"(d1) {release}\" (uname -r)"));
    }
    if !guest.iter().any(|l| l.starts_with("CHECK")) {
        problems.push("no \"(d1) CHECK ...\" line: the check list never ran".into());
        return ending_problems(lines, problems);
    }
    for name in CHECKS {
        let prefix = format!("CHECK {name}: ");
        match guest.iter().find_map(|l| l.strip_prefix(&prefix)) {
            Some("ok") => {}
            Some(other) => problems.push(format!("check {name}: {other}")),
            None => problems.push(format!("missing \"(d1) CHECK {name}: ok\"")),
        }
    }
    for line in &guest {
        let unknown = line
            .strip_prefix("CHECK ")
            .and_then(|rest| rest.split_once(": "))
            .is_some_and(|(name, verdict)| !CHECKS.contains(&name) && verdict != "ok");
        if unknown {
            problems.push(format!("unexpected failing check: {line}"));
        }
    }
    let summary = format!("CHECKS DONE {} passed, 0 failed", CHECKS.len());
    if !guest.contains(&summary.as_str()) {
        match guest.iter().find(|l| l.starts_with("CHECKS DONE ")) {
            Some(got) => problems.push(format!("\"(d1) {got}\", expected \"(d1) {summary}\"")),
            None => problems.push(format!("missing \"(d1) {summary}\"")),
        }
    }
    ending_problems(lines, problems)
}

/// Adds what is wrong with how domain 1 ended and with its exit counts.
fn ending_problems(lines: &[String], mut problems: Vec<String>) -> Vec<String> {
    // "domain 1 (<name>): started, N KiB" comes first; the last other line
    // says how it ended. Domains from a config have their own names.
    let ending = lines
        .iter()
        .filter_map(|l| l.strip_prefix("domain 1 (")?.split_once("): "))
        .map(|(_, how)| how)
        .rfind(|how| !how.starts_with("started"));
    match ending {
        Some(how) if how.contains("poweroff") || how.contains("halted with interrupts off") => {}
        Some(how) => problems.push(format!("domain 1 ended with \"{how}\", expected poweroff")),
        None => problems.push(format!(
            "no line \"domain 1 ({KERNEL_MODULE}): ...\" saying how domain 1 ended"
        )),
    }
    if !lines.iter().any(|l| l.starts_with("domain 1 exits:")) {
        problems.push("no per-reason exit counts (\"domain 1 exits:\")".into());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Vec<String> {
        let mut lines = vec![
            "domain 1 (linux): started, 262144 KiB".to_string(),
            "(d1) [    0.000000] Linux version 6.1.0-56-amd64".to_string(),
            format!("(d1) {MARKER}"),
            format!("(d1) {KERNEL_RELEASE}"),
        ];
        for c in CHECKS {
            lines.push(format!("(d1) CHECK {c}: ok"));
        }
        lines.push("(d1) CHECKS DONE 5 passed, 0 failed".into());
        lines.push("domain 1 (linux): poweroff".into());
        lines.push("domain 1 exits: cpuid=10 total=10 unknown-hypercalls=0".into());
        lines
    }

    #[test]
    fn a_good_boot_passes() {
        assert!(problems(&good()).is_empty(), "{:?}", problems(&good()));
        let mut halted = good();
        halted[10] = "domain 1 (linux): halted with interrupts off".into();
        assert!(problems(&halted).is_empty());
        // A domain named by a config ends the same way.
        let mut named = good();
        named[0] = "domain 1 (linux1): started, 262144 KiB".into();
        named[10] = "domain 1 (linux1): poweroff".into();
        assert!(problems(&named).is_empty());
        named[10] = "domain 1 (linux1): crashed: triple fault".into();
        assert_eq!(
            problems(&named),
            ["domain 1 ended with \"crashed: triple fault\", expected poweroff"]
        );
        assert!(is_nested_marker("(d1) XENOLITH-INIT-OK"));
        assert!(!is_nested_marker("XENOLITH-INIT-OK"));
    }

    #[test]
    fn another_kernel_must_name_its_own_release() {
        let cloud = crate::kit::CLOUD_KERNEL_RELEASE;
        assert_eq!(
            problems_with_release(&good(), cloud),
            [format!("missing \"(d1) {cloud}\" (uname -r)")]
        );
        let mut lines = good();
        lines[3] = format!("(d1) {cloud}");
        assert!(problems_with_release(&lines, cloud).is_empty());
        assert_eq!(problems(&lines).len(), 1);
    }

    #[test]
    fn failing_checks_say_why() {
        let mut lines = good();
        lines[5] = "(d1) CHECK clocksource: FAIL current clocksource is tsc".into();
        lines[9] = "(d1) CHECKS DONE 4 passed, 1 failed".into();
        let got = problems(&lines);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].contains("FAIL current clocksource is tsc"));
        assert!(got[1].contains("4 passed, 1 failed"), "{got:?}");
    }

    #[test]
    fn a_crash_before_init_lists_everything_missing() {
        let lines = vec![
            "domain 1 (linux): crashed: triple fault".to_string(),
            "domain 1 exits: total=3 unknown-hypercalls=0".to_string(),
        ];
        let got = problems(&lines);
        // Nothing on the console, no marker, no release, no check list, the crash.
        assert_eq!(got.len(), 5, "{got:?}");
        assert!(got[0].contains("printed nothing"));
        assert!(got.last().unwrap().contains("crashed: triple fault"));
    }

    #[test]
    fn kernel_reports_are_pointed_out() {
        let lines: Vec<String> = [
            "(d1) [    0.000000] Xen version 4.17.",
            "(d1) [    0.000000] ------------[ cut here ]------------",
            "(d1) [    0.000000] kernel BUG at arch/x86/xen/enlighten_hvm.c:48!",
            "(d1) PANIC: early exception 0x06 IP 10:ffffffff8101f6bf error 0",
            "domain 1 (linux): halted with interrupts off",
            "domain 1 exits: cpuid=322 total=322 unknown-hypercalls=1",
        ]
        .map(String::from)
        .to_vec();
        let got = problems(&lines);
        assert_eq!(
            got[0],
            "the guest kernel reported: kernel BUG at arch/x86/xen/enlighten_hvm.c:48!"
        );
        let guest = ["PANIC: early exception 0x0e", "[ 1.0] Oops: 0000 [#1] SMP"];
        assert_eq!(kernel_trouble(&guest), Some("PANIC: early exception 0x0e"));
        assert_eq!(kernel_trouble(&guest[1..]), Some("Oops: 0000 [#1] SMP"));
        let fine = ["[ 0.2] Speculative Return Stack Overflow: WARNING: See ..."];
        assert_eq!(kernel_trouble(&fine), None);
    }

    #[test]
    fn unknown_failing_checks_count() {
        let mut lines = good();
        lines.insert(8, "(d1) CHECK blkfront: FAIL no disk".into());
        assert_eq!(
            problems(&lines),
            ["unexpected failing check: CHECK blkfront: FAIL no disk"]
        );
    }
}
