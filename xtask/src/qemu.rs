//! QEMU command lines for the PVH and GRUB boot paths.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Result};

use crate::session::{Com1, Paths};
use crate::Accel;

/// How QEMU starts the image.
pub enum Boot {
    /// `-kernel` through the Xen PVH ELF note, modules as a cpio `-initrd`.
    Pvh {
        kernel: PathBuf,
        initrd: PathBuf,
        cmdline: String,
    },
    /// GRUB from a boot ISO.
    Iso(PathBuf),
}

/// QEMU separates chardev options with commas, so a comma in a path is doubled.
fn escape(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// A raw disk image QEMU attaches as a virtio-blk device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drive {
    pub path: PathBuf,
    /// The device's `max-discard-sectors`, below QEMU's 4194303 when a test
    /// wants blkback to cut discards into pieces.
    pub max_discard_sectors: Option<u32>,
}

impl From<PathBuf> for Drive {
    fn from(path: PathBuf) -> Drive {
        Drive {
            path,
            max_discard_sectors: None,
        }
    }
}

/// The full QEMU argument list, for a machine with `mem_mib` MiB of RAM
/// and `drives` attached as virtio block devices (raw images).
pub fn args(
    boot: &Boot,
    accel: Accel,
    mem_mib: u64,
    com1: &Com1,
    paths: &Paths,
    drives: &[Drive],
) -> Result<Vec<OsString>> {
    let cpu = match accel {
        Accel::Tcg => "EPYC",
        Accel::Kvm => "host",
    };
    let accel = match accel {
        Accel::Tcg => "tcg",
        Accel::Kvm => "kvm",
    };
    let mem = format!("{mem_mib}M");
    let mut out: Vec<String> = [
        "-machine",
        "pc",
        "-cpu",
        cpu,
        "-accel",
        accel,
        "-m",
        &mem,
        "-smp",
        "1",
        "-display",
        "none",
        "-no-reboot",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let com1 = match com1 {
        // The terminal stays attached to COM1 for interactive use; QEMU keeps a copy.
        Com1::Terminal => format!("stdio,id=com1,logfile={}", escape(&paths.com1_log)),
        Com1::Fifo { .. } => format!("file,id=com1,path={}", escape(&paths.com1_fifo)),
        Com1::Socket { .. } => bail!("QEMU runs COM1 on the terminal or a FIFO, not a socket"),
        Com1::Scripted(_) => format!("pipe,id=com1,path={}", escape(&paths.com1_pipe)),
    };
    let com2 = format!("file,id=com2,path={}", escape(&paths.com2_fifo));
    for chardev in [com1, com2] {
        out.push("-chardev".into());
        out.push(chardev);
    }
    out.extend(["-serial", "chardev:com1", "-serial", "chardev:com2"].map(String::from));
    for (i, drive) in drives.iter().enumerate() {
        // A transitional virtio-blk-pci (1af4:1001): the driver domain uses
        // its legacy interface in I/O BAR 0. `discard=unmap`: a guest's
        // discards punch holes in the file (QEMU's default ignores them).
        out.push("-drive".into());
        out.push(format!(
            "file={},if=none,id=disk{i},format=raw,discard=unmap",
            escape(&drive.path)
        ));
        out.push("-device".into());
        out.push(match drive.max_discard_sectors {
            None => format!("virtio-blk-pci,drive=disk{i}"),
            Some(n) => format!("virtio-blk-pci,drive=disk{i},max-discard-sectors={n}"),
        });
    }
    let mut out: Vec<OsString> = out.into_iter().map(OsString::from).collect();
    match boot {
        Boot::Pvh {
            kernel,
            initrd,
            cmdline,
        } => {
            out.push("-kernel".into());
            out.push(kernel.into());
            out.push("-initrd".into());
            out.push(initrd.into());
            if !cmdline.is_empty() {
                out.push("-append".into());
                out.push(cmdline.into());
            }
        }
        Boot::Iso(iso) => {
            out.push("-cdrom".into());
            out.push(iso.into());
            out.push("-boot".into());
            out.push("d".into());
        }
    }
    Ok(out)
}

/// A ready-to-spawn QEMU; its own chatter (e.g. TCG feature warnings) goes to `qemu.out`.
pub fn command(
    boot: &Boot,
    accel: Accel,
    mem_mib: u64,
    com1: &Com1,
    paths: &Paths,
    dir: &Path,
    drives: &[Drive],
) -> Result<Command> {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(args(boot, accel, mem_mib, com1, paths, drives)?);
    let chatter = fs::File::create(dir.join("qemu.out"))?;
    match com1 {
        Com1::Terminal => {
            cmd.stdin(Stdio::inherit()).stdout(Stdio::inherit());
        }
        Com1::Fifo { .. } | Com1::Socket { .. } | Com1::Scripted(_) => {
            cmd.stdin(Stdio::null()).stdout(chatter.try_clone()?);
        }
    }
    cmd.stderr(chatter);
    Ok(cmd)
}

/// KVM runs the hypervisor's own VMX/SVM code only with nested virtualization.
pub fn check_kvm() -> Result<()> {
    if !Path::new("/dev/kvm").exists() {
        bail!("--accel kvm needs /dev/kvm, which this machine does not have; use --accel tcg");
    }
    let nested = [
        "/sys/module/kvm_intel/parameters/nested",
        "/sys/module/kvm_amd/parameters/nested",
    ]
    .iter()
    .filter_map(|p| fs::read_to_string(p).ok())
    .any(|v| matches!(v.trim(), "Y" | "y" | "1"));
    if !nested {
        bail!(
            "--accel kvm needs nested virtualization, but neither \
             /sys/module/kvm_intel/parameters/nested nor \
             /sys/module/kvm_amd/parameters/nested says it is on \
             (load kvm_intel or kvm_amd with nested=1, or use --accel tcg)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    fn after<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn pvh_tcg() {
        let paths = Paths::in_dir(Path::new("/run,dir"));
        let boot = Boot::Pvh {
            kernel: "/k".into(),
            initrd: "/i.cpio".into(),
            cmdline: "mem=4M".into(),
        };
        let args = strings(
            args(
                &boot,
                Accel::Tcg,
                512,
                &Com1::Fifo { echo: false },
                &paths,
                &[],
            )
            .unwrap(),
        );
        assert_eq!(after(&args, "-cpu"), ["EPYC"]);
        assert_eq!(after(&args, "-accel"), ["tcg"]);
        assert_eq!(after(&args, "-m"), ["512M"]);
        assert_eq!(after(&args, "-kernel"), ["/k"]);
        assert_eq!(after(&args, "-initrd"), ["/i.cpio"]);
        assert_eq!(after(&args, "-append"), ["mem=4M"]);
        assert_eq!(
            after(&args, "-chardev"),
            [
                "file,id=com1,path=/run,,dir/com1.fifo",
                "file,id=com2,path=/run,,dir/com2.fifo"
            ]
        );
        assert_eq!(after(&args, "-serial"), ["chardev:com1", "chardev:com2"]);
        assert!(args.contains(&"-no-reboot".to_string()));
        assert_eq!(
            after(&args, "-device"),
            ["isa-debug-exit,iobase=0xf4,iosize=0x04"]
        );
    }

    #[test]
    fn grub_kvm_terminal() {
        let paths = Paths::in_dir(Path::new("/d"));
        let boot = Boot::Iso("/d/x.iso".into());
        let args = strings(args(&boot, Accel::Kvm, 1024, &Com1::Terminal, &paths, &[]).unwrap());
        assert_eq!(after(&args, "-cpu"), ["host"]);
        assert_eq!(after(&args, "-accel"), ["kvm"]);
        assert_eq!(after(&args, "-m"), ["1024M"]);
        assert_eq!(after(&args, "-cdrom"), ["/d/x.iso"]);
        assert_eq!(after(&args, "-boot"), ["d"]);
        assert_eq!(
            after(&args, "-chardev")[0],
            "stdio,id=com1,logfile=/d/com1.log"
        );
        assert!(after(&args, "-append").is_empty());
        assert!(after(&args, "-kernel").is_empty());
        let socket = Com1::Socket { port: 1 };
        assert!(super::args(&boot, Accel::Tcg, 64, &socket, &paths, &[]).is_err());
    }
}
