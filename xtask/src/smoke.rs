//! `cargo xtask test`: the workspace checks, then boot smoke tests judged from COM1.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::fuzz::{FuzzRun, Target};
use crate::judge::{
    self, Case, Expect, EVTCHN_PAIR_CMDLINE, EVTCHN_PAIR_LINES, GRANT_PAIR_CMDLINE,
    GRANT_PAIR_LINES, TEST_GUEST_CMDLINE, TEST_GUEST_CMDLINE_BOCHS, TEST_GUEST_CMDLINE_BOCHS_SVM,
};
use crate::linux::{self, GuestMem};
use crate::modules::{self, Module};
use crate::net_test::NetTest;
use crate::run::{self, BootSpec, Payload};
use crate::session::Outcome;
use crate::{
    build, checks, label, linux_guest, setup, Accel, Boot, Cpu, Emulator, ImageArgs, TestArgs,
};

/// QEMU boots in about a second; a minute means something is stuck.
const QEMU_TIMEOUT: Duration = Duration::from_secs(60);
/// Bochs interprets every instruction, BIOS and GRUB included.
const BOCHS_TIMEOUT: Duration = Duration::from_secs(300);
/// A Linux boot to its check list runs millions of guest instructions
/// through nested paging in software.
const QEMU_LINUX_TIMEOUT: Duration = Duration::from_secs(300);
/// Bochs interprets all of that one instruction at a time (GRUB reading the
/// ~67 MiB of modules from the ISO takes only about 15 s of it).
const BOCHS_LINUX_TIMEOUT: Duration = Duration::from_secs(1200);
/// Two or three domains booting side by side, then waiting for each other
/// and moving up to 64 MiB through the driver domain.
const QEMU_LINUX_NET_TIMEOUT: Duration = Duration::from_secs(600);

/// The guest command line of the Linux smoke tests: hvc0 console plus the
/// kit's check list.
const LINUX_SMOKE_CMDLINE: &str = "console=hvc0 earlyprintk=xen xenolith.test=1";

/// How many log lines to show for a failed boot.
const SHOW_LINES: usize = 80;

/// What a smoke test hands over.
#[derive(Clone, Copy)]
enum Load {
    TestModules,
    /// A 4 KiB initrd of 0x5a bytes: not a cpio archive.
    NotAnArchive,
    /// The in-tree test guest as the only module.
    TestGuest,
    /// The guest kit's Linux as `linux`, `linux.initrd` and `linux.cmdline`
    /// (with [`LINUX_SMOKE_CMDLINE`]), and `guest=linux guest_mem=256M`,
    /// served by the driver domain.
    LinuxKit,
    /// As `LinuxKit`, with Debian's cloud kernel (`kit::cloud_vmlinuz`) in
    /// place of the kit's vmlinux: its LZ4 vmlinuz as shipped, unpacked
    /// as `--kernel` unpacks one.
    LinuxCloudKit,
    /// As `LinuxKit`, with the driver domain told to crash when the guest
    /// prints [`judge::DRIVER_CRASH_TEXT`], which it does after its checks.
    LinuxKitDriverCrash,
    /// As `LinuxKit`, with an ext4 image the guest sees as /dev/xvda
    /// (see `disk_boots`).
    LinuxKitDisk(Disk),
    /// Two kit guests, `linux1` and `linux2`, with a NIC each (and the
    /// test guest as domain 3 for `garbage`), from a domain configuration
    /// as `run --config` boots it (see `net_test`).
    LinuxKitNet(NetTest),
    /// A kit guest and the test guest in a fuzz mode, from a domain
    /// configuration (see `fuzz`).
    Fuzz(FuzzRun),
    /// As `LinuxKit` with `xenolith.balloon=BALLOON_MIB`, and COM1 typed
    /// into: the driver domain's toolstack `mem-set`s the guest down and
    /// back (see `balloon_boot`).
    LinuxKitBalloon,
}

/// What the balloon smoke takes away and gives back.
const BALLOON_MIB: u64 = 64;

/// The fuzz smokes: 20,000 calls each (on QEMU TCG here, 5 to 15 s of
/// fuzzing next to Linux's boot), with fixed seeds, so a failure replays
/// (`cargo xtask fuzz <target> --seed <seed>` explores new ones).
const FUZZ_CALLS: u64 = 20_000;
const fn fuzz_run(target: Target, seed: u64) -> FuzzRun {
    FuzzRun {
        target,
        calls: FUZZ_CALLS,
        seed,
        trace_from: None,
    }
}
const FUZZ_HYPERCALLS: FuzzRun = fuzz_run(Target::Hypercalls, 1);
const FUZZ_XENSTORE: FuzzRun = fuzz_run(Target::Xenstore, 2);
const FUZZ_BLKIF: FuzzRun = fuzz_run(Target::Blkif, 3);
const FUZZ_NETIF: FuzzRun = fuzz_run(Target::Netif, 4);

/// The network tests: QEMU with the most traffic, Bochs (VMX) with a
/// little, and QEMU with a hostile netfront next to the Linux pair.
const NET_QEMU: NetTest = NetTest {
    mem_mib: 256,
    pings: 100,
    mib: 64,
    garbage: false,
};
const NET_BOCHS: NetTest = NetTest {
    mem_mib: 192,
    pings: 10,
    mib: 1,
    garbage: false,
};
const NET_GARBAGE: NetTest = NetTest {
    mem_mib: 256,
    pings: 100,
    mib: 8,
    garbage: true,
};

/// Where the disk test's image lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Disk {
    /// A QEMU virtio-blk device driven by the driver domain: a boot that
    /// writes, the image checked on the host, a boot that reads back.
    Virtio,
    /// A boot module the driver domain serves from its RAM: one boot
    /// writes, remounts and reads back.
    Ram,
    /// `Virtio` in one boot (write, remount, read back) while the test
    /// guest, domain 2, puts garbage on its own vbd's ring (a RAM disk).
    Garbage,
}

/// The hostile frontend's RAM disk.
const GARBAGE_MODULE: &str = "garbage.img";

/// The disk image's name as a boot module and its size.
const DISK_MODULE: &str = "xvda.img";
const DISK_MIB: u64 = 64;
const RAMDISK_MIB: u64 = 16;
/// The write boot's virtio `max-discard-sectors`: blkback's limit-cutting path.
const TRIM_PIECE_SECTORS: u32 = 64;
/// Files guest_init.sh's `disk_write` makes.
const DISK_FILES: usize = 14;

struct Smoke {
    name: &'static str,
    emulator: Emulator,
    cpu: Cpu,
    boot: Boot,
    load: Load,
    cmdline: &'static str,
    expect: Expect,
}

const SMOKES: &[Smoke] = &[
    Smoke {
        name: "qemu-pvh",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::TestModules,
        cmdline: "",
        expect: Expect::Boots,
    },
    Smoke {
        name: "qemu-grub",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Grub,
        load: Load::TestModules,
        cmdline: "",
        expect: Expect::Boots,
    },
    Smoke {
        name: "bochs-skylake",
        emulator: Emulator::Bochs,
        cpu: Cpu::Skylake,
        boot: Boot::Grub,
        load: Load::TestModules,
        cmdline: "",
        expect: Expect::Boots,
    },
    Smoke {
        name: "bochs-ryzen",
        emulator: Emulator::Bochs,
        cpu: Cpu::Ryzen,
        boot: Boot::Grub,
        load: Load::TestModules,
        cmdline: "",
        expect: Expect::Boots,
    },
    Smoke {
        name: "qemu-bad-archive",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::NotAnArchive,
        cmdline: "",
        expect: Expect::Fatal("xenolith: fatal: bad module archive"),
    },
    Smoke {
        name: "qemu-no-memory",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::TestModules,
        cmdline: "mem=4M",
        expect: Expect::Fatal("xenolith: fatal: not enough usable memory"),
    },
    Smoke {
        name: "qemu-selftest-write-text",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::TestModules,
        cmdline: "selftest=write-text",
        // A write to a present, read-only page: error code P|W (SDM Vol. 3A 4.7).
        expect: Expect::Exception("xenolith: EXCEPTION vector 14 #PF error=0x3"),
    },
    Smoke {
        name: "qemu-selftest-null",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::TestModules,
        cmdline: "selftest=null",
        expect: Expect::Exception("xenolith: EXCEPTION vector 14 #PF error=0x0"),
    },
    Smoke {
        name: "qemu-selftest-stack-overflow",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::TestModules,
        cmdline: "selftest=stack-overflow",
        // The #PF on the guard page cannot push its frame: #DF on the IST stack.
        expect: Expect::Exception("xenolith: EXCEPTION vector 8 #DF"),
    },
    Smoke {
        name: "qemu-epyc-test-guest",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::TestGuest,
        cmdline: TEST_GUEST_CMDLINE,
        expect: Expect::TestGuest,
    },
    Smoke {
        name: "bochs-ryzen-test-guest",
        emulator: Emulator::Bochs,
        cpu: Cpu::Ryzen,
        boot: Boot::Grub,
        load: Load::TestGuest,
        cmdline: TEST_GUEST_CMDLINE_BOCHS_SVM,
        expect: Expect::TestGuest,
    },
    Smoke {
        name: "bochs-skylake-test-guest",
        emulator: Emulator::Bochs,
        cpu: Cpu::Skylake,
        boot: Boot::Grub,
        load: Load::TestGuest,
        cmdline: TEST_GUEST_CMDLINE_BOCHS,
        expect: Expect::TestGuest,
    },
    Smoke {
        name: "qemu-epyc-evtchn",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::TestGuest,
        cmdline: EVTCHN_PAIR_CMDLINE,
        expect: Expect::Lines(EVTCHN_PAIR_LINES),
    },
    Smoke {
        name: "bochs-skylake-evtchn",
        emulator: Emulator::Bochs,
        cpu: Cpu::Skylake,
        boot: Boot::Grub,
        load: Load::TestGuest,
        cmdline: EVTCHN_PAIR_CMDLINE,
        expect: Expect::Lines(EVTCHN_PAIR_LINES),
    },
    Smoke {
        name: "qemu-epyc-grant",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::TestGuest,
        cmdline: GRANT_PAIR_CMDLINE,
        expect: Expect::Lines(GRANT_PAIR_LINES),
    },
    Smoke {
        name: "bochs-skylake-grant",
        emulator: Emulator::Bochs,
        cpu: Cpu::Skylake,
        boot: Boot::Grub,
        load: Load::TestGuest,
        cmdline: GRANT_PAIR_CMDLINE,
        expect: Expect::Lines(GRANT_PAIR_LINES),
    },
    Smoke {
        name: "qemu-epyc-linux",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::LinuxKit,
        cmdline: "",
        expect: Expect::LinuxGuest,
    },
    Smoke {
        // xl mem-set on the driver domain's console: the guest's balloon
        // driver gives 64 MiB back to the hypervisor and takes it again.
        name: "qemu-epyc-linux-balloon",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::LinuxKitBalloon,
        cmdline: "",
        expect: Expect::LinuxBalloon(BALLOON_MIB),
    },
    Smoke {
        // Two Linux guests at once: round-robin slices on the one host CPU.
        name: "qemu-epyc-two-linux",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::LinuxKit,
        cmdline: "guest=linux",
        expect: Expect::LinuxGuests(2),
    },
    Smoke {
        // The driver domain dies on purpose; the guest and hypervisor run on.
        name: "qemu-epyc-linux-driver-crash",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::LinuxKitDriverCrash,
        cmdline: "",
        expect: Expect::DriverCrash,
    },
    Smoke {
        // ext4 on a virtio-blk disk through blkfront, blkback and the
        // driver domain's virtio driver; checked on the host between boots.
        name: "qemu-epyc-linux-disk",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::LinuxKitDisk(Disk::Virtio),
        cmdline: "",
        expect: Expect::LinuxDisk("verify"),
    },
    Smoke {
        // A hostile frontend next to a Linux guest using its disk.
        name: "qemu-epyc-linux-disk-garbage",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::LinuxKitDisk(Disk::Garbage),
        cmdline: "",
        expect: Expect::DiskGarbage,
    },
    Smoke {
        // Two Linux guests on the driver domain's switch: pings both ways
        // and 64 MiB over TCP, checked by SHA-256 on both ends.
        name: "qemu-epyc-linux-net",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::LinuxKitNet(NET_QEMU),
        cmdline: "",
        expect: Expect::LinuxNet(NET_QEMU),
    },
    Smoke {
        // A hostile netfront next to the Linux pair.
        name: "qemu-epyc-linux-net-garbage",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::LinuxKitNet(NET_GARBAGE),
        cmdline: "",
        expect: Expect::LinuxNet(NET_GARBAGE),
    },
    Smoke {
        // The fuzzers (next to a Linux guest running its checks): random
        // hypercalls; XenStore requests; blkif requests; netif packets.
        name: "qemu-epyc-linux-fuzz-hypercalls",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::Fuzz(FUZZ_HYPERCALLS),
        cmdline: "",
        expect: Expect::Fuzz(FUZZ_HYPERCALLS),
    },
    Smoke {
        name: "qemu-epyc-linux-fuzz-xenstore",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::Fuzz(FUZZ_XENSTORE),
        cmdline: "",
        expect: Expect::Fuzz(FUZZ_XENSTORE),
    },
    Smoke {
        name: "qemu-epyc-linux-fuzz-blkif",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::Fuzz(FUZZ_BLKIF),
        cmdline: "",
        expect: Expect::Fuzz(FUZZ_BLKIF),
    },
    Smoke {
        name: "qemu-epyc-linux-fuzz-netif",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::Fuzz(FUZZ_NETIF),
        cmdline: "",
        expect: Expect::Fuzz(FUZZ_NETIF),
    },
    Smoke {
        name: "qemu-epyc-linux-ramdisk",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::LinuxKitDisk(Disk::Ram),
        cmdline: "",
        expect: Expect::LinuxDisk("both"),
    },
    Smoke {
        // Debian 12's cloud kernel as shipped (an LZ4 vmlinuz), with the
        // kit's initramfs and check list.
        name: "qemu-epyc-linux-cloud",
        emulator: Emulator::Qemu,
        cpu: Cpu::Epyc,
        boot: Boot::Pvh,
        load: Load::LinuxCloudKit,
        cmdline: "",
        expect: Expect::LinuxRelease(crate::kit::CLOUD_KERNEL_RELEASE),
    },
    Smoke {
        name: "bochs-skylake-linux",
        emulator: Emulator::Bochs,
        cpu: Cpu::Skylake,
        boot: Boot::Grub,
        load: Load::LinuxKit,
        cmdline: "",
        expect: Expect::LinuxGuest,
    },
    Smoke {
        // Two Linux guests on VMX: guards the per-domain x87/SSE/AVX state
        // switch (a missing one showed as a failed blake2s self-test).
        name: "bochs-skylake-two-linux",
        emulator: Emulator::Bochs,
        cpu: Cpu::Skylake,
        boot: Boot::Grub,
        load: Load::LinuxKit,
        cmdline: "guest=linux",
        expect: Expect::LinuxGuests(2),
    },
    Smoke {
        name: "bochs-skylake-linux-net",
        emulator: Emulator::Bochs,
        cpu: Cpu::Skylake,
        boot: Boot::Grub,
        load: Load::LinuxKitNet(NET_BOCHS),
        cmdline: "",
        expect: Expect::LinuxNet(NET_BOCHS),
    },
    Smoke {
        name: "bochs-skylake-linux-ramdisk",
        emulator: Emulator::Bochs,
        cpu: Cpu::Skylake,
        boot: Boot::Grub,
        load: Load::LinuxKitDisk(Disk::Ram),
        cmdline: "",
        expect: Expect::LinuxDisk("both"),
    },
    Smoke {
        name: "bochs-ryzen-linux",
        emulator: Emulator::Bochs,
        cpu: Cpu::Ryzen,
        boot: Boot::Grub,
        load: Load::LinuxKit,
        cmdline: "",
        expect: Expect::LinuxGuest,
    },
];

impl Smoke {
    /// The hypervisor command line, with the Linux guest's part added.
    fn hv_cmdline(&self) -> String {
        match self.load {
            Load::LinuxKit
            | Load::LinuxCloudKit
            | Load::LinuxKitDriverCrash
            | Load::LinuxKitBalloon => {
                build::with_driver_domain(&linux::hv_cmdline(self.cmdline, GuestMem::DEFAULT))
            }
            Load::LinuxKitDisk(Disk::Virtio) => {
                build::with_driver_domain(&linux::hv_cmdline(self.cmdline, GuestMem::DEFAULT))
            }
            Load::LinuxKitDisk(Disk::Garbage) => format!(
                "{} guest={}:blk-garbage ramdisk={GARBAGE_MODULE}",
                build::with_driver_domain(&linux::hv_cmdline(self.cmdline, GuestMem::DEFAULT)),
                build::TEST_GUEST_MODULE
            ),
            Load::LinuxKitDisk(Disk::Ram) => {
                let extra = format!("{} ramdisk={DISK_MODULE}", self.cmdline);
                build::with_driver_domain(&linux::hv_cmdline(extra.trim(), GuestMem::DEFAULT))
            }
            Load::LinuxKitNet(net) => {
                build::with_driver_domain(&net.config(LINUX_SMOKE_CMDLINE).hv_cmdline(self.cmdline))
            }
            Load::Fuzz(run) => {
                build::with_driver_domain(&run.config(Path::new("")).hv_cmdline(self.cmdline))
            }
            _ => self.cmdline.to_string(),
        }
    }

    fn is_linux(&self) -> bool {
        matches!(
            self.load,
            Load::LinuxKit
                | Load::LinuxCloudKit
                | Load::LinuxKitDriverCrash
                | Load::LinuxKitBalloon
                | Load::LinuxKitDisk(_)
                | Load::LinuxKitNet(_)
                | Load::Fuzz(_)
        )
    }

    fn timeout(&self) -> Duration {
        match (self.load, self.emulator) {
            (Load::Fuzz(run), emulator) => run.timeout(emulator),
            (Load::LinuxKitNet(_), Emulator::Qemu) => QEMU_LINUX_NET_TIMEOUT,
            (_, Emulator::Qemu) if self.is_linux() => QEMU_LINUX_TIMEOUT,
            (_, Emulator::Bochs) if self.is_linux() => BOCHS_LINUX_TIMEOUT,
            (_, Emulator::Qemu) => QEMU_TIMEOUT,
            (_, Emulator::Bochs) => BOCHS_TIMEOUT,
        }
    }

    /// The boot of this smoke's machine with these parts.
    fn spec(
        &self,
        payload: Payload,
        cmdline: String,
        mem_mib: u64,
        drives: Vec<crate::qemu::Drive>,
    ) -> BootSpec {
        BootSpec {
            emulator: self.emulator,
            cpu: self.cpu,
            boot: self.boot,
            accel: Accel::Tcg,
            payload,
            cmdline,
            mem_mib,
            drives,
        }
    }
}

/// One reported test: a workspace check or a boot.
pub struct TestResult {
    pub name: String,
    pub passed: bool,
    pub wall: Duration,
    /// Boots only: emulator start until the capability line appeared.
    pub caps_after: Option<Duration>,
}

impl TestResult {
    pub fn print(&self) {
        let caps = match self.caps_after {
            Some(t) => format!("; capability line {:.2} s after start", t.as_secs_f64()),
            None => String::new(),
        };
        println!(
            "{} {} ({:.2} s{caps})",
            if self.passed { "PASS" } else { "FAIL" },
            self.name,
            self.wall.as_secs_f64()
        );
    }
}

/// `cargo xtask test`.
pub fn test_command(args: &TestArgs) -> Result<ExitCode> {
    let smokes: Vec<&Smoke> = SMOKES
        .iter()
        .filter(|s| {
            args.filter
                .as_ref()
                .is_none_or(|f| s.name.contains(f.as_str()))
        })
        .collect();
    if let (Some(filter), true) = (&args.filter, smokes.is_empty()) {
        let names: Vec<&str> = SMOKES.iter().map(|s| s.name).collect();
        bail!(
            "no smoke test name contains {filter:?}; they are {}",
            names.join(", ")
        );
    }
    let mut results = Vec::new();
    if !args.smoke_only {
        setup::ensure_rust_components()?;
        // clippy-image checks the bare-metal target before any image build would add it.
        setup::ensure_rust_target()?;
        for check in checks::ALL {
            results.push(checks::run(check));
        }
    }
    if !smokes.is_empty() {
        println!("==> building the image for the boot smoke tests");
        let image = build::image(&ImageArgs::release(args.image.clone()));
        if let Err(err) = &image {
            println!("    {err:#}");
        }
        for smoke in smokes {
            let result = match &image {
                Ok(image) => run_smoke(smoke, image),
                Err(_) => {
                    let result = TestResult {
                        name: smoke.name.to_string(),
                        passed: false,
                        wall: Duration::ZERO,
                        caps_after: None,
                    };
                    println!("    not booted: the image did not build");
                    result.print();
                    result
                }
            };
            results.push(result);
        }
    }
    print_timings(&results);
    let passed = results.iter().filter(|r| r.passed).count();
    let failed = results.len() - passed;
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_timings(results: &[TestResult]) {
    let boots: Vec<&TestResult> = results.iter().filter(|r| r.caps_after.is_some()).collect();
    if boots.is_empty() {
        return;
    }
    println!("boot timings (emulator start -> capability line on COM1):");
    for r in boots {
        let t = r.caps_after.expect("filtered on is_some");
        println!("  {:<28} {:>7.2} s", r.name, t.as_secs_f64());
    }
}

fn run_smoke(smoke: &Smoke, image: &Path) -> TestResult {
    let cmdline = smoke.hv_cmdline();
    println!(
        "==> smoke {}: {} {} via {}{}{}",
        smoke.name,
        label(smoke.emulator),
        label(smoke.cpu),
        label(smoke.boot),
        if cmdline.is_empty() {
            String::new()
        } else {
            format!(", cmdline {cmdline:?}")
        },
        match smoke.load {
            Load::LinuxKit => format!(", guest cmdline {LINUX_SMOKE_CMDLINE:?}"),
            Load::LinuxCloudKit => format!(
                ", kernel vmlinuz-{} as shipped, guest cmdline {LINUX_SMOKE_CMDLINE:?}",
                crate::kit::CLOUD_KERNEL_RELEASE
            ),
            Load::LinuxKitDriverCrash => format!(
                ", guest cmdline \"{LINUX_SMOKE_CMDLINE} xenolith.crash_driver=1\", driver domain crash-on={}",
                judge::DRIVER_CRASH_TEXT
            ),
            Load::LinuxKitDisk(disk) => format!(
                ", guest cmdline \"{LINUX_SMOKE_CMDLINE} xenolith.disk=...\", driver domain {}",
                vbd_option(disk)
            ),
            Load::LinuxKitNet(net) => net_description(net),
            Load::LinuxKitBalloon => format!(
                ", guest cmdline \"{LINUX_SMOKE_CMDLINE} xenolith.balloon={BALLOON_MIB}\", mem-set typed on COM1"
            ),
            Load::Fuzz(run) => format!(
                ", guests linux {:?} and fuzz {:?}",
                run.config(Path::new(""))
                    .domains
                    .first()
                    .and_then(|d| d.cmdline.clone())
                    .unwrap_or_default(),
                run.guest_word()
            ),
            _ => String::new(),
        }
    );
    let start = Instant::now();
    let (problems, outcome, dir) = match boot(smoke, image) {
        Ok((problems, outcome, dir)) => (problems, Some(outcome), Some(dir)),
        Err(err) => (vec![format!("{err:#}")], None, None),
    };
    let result = TestResult {
        name: smoke.name.to_string(),
        passed: problems.is_empty(),
        wall: outcome.as_ref().map_or(start.elapsed(), |o| o.wall),
        caps_after: outcome.as_ref().and_then(|o| o.caps_after),
    };
    result.print();
    if !problems.is_empty() {
        for p in &problems {
            println!("    - {p}");
        }
        if let (Some(outcome), Some(dir)) = (&outcome, &dir) {
            show_tail("COM1", &dir.join("com1.log"), &outcome.lines);
            show_tail(
                "hypervisor log (COM2)",
                &dir.join("com2.log"),
                &outcome.hv_log.lines,
            );
            let (name, lines) = run::emulator_notes(smoke.emulator, dir);
            show_tail(name, &dir.join(name), &lines);
        }
    }
    result
}

fn show_tail(what: &str, path: &Path, lines: &[String]) {
    let skip = lines.len().saturating_sub(SHOW_LINES);
    println!(
        "    --- {what}: {} ({} lines{}) ---",
        path.display(),
        lines.len(),
        if skip > 0 {
            ", showing the last ones"
        } else {
            ""
        }
    );
    for line in &lines[skip..] {
        println!("    | {line}");
    }
    println!("    --- end of {what} ---");
}

/// Boots `spec` in `dir` and judges it as `expect`; returns the problems
/// and what the session saw.
fn judged_boot(
    smoke: &Smoke,
    spec: &BootSpec,
    modules: &[Module],
    expect: Expect,
    dir: &Path,
    image: &Path,
) -> Result<(Vec<String>, Outcome)> {
    let timeout = smoke.timeout();
    let outcome = run::boot_quietly(spec, dir, image, timeout)?;
    let case = Case {
        emulator: smoke.emulator,
        cpu: smoke.cpu,
        boot: smoke.boot,
        expect,
        modules,
        timeout,
    };
    Ok((judge::problems(&case, &outcome), outcome))
}

/// What a network smoke's guests are told, for its heading.
fn net_description(net: NetTest) -> String {
    let config = net.config(LINUX_SMOKE_CMDLINE);
    let guests: Vec<String> = config
        .domains
        .iter()
        .map(|d| format!("{} {:?}", d.name, d.cmdline.as_deref().unwrap_or("")))
        .collect();
    format!(
        ", guests {}, driver domain {}",
        guests.join(", "),
        config.vif_words().join(" ")
    )
}

/// The driver domain's `vbd=` option for the disk test.
fn vbd_option(disk: Disk) -> String {
    match disk {
        Disk::Virtio => "vbd=linux:xvda:rw:virtio:0".into(),
        Disk::Ram => format!("vbd=linux:xvda:rw:ramdisk:{DISK_MODULE}"),
        Disk::Garbage => format!(
            "vbd=linux:xvda:rw:virtio:0 vbd={}:xvda:rw:ramdisk:{GARBAGE_MODULE}",
            build::TEST_GUEST_MODULE
        ),
    }
}

/// The disk test: a fresh ext4 image, then one boot per mode. With
/// virtio the first boot writes, the host checks the image (`e2fsck -fn`
/// and every file's sum) and a second boot reads back; a RAM disk lives
/// only as long as its boot, so one boot does both.
fn disk_boots(smoke: &Smoke, image: &Path, disk: Disk) -> Result<(Vec<String>, Outcome, PathBuf)> {
    let top = build::run_dir(&format!("smoke-{}", smoke.name))?;
    let img = top.join(DISK_MODULE);
    let (mib, modes): (u64, &[&str]) = match disk {
        Disk::Virtio => (DISK_MIB, &["write", "verify"]),
        Disk::Ram | Disk::Garbage => (RAMDISK_MIB, &["both"]),
    };
    crate::disk::make_ext4(&img, mib)?;
    let mut problems = Vec::new();
    let mut last = None;
    for (i, mode) in modes.iter().enumerate() {
        let cmdline = format!("{LINUX_SMOKE_CMDLINE} xenolith.disk={mode}");
        let mut modules = linux_guest::from_kit(&cmdline)?.modules();
        modules.push(build::driver_domain_module()?);
        modules.push(modules::Module {
            name: format!("{}.cmdline", build::DRIVER_DOMAIN_MODULE),
            data: vbd_option(disk).into_bytes(),
        });
        let drives = match disk {
            // The write boot's device takes discards of at most 32 KiB, so
            // fstrim's extents (up to 8 MiB) reach the device cut in pieces,
            // more than a virtqueue's worth each; the host then checks that
            // every piece punched its hole.
            Disk::Virtio if *mode == "write" => vec![crate::qemu::Drive {
                path: img.clone(),
                max_discard_sectors: Some(TRIM_PIECE_SECTORS),
            }],
            Disk::Virtio => vec![img.clone().into()],
            Disk::Garbage => {
                let garbage = top.join(GARBAGE_MODULE);
                crate::disk::make_ext4(&garbage, 4)?;
                modules.push(build::test_guest_module()?);
                modules.push(modules::Module {
                    name: format!("{}.mem", build::TEST_GUEST_MODULE),
                    data: b"8M".to_vec(),
                });
                modules.push(modules::Module {
                    name: GARBAGE_MODULE.into(),
                    data: std::fs::read(&garbage)?,
                });
                vec![img.clone().into()]
            }
            Disk::Ram => {
                modules.push(modules::Module {
                    name: DISK_MODULE.into(),
                    data: std::fs::read(&img)?,
                });
                Vec::new()
            }
        };
        let dir = if modes.len() == 1 {
            top.clone()
        } else {
            build::run_dir(&format!("smoke-{}-{mode}", smoke.name))?
        };
        let spec = smoke.spec(
            Payload::Modules(modules.clone()),
            smoke.hv_cmdline(),
            linux::machine_mib(Some(GuestMem::DEFAULT)),
            drives,
        );
        let expect = if disk == Disk::Garbage {
            Expect::DiskGarbage
        } else {
            Expect::LinuxDisk(mode)
        };
        let (found, outcome) = judged_boot(smoke, &spec, &modules, expect, &dir, image)?;
        let label = if modes.len() > 1 {
            format!("boot {} ({mode}): ", i + 1)
        } else {
            String::new()
        };
        problems.extend(found.into_iter().map(|p| format!("{label}{p}")));
        if *mode == "write" {
            let sums = crate::disk::printed_sums(&judge::numbered(&outcome.lines));
            let found = crate::disk::verify(&img, &sums, DISK_FILES)?;
            if found.is_empty() {
                println!(
                    "    host: e2fsck -fn clean, {} files read back with debugfs match their sums",
                    sums.len()
                );
            }
            problems.extend(found.into_iter().map(|p| format!("{label}host check: {p}")));
            let found = crate::disk::check_trimmed(&img)?;
            problems.extend(found.into_iter().map(|p| format!("{label}host check: {p}")));
        }
        last = Some((outcome, dir));
    }
    let (outcome, dir) = last.expect("at least one mode");
    Ok((problems, outcome, dir))
}

/// A fuzz smoke: its domain configuration booted as `cargo xtask fuzz`
/// boots it; a failure says how to replay it.
fn fuzz_boot(smoke: &Smoke, image: &Path, run: FuzzRun) -> Result<(Vec<String>, Outcome, PathBuf)> {
    let dir = build::run_dir(&format!("smoke-{}", smoke.name))?;
    let parts = run.boot_parts(smoke.emulator, &dir)?;
    let spec = smoke.spec(
        Payload::Modules(parts.modules.clone()),
        parts.cmdline,
        parts.mem_mib,
        parts.drives,
    );
    let (mut problems, outcome) =
        judged_boot(smoke, &spec, &parts.modules, smoke.expect, &dir, image)?;
    if !problems.is_empty() {
        problems.push(crate::fuzz::replay_hint(run, &outcome));
    }
    Ok((problems, outcome, dir))
}

/// A network smoke: its domain configuration booted as `run --config`
/// boots one, the driver domain serving the NICs.
fn net_boot(smoke: &Smoke, image: &Path, net: NetTest) -> Result<(Vec<String>, Outcome, PathBuf)> {
    let config = net.config(LINUX_SMOKE_CMDLINE);
    let parts = run::config_boot(&config, smoke.emulator, smoke.cmdline)?;
    let spec = smoke.spec(
        Payload::Modules(parts.modules.clone()),
        parts.cmdline,
        parts.mem_mib,
        parts.drives,
    );
    let dir = build::run_dir(&format!("smoke-{}", smoke.name))?;
    let (problems, outcome) = judged_boot(smoke, &spec, &parts.modules, smoke.expect, &dir, image)?;
    Ok((problems, outcome, dir))
}

fn boot(smoke: &Smoke, image: &Path) -> Result<(Vec<String>, Outcome, PathBuf)> {
    match smoke.load {
        Load::LinuxKitDisk(disk) => return disk_boots(smoke, image, disk),
        Load::LinuxKitNet(net) => return net_boot(smoke, image, net),
        Load::Fuzz(run) => return fuzz_boot(smoke, image, run),
        Load::LinuxKitBalloon => return balloon_boot(smoke, image),
        _ => {}
    }
    let modules = match smoke.load {
        Load::TestModules => modules::test_set(),
        Load::TestGuest => vec![build::test_guest_module()?],
        Load::NotAnArchive => Vec::new(),
        // Fetched here, not before: a filtered run without Linux smokes downloads nothing.
        Load::LinuxKit => {
            let mut m = linux_guest::from_kit(LINUX_SMOKE_CMDLINE)?.modules();
            m.push(build::driver_domain_module()?);
            m
        }
        Load::LinuxCloudKit => {
            let vmlinuz = crate::kit::cloud_vmlinuz()?;
            let guest = linux_guest::assemble(Some(&vmlinuz), None, LINUX_SMOKE_CMDLINE)?;
            let mut m = guest.modules();
            m.push(build::driver_domain_module()?);
            m
        }
        Load::LinuxKitDisk(_) | Load::LinuxKitNet(_) | Load::Fuzz(_) | Load::LinuxKitBalloon => {
            unreachable!("booted above")
        }
        Load::LinuxKitDriverCrash => {
            let cmdline = format!("{LINUX_SMOKE_CMDLINE} xenolith.crash_driver=1");
            let mut m = linux_guest::from_kit(&cmdline)?.modules();
            m.push(build::driver_domain_module()?);
            m.push(modules::Module {
                name: format!("{}.cmdline", build::DRIVER_DOMAIN_MODULE),
                data: format!("crash-on={}", judge::DRIVER_CRASH_TEXT).into_bytes(),
            });
            m
        }
    };
    let mem_mib = if smoke.is_linux() {
        linux::machine_mib(Some(GuestMem::DEFAULT))
    } else {
        linux::MACHINE_MIB
    };
    let payload = match smoke.load {
        Load::NotAnArchive => Payload::RawInitrd(vec![0x5a; 4096]),
        _ => Payload::Modules(modules.clone()),
    };
    let spec = smoke.spec(payload, smoke.hv_cmdline(), mem_mib, Vec::new());
    let dir = build::run_dir(&format!("smoke-{}", smoke.name))?;
    let (problems, outcome) = judged_boot(smoke, &spec, &modules, smoke.expect, &dir, image)?;
    Ok((problems, outcome, dir))
}

/// The kit's Linux with `xenolith.balloon=BALLOON_MIB` and the driver
/// domain, COM1 typed into as an operator would: when /init says it is
/// ready, Ctrl-A three times (input to the toolstack) and `mem-set 1
/// <static-max - 64 MiB>`; when it says it shrank, `mem-set 1
/// <static-max>`. Static-max is read from the driver domain's XenStore
/// listing at start of day.
fn balloon_boot(smoke: &Smoke, image: &Path) -> Result<(Vec<String>, Outcome, PathBuf)> {
    let cmdline = format!("{LINUX_SMOKE_CMDLINE} xenolith.balloon={BALLOON_MIB}");
    let mut modules = linux_guest::from_kit(&cmdline)?.modules();
    modules.push(build::driver_domain_module()?);
    let mem_mib = linux::machine_mib(Some(GuestMem::DEFAULT));
    let spec = smoke.spec(
        Payload::Modules(modules.clone()),
        smoke.hv_cmdline(),
        mem_mib,
        Vec::new(),
    );
    let dir = build::run_dir(&format!("smoke-{}", smoke.name))?;
    let outcome = run::boot_scripted(&spec, &dir, image, smoke.timeout(), balloon_script())?;
    let case = Case {
        emulator: smoke.emulator,
        cpu: smoke.cpu,
        boot: smoke.boot,
        expect: smoke.expect,
        modules: &modules,
        timeout: smoke.timeout(),
    };
    Ok((judge::problems(&case, &outcome), outcome, dir))
}

/// What the balloon smoke types, line by line (see `balloon_boot`).
fn balloon_script() -> crate::session::Script {
    let mut static_max: Option<u64> = None;
    crate::session::Script(Box::new(move |line: &str| {
        if static_max.is_none() {
            static_max = line
                .split("static-max = \"")
                .nth(1)
                .and_then(|v| v.split('"').next())
                .and_then(|v| v.parse().ok());
        }
        let kib = static_max?;
        if line.contains("BALLOON-READY") {
            let down = kib.checked_sub(BALLOON_MIB * 1024)?;
            return Some(format!("\x01\x01\x01mem-set 1 {down}\r").into_bytes());
        }
        if line.contains("BALLOON-SHRUNK") {
            return Some(format!("mem-set 1 {kib}\r").into_bytes());
        }
        None
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_balloon_script_types_mem_set_down_and_back() {
        let crate::session::Script(mut script) = balloon_script();
        assert_eq!(
            script("BALLOON-READY MemTotal=1 kB"),
            None,
            "static-max not yet seen"
        );
        assert_eq!(
            script("[Domain-0]     static-max = \"261748\"  (n0 r1)"),
            None
        );
        assert_eq!(
            script("(linux) BALLOON-READY MemTotal=230000 kB"),
            Some(b"\x01\x01\x01mem-set 1 196212\r".to_vec())
        );
        assert_eq!(
            script("(linux) BALLOON-SHRUNK MemTotal=164464 kB"),
            Some(b"mem-set 1 261748\r".to_vec())
        );
        assert_eq!(script("anything else"), None);
    }

    #[test]
    fn names_are_unique() {
        for (i, a) in SMOKES.iter().enumerate() {
            assert!(SMOKES[i + 1..].iter().all(|b| b.name != a.name));
        }
    }

    #[test]
    fn linux_smokes_come_last_and_filter_as_linux() {
        let linux: Vec<&str> = SMOKES
            .iter()
            .filter(|s| s.is_linux())
            .map(|s| s.name)
            .collect();
        assert_eq!(
            linux,
            [
                "qemu-epyc-linux",
                "qemu-epyc-linux-balloon",
                "qemu-epyc-two-linux",
                "qemu-epyc-linux-driver-crash",
                "qemu-epyc-linux-disk",
                "qemu-epyc-linux-disk-garbage",
                "qemu-epyc-linux-net",
                "qemu-epyc-linux-net-garbage",
                "qemu-epyc-linux-fuzz-hypercalls",
                "qemu-epyc-linux-fuzz-xenstore",
                "qemu-epyc-linux-fuzz-blkif",
                "qemu-epyc-linux-fuzz-netif",
                "qemu-epyc-linux-ramdisk",
                "qemu-epyc-linux-cloud",
                "bochs-skylake-linux",
                "bochs-skylake-two-linux",
                "bochs-skylake-linux-net",
                "bochs-skylake-linux-ramdisk",
                "bochs-ryzen-linux"
            ]
        );
        let by_filter: Vec<&str> = SMOKES
            .iter()
            .filter(|s| s.name.contains("linux"))
            .map(|s| s.name)
            .collect();
        assert_eq!(by_filter, linux);
        assert!(SMOKES[SMOKES.len() - 5..]
            .iter()
            .all(|s| s.is_linux() && s.emulator == Emulator::Bochs));
    }

    #[test]
    fn linux_smokes_pass_the_contract() {
        let smoke = SMOKES.iter().find(|s| s.name == "qemu-epyc-linux").unwrap();
        assert_eq!(
            smoke.hv_cmdline(),
            "dom0=driver-domain guest=linux guest_mem=256M"
        );
        assert_eq!(smoke.timeout(), Duration::from_secs(300));
        assert!(LINUX_SMOKE_CMDLINE.ends_with(" xenolith.test=1"));
        assert!(LINUX_SMOKE_CMDLINE.starts_with(linux::DEFAULT_CMDLINE));
        let bochs = SMOKES
            .iter()
            .find(|s| s.name == "bochs-ryzen-linux")
            .unwrap();
        assert_eq!(bochs.timeout(), Duration::from_secs(1200));
    }

    #[test]
    fn fuzz_smokes_boot_linux_and_the_fuzzer() {
        let fuzz: Vec<&Smoke> = SMOKES
            .iter()
            .filter(|s| matches!(s.load, Load::Fuzz(_)))
            .collect();
        let targets: Vec<Target> = fuzz
            .iter()
            .map(|s| match s.load {
                Load::Fuzz(run) => run.target,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            targets,
            [
                Target::Hypercalls,
                Target::Xenstore,
                Target::Blkif,
                Target::Netif
            ]
        );
        for s in fuzz {
            let Load::Fuzz(run) = s.load else {
                unreachable!()
            };
            assert!(
                matches!(s.expect, Expect::Fuzz(r) if r == run),
                "{}",
                s.name
            );
            assert!(s.name.ends_with(run.target.name()), "{}", s.name);
            assert_eq!((s.emulator, s.cpu), (Emulator::Qemu, Cpu::Epyc));
            assert_eq!(s.hv_cmdline(), "dom0=driver-domain guest=linux guest=fuzz");
            assert_eq!(run.calls, FUZZ_CALLS);
            assert_eq!(run.trace_from, None);
            // Linux's boot and checks, and the calls at a third of the
            // rate measured.
            assert!(s.timeout() >= QEMU_LINUX_TIMEOUT, "{}", s.name);
            assert!(s.timeout() <= Duration::from_secs(900), "{}", s.name);
        }
    }

    #[test]
    fn net_smokes_boot_their_configs() {
        let smoke = |name: &str| SMOKES.iter().find(|s| s.name == name).unwrap();
        let qemu = smoke("qemu-epyc-linux-net");
        assert_eq!(
            qemu.hv_cmdline(),
            "dom0=driver-domain guest=linux1 guest=linux2"
        );
        assert_eq!(qemu.timeout(), QEMU_LINUX_NET_TIMEOUT);
        let garbage = smoke("qemu-epyc-linux-net-garbage");
        assert_eq!(
            garbage.hv_cmdline(),
            "dom0=driver-domain guest=linux1 guest=linux2 guest=test-guest"
        );
        let bochs = smoke("bochs-skylake-linux-net");
        assert_eq!(bochs.timeout(), BOCHS_LINUX_TIMEOUT);
        for s in [qemu, garbage, bochs] {
            let Load::LinuxKitNet(net) = s.load else {
                panic!("{} is no net smoke", s.name);
            };
            assert!(
                matches!(s.expect, Expect::LinuxNet(n) if n == net),
                "{}",
                s.name
            );
            let config = net.config(LINUX_SMOKE_CMDLINE);
            for d in &config.domains[..2] {
                let cmdline = d.cmdline.as_deref().unwrap();
                assert!(cmdline
                    .starts_with("console=hvc0 earlyprintk=xen xenolith.test=1 xenolith.ip="));
            }
        }
        assert_eq!(
            (NET_BOCHS.mem_mib, NET_BOCHS.pings, NET_BOCHS.mib),
            (192, 10, 1)
        );
        assert!(net_description(NET_GARBAGE).ends_with("vif=linux1 vif=linux2 vif=test-guest"));
    }
}
