//! `cargo xtask`: build, pack, boot and test the Xenolith hypervisor image.

mod bench;
mod bench_blk;
mod bench_net;
mod bench_report;
mod bochs;
mod build;
mod bzimage;
mod checks;
mod console;
mod deb;
mod decompress;
mod defmt_log;
mod disk;
mod domain_config;
mod elf_check;
mod expect;
mod fifo;
mod fuzz;
mod guest_init;
mod initramfs;
mod interactive;
mod iso;
mod judge;
mod kit;
mod linux;
mod linux_guest;
mod linux_judge;
mod modules;
mod net_test;
mod qemu;
mod run;
mod serial;
mod session;
mod setup;
mod smoke;
mod xtf;
mod xz;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Developer tasks for the Xenolith hypervisor.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the hypervisor image and print its path.
    Build(ImageArgs),
    /// Build the image, pack its modules, boot it in an emulator and report its exit status.
    Run(RunArgs),
    /// Build a GRUB multiboot2 boot ISO and print its path.
    Iso(IsoArgs),
    /// Run formatting, lint and unit checks, then the boot smoke tests.
    Test(TestArgs),
    /// Benchmarks: `bench boot` times Linux booting directly and under
    /// Xenolith; `bench blk` and `bench net` measure disk and network I/O.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Seeded fuzzing from the test guest, next to a Linux guest running its
    /// checks: `fuzz hypercalls` (the hypervisor), `fuzz xenstore`, `fuzz
    /// blkif`, `fuzz netif` (the driver domain's XenStore and backends).
    #[command(subcommand)]
    Fuzz(FuzzCommand),
    /// Run a locally built XTF (Xen Test Framework) tree's tests as built,
    /// one guest each: a line per test and a summary (`--tier 1 --tier 2`
    /// for the 22 of issue 16).
    Xtf(xtf::XtfArgs),
}

#[derive(Subcommand)]
pub enum FuzzCommand {
    /// Random hypercalls of every family and sub-operation, valid and garbage arguments.
    Hypercalls(fuzz::FuzzArgs),
    /// Random XenStore requests over the guest's own ring, then one over the limit.
    Xenstore(fuzz::FuzzArgs),
    /// Random blkif requests on a vbd of the guest's own, then an overrun ring.
    Blkif(fuzz::FuzzArgs),
    /// Random netif TX packets and RX buffers on a vif of the guest's own, then an overrun ring.
    Netif(fuzz::FuzzArgs),
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time the guest kit's Linux to its /init marker, booted directly by QEMU
    /// and under Xenolith in QEMU (TCG), alternating, and compare the medians.
    Boot(BenchBootArgs),
    /// Sequential and random disk I/O in Linux through blkfront and the
    /// driver domain, against the same disk as virtio-blk in a guest QEMU
    /// boots directly.
    Blk(BenchArgs),
    /// TCP between two Linux guests through netfront and the driver
    /// domain's netback and switch, against loopback inside one of them,
    /// and the ping time between them.
    Net(BenchArgs),
}

/// Options of the I/O benchmarks.
#[derive(Args)]
pub struct BenchArgs {
    /// Boot this prebuilt hypervisor ELF instead of building the image.
    #[arg(long, value_name = "ELF")]
    pub image: Option<PathBuf>,
    /// QEMU accelerator for both sides; kvm needs /dev/kvm with nested
    /// virtualization (the numbers then say what hardware does).
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    pub accel: Accel,
}

#[derive(Args)]
pub struct BenchBootArgs {
    /// How many boots of each kind.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Boot this prebuilt hypervisor ELF instead of building the image.
    #[arg(long, value_name = "ELF")]
    pub image: Option<PathBuf>,
}

/// How to get the hypervisor image.
#[derive(Args, Clone)]
pub struct ImageArgs {
    /// Build the debug profile instead of release.
    #[arg(long)]
    pub debug: bool,
    /// Hypervisor log level (compiled in through DEFMT_LOG).
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log: LogLevel,
    /// Use this prebuilt ELF instead of building one.
    #[arg(long, value_name = "ELF")]
    pub image: Option<PathBuf>,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub image: ImageArgs,
    /// Which emulator boots the image.
    #[arg(long, value_enum, default_value_t = Emulator::Qemu)]
    pub emulator: Emulator,
    /// CPU model [default: epyc on QEMU, skylake on Bochs].
    #[arg(long, value_enum)]
    pub cpu: Option<Cpu>,
    /// Boot path [default: pvh on QEMU; Bochs always boots through GRUB].
    #[arg(long, value_enum)]
    pub boot: Option<Boot>,
    /// QEMU accelerator; kvm needs /dev/kvm with nested virtualization.
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    pub accel: Accel,
    /// A file to hand to the hypervisor as a module, named by its file name.
    #[arg(long = "module", value_name = "FILE")]
    pub modules: Vec<PathBuf>,
    /// Hypervisor command line, e.g. "mem=64M".
    #[arg(long, default_value = "")]
    pub cmdline: String,
    /// Kill the emulator after this many seconds (default: no limit).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Boot the domains this TOML file describes (see docs/testing.md,
    /// "Domain configuration"; e.g. xtask/configs/two-linux.toml) instead of
    /// the --guest/--kernel/--initrd/--guest-cmdline/--guest-mem options.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["guest", "kernel", "initrd", "guest_cmdline", "guest_mem"]
    )]
    pub config: Option<PathBuf>,
    /// Boot a guest: `linux` (the default) is Debian's 6.1 kernel with the
    /// guest kit's busybox initramfs, `test` the in-tree test guest
    /// (kernel/tests/guest), `none` the hypervisor alone.
    #[arg(long, value_enum)]
    pub guest: Option<Guest>,
    /// Linux guest kernel: a vmlinux ELF, or a bzImage/vmlinuz to unpack it
    /// from [default: the guest kit's]. Implies --guest linux.
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Linux guest initramfs [default: the guest kit's]. Implies --guest linux.
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// Linux guest kernel command line [default: "console=hvc0 earlyprintk=xen"];
    /// add xenolith.test=1 for the kit's check list. Implies --guest linux.
    #[arg(long, value_name = "STR")]
    pub guest_cmdline: Option<String>,
    /// Linux guest RAM, e.g. 512M or 1G [default: 256M]; the emulated machine
    /// gets 768M more. Implies --guest linux.
    #[arg(long, value_name = "SIZE")]
    pub guest_mem: Option<linux::GuestMem>,
}

/// A guest `cargo xtask run` can add.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Guest {
    /// The check list of kernel/tests/guest; it powers off when done.
    Test,
    /// Linux from the guest kit (`<target>/guest-kit/`), or --kernel/--initrd.
    Linux,
    /// No guest: the hypervisor starts, prints its capability line and exits.
    None,
}

#[derive(Args)]
pub struct IsoArgs {
    #[command(flatten)]
    pub image: ImageArgs,
    /// A file to hand to the hypervisor as a module, named by its file name.
    #[arg(long = "module", value_name = "FILE")]
    pub modules: Vec<PathBuf>,
    /// Hypervisor command line written into grub.cfg.
    #[arg(long, default_value = "")]
    pub cmdline: String,
}

#[derive(Args)]
pub struct TestArgs {
    /// Skip fmt, clippy and unit tests; run only the boot smoke tests.
    #[arg(long)]
    pub smoke_only: bool,
    /// Run only the smoke tests whose name contains this text
    /// (e.g. "linux" for the Linux guest boots, "bochs", "test-guest").
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
    /// Boot this prebuilt ELF instead of building the image.
    #[arg(long, value_name = "ELF")]
    pub image: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl ImageArgs {
    /// The release image at the default log level, or `image` if given:
    /// what the smoke tests and the benchmarks boot.
    pub fn release(image: Option<PathBuf>) -> ImageArgs {
        ImageArgs {
            debug: false,
            log: LogLevel::Info,
            image,
        }
    }
}

impl LogLevel {
    /// The value DEFMT_LOG expects.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Emulator {
    Qemu,
    Bochs,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Cpu {
    /// AMD EPYC (QEMU).
    Epyc,
    /// Intel Skylake-X with VMX and EPT (Bochs).
    Skylake,
    /// AMD Ryzen with SVM and NPT (Bochs).
    Ryzen,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Boot {
    /// QEMU -kernel through the Xen PVH ELF note, modules as a cpio initrd.
    Pvh,
    /// GRUB multiboot2 from an ISO, one module2 per module.
    Grub,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Accel {
    Tcg,
    Kvm,
}

/// The name a value has on the command line, for messages.
pub fn label<T: ValueEnum>(value: T) -> String {
    value
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(args) => build::image(&args).map(|path| {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }),
        Command::Run(args) => run::run(&args),
        Command::Iso(args) => iso::command(&args).map(|path| {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }),
        Command::Test(args) => smoke::test_command(&args),
        Command::Bench(BenchCommand::Boot(args)) => bench::boot(&args),
        Command::Bench(BenchCommand::Blk(args)) => bench_blk::blk(&args),
        Command::Bench(BenchCommand::Net(args)) => bench_net::net(&args),
        Command::Fuzz(FuzzCommand::Hypercalls(args)) => {
            fuzz::command(fuzz::Target::Hypercalls, &args)
        }
        Command::Fuzz(FuzzCommand::Xenstore(args)) => fuzz::command(fuzz::Target::Xenstore, &args),
        Command::Fuzz(FuzzCommand::Blkif(args)) => fuzz::command(fuzz::Target::Blkif, &args),
        Command::Fuzz(FuzzCommand::Netif(args)) => fuzz::command(fuzz::Target::Netif, &args),
        Command::Xtf(args) => xtf::command(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
