//! `cargo xtask xtf`: boots a locally built XTF tree's tests as built, one guest each, and tabulates their results.
//!
//! XTF (the Xen Test Framework, github xen-project/xtf) is Xen's own test
//! suite for its guest ABI: each test is a tiny PVH kernel that ends by
//! printing `Test result: SUCCESS|SKIP|FAILURE|ERROR`. Its code is not in
//! this tree; this runs a tree the user built (`make -j2`) as it is.

use crate::domain_config::{Config, Domain, Kernel};
use crate::run::{self, BootSpec, Payload};
use crate::session::Outcome;
use crate::{build, label, Accel, Cpu, Emulator, ImageArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Issue 16's tier 1: pure Xen ABI tests real Xen passes as a domU.
pub const TIER1: [&str; 11] = [
    "example",
    "selftest",
    "xsa-122",
    "xsa-188",
    "xsa-221",
    "xsa-231",
    "xsa-232",
    "xsa-277",
    "xsa-317",
    "xsa-454",
    "livepatch-priv-check",
];
/// Tier 2: CPU virtualisation.
pub const TIER2: [&str; 11] = [
    "lm-ts",
    "debug-regs",
    "invlpg",
    "msr",
    "cpuid",
    "xsa-168",
    "xsa-269",
    "xsa-278",
    "xsa-304",
    "xsa-195",
    "xsa-463",
];

/// XTF's guest environments: the prefix of its test binaries'
/// names (`test-<env>-<name>`). Only the HVM ones are PVH kernels; the PV
/// ones need a PV domain, which Xenolith does not have.
const ENVIRONMENTS: [&str; 4] = ["hvm64", "hvm32pae", "hvm32pse", "hvm32"];
/// The categories XTF's own runner selects by default (xtf-runner): the
/// others are utilities, special setups and tests still being written.
const DEFAULT_CATEGORIES: [&str; 2] = ["functional", "xsa"];
/// Guest RAM when a test's .cfg does not say (XTF's default-hvm.cfg.in).
const DEFAULT_MIB: u64 = 128;

/// Options of `cargo xtask xtf`.
#[derive(Args)]
pub struct XtfArgs {
    /// The built XTF tree (holding tests/<name>/test-<env>-<name>).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    #[arg(long, value_enum, default_value_t = Emulator::Qemu)]
    pub emulator: Emulator,
    /// CPU model [default: epyc on QEMU, skylake on Bochs].
    #[arg(long, value_enum)]
    pub cpu: Option<Cpu>,
    /// Environments to run each named test in, comma-separated
    /// (hvm64, hvm32pae, hvm32pse, hvm32).
    #[arg(long, default_value = "hvm64", value_delimiter = ',')]
    pub env: Vec<String>,
    /// Run issue 16's tier 1 (pure Xen ABI) or tier 2 (CPU virtualisation)
    /// list instead of naming tests.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub tier: Vec<u8>,
    /// With no tests named: every test built for --env, whatever its
    /// category (utilities, special set-ups and tests in development too).
    #[arg(long)]
    pub all: bool,
    /// Seconds before a test's emulator is killed [default: 60 on QEMU, 600 on Bochs].
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Boot this prebuilt hypervisor ELF instead of building the image.
    #[arg(long, value_name = "ELF")]
    pub image: Option<PathBuf>,
    /// Tests by name (`msr`) or with their environment (`hvm32pae-example`);
    /// none: every functional and xsa test the tree has for --env (with
    /// --all, every test).
    pub tests: Vec<String>,
}

/// One test binary to boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestCase {
    pub env: String,
    pub name: String,
    pub path: PathBuf,
    pub memory_mib: u64,
}

impl TestCase {
    /// `hvm64-msr`, as XTF's runner names it.
    pub fn label(&self) -> String {
        format!("{}-{}", self.env, self.name)
    }
}

/// What one test came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `Test result: X` with X one of XTF's SUCCESS, SKIP, FAILURE, ERROR.
    Reported(String),
    /// No result: the domain was crashed, with the hypervisor's reason.
    Crashed(String),
    /// No result and no crash: the run timed out or the guest stopped.
    NoResult(String),
}

impl Verdict {
    /// The word in the table and the summary.
    pub fn word(&self) -> &str {
        match self {
            Verdict::Reported(w) => w,
            Verdict::Crashed(_) => "CRASH",
            Verdict::NoResult(_) => "NO-RESULT",
        }
    }

    /// Whether the run counts as passed (XTF's runner treats SKIP as
    /// not failed: the test found its feature absent).
    pub fn passed(&self) -> bool {
        matches!(self.word(), "SUCCESS" | "SKIP")
    }
}

/// Splits `hvm32pae-example` into its environment and name; a bare name
/// has none.
fn split_env(text: &str) -> (Option<&'static str>, &str) {
    // Longest prefix first: hvm32pae before hvm32.
    let mut envs = ENVIRONMENTS;
    envs.sort_by_key(|e| std::cmp::Reverse(e.len()));
    for env in envs {
        if let Some(rest) = text.strip_prefix(env).and_then(|r| r.strip_prefix('-')) {
            return (Some(env), rest);
        }
    }
    (None, text)
}

/// The RAM a test's .cfg asks for (`memory=128`).
pub fn cfg_memory(cfg: &str) -> Option<u64> {
    cfg.lines().find_map(|l| {
        let (key, value) = l.split_once('=')?;
        if key.trim() != "memory" {
            return None;
        }
        value
            .split('#')
            .next()?
            .trim()
            .trim_matches('"')
            .parse()
            .ok()
    })
}

/// The test `name` in `env` under `dir`, if the tree built it.
fn case(dir: &Path, env: &str, name: &str) -> Option<TestCase> {
    let folder = dir.join("tests").join(name);
    let path = folder.join(format!("test-{env}-{name}"));
    if !path.is_file() {
        return None;
    }
    let cfg = fs::read_to_string(folder.join(format!("test-{env}-{name}.cfg"))).ok();
    let memory_mib = cfg.as_deref().and_then(cfg_memory).unwrap_or(DEFAULT_MIB);
    Some(TestCase {
        env: env.into(),
        name: name.into(),
        path,
        memory_mib,
    })
}

/// The category in a test's info.json.
fn category(dir: &Path, name: &str) -> Option<String> {
    let text = fs::read_to_string(dir.join("tests").join(name).join("info.json")).ok()?;
    let info: serde_json::Value = serde_json::from_str(&text).ok()?;
    info.get("category")?.as_str().map(str::to_string)
}

/// The tests `args` asks for, in order.
pub fn select(args: &XtfArgs) -> Result<Vec<TestCase>> {
    let tests = args.dir.join("tests");
    if !tests.is_dir() {
        bail!(
            "{} has no tests/ folder: give the top of a built XTF tree (make -j2 in it)",
            args.dir.display()
        );
    }
    for env in &args.env {
        if !ENVIRONMENTS.contains(&env.as_str()) {
            bail!(
                "unknown environment {env:?}: one of {}",
                ENVIRONMENTS.join(", ")
            );
        }
    }
    let mut names: Vec<String> = args.tests.clone();
    for tier in &args.tier {
        let list: &[&str] = if *tier == 1 { &TIER1 } else { &TIER2 };
        names.extend(list.iter().map(|s| s.to_string()));
    }
    let mut out = Vec::new();
    if names.is_empty() {
        let mut all: Vec<String> = fs::read_dir(&tests)
            .with_context(|| format!("reading {}", tests.display()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        all.sort();
        for name in all {
            let cat = category(&args.dir, &name);
            if !args.all && !cat.is_some_and(|c| DEFAULT_CATEGORIES.contains(&c.as_str())) {
                continue;
            }
            out.extend(args.env.iter().filter_map(|e| case(&args.dir, e, &name)));
        }
        if out.is_empty() {
            bail!(
                "no built {} tests in {}",
                args.env.join("/"),
                tests.display()
            );
        }
        return Ok(out);
    }
    for text in &names {
        match split_env(text) {
            (Some(env), name) => out.push(
                case(&args.dir, env, name)
                    .with_context(|| format!("{}: no test-{env}-{name} built", tests.display()))?,
            ),
            (None, name) => {
                let found: Vec<TestCase> = args
                    .env
                    .iter()
                    .filter_map(|e| case(&args.dir, e, name))
                    .collect();
                if found.is_empty() {
                    bail!(
                        "{}: no {} build of {name:?}",
                        tests.display(),
                        args.env.join("/")
                    );
                }
                out.extend(found);
            }
        }
    }
    Ok(out)
}

/// Reads a run's COM1: the test's result line, else the hypervisor's
/// reason for ending the domain, else why there is nothing.
pub fn verdict(lines: &[String], timed_out: bool) -> Verdict {
    if let Some(word) = lines.iter().find_map(|l| {
        let (_, rest) = l.split_once("Test result: ")?;
        rest.split_ascii_whitespace().next().map(str::to_string)
    }) {
        return Verdict::Reported(word);
    }
    // `domain 1 (name): crashed: <reason>` (the driver domain is 0).
    if let Some(why) = lines.iter().find_map(|l| {
        let rest = l.strip_prefix("domain 1 (")?;
        let (_, end) = rest.split_once("): ")?;
        end.strip_prefix("crashed: ").map(str::to_string)
    }) {
        return Verdict::Crashed(why);
    }
    let why = if timed_out {
        "timed out".to_string()
    } else {
        lines
            .iter()
            .rev()
            .find(|l| l.starts_with("domain 1 ("))
            .cloned()
            .unwrap_or_else(|| "the guest printed no result".into())
    };
    Verdict::NoResult(why)
}

/// What the guest said last before its result or its end: XTF's reason
/// for a FAILURE or ERROR (`Fail: …`), or its panic and vector (`PANIC:
/// Unhandled exception at …`, `Vec 13 #GP[0000]`).
fn last_words(lines: &[String], test: &TestCase) -> String {
    let tag = format!("[{}] ", test_domain_name(test));
    let said: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix(tag.as_str()))
        .filter(|l| !l.starts_with("Test result:") && !l.trim().chars().all(|c| c == '*'))
        .collect();
    let from = said
        .iter()
        .rposition(|l| l.starts_with("PANIC"))
        .unwrap_or(said.len().saturating_sub(1));
    said[from.min(said.len())..].join(" / ")
}

/// The domain's name: its label, in the characters domain names allow.
fn test_domain_name(test: &TestCase) -> String {
    test.label()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

fn boot(
    test: &TestCase,
    args: &XtfArgs,
    cpu: Cpu,
    boot: crate::Boot,
    image: &Path,
    timeout: Duration,
) -> Result<(Outcome, PathBuf)> {
    let config = Config {
        domains: vec![Domain {
            name: test_domain_name(test),
            memory_mib: test.memory_mib,
            maxmem_mib: None,
            kernel: Kernel::File(test.path.clone()),
            ramdisk: None,
            cmdline: None,
            disks: Vec::new(),
            nics: Vec::new(),
        }],
    };
    let parts = run::config_boot(&config, args.emulator, "")?;
    let spec = BootSpec {
        emulator: args.emulator,
        cpu,
        boot,
        accel: Accel::Tcg,
        payload: Payload::Modules(parts.modules),
        cmdline: parts.cmdline,
        mem_mib: parts.mem_mib,
        drives: parts.drives,
    };
    let dir = build::run_dir(&format!("xtf-{}", test.label()))?;
    let outcome = run::boot_quietly(&spec, &dir, image, timeout)?;
    Ok((outcome, dir))
}

/// `cargo xtask xtf`.
pub fn command(args: &XtfArgs) -> Result<ExitCode> {
    let (cpu, boot_path) = run::resolve(args.emulator, args.cpu, None, Accel::Tcg)?;
    let tests = select(args)?;
    let timeout = Duration::from_secs(args.timeout.unwrap_or(match args.emulator {
        Emulator::Qemu => 60,
        Emulator::Bochs => 600,
    }));
    let image = build::image(&ImageArgs::release(args.image.clone()))?;
    println!(
        "xtask: xtf: {} tests from {} on {} {}",
        tests.len(),
        args.dir.display(),
        label(args.emulator),
        label(cpu)
    );
    let width = tests.iter().map(|t| t.label().len()).max().unwrap_or(0);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = 0;
    for test in &tests {
        let (outcome, dir) = boot(test, args, cpu, boot_path, &image, timeout)?;
        let verdict = verdict(&outcome.lines, outcome.timed_out);
        let detail = match &verdict {
            Verdict::Reported(w) if w == "SUCCESS" => String::new(),
            Verdict::Reported(_) => last_words(&outcome.lines, test),
            Verdict::Crashed(why) | Verdict::NoResult(why) => {
                format!("{why}: {}", last_words(&outcome.lines, test))
            }
        };
        println!(
            "{:width$}  {:9}  {:5.1} s  {}{}",
            test.label(),
            verdict.word(),
            outcome.wall.as_secs_f64(),
            detail,
            if verdict.passed() {
                String::new()
            } else {
                format!(" [{}]", dir.display())
            },
        );
        *counts.entry(verdict.word().to_string()).or_default() += 1;
        failed += usize::from(!verdict.passed());
    }
    let summary: Vec<String> = counts.iter().map(|(w, n)| format!("{n} {w}")).collect();
    println!(
        "xtf: {} of {} passed ({}) on {} {}",
        tests.len() - failed,
        tests.len(),
        summary.join(", "),
        label(args.emulator),
        label(cpu)
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn reads_the_result_or_the_reason() {
        let ok = lines("[hvm64-example] Hello World\n[hvm64-example] Test result: SUCCESS\n");
        assert_eq!(verdict(&ok, false), Verdict::Reported("SUCCESS".into()));
        let crash = lines(
            "[hvm64-msr] Environment: HVM 64bit\ndomain 1 (hvm64-msr): crashed: read access outside its memory at GPA 0xfed00000\n",
        );
        assert_eq!(
            verdict(&crash, false),
            Verdict::Crashed("read access outside its memory at GPA 0xfed00000".into())
        );
        assert!(!verdict(&crash, false).passed());
        assert_eq!(
            verdict(&lines("[x] --- Xen Test Framework ---\n"), true),
            Verdict::NoResult("timed out".into())
        );
        assert!(Verdict::Reported("SKIP".into()).passed());
        assert!(!Verdict::Reported("FAILURE".into()).passed());
    }

    #[test]
    fn names_and_environments() {
        assert_eq!(split_env("hvm32pae-example"), (Some("hvm32pae"), "example"));
        assert_eq!(split_env("hvm32-example"), (Some("hvm32"), "example"));
        assert_eq!(split_env("xsa-188"), (None, "xsa-188"));
        assert_eq!(cfg_memory("name=\"x\"\nmemory=128\n"), Some(128));
        assert_eq!(cfg_memory("memory = 64 # MiB\n"), Some(64));
        assert_eq!(cfg_memory("vcpus=1\n"), None);
        let t = TestCase {
            env: "hvm64".into(),
            name: "xsa-188".into(),
            path: PathBuf::new(),
            memory_mib: 128,
        };
        assert_eq!(test_domain_name(&t), "hvm64-xsa-188");
        let panic = lines(
            "[hvm64-xsa-188] Test: one\n[hvm64-xsa-188] ****\n[hvm64-xsa-188] PANIC: Unhandled exception at 0008:1\n[hvm64-xsa-188] Vec 13 #GP[0000]\n[hvm64-xsa-188] ****\n",
        );
        assert_eq!(
            last_words(&panic, &t),
            "PANIC: Unhandled exception at 0008:1 / Vec 13 #GP[0000]"
        );
        assert_eq!(
            last_words(&lines("[hvm64-xsa-188] Fail: x\n"), &t),
            "Fail: x"
        );
        assert_eq!(last_words(&[], &t), "");
    }

    #[test]
    fn the_tiers_are_the_issues_22() {
        let mut all: Vec<&str> = TIER1.iter().chain(TIER2.iter()).copied().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 22);
    }
}
