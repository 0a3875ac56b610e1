//! `cargo xtask run --config FILE`: the domains of a boot, described in TOML
//! with names close to xl.cfg, and their translation into boot modules, the
//! hypervisor command line and the emulated machine's RAM.
//!
//! ```toml
//! [[domain]]
//! name = "web"        # the module name: [a-z0-9-]+, unique
//! memory = 256        # MiB [default: 256]
//! maxmem = 256        # MiB ballooning may grow it to, as xl.cfg [default: memory]
//! vcpus = 1           # only 1 is supported
//! kernel = "kit"      # "kit", "test-guest", or a vmlinux ELF / bzImage path
//! ramdisk = "kit"     # optional: "kit" or a path
//! cmdline = "console=hvc0 earlyprintk=xen"   # optional
//! disks = ["disk.img:xvda:rw"]   # optional: <raw image>:<xvdX>:<rw|ro>
//! nics = ["mac=00:16:3e:01:02:03", ""]   # optional, at most 4: eth0, eth1, …
//! ```
//!
//! Disks are served by the driver domain's blkback: on QEMU each image is
//! a virtio-blk device (writes reach the file), on Bochs a RAM disk boot
//! module (writes last as long as the run).
//!
//! NICs are served by the driver domain's netback, all on one switch. Each
//! entry is comma-separated `key=value` options; the only key is `mac`
//! (unicast, not all zero); an empty entry gets a MAC the driver domain
//! derives from the domain's name and the NIC's index, stable across runs.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::linux;
use crate::modules::Module;
use crate::{build, bzimage, kit};

/// A domain's RAM when the file does not say (as `--guest-mem`'s default).
pub const DEFAULT_MEMORY_MIB: u64 = 256;
/// The largest emulated machine a config may ask for: QEMU's `pc` machine
/// keeps up to 3.5 GiB below 4 GiB, where the hypervisor's boot mapping and
/// its boot structures live, so 3 GiB stays clear of the PCI hole.
pub const MAX_MACHINE_MIB: u64 = 3072;
/// The most guest RAM all domains together may have.
pub const MAX_TOTAL_MEMORY_MIB: u64 = MAX_MACHINE_MIB - linux::MACHINE_HEADROOM_MIB;
/// Below this a Linux kernel cannot boot with its initramfs (as `--guest-mem`).
const LINUX_MIN_MIB: u64 = 64;
/// NICs per domain: what the driver domain's netback serves.
pub const MAX_NICS: usize = 4;

/// The file as written; every key is checked, unknown ones are errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    domain: Vec<RawDomain>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDomain {
    name: Option<String>,
    memory: Option<u64>,
    maxmem: Option<u64>,
    vcpus: Option<u64>,
    kernel: Option<String>,
    ramdisk: Option<String>,
    cmdline: Option<String>,
    #[serde(default)]
    disks: Vec<String>,
    #[serde(default)]
    nics: Vec<String>,
}

/// Where a domain's kernel comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// The guest kit's Debian vmlinux.
    Kit,
    /// The in-tree test guest (kernel/tests/guest).
    TestGuest,
    /// A vmlinux ELF, or a bzImage/vmlinuz to unpack one from.
    File(PathBuf),
}

/// Where a domain's initrd comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ramdisk {
    /// The guest kit's busybox initramfs.
    Kit,
    File(PathBuf),
}

/// One validated domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    /// Its module name, and so its name in the hypervisor's log.
    pub name: String,
    pub memory_mib: u64,
    /// xl.cfg `maxmem`: what ballooning may grow it to (None: `memory`).
    pub maxmem_mib: Option<u64>,
    pub kernel: Kernel,
    pub ramdisk: Option<Ramdisk>,
    pub cmdline: Option<String>,
    pub disks: Vec<DiskSpec>,
    /// Its NICs: vif/0 (eth0), vif/1, … in order.
    pub nics: Vec<NicSpec>,
}

/// One `nics` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NicSpec {
    /// None: the driver domain generates one.
    pub mac: Option<[u8; 6]>,
}

/// One `disks` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    pub path: PathBuf,
    /// The guest's name for it: xvda, xvdb, …
    pub vdev: String,
    pub read_only: bool,
}

/// How the disks reach the driver domain on one emulator.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DiskPlan {
    /// Images QEMU attaches as virtio-blk devices, in device order.
    pub drives: Vec<PathBuf>,
    /// RAM disk modules (Bochs): (module name, image path).
    pub ramdisks: Vec<(String, PathBuf)>,
    /// `ramdisk=` words for the hypervisor command line.
    pub hv_words: Vec<String>,
    /// `vbd=` words for the driver domain's command line.
    pub vbd_words: Vec<String>,
}

fn parse_disk(text: &str, base: &Path) -> Result<DiskSpec> {
    let mut parts = text.rsplitn(3, ':');
    let (Some(mode), Some(vdev), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("disk {text:?}: expected \"<image>:<xvdX>:<rw|ro>\"");
    };
    let read_only = match mode {
        "rw" | "w" => false,
        "ro" | "r" => true,
        _ => bail!("disk {text:?}: the mode {mode:?} is neither rw nor ro"),
    };
    let letters = vdev.strip_prefix("xvd").unwrap_or("");
    if letters.is_empty() || letters.len() > 2 || !letters.bytes().all(|b| b.is_ascii_lowercase()) {
        bail!("disk {text:?}: {vdev:?} is not a Xen disk name (xvda, xvdb, …)");
    }
    if path.is_empty() {
        bail!("disk {text:?}: no image path");
    }
    Ok(DiskSpec {
        path: base.join(path),
        vdev: vdev.to_string(),
        read_only,
    })
}

/// `xx:xx:xx:xx:xx:xx` (either case) as bytes: a unicast address (the low
/// bit of the first byte clear), not all zero.
fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next().unwrap_or("");
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("mac {text:?} is not six hex pairs like 00:16:3e:01:02:03");
        }
        *byte = u8::from_str_radix(part, 16).expect("two hex digits");
    }
    if parts.next().is_some() {
        bail!("mac {text:?} is not six hex pairs like 00:16:3e:01:02:03");
    }
    if mac[0] & 1 != 0 {
        bail!("mac {text:?} is a multicast address (the low bit of its first byte is set)");
    }
    if mac == [0; 6] {
        bail!("mac {text:?} is all zero");
    }
    Ok(mac)
}

/// A MAC as the driver domain's `vif=` word takes it: lowercase hex pairs.
fn mac_text(mac: &[u8; 6]) -> String {
    let pairs: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    pairs.join(":")
}

fn parse_nic(text: &str) -> Result<NicSpec> {
    let mut nic = NicSpec::default();
    for option in text.split(',').filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            Some(("mac", value)) => {
                if nic.mac.is_some() {
                    bail!("nic {text:?}: mac is given twice");
                }
                nic.mac = Some(parse_mac(value).with_context(|| format!("nic {text:?}"))?);
            }
            _ => bail!("nic {text:?}: unknown option {option:?} (the only one is mac=)"),
        }
    }
    Ok(nic)
}

/// A validated configuration: domain 1, 2, … in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub domains: Vec<Domain>,
}

/// The bytes a module needs, named by where they come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input<'a> {
    KitKernel,
    KitRamdisk,
    TestGuest,
    /// A kernel file: a vmlinux ELF, or a bzImage to unpack.
    KernelFile(&'a Path),
    RamdiskFile(&'a Path),
}

/// Reads and validates `path`; relative paths in it are relative to its directory.
pub fn load(path: &Path) -> Result<Config> {
    let text =
        fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new(""));
    parse(&text, base).with_context(|| format!("config {}", path.display()))
}

/// Parses and validates a config's text, resolving relative paths against `base`.
pub fn parse(text: &str, base: &Path) -> Result<Config> {
    let raw: RawFile = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    if raw.domain.is_empty() {
        bail!("no domains: add at least one [[domain]] table");
    }
    let mut names = BTreeSet::new();
    let mut domains = Vec::new();
    for (i, raw) in raw.domain.into_iter().enumerate() {
        let label = match &raw.name {
            Some(name) => format!("domain {} ({name:?})", i + 1),
            None => format!("domain {}", i + 1),
        };
        let domain = validate(raw, base).context(label)?;
        if !names.insert(domain.name.clone()) {
            bail!(
                "domain {}: the name {:?} is already used by an earlier domain",
                i + 1,
                domain.name
            );
        }
        domains.push(domain);
    }
    let mut macs = BTreeSet::new();
    for mac in domains.iter().flat_map(|d| &d.nics).filter_map(|n| n.mac) {
        if !macs.insert(mac) {
            bail!(
                "the mac {} is given to two NICs (they share one switch)",
                mac_text(&mac)
            );
        }
    }
    let total: u64 = domains.iter().map(|d| d.memory_mib).sum();
    if total > MAX_TOTAL_MEMORY_MIB {
        bail!(
            "the domains' memory adds up to {total} MiB; the emulated machine holds at most \
             {MAX_TOTAL_MEMORY_MIB} MiB of guest RAM ({MAX_MACHINE_MIB} MiB less {} MiB for the hypervisor)",
            linux::MACHINE_HEADROOM_MIB
        );
    }
    Ok(Config { domains })
}

fn validate(raw: RawDomain, base: &Path) -> Result<Domain> {
    let name = raw.name.context("missing `name`")?;
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        bail!("name {name:?} must be non-empty and use only [a-z0-9-]");
    }
    let kernel = match raw.kernel.as_deref() {
        None => bail!("missing `kernel` (\"kit\", \"test-guest\" or a path)"),
        Some("") => bail!("`kernel` is empty"),
        Some("kit") => Kernel::Kit,
        Some("test-guest") => Kernel::TestGuest,
        Some(path) => Kernel::File(base.join(path)),
    };
    let ramdisk = match raw.ramdisk.as_deref() {
        None => None,
        Some("") => bail!("`ramdisk` is empty (leave it out for none)"),
        Some("kit") => Some(Ramdisk::Kit),
        Some(path) => Some(Ramdisk::File(base.join(path))),
    };
    let memory_mib = raw.memory.unwrap_or(DEFAULT_MEMORY_MIB);
    if memory_mib == 0 {
        bail!("`memory` is 0; give the RAM in MiB, e.g. 256");
    }
    if memory_mib > MAX_TOTAL_MEMORY_MIB {
        bail!(
            "`memory` = {memory_mib} MiB is more than the emulated machine holds for guests ({MAX_TOTAL_MEMORY_MIB} MiB)"
        );
    }
    if let Some(max) = raw.maxmem {
        if max < memory_mib {
            bail!("`maxmem` = {max} MiB is below `memory` = {memory_mib} MiB (xl.cfg: maxmem >= memory)");
        }
        if max > MAX_TOTAL_MEMORY_MIB {
            bail!("`maxmem` = {max} MiB is more than the emulated machine holds for guests ({MAX_TOTAL_MEMORY_MIB} MiB)");
        }
    }
    if kernel != Kernel::TestGuest && memory_mib < LINUX_MIN_MIB {
        bail!("`memory` = {memory_mib} MiB is below {LINUX_MIN_MIB} MiB, too little for Linux");
    }
    match raw.vcpus {
        None | Some(1) => {}
        Some(n) => bail!("`vcpus` = {n}: only 1 vCPU per domain is supported"),
    }
    let mut disks: Vec<DiskSpec> = Vec::new();
    for text in &raw.disks {
        let d = parse_disk(text, base)?;
        if disks.iter().any(|o| o.vdev == d.vdev) {
            bail!("disk {text:?}: {} is given twice", d.vdev);
        }
        disks.push(d);
    }
    if raw.nics.len() > MAX_NICS {
        bail!(
            "{} nics: at most {MAX_NICS} per domain are supported",
            raw.nics.len()
        );
    }
    let nics = raw
        .nics
        .iter()
        .map(|text| parse_nic(text))
        .collect::<Result<_>>()?;
    Ok(Domain {
        name,
        memory_mib,
        maxmem_mib: raw.maxmem,
        kernel,
        ramdisk,
        cmdline: raw.cmdline,
        disks,
        nics,
    })
}

/// A Linux domain from the guest kit with `nics` NICs of generated MACs,
/// as the network smoke tests and `bench net` boot them.
pub fn kit_domain(name: &str, memory_mib: u64, cmdline: String, nics: usize) -> Domain {
    Domain {
        name: name.into(),
        memory_mib,
        maxmem_mib: None,
        kernel: Kernel::Kit,
        ramdisk: Some(Ramdisk::Kit),
        cmdline: Some(cmdline),
        disks: Vec::new(),
        nics: vec![NicSpec::default(); nics],
    }
}

impl Config {
    /// The hypervisor command line: whatever else was asked for, then one
    /// `guest=` word per domain, in order (the RAM goes in `<name>.mem`).
    pub fn hv_cmdline(&self, extra: &str) -> String {
        let mut out = extra.trim().to_string();
        for d in &self.domains {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str("guest=");
            out.push_str(&d.name);
        }
        out
    }

    /// Every domain's disks: virtio-blk devices on QEMU (`virtio`), RAM
    /// disk modules otherwise, and the driver domain's `vbd=` words.
    pub fn disk_plan(&self, virtio: bool) -> DiskPlan {
        let mut plan = DiskPlan::default();
        for d in &self.domains {
            for disk in &d.disks {
                let mode = if disk.read_only { "ro" } else { "rw" };
                let source = if virtio {
                    plan.drives.push(disk.path.clone());
                    format!("virtio:{}", plan.drives.len() - 1)
                } else {
                    let name = format!("{}.{}.img", d.name, disk.vdev);
                    plan.ramdisks.push((name.clone(), disk.path.clone()));
                    plan.hv_words.push(format!("ramdisk={name}"));
                    format!("ramdisk:{name}")
                };
                plan.vbd_words
                    .push(format!("vbd={}:{}:{mode}:{source}", d.name, disk.vdev));
            }
        }
        plan
    }

    /// The driver domain's `vif=<name>[:<mac>]` words: every domain's NICs
    /// in order, so the n-th word naming a domain is its vif/n.
    pub fn vif_words(&self) -> Vec<String> {
        let mut out = Vec::new();
        for d in &self.domains {
            for nic in &d.nics {
                out.push(match &nic.mac {
                    Some(mac) => format!("vif={}:{}", d.name, mac_text(mac)),
                    None => format!("vif={}", d.name),
                });
            }
        }
        out
    }

    /// The emulated machine's RAM: all domains' RAM plus the hypervisor's
    /// headroom, as [`linux::machine_mib`] sizes it for one guest.
    pub fn machine_mib(&self) -> u64 {
        let total: u64 = self.domains.iter().map(|d| d.memory_mib).sum();
        linux::MACHINE_MIB.max(total + linux::MACHINE_HEADROOM_MIB)
    }

    /// The boot modules, domain by domain: `<name>` (the kernel ELF), then
    /// `<name>.initrd`, `<name>.cmdline` where given, and `<name>.mem`.
    pub fn modules(&self, mut read: impl FnMut(Input) -> Result<Vec<u8>>) -> Result<Vec<Module>> {
        let mut out = Vec::new();
        for d in &self.domains {
            let kernel = match &d.kernel {
                Kernel::Kit => read(Input::KitKernel)?,
                Kernel::TestGuest => read(Input::TestGuest)?,
                Kernel::File(path) => read(Input::KernelFile(path))?,
            };
            out.push(Module {
                name: d.name.clone(),
                data: kernel,
            });
            if let Some(ramdisk) = &d.ramdisk {
                let data = match ramdisk {
                    Ramdisk::Kit => read(Input::KitRamdisk)?,
                    Ramdisk::File(path) => read(Input::RamdiskFile(path))?,
                };
                out.push(Module {
                    name: format!("{}.initrd", d.name),
                    data,
                });
            }
            if let Some(cmdline) = &d.cmdline {
                out.push(Module {
                    name: format!("{}.cmdline", d.name),
                    data: cmdline.clone().into_bytes(),
                });
            }
            out.push(Module {
                name: format!("{}.mem", d.name),
                data: format!("{}M", d.memory_mib).into_bytes(),
            });
            if let Some(max) = d.maxmem_mib {
                out.push(Module {
                    name: format!("{}.maxmem", d.name),
                    data: format!("{max}M").into_bytes(),
                });
            }
        }
        Ok(out)
    }

    /// [`Config::modules`] from the real sources: the guest kit (fetched
    /// only if a domain uses it), the test guest (built only if used), files.
    pub fn load_modules(&self) -> Result<Vec<Module>> {
        let mut kit: Option<kit::Kit> = None;
        let mut test_guest: Option<Vec<u8>> = None;
        let read =
            |path: &Path| fs::read(path).with_context(|| format!("reading {}", path.display()));
        self.modules(|input| match input {
            Input::KitKernel | Input::KitRamdisk => {
                if kit.is_none() {
                    kit = Some(kit::ensure()?);
                }
                let kit = kit.as_ref().expect("just fetched");
                read(if input == Input::KitKernel {
                    &kit.vmlinux
                } else {
                    &kit.initramfs
                })
            }
            Input::TestGuest => {
                if test_guest.is_none() {
                    test_guest = Some(read(&build::test_guest()?)?);
                }
                Ok(test_guest.clone().expect("just built"))
            }
            Input::KernelFile(path) => bzimage::vmlinux_from_file(read(path)?)
                .with_context(|| format!("kernel {}", path.display())),
            Input::RamdiskFile(path) => read(path),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::check_name;

    fn parse_ok(text: &str) -> Config {
        parse(text, Path::new("/cfg")).unwrap()
    }

    fn parse_err(text: &str) -> String {
        format!("{:#}", parse(text, Path::new("/cfg")).unwrap_err())
    }

    const TWO: &str = r#"
        [[domain]]
        name = "web"
        memory = 192
        vcpus = 1
        kernel = "kit"
        ramdisk = "kit"
        cmdline = "console=hvc0 earlyprintk=xen"
        disks = []
        nics = []

        [[domain]]
        name = "db-2"
        memory = 128
        kernel = "images/vmlinuz"
        ramdisk = "/abs/initrd.img"
    "#;

    #[test]
    fn parses_domains_in_order() {
        let cfg = parse_ok(TWO);
        assert_eq!(
            cfg.domains,
            [
                Domain {
                    name: "web".into(),
                    memory_mib: 192,
                    maxmem_mib: None,
                    kernel: Kernel::Kit,
                    ramdisk: Some(Ramdisk::Kit),
                    cmdline: Some("console=hvc0 earlyprintk=xen".into()),
                    disks: Vec::new(),
                    nics: Vec::new(),
                },
                Domain {
                    name: "db-2".into(),
                    memory_mib: 128,
                    maxmem_mib: None,
                    kernel: Kernel::File("/cfg/images/vmlinuz".into()),
                    ramdisk: Some(Ramdisk::File("/abs/initrd.img".into())),
                    cmdline: None,
                    disks: Vec::new(),
                    nics: Vec::new(),
                },
            ]
        );
    }

    #[test]
    fn defaults_and_the_test_guest() {
        let cfg = parse_ok("[[domain]]\nname = \"t\"\nkernel = \"test-guest\"\n");
        let d = &cfg.domains[0];
        assert_eq!(d.memory_mib, DEFAULT_MEMORY_MIB);
        assert_eq!(d.kernel, Kernel::TestGuest);
        assert_eq!((d.ramdisk.as_ref(), d.cmdline.as_ref()), (None, None));
        // The test guest needs far less than Linux.
        let small = parse_ok("[[domain]]\nname = \"t\"\nkernel = \"test-guest\"\nmemory = 8\n");
        assert_eq!(small.domains[0].memory_mib, 8);
    }

    #[test]
    fn rejects_what_it_cannot_run() {
        let one = |extra: &str| format!("[[domain]]\nname = \"a\"\nkernel = \"kit\"\n{extra}\n");
        let cases = [
            ("", "no domains"),
            ("[[domain]]\nkernel = \"kit\"", "missing `name`"),
            ("[[domain]]\nname = \"a\"", "missing `kernel`"),
            (&one("color = 1"), "unknown field `color`"),
            (
                "[[domain]]\nname = \"a\"\nkernel = \"kit\"\n[extra]",
                "unknown field `extra`",
            ),
            ("[[domain]]\nname = \"Web\"\nkernel = \"kit\"", "[a-z0-9-]"),
            ("[[domain]]\nname = \"a.b\"\nkernel = \"kit\"", "[a-z0-9-]"),
            ("[[domain]]\nname = \"\"\nkernel = \"kit\"", "[a-z0-9-]"),
            (&one("memory = 0"), "`memory` is 0"),
            (&one("memory = 32"), "too little for Linux"),
            (
                &one("memory = 4096"),
                "more than the emulated machine holds",
            ),
            (&one("memory = -1"), "memory"),
            (&one("memory = \"256M\""), "memory"),
            (&one("vcpus = 2"), "only 1 vCPU"),
            (&one("disks = [\"a.img:xvda:rx\"]"), "neither rw nor ro"),
            (&one("disks = [\"a.img:sda:rw\"]"), "not a Xen disk name"),
            (&one("disks = [\"a.img\"]"), "expected"),
            (
                &one("disks = [\"a.img:xvda:rw\", \"b.img:xvda:ro\"]"),
                "given twice",
            ),
            (
                &one("nics = [\"bridge=br0\"]"),
                "unknown option \"bridge=br0\"",
            ),
            (&one("nics = [\"mac\"]"), "unknown option \"mac\""),
            (&one("nics = [\"mac=00:16:3e:01:02\"]"), "six hex pairs"),
            (
                &one("nics = [\"mac=00:16:3e:01:02:03:04\"]"),
                "six hex pairs",
            ),
            (&one("nics = [\"mac=00:16:3e:01:02:3\"]"), "six hex pairs"),
            (&one("nics = [\"mac=00-16-3e-01-02-03\"]"), "six hex pairs"),
            (&one("nics = [\"mac=00:16:3g:01:02:03\"]"), "six hex pairs"),
            (&one("nics = [\"mac=01:16:3e:01:02:03\"]"), "multicast"),
            (&one("nics = [\"mac=ff:ff:ff:ff:ff:ff\"]"), "multicast"),
            (&one("nics = [\"mac=00:00:00:00:00:00\"]"), "all zero"),
            (
                &one("nics = [\"mac=00:16:3e:01:02:03,mac=00:16:3e:01:02:04\"]"),
                "mac is given twice",
            ),
            (&one("nics = [\"\", \"\", \"\", \"\", \"\"]"), "at most 4"),
            (&one("nics = [1]"), "invalid type"),
            (&one("ramdisk = \"\""), "`ramdisk` is empty"),
            (
                "[[domain]]\nname = \"a\"\nkernel = \"\"",
                "`kernel` is empty",
            ),
            ("domain = 3", "invalid type"),
            ("[[domain]\n", "TOML parse error"),
        ];
        for (text, want) in cases {
            let err = parse_err(text);
            assert!(err.contains(want), "{text:?}: {err:?} lacks {want:?}");
        }
        let dup = format!("{}{}", one(""), one(""));
        let err = parse_err(&dup);
        assert!(err.contains("already used"), "{err}");
        assert!(err.contains("domain 2"), "{err}");
        // Each domain fits, together they do not.
        let big =
            |n: &str| format!("[[domain]]\nname = \"{n}\"\nkernel = \"kit\"\nmemory = 1200\n");
        let err = parse_err(&format!("{}{}", big("a"), big("b")));
        assert!(err.contains("adds up to 2400 MiB"), "{err}");
        parse_ok(&big("a"));
    }

    #[test]
    fn translates_to_modules_cmdline_and_machine_ram() {
        let cfg = parse_ok(TWO);
        assert_eq!(cfg.hv_cmdline(""), "guest=web guest=db-2");
        assert_eq!(cfg.hv_cmdline(" mem=2G "), "mem=2G guest=web guest=db-2");
        assert_eq!(cfg.machine_mib(), 192 + 128 + 768);
        let mut asked = Vec::new();
        let mods = cfg
            .modules(|input| {
                asked.push(format!("{input:?}"));
                Ok(match input {
                    Input::KitKernel => b"kit-elf".to_vec(),
                    Input::KitRamdisk => b"kit-cpio".to_vec(),
                    Input::TestGuest => b"test-elf".to_vec(),
                    Input::KernelFile(p) | Input::RamdiskFile(p) => {
                        p.display().to_string().into_bytes()
                    }
                })
            })
            .unwrap();
        let got: Vec<(&str, &[u8])> = mods
            .iter()
            .map(|m| (m.name.as_str(), m.data.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                ("web", &b"kit-elf"[..]),
                ("web.initrd", b"kit-cpio"),
                ("web.cmdline", b"console=hvc0 earlyprintk=xen"),
                ("web.mem", b"192M"),
                ("db-2", b"/cfg/images/vmlinuz"),
                ("db-2.initrd", b"/abs/initrd.img"),
                ("db-2.mem", b"128M"),
            ]
        );
        for m in &mods {
            check_name(&m.name).unwrap();
        }
        assert_eq!(asked.len(), 4);
    }

    #[test]
    fn disks_go_to_virtio_on_qemu_and_ram_disks_elsewhere() {
        let cfg = parse_ok(
            "[[domain]]\nname = \"a\"\nkernel = \"kit\"\ndisks = [\"x.img:xvda:rw\", \"/d/y:z.img:xvdb:ro\"]\n\
             [[domain]]\nname = \"b\"\nkernel = \"kit\"\ndisks = [\"w.img:xvda:rw\"]\n",
        );
        assert_eq!(
            cfg.domains[0].disks[1],
            DiskSpec {
                path: "/d/y:z.img".into(),
                vdev: "xvdb".into(),
                read_only: true
            }
        );
        let q = cfg.disk_plan(true);
        assert_eq!(
            q.drives,
            [
                PathBuf::from("/cfg/x.img"),
                "/d/y:z.img".into(),
                "/cfg/w.img".into()
            ]
        );
        assert_eq!(
            q.vbd_words,
            [
                "vbd=a:xvda:rw:virtio:0",
                "vbd=a:xvdb:ro:virtio:1",
                "vbd=b:xvda:rw:virtio:2"
            ]
        );
        let b = cfg.disk_plan(false);
        assert!(b.drives.is_empty());
        assert_eq!(b.hv_words[2], "ramdisk=b.xvda.img");
        assert_eq!(b.vbd_words[1], "vbd=a:xvdb:ro:ramdisk:a.xvdb.img");
        for (name, _) in &b.ramdisks {
            check_name(name).unwrap();
        }
    }

    #[test]
    fn nics_become_vif_words_in_order() {
        let cfg = parse_ok(
            "[[domain]]\nname = \"a\"\nkernel = \"kit\"\nnics = [\"\", \"mac=02:AB:cd:00:00:01\", \",mac=00:16:3e:00:00:01,\"]\n\
             [[domain]]\nname = \"b\"\nkernel = \"kit\"\n\
             [[domain]]\nname = \"c\"\nkernel = \"test-guest\"\nmemory = 8\nnics = [\"\", \"\", \"\", \"\"]\n",
        );
        assert_eq!(
            cfg.domains[0].nics[1],
            NicSpec {
                mac: Some([2, 0xab, 0xcd, 0, 0, 1])
            }
        );
        assert_eq!(cfg.domains[1].nics, []);
        assert_eq!(
            cfg.vif_words(),
            [
                "vif=a",
                "vif=a:02:ab:cd:00:00:01",
                "vif=a:00:16:3e:00:00:01",
                "vif=c",
                "vif=c",
                "vif=c",
                "vif=c"
            ]
        );
        // Disks are planned apart from NICs.
        assert_eq!(cfg.disk_plan(true), DiskPlan::default());
        let twice =
            "[[domain]]\nname = \"a\"\nkernel = \"kit\"\nnics = [\"mac=02:00:00:00:00:01\"]\n\
             [[domain]]\nname = \"b\"\nkernel = \"kit\"\nnics = [\"mac=02:00:00:00:00:01\"]\n";
        let err = parse_err(twice);
        assert!(
            err.contains("02:00:00:00:00:01 is given to two NICs"),
            "{err}"
        );
    }

    #[test]
    fn kit_domains_get_generated_macs() {
        let d = kit_domain("linux1", 192, "console=hvc0".into(), 2);
        assert_eq!(
            (d.kernel.clone(), d.ramdisk.clone()),
            (Kernel::Kit, Some(Ramdisk::Kit))
        );
        let cfg = Config { domains: vec![d] };
        assert_eq!(cfg.vif_words(), ["vif=linux1", "vif=linux1"]);
        assert_eq!(cfg.machine_mib(), 192 + 768);
    }

    #[test]
    fn a_small_config_still_gets_the_usual_machine() {
        let cfg = parse_ok("[[domain]]\nname = \"t\"\nkernel = \"test-guest\"\nmemory = 8\n");
        assert_eq!(cfg.machine_mib(), linux::MACHINE_MIB.max(8 + 768));
        assert_eq!(cfg.hv_cmdline(""), "guest=t");
    }

    #[test]
    fn checked_in_configs_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let default = load(&dir.join("default.toml")).unwrap();
        assert_eq!(
            default.domains,
            [Domain {
                name: "linux".into(),
                memory_mib: 256,
                maxmem_mib: None,
                kernel: Kernel::Kit,
                ramdisk: Some(Ramdisk::Kit),
                cmdline: Some(linux::DEFAULT_CMDLINE.into()),
                disks: Vec::new(),
                nics: Vec::new(),
            }]
        );
        assert_eq!(
            default.machine_mib(),
            linux::machine_mib(Some(linux::GuestMem::DEFAULT))
        );
        let two = load(&dir.join("two-linux.toml")).unwrap();
        assert_eq!(two.hv_cmdline(""), "guest=linux1 guest=linux2");
        assert_eq!(two.machine_mib(), 2 * 192 + 768);
        let net = load(&dir.join("two-linux-net.toml")).unwrap();
        assert_eq!(
            net.vif_words(),
            ["vif=linux1:00:16:3e:00:00:01", "vif=linux2"]
        );
        for d in &net.domains {
            assert!(d
                .cmdline
                .as_deref()
                .unwrap()
                .contains(" xenolith.ip=10.0.0."));
            assert!(!d.cmdline.as_deref().unwrap().contains("xenolith.test"));
        }
        let test = load(&dir.join("two-linux-test.toml")).unwrap();
        assert_eq!(test.domains.len(), 2);
        for d in &test.domains {
            assert_eq!(d.cmdline.as_deref(), Some("console=hvc0 xenolith.test=1"));
        }
    }
}
