//! The arithmetic and tables of `cargo xtask bench`: medians, the exit-count table, guests' BENCH lines, MB/s.

use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The median; for an even count, the mean of the middle two.
pub fn median(samples: &[Duration]) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

/// Parses `domain 1 exits: cpuid=3 io=4 total=7 unknown-hypercalls=0` into
/// its counters, in the order printed.
pub fn parse_exits(line: &str, domain: u16) -> Option<Vec<(String, u64)>> {
    let rest = line.strip_prefix(&format!("domain {domain} exits:"))?;
    // Counters only: fields with units (`cpu=311ms`) are left out.
    rest.split_whitespace()
        .map(|field| {
            let (name, count) = field.split_once('=')?;
            Some(count.parse().ok().map(|c| (name.to_string(), c)))
        })
        .collect::<Option<Vec<_>>>()
        .map(|v| v.into_iter().flatten().collect())
}

/// `total=` and `sends=` (event-channel notifications) of a `domain N exits:` line.
pub fn exit_counts(lines: &[String], domain: u16) -> Option<(u64, u64)> {
    let counts = lines.iter().find_map(|l| parse_exits(l, domain))?;
    let field = |name: &str| counts.iter().find(|(n, _)| n == name).map(|(_, c)| *c);
    Some((field("total")?, field("sends")?))
}

/// The `key=value` fields of a guest's `<prefix>k=v k=v` line.
pub fn bench_fields<'a>(line: &'a str, prefix: &str) -> Option<Vec<(&'a str, &'a str)>> {
    line.strip_prefix(prefix)?
        .split_whitespace()
        .map(|field| field.split_once('='))
        .collect()
}

/// The first console line (after `console`, such as `(d1) `) that `parse`
/// takes; an error if a guest reported a failure instead.
pub fn bench_line<T>(
    lines: &[String],
    console: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T> {
    if let Some(fail) = lines
        .iter()
        .find(|l| l.contains("BENCH FAIL") || l.contains("NET FAIL"))
    {
        bail!("{fail}");
    }
    lines
        .iter()
        .find_map(|l| parse(l.strip_prefix(console)?))
        .context("no BENCH line on the console")
}

/// MB/s (10^6 bytes) for `mib` MiB in `cs` centiseconds.
pub fn mb_per_s(mib: u64, cs: u64) -> f64 {
    (mib as f64 * 1.048_576) / (cs.max(1) as f64 / 100.0)
}

/// MB/s (10^6 bytes) for `mib` MiB in `us` microseconds.
pub fn mb_per_s_us(mib: u64, us: u64) -> f64 {
    (mib as f64 * 1_048_576.0) / (us.max(1) as f64 / 1e6) / 1e6
}

/// A table with one row per counter and one column per run; counters a run
/// did not print count 0 there (the hypervisor leaves zero reasons out).
pub fn exit_table(runs: &[(u32, Vec<(String, u64)>)]) -> Vec<String> {
    let mut names: Vec<&str> = Vec::new();
    for (_, counts) in runs {
        for (name, _) in counts {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    // Per-reason counters first, then the two summaries, as the hypervisor prints them.
    let summary = |n: &&str| matches!(*n, "total" | "unknown-hypercalls");
    let (tail, mut names): (Vec<&str>, Vec<&str>) = names.into_iter().partition(summary);
    names.extend(tail);
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0).max(6);
    let mut out = Vec::new();
    let mut header = format!("{:<width$}", "reason");
    for (run, _) in runs {
        header.push_str(&format!(" {:>12}", format!("run {run}")));
    }
    out.push(header);
    for name in names {
        let mut row = format!("{name:<width$}");
        for (_, counts) in runs {
            let count = counts
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, c)| *c);
            row.push_str(&format!(" {count:>12}"));
        }
        out.push(row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &[f64]) -> Vec<Duration> {
        s.iter().map(|&s| Duration::from_secs_f64(s)).collect()
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(
            median(&secs(&[3.0, 1.0, 2.0])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            median(&secs(&[4.0, 1.0, 2.0, 3.0])),
            Some(Duration::from_millis(2500))
        );
    }

    #[test]
    fn exit_lines_parse() {
        let line = "domain 1 exits: cpuid=12 hypercall=7 total=19 unknown-hypercalls=2";
        assert_eq!(
            parse_exits(line, 1).unwrap(),
            [
                ("cpuid", 12),
                ("hypercall", 7),
                ("total", 19),
                ("unknown-hypercalls", 2)
            ]
            .map(|(n, c)| (n.to_string(), c))
        );
        assert_eq!(parse_exits(line, 2), None);
        assert_eq!(parse_exits("domain 1 exits: cpuid", 1), None);
        // Fields with units are not counters.
        assert_eq!(
            parse_exits("domain 1 exits: hlt=3 cpu=311ms sends=2", 1).unwrap(),
            [("hlt".to_string(), 3), ("sends".to_string(), 2)]
        );
        assert_eq!(parse_exits("domain 1 exits: total=0", 1).unwrap().len(), 1);
    }

    #[test]
    fn exit_counts_and_bench_lines() {
        let lines: Vec<String> = [
            "domain 1 exits: hlt=3 total=7 unknown-hypercalls=0 cpu=5ms sends=4",
            "domain 2 exits: hlt=3 total=9",
            "(d1) BENCH x a=1 b=2.5",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(exit_counts(&lines, 1), Some((7, 4)));
        assert_eq!(exit_counts(&lines, 2), None);
        assert_eq!(
            bench_fields("BENCH x a=1 b=2.5", "BENCH x "),
            Some(vec![("a", "1"), ("b", "2.5")])
        );
        assert_eq!(bench_fields("BENCH x a", "BENCH x "), None);
        let a = |l: &str| Some(bench_fields(l, "BENCH x ")?[0].1.to_string());
        assert_eq!(bench_line(&lines, "(d1) ", a).unwrap(), "1");
        assert!(bench_line(&lines, "(d2) ", a).is_err());
        let mut failed = lines.clone();
        failed.push("(d2) NET FAIL ping: 10.0.0.1 never answered".into());
        let err = bench_line(&failed, "(d1) ", a).unwrap_err().to_string();
        assert!(err.contains("never answered"), "{err}");
        assert!((mb_per_s(64, 25) - 268.4).abs() < 0.1);
    }

    #[test]
    fn mb_per_s_from_microseconds() {
        // 128 MiB is 134.217728 MB.
        assert!((mb_per_s_us(128, 1_000_000) - 134.217_728).abs() < 1e-9);
        assert!((mb_per_s_us(128, 250_000) - 536.870_912).abs() < 1e-9);
        // The same rate as the centisecond form gives.
        assert!((mb_per_s_us(64, 250_000) - mb_per_s(64, 25)).abs() < 1e-9);
        // No division by zero.
        assert!(mb_per_s_us(1, 0).is_finite());
    }

    #[test]
    fn table_aligns_runs_and_fills_gaps() {
        let a = parse_exits("domain 1 exits: cpuid=12 total=12 unknown-hypercalls=0", 1).unwrap();
        let b = parse_exits(
            "domain 1 exits: cpuid=10 hlt=5 total=15 unknown-hypercalls=1",
            1,
        )
        .unwrap();
        let table = exit_table(&[(1, a), (3, b)]);
        assert_eq!(table.len(), 5);
        assert!(table[0].starts_with("reason"));
        assert!(table[0].ends_with("run 3"));
        assert!(table[1].starts_with("cpuid") && table[1].ends_with("10"));
        let hlt: Vec<&str> = table[2].split_whitespace().collect();
        assert_eq!(hlt, ["hlt", "0", "5"]);
        assert!(table[3].starts_with("total"));
        assert!(table[4].starts_with("unknown-hypercalls"));
    }
}
