//! GRUB multiboot2 boot ISOs: grub.cfg, the staging tree, and grub-mkrescue.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::modules::{self, Module};
use crate::setup::{self, Need};
use crate::{build, IsoArgs};

/// Quotes a word for grub.cfg: single quotes keep everything literal, and a
/// quote itself is closed, escaped, and reopened as in a POSIX shell.
fn grub_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// The GRUB configuration: boot at once, mirror GRUB's console on COM1, load
/// the image with multiboot2 and each module with its name as command line.
pub fn grub_cfg(modules: &[Module], cmdline: &str) -> String {
    let mut kernel_line = String::from("    multiboot2 /boot/xenolith");
    for word in cmdline.split_whitespace() {
        kernel_line.push(' ');
        kernel_line.push_str(&grub_quote(word));
    }
    let mut cfg = String::from(
        "\
set timeout=0
set default=0
set fallback=1
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
menuentry \"Xenolith\" {
",
    );
    cfg.push_str(&kernel_line);
    cfg.push('\n');
    for m in modules {
        // --nounzip: hand over the bytes as they are, even if they look compressed.
        cfg.push_str(&format!(
            "    module2 --nounzip /boot/modules/{0} {0}\n",
            m.name
        ));
    }
    cfg.push_str("    boot\n}\n");
    // If GRUB cannot boot the image it would sit in its menu until a timeout;
    // instead it says so on COM1 and powers the machine off.
    cfg.push_str(
        "\
menuentry \"GRUB could not boot Xenolith\" {
    echo \"xtask: GRUB could not boot the image\"
    halt
}
",
    );
    cfg
}

/// Builds `<dir>/xenolith.iso` holding `image`, `modules` and a grub.cfg.
pub fn make(dir: &Path, image: &Path, modules: &[Module], cmdline: &str) -> Result<PathBuf> {
    setup::ensure(&[Need::Grub])?;
    for m in modules {
        modules::check_name(&m.name)?;
    }
    let root = dir.join("iso-root");
    let boot = root.join("boot");
    fs::create_dir_all(boot.join("grub"))?;
    fs::create_dir_all(boot.join("modules"))?;
    fs::copy(image, boot.join("xenolith"))
        .with_context(|| format!("copying {}", image.display()))?;
    for m in modules {
        fs::write(boot.join("modules").join(&m.name), &m.data)?;
    }
    fs::write(boot.join("grub/grub.cfg"), grub_cfg(modules, cmdline))?;
    let iso = dir.join("xenolith.iso");
    let out = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&iso)
        .arg(&root)
        .output()
        .context("running grub-mkrescue")?;
    if !out.status.success() {
        bail!(
            "grub-mkrescue failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(iso)
}

/// `cargo xtask iso`.
pub fn command(args: &IsoArgs) -> Result<PathBuf> {
    let image = build::image(&args.image)?;
    let modules = modules::load(&args.modules)?;
    let dir = build::run_dir("iso")?;
    make(&dir, &image, &modules, &args.cmdline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cfg_lists_kernel_and_modules() {
        let modules = modules::test_set();
        let cfg = grub_cfg(&modules, "mem=4M  x='y'");
        let lines: Vec<&str> = cfg.lines().collect();
        assert!(lines.contains(&"set timeout=0"));
        assert!(lines.contains(&"    multiboot2 /boot/xenolith 'mem=4M' 'x='\\''y'\\'''"));
        assert!(lines.contains(&"    module2 --nounzip /boot/modules/alpha.bin alpha.bin"));
        assert!(lines.contains(&"    module2 --nounzip /boot/modules/beta.bin beta.bin"));
        assert!(lines.contains(&"set fallback=1"));
        assert!(lines.contains(&"    halt"));
        assert_eq!(lines.last(), Some(&"}"));
    }

    #[test]
    fn cfg_without_cmdline() {
        let cfg = grub_cfg(&[], "");
        assert!(cfg.lines().any(|l| l == "    multiboot2 /boot/xenolith"));
        assert!(!cfg.contains("module2"));
    }
}
