//! Assembling a Linux guest from `--kernel`/`--initrd` files, falling back to the guest kit.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::linux::LinuxGuest;
use crate::{bzimage, kit};

/// The guest to boot. The kit is fetched only when a kernel or an initrd
/// file was not given, so runs that bring both never download anything.
pub fn assemble(kernel: Option<&Path>, initrd: Option<&Path>, cmdline: &str) -> Result<LinuxGuest> {
    let kit = match (kernel, initrd) {
        (Some(_), Some(_)) => None,
        _ => Some(kit::ensure()?),
    };
    let read = |path: &Path| fs::read(path).with_context(|| format!("reading {}", path.display()));
    let vmlinux = match (kernel, &kit) {
        (Some(path), _) => bzimage::vmlinux_from_file(read(path)?)
            .with_context(|| format!("kernel {}", path.display()))?,
        (None, Some(kit)) => read(&kit.vmlinux)?,
        (None, None) => unreachable!("the kit is fetched when no kernel is given"),
    };
    let initrd = match (initrd, &kit) {
        (Some(path), _) => read(path)?,
        (None, Some(kit)) => read(&kit.initramfs)?,
        (None, None) => unreachable!("the kit is fetched when no initrd is given"),
    };
    Ok(LinuxGuest {
        vmlinux,
        initrd,
        cmdline: cmdline.to_string(),
    })
}

/// The kit's guest with `cmdline`, for the smoke tests and the benchmark.
pub fn from_kit(cmdline: &str) -> Result<LinuxGuest> {
    assemble(None, None, cmdline)
}
