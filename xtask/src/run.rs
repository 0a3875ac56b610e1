//! `cargo xtask run`, and the boot preparation it shares with the smoke tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::linux::{self, GuestMem};
use crate::modules::{self, Module};
use crate::serial::{self, HvExit};
use crate::session::{self, Com1, Launch, Outcome, Paths};
use crate::setup::{self, Need};
use crate::{
    bochs, build, domain_config, iso, label, linux_guest, qemu, Accel, Boot, Cpu, Emulator, Guest,
    RunArgs,
};

/// What the hypervisor receives besides its command line.
pub enum Payload {
    /// Modules, packed as the boot path wants them.
    Modules(Vec<Module>),
    /// Bytes passed as the PVH initrd unchanged (to test archive checking).
    RawInitrd(Vec<u8>),
}

/// A fully resolved boot configuration.
pub struct BootSpec {
    pub emulator: Emulator,
    pub cpu: Cpu,
    pub boot: Boot,
    pub accel: Accel,
    pub payload: Payload,
    pub cmdline: String,
    /// The emulated machine's RAM ([`linux::machine_mib`]).
    pub mem_mib: u64,
    /// Raw disk images QEMU attaches as virtio block devices.
    pub drives: Vec<qemu::Drive>,
}

impl BootSpec {
    /// QEMU TCG, `-cpu EPYC`, PVH entry: how the benchmarks boot.
    pub fn qemu(
        payload: Payload,
        cmdline: String,
        mem_mib: u64,
        drives: Vec<qemu::Drive>,
    ) -> BootSpec {
        BootSpec {
            emulator: Emulator::Qemu,
            cpu: Cpu::Epyc,
            boot: Boot::Pvh,
            accel: Accel::Tcg,
            payload,
            cmdline,
            mem_mib,
            drives,
        }
    }
}

/// Fills in defaults and rejects combinations no emulator offers.
pub fn resolve(
    emulator: Emulator,
    cpu: Option<Cpu>,
    boot: Option<Boot>,
    accel: Accel,
) -> Result<(Cpu, Boot)> {
    match emulator {
        Emulator::Qemu => {
            let cpu = cpu.unwrap_or(Cpu::Epyc);
            if cpu != Cpu::Epyc {
                bail!("QEMU runs --cpu epyc (TCG cannot emulate VMX); use --emulator bochs for {cpu:?}");
            }
            Ok((cpu, boot.unwrap_or(Boot::Pvh)))
        }
        Emulator::Bochs => {
            if boot == Some(Boot::Pvh) {
                bail!("Bochs has no PVH loader; it always boots through GRUB (--boot grub)");
            }
            if accel != Accel::Tcg {
                bail!("--accel kvm applies to QEMU only");
            }
            Ok((cpu.unwrap_or(Cpu::Skylake), Boot::Grub))
        }
    }
}

/// The host tools a boot needs.
pub fn needs(spec: &BootSpec) -> Vec<Need> {
    let mut out = Vec::new();
    match spec.emulator {
        Emulator::Qemu => out.push(Need::Qemu),
        Emulator::Bochs => out.push(Need::Bochs),
    }
    if spec.boot == Boot::Grub {
        out.push(Need::Grub);
    }
    out
}

/// Puts the image and its payload into `dir` and returns the emulator command.
pub fn prepare(
    spec: &BootSpec,
    dir: &Path,
    image: &Path,
    com1: &Com1,
    paths: &Paths,
) -> Result<Command> {
    setup::ensure(&needs(spec))?;
    // Keep the exact ELF that ran next to its logs: defmt decoding needs it.
    let kernel = dir.join("xenolith");
    fs::copy(image, &kernel).with_context(|| format!("copying {}", image.display()))?;
    match (spec.boot, &spec.payload) {
        (Boot::Pvh, payload) => {
            let initrd = dir.join("modules.cpio");
            match payload {
                Payload::Modules(mods) => modules::write_cpio(mods, &initrd)?,
                Payload::RawInitrd(bytes) => fs::write(&initrd, bytes)?,
            }
            let boot = qemu::Boot::Pvh {
                kernel,
                initrd,
                cmdline: spec.cmdline.clone(),
            };
            qemu::command(
                &boot,
                spec.accel,
                spec.mem_mib,
                com1,
                paths,
                dir,
                &spec.drives,
            )
        }
        (Boot::Grub, Payload::RawInitrd(_)) => bail!("a raw initrd needs the PVH boot path"),
        (Boot::Grub, Payload::Modules(mods)) => {
            let iso = iso::make(dir, &kernel, mods, &spec.cmdline)?;
            match spec.emulator {
                Emulator::Qemu => qemu::command(
                    &qemu::Boot::Iso(iso),
                    spec.accel,
                    spec.mem_mib,
                    com1,
                    paths,
                    dir,
                    &spec.drives,
                ),
                Emulator::Bochs => {
                    bochs::command(spec.cpu, spec.mem_mib, dir, "xenolith.iso", com1)
                }
            }
        }
    }
}

/// How COM1 reaches the user in `run`: QEMU hands it the terminal directly;
/// Bochs serves it on a loopback socket, which xtask connects to the terminal.
fn run_console(emulator: Emulator) -> Result<Com1> {
    match emulator {
        Emulator::Qemu => Ok(Com1::Terminal),
        Emulator::Bochs => Com1::socket(),
    }
}

/// The hypervisor's verdict: its last COM1 line, confirmed by QEMU's status
/// where QEMU reports one (Bochs' exit status carries none).
pub fn verdict(emulator: Emulator, outcome: &Outcome) -> Option<HvExit> {
    let said = serial::final_exit(&outcome.lines);
    match emulator {
        Emulator::Qemu => {
            let status = serial::qemu_exit(outcome.status.and_then(|s| s.code()));
            if said == status {
                said
            } else {
                // Disagreement (or a missing half) is not a clean success.
                said.and(Some(HvExit::Failure))
            }
        }
        Emulator::Bochs => said,
    }
}

/// What the emulator itself said that may explain a failure: QEMU's output
/// without its routine TCG feature warnings, or Bochs' errors and panics.
pub fn emulator_notes(emulator: Emulator, dir: &Path) -> (&'static str, Vec<String>) {
    let read = |name: &str| -> Vec<String> {
        let bytes = std::fs::read(dir.join(name)).unwrap_or_default();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(String::from)
            .collect()
    };
    match emulator {
        Emulator::Qemu => {
            let notes = read("qemu.out")
                .into_iter()
                .filter(|l| !l.contains("TCG doesn't support requested feature"))
                .collect();
            ("qemu.out", notes)
        }
        Emulator::Bochs => {
            // Bochs log lines start with an 11-digit tick count and a level letter.
            let notes = read("bochs.log")
                .into_iter()
                .filter(|l| matches!(l.as_bytes().get(11), Some(b'e' | b'p')))
                .collect();
            ("bochs.log", notes)
        }
    }
}

/// Which guest a run boots: Linux unless told otherwise; the Linux options
/// need `--guest linux` (or nothing).
pub fn guest_kind(guest: Option<Guest>, linux_options: bool) -> Result<Option<Guest>> {
    match (guest, linux_options) {
        (Some(Guest::Test | Guest::None), true) => {
            bail!("--kernel, --initrd, --guest-cmdline and --guest-mem are for --guest linux")
        }
        (None | Some(Guest::Linux), _) => Ok(Some(Guest::Linux)),
        (Some(Guest::None), false) => Ok(None),
        (guest, false) => Ok(guest),
    }
}

/// Adds `more` to the payload, refusing a name given twice.
fn add_modules(payload: &mut Vec<Module>, more: Vec<Module>) -> Result<()> {
    for m in more {
        if payload.iter().any(|p| p.name == m.name) {
            bail!("two modules are named {}", m.name);
        }
        payload.push(m);
    }
    Ok(())
}

/// The guest the `--guest`/`--kernel`/`--initrd`/`--guest-cmdline`/`--guest-mem`
/// options ask for, added to the payload, command line and machine size.
fn boot_guest_options(
    args: &RunArgs,
    payload: &mut Vec<Module>,
    cmdline: &mut String,
    mem_mib: &mut u64,
) -> Result<()> {
    let linux_options = args.kernel.is_some()
        || args.initrd.is_some()
        || args.guest_cmdline.is_some()
        || args.guest_mem.is_some();
    match guest_kind(args.guest, linux_options)? {
        None | Some(Guest::None) => {}
        Some(Guest::Test) => {
            add_modules(payload, vec![build::test_guest_module()?])?;
            *cmdline = format!("{cmdline} guest={}", build::TEST_GUEST_MODULE)
                .trim()
                .to_string();
        }
        Some(Guest::Linux) => {
            let mem = args.guest_mem.unwrap_or(GuestMem::DEFAULT);
            let guest = linux_guest::assemble(
                args.kernel.as_deref(),
                args.initrd.as_deref(),
                args.guest_cmdline
                    .as_deref()
                    .unwrap_or(linux::DEFAULT_CMDLINE),
            )?;
            *cmdline = linux::hv_cmdline(cmdline, mem);
            *mem_mib = linux::machine_mib(Some(mem));
            add_modules(payload, guest.modules())?;
            // The driver domain serves the guest's console and XenStore.
            let mut dd = Vec::new();
            build::add_driver_domain(&mut dd, cmdline)?;
            add_modules(payload, dd)?;
        }
    }
    Ok(())
}

/// What a domain configuration boots besides the image.
pub struct ConfigBoot {
    /// The domains' modules, then the driver domain's (its RAM disks and
    /// its command line of `vbd=` and `vif=` words included).
    pub modules: Vec<Module>,
    /// The hypervisor command line.
    pub cmdline: String,
    /// The emulated machine's RAM, RAM disks included.
    pub mem_mib: u64,
    /// Disk images QEMU attaches as virtio-blk devices.
    pub drives: Vec<qemu::Drive>,
}

/// Everything `config` needs on `emulator`, with the driver domain serving
/// its disks (virtio-blk devices on QEMU, RAM disk modules elsewhere) and
/// NICs; `extra` goes first on the hypervisor command line.
pub fn config_boot(
    config: &domain_config::Config,
    emulator: Emulator,
    extra: &str,
) -> Result<ConfigBoot> {
    let mut modules = config.load_modules()?;
    let mut cmdline = config.hv_cmdline(extra);
    let mut mem_mib = config.machine_mib();
    build::add_driver_domain(&mut modules, &mut cmdline)?;
    let plan = config.disk_plan(emulator == Emulator::Qemu);
    for (name, path) in &plan.ramdisks {
        let data = fs::read(path).with_context(|| format!("reading disk {}", path.display()))?;
        mem_mib += (data.len() as u64).div_ceil(1 << 20);
        modules.push(Module {
            name: name.clone(),
            data,
        });
    }
    for path in &plan.drives {
        if !path.is_file() {
            bail!("disk image {} does not exist", path.display());
        }
    }
    for w in &plan.hv_words {
        cmdline.push(' ');
        cmdline.push_str(w);
    }
    let dd_words: Vec<String> = plan
        .vbd_words
        .into_iter()
        .chain(config.vif_words())
        .collect();
    if !dd_words.is_empty() {
        modules.push(Module {
            name: format!("{}.cmdline", build::DRIVER_DOMAIN_MODULE),
            data: dd_words.join(" ").into_bytes(),
        });
    }
    Ok(ConfigBoot {
        modules,
        cmdline,
        mem_mib,
        drives: plan.drives.into_iter().map(qemu::Drive::from).collect(),
    })
}

/// Boots `spec` in `dir` with COM1 on a FIFO, nothing echoed, killed after
/// `timeout`: how the smoke tests and the benchmarks run the hypervisor.
pub fn boot_quietly(
    spec: &BootSpec,
    dir: &Path,
    image: &Path,
    timeout: Duration,
) -> Result<Outcome> {
    boot_with(spec, dir, image, timeout, Com1::Fifo { echo: false })
}

/// As [`boot_quietly`], with `script` typing on COM1 as lines arrive (QEMU only).
pub fn boot_scripted(
    spec: &BootSpec,
    dir: &Path,
    image: &Path,
    timeout: Duration,
    script: session::Script,
) -> Result<Outcome> {
    boot_with(spec, dir, image, timeout, Com1::Scripted(script))
}

/// Boots `spec` in `dir` with COM1 as `com1`, the hypervisor log not echoed.
fn boot_with(
    spec: &BootSpec,
    dir: &Path,
    image: &Path,
    timeout: Duration,
    com1: Com1,
) -> Result<Outcome> {
    let paths = Paths::in_dir(dir);
    let command = prepare(spec, dir, image, &com1, &paths)?;
    session::run(Launch {
        command,
        paths: &paths,
        com1,
        elf: Some(&dir.join("xenolith")),
        echo_hv: false,
        timeout: Some(timeout),
    })
}

/// `cargo xtask run`.
pub fn run(args: &RunArgs) -> Result<ExitCode> {
    let (cpu, boot) = resolve(args.emulator, args.cpu, args.boot, args.accel)?;
    let mut payload = modules::load(&args.modules)?;
    let mut cmdline = args.cmdline.clone();
    let mut mem_mib = linux::MACHINE_MIB;
    let mut drives = Vec::new();
    if let Some(path) = &args.config {
        let config = domain_config::load(path)?;
        let boot = config_boot(&config, args.emulator, &cmdline)?;
        add_modules(&mut payload, boot.modules)?;
        cmdline = boot.cmdline;
        mem_mib = boot.mem_mib;
        drives = boot.drives;
    } else {
        boot_guest_options(args, &mut payload, &mut cmdline, &mut mem_mib)?;
    }
    let spec = BootSpec {
        emulator: args.emulator,
        cpu,
        boot,
        accel: args.accel,
        payload: Payload::Modules(payload),
        cmdline,
        mem_mib,
        drives,
    };
    if args.accel == Accel::Kvm {
        qemu::check_kvm()?;
    }
    setup::ensure(&needs(&spec))?;
    let image = build::image(&args.image)?;
    let dir: PathBuf = build::run_dir("run")?;
    let paths = Paths::in_dir(&dir);
    let com1 = run_console(args.emulator)?;
    let command = prepare(&spec, &dir, &image, &com1, &paths)?;
    eprintln!(
        "xtask: booting {} on {} {} via {}; artifacts in {}",
        image.display(),
        label(args.emulator),
        label(cpu),
        label(boot),
        dir.display()
    );
    let outcome = session::run(Launch {
        command,
        paths: &paths,
        com1,
        elf: Some(&dir.join("xenolith")),
        echo_hv: true,
        timeout: args.timeout.map(Duration::from_secs),
    })?;
    let verdict = verdict(args.emulator, &outcome);
    let status = match outcome.status {
        Some(status) => status.to_string(),
        None if outcome.lingered => "killed: still running 10 s after the exit line".to_string(),
        None => "killed".to_string(),
    };
    eprintln!(
        "xtask: {} after {:.2} s ({}{}); hypervisor said: {}",
        match args.emulator {
            Emulator::Qemu => "QEMU finished",
            Emulator::Bochs => "Bochs finished",
        },
        outcome.wall.as_secs_f64(),
        status,
        if outcome.timed_out { ", timed out" } else { "" },
        match serial::final_exit(&outcome.lines) {
            Some(HvExit::Success) => "exit success",
            Some(HvExit::Failure) => "exit failure",
            None => "no exit line",
        }
    );
    if verdict.is_none() {
        // Say why, if the emulator said anything (QEMU's own errors are in qemu.out).
        let (name, notes) = emulator_notes(args.emulator, &dir);
        for line in notes.iter().rev().take(20).rev() {
            eprintln!("xtask: {name}: {line}");
        }
    }
    Ok(match verdict {
        Some(HvExit::Success) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(last: &str, code: Option<i32>) -> Outcome {
        use std::os::unix::process::ExitStatusExt;
        Outcome {
            lines: vec!["Xenolith 0.1.0 booted via pvh".into(), last.into()],
            line_times: Vec::new(),
            hv_log: Default::default(),
            // A wait status keeps the exit code in bits 8..16.
            status: code.map(|c| std::process::ExitStatus::from_raw(c << 8)),
            timed_out: false,
            lingered: false,
            caps_after: None,
            wall: Duration::ZERO,
        }
    }

    #[test]
    fn verdict_needs_line_and_qemu_status_to_agree() {
        let ok = "xenolith: exit success";
        let bad = "xenolith: exit failure";
        let q = Emulator::Qemu;
        assert_eq!(verdict(q, &outcome(ok, Some(33))), Some(HvExit::Success));
        assert_eq!(verdict(q, &outcome(bad, Some(35))), Some(HvExit::Failure));
        assert_eq!(verdict(q, &outcome(ok, Some(35))), Some(HvExit::Failure));
        assert_eq!(verdict(q, &outcome(ok, None)), Some(HvExit::Failure));
        assert_eq!(verdict(q, &outcome("hang", None)), None);
        // Bochs' own status says nothing about the hypervisor.
        let b = Emulator::Bochs;
        assert_eq!(verdict(b, &outcome(ok, Some(1))), Some(HvExit::Success));
        assert_eq!(verdict(b, &outcome(bad, Some(1))), Some(HvExit::Failure));
    }

    #[test]
    fn linux_options_imply_the_linux_guest() {
        assert!(guest_kind(None, false).unwrap() == Some(Guest::Linux));
        assert!(guest_kind(Some(Guest::None), false).unwrap().is_none());
        assert!(guest_kind(Some(Guest::None), true).is_err());
        assert!(guest_kind(None, true).unwrap() == Some(Guest::Linux));
        assert!(guest_kind(Some(Guest::Linux), false).unwrap() == Some(Guest::Linux));
        assert!(guest_kind(Some(Guest::Test), false).unwrap() == Some(Guest::Test));
        assert!(guest_kind(Some(Guest::Test), true).is_err());
    }

    #[test]
    fn module_names_stay_unique() {
        let mut payload = modules::test_set();
        let more = vec![Module {
            name: "linux".into(),
            data: vec![1],
        }];
        add_modules(&mut payload, more.clone()).unwrap();
        assert_eq!(payload.len(), 3);
        assert!(add_modules(&mut payload, more).is_err());
    }

    #[test]
    fn defaults_and_rejections() {
        assert_eq!(
            resolve(Emulator::Qemu, None, None, Accel::Tcg).unwrap(),
            (Cpu::Epyc, Boot::Pvh)
        );
        assert_eq!(
            resolve(Emulator::Bochs, None, None, Accel::Tcg).unwrap(),
            (Cpu::Skylake, Boot::Grub)
        );
        assert_eq!(
            resolve(
                Emulator::Bochs,
                Some(Cpu::Ryzen),
                Some(Boot::Grub),
                Accel::Tcg
            )
            .unwrap(),
            (Cpu::Ryzen, Boot::Grub)
        );
        assert!(resolve(Emulator::Qemu, Some(Cpu::Skylake), None, Accel::Tcg).is_err());
        assert!(resolve(Emulator::Bochs, None, Some(Boot::Pvh), Accel::Tcg).is_err());
        assert!(resolve(Emulator::Bochs, None, None, Accel::Kvm).is_err());
    }
}
