//! Installs what the tasks need (emulators, GRUB tools, the Rust target) or says how to.

use std::env;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};

use crate::build::IMAGE_TARGET;

/// The Debian packages that provide every external tool xtask uses; installed
/// together so one `apt-get` covers any later task too.
const APT_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "bochs",
    "bochsbios",
    "vgabios",
    "grub-pc-bin",
    "grub-common",
    "xorriso",
    "mtools",
    "e2fsprogs",
];

/// Firmware files Bochs loads (paths from the Debian packages).
pub const BOCHS_BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";
pub const BOCHS_VGABIOS: &str = "/usr/share/vgabios/vgabios.bin";

/// GRUB's BIOS platform files, without which grub-mkrescue makes an unbootable ISO.
const GRUB_I386_PC: &str = "/usr/lib/grub/i386-pc";

/// Something a task needs from the host.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Need {
    Qemu,
    Bochs,
    Grub,
    /// mkfs.ext4, debugfs and e2fsck, for the disk tests' images.
    E2fsprogs,
}

/// What must exist on the host for `need`: programs on PATH and plain files.
fn requirements(need: Need) -> (&'static [&'static str], &'static [&'static str]) {
    match need {
        Need::Qemu => (&["qemu-system-x86_64"], &[]),
        Need::Bochs => (&["bochs"], &[BOCHS_BIOS, BOCHS_VGABIOS]),
        Need::Grub => (&["grub-mkrescue", "xorriso", "mformat"], &[GRUB_I386_PC]),
        Need::E2fsprogs => (&["mkfs.ext4", "debugfs", "e2fsck"], &[]),
    }
}

/// Whether a program is an executable file somewhere on PATH.
pub fn on_path(program: &str) -> bool {
    let Some(path) = env::var_os("PATH") else {
        return false;
    };
    env::split_paths(&path).any(|dir| {
        let candidate = dir.join(program);
        candidate.is_file() && is_executable(&candidate)
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn missing(needs: &[Need]) -> Vec<&'static str> {
    let mut out = Vec::new();
    for &need in needs {
        let (programs, files) = requirements(need);
        out.extend(programs.iter().copied().filter(|p| !on_path(p)));
        out.extend(files.iter().copied().filter(|f| !Path::new(f).exists()));
    }
    out
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `apt-get update` is slow and only needed once per process.
static APT_UPDATED: AtomicBool = AtomicBool::new(false);

/// Makes sure the host tools for `needs` are present, installing the Debian
/// packages when running as root.
pub fn ensure(needs: &[Need]) -> Result<()> {
    let absent = missing(needs);
    if absent.is_empty() {
        return Ok(());
    }
    let install = format!("apt-get install -y {}", APT_PACKAGES.join(" "));
    if !is_root() {
        bail!(
            "missing {}; install them with:\n  sudo apt-get update && sudo {install}",
            absent.join(", ")
        );
    }
    eprintln!(
        "xtask: missing {}; installing Debian packages: {}",
        absent.join(", "),
        APT_PACKAGES.join(" ")
    );
    apt_update_once()?;
    let mut args = vec!["install", "-y"];
    args.extend_from_slice(APT_PACKAGES);
    run_apt(&args)?;
    let still = missing(needs);
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(", "));
    }
    Ok(())
}

/// Runs `apt-get update` unless this process already did.
pub fn apt_update_once() -> Result<()> {
    if !APT_UPDATED.swap(true, Ordering::SeqCst) {
        run_apt(&["update"])?;
    }
    Ok(())
}

fn run_apt(args: &[&str]) -> Result<()> {
    eprintln!("xtask: running apt-get {}", args.join(" "));
    let status = Command::new("apt-get")
        .args(args)
        // Never stop to ask questions: CI has no standard input.
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Makes sure rustup has the bare-metal target the image is built for.
pub fn ensure_rust_target() -> Result<()> {
    ensure_rustup_list(&["target"], IMAGE_TARGET)
}

/// Makes sure rustfmt and clippy are installed for the workspace checks.
pub fn ensure_rust_components() -> Result<()> {
    ensure_rustup_list(&["component"], "rustfmt")?;
    ensure_rustup_list(&["component"], "clippy")
}

/// Runs `rustup <kind> list --installed` and adds `item` when it is not listed.
fn ensure_rustup_list(kind: &[&str], item: &str) -> Result<()> {
    let out = Command::new("rustup")
        .args(kind)
        .args(["list", "--installed"])
        .output()
        .context("running rustup (is rustup installed?)")?;
    if !out.status.success() {
        bail!(
            "rustup {} list failed: {}",
            kind.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // Components are listed with a host suffix, e.g. "clippy-x86_64-unknown-linux-gnu".
    let listed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|line| line == item || line.starts_with(&format!("{item}-")));
    if listed {
        return Ok(());
    }
    eprintln!("xtask: running rustup {} add {item}", kind.join(" "));
    let status = Command::new("rustup")
        .args(kind)
        .args(["add", item])
        .status()
        .context("running rustup")?;
    if !status.success() {
        bail!("rustup {} add {item} failed ({status})", kind.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_is_on_path() {
        assert!(on_path("sh"));
        assert!(!on_path("surely-no-such-program-xtask"));
    }

    #[test]
    fn every_need_names_something() {
        for need in [Need::Qemu, Need::Bochs, Need::Grub] {
            let (programs, _) = requirements(need);
            assert!(!programs.is_empty());
        }
    }
}
