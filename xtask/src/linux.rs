//! How the hypervisor takes a Linux guest: module names, command lines and memory sizes.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context, Result};

use crate::modules::Module;

/// The vmlinux ELF (with the Xen PVH note).
pub const KERNEL_MODULE: &str = "linux";
/// The initramfs, handed to the guest as its initrd.
pub const INITRD_MODULE: &str = "linux.initrd";
/// The guest's kernel command line: the module's bytes, no trailing newline.
pub const CMDLINE_MODULE: &str = "linux.cmdline";

/// The guest command line unless `--guest-cmdline` says otherwise.
pub const DEFAULT_CMDLINE: &str = "console=hvc0 earlyprintk=xen";

/// The emulated machine's RAM when no Linux guest runs (the hypervisor alone
/// needs far less; this is what every other boot has always used).
pub const MACHINE_MIB: u64 = 512;
/// What the machine needs besides the guest's RAM: the hypervisor image and
/// heap, the modules (vmlinux is ~64 MiB, and the PVH path holds them twice,
/// once in the cpio initrd and once as the loaded module), page tables, and
/// the firmware's share below 1 MiB.
pub const MACHINE_HEADROOM_MIB: u64 = 768;

/// The guest's RAM, a whole number of MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestMem {
    mib: u64,
}

impl GuestMem {
    pub const DEFAULT: GuestMem = GuestMem { mib: 256 };

    pub fn mib(self) -> u64 {
        self.mib
    }
}

impl FromStr for GuestMem {
    type Err = anyhow::Error;

    /// Accepts what the hypervisor's own `mem=` parser does: a number with
    /// an optional K, M or G suffix (bytes without one).
    fn from_str(text: &str) -> Result<GuestMem> {
        let (digits, unit) = match text.as_bytes().last() {
            Some(b'k' | b'K') => (&text[..text.len() - 1], 1u64 << 10),
            Some(b'm' | b'M') => (&text[..text.len() - 1], 1 << 20),
            Some(b'g' | b'G') => (&text[..text.len() - 1], 1 << 30),
            _ => (text, 1),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            bail!("guest memory {text:?} is not a size like 256M or 1G");
        }
        let bytes = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit))
            .with_context(|| format!("guest memory {text:?} is too large"))?;
        if bytes == 0 || !bytes.is_multiple_of(1 << 20) {
            bail!("guest memory {text:?} must be a positive whole number of MiB");
        }
        // Linux needs room for itself and its initramfs; less cannot boot.
        if bytes < 64 << 20 {
            bail!("guest memory {text:?} is below 64M, too little for Linux");
        }
        Ok(GuestMem { mib: bytes >> 20 })
    }
}

/// As the hypervisor command line carries it: `256M`, `1G`.
impl fmt::Display for GuestMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mib.is_multiple_of(1024) {
            write!(f, "{}G", self.mib / 1024)
        } else {
            write!(f, "{}M", self.mib)
        }
    }
}

/// The emulated machine's RAM in MiB (QEMU `-m`, Bochs `megs`) for a boot
/// that runs a Linux guest of `mem`, or none.
pub fn machine_mib(mem: Option<GuestMem>) -> u64 {
    match mem {
        None => MACHINE_MIB,
        Some(mem) => MACHINE_MIB.max(mem.mib + MACHINE_HEADROOM_MIB),
    }
}

/// The hypervisor command line: whatever else was asked for, then the guest.
pub fn hv_cmdline(extra: &str, mem: GuestMem) -> String {
    format!("{extra} guest={KERNEL_MODULE} guest_mem={mem}")
        .trim()
        .to_string()
}

/// A Linux guest ready to hand over.
pub struct LinuxGuest {
    /// The vmlinux ELF.
    pub vmlinux: Vec<u8>,
    pub initrd: Vec<u8>,
    pub cmdline: String,
}

impl LinuxGuest {
    /// The three boot modules, in the order the hypervisor lists them.
    pub fn modules(self) -> Vec<Module> {
        vec![
            Module {
                name: KERNEL_MODULE.into(),
                data: self.vmlinux,
            },
            Module {
                name: INITRD_MODULE.into(),
                data: self.initrd,
            },
            Module {
                name: CMDLINE_MODULE.into(),
                data: self.cmdline.into_bytes(),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::check_name;

    fn mem(text: &str) -> GuestMem {
        text.parse().unwrap()
    }

    #[test]
    fn sizes_parse_and_print_like_the_hypervisor_reads_them() {
        assert_eq!(mem("256M").mib(), 256);
        assert_eq!(mem("256m").to_string(), "256M");
        assert_eq!(mem("1G").mib(), 1024);
        assert_eq!(mem("1024M").to_string(), "1G");
        assert_eq!(mem("1536M").to_string(), "1536M");
        assert_eq!(mem("131072K").to_string(), "128M");
        assert_eq!(mem("268435456").to_string(), "256M");
        assert_eq!(GuestMem::DEFAULT.to_string(), "256M");
        for bad in [
            "",
            "M",
            "12x",
            "-1M",
            "1.5G",
            "1000K",
            "0M",
            "32M",
            "99999999999999G",
        ] {
            assert!(bad.parse::<GuestMem>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_machine_grows_with_the_guest() {
        assert_eq!(machine_mib(None), 512);
        assert_eq!(machine_mib(Some(mem("256M"))), 1024);
        assert_eq!(machine_mib(Some(mem("1G"))), 1792);
        assert!(machine_mib(Some(mem("64M"))) >= 64 + 256);
    }

    #[test]
    fn command_line_and_modules() {
        assert_eq!(
            hv_cmdline("", GuestMem::DEFAULT),
            "guest=linux guest_mem=256M"
        );
        assert_eq!(
            hv_cmdline("mem=2G", mem("512M")),
            "mem=2G guest=linux guest_mem=512M"
        );
        let guest = LinuxGuest {
            vmlinux: b"elf".to_vec(),
            initrd: b"cpio".to_vec(),
            cmdline: "console=hvc0".into(),
        };
        let mods = guest.modules();
        let names: Vec<&str> = mods.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["linux", "linux.initrd", "linux.cmdline"]);
        assert_eq!(mods[2].data, b"console=hvc0");
        for name in names {
            check_name(name).unwrap();
        }
    }
}
