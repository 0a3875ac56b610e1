//! Cargo invocations: where the workspace and its target directory are, and building the image.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{setup, ImageArgs};

/// The target the hypervisor image is built for.
pub const IMAGE_TARGET: &str = "x86_64-unknown-none";

/// The workspace root: xtask lives one level below it.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// A `cargo` command run in the workspace root, using the cargo that started us
/// (so the same toolchain builds the image).
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(program);
    cmd.current_dir(repo_root());
    cmd
}

/// The workspace's target directory, asked of cargo so CARGO_TARGET_DIR and
/// config overrides are honoured.
pub fn target_dir() -> Result<PathBuf> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing cargo metadata output")?;
    let dir = meta["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    Ok(PathBuf::from(dir))
}

/// A fresh directory for one run's artifacts: `<target>/xtask/<name>/`.
pub fn run_dir(name: &str) -> Result<PathBuf> {
    let dir = target_dir()?.join("xtask").join(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Builds the hypervisor image (or takes the prebuilt one given) and returns its path.
pub fn image(args: &ImageArgs) -> Result<PathBuf> {
    if let Some(path) = &args.image {
        if !path.is_file() {
            bail!("image {} does not exist", path.display());
        }
        return Ok(path.clone());
    }
    setup::ensure_rust_target()?;
    let profile = if args.debug { "debug" } else { "release" };
    eprintln!(
        "xtask: building xenolith ({profile}, log level {})",
        args.log.as_str()
    );
    let mut cmd = cargo();
    cmd.args(["build", "-p", "xenolith", "--bin", "xenolith", "--target"])
        .arg(IMAGE_TARGET)
        .env("DEFMT_LOG", args.log.as_str());
    if !args.debug {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("building the hypervisor image failed ({status})");
    }
    let path = target_dir()?
        .join(IMAGE_TARGET)
        .join(profile)
        .join("xenolith");
    if !path.is_file() {
        bail!("cargo build succeeded but {} is missing", path.display());
    }
    Ok(path)
}

/// The driver domain's module name (`dom0=` on the hypervisor's command line).
pub const DRIVER_DOMAIN_MODULE: &str = "driver-domain";

/// Builds the driver domain (drivers-split's `driver-domain` binary) and returns its ELF.
pub fn driver_domain() -> Result<PathBuf> {
    guest_binary("drivers-split", "driver-domain", "the driver domain")
}

/// Builds bare-metal binary `bin` of `package` (release, for the image
/// target) and returns its path.
fn guest_binary(package: &str, bin: &str, what: &str) -> Result<PathBuf> {
    setup::ensure_rust_target()?;
    eprintln!("xtask: building {what}");
    let status = cargo()
        .args([
            "build",
            "-p",
            package,
            "--bin",
            bin,
            "--release",
            "--target",
        ])
        .arg(IMAGE_TARGET)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building {what} failed ({status})");
    }
    let path = target_dir()?.join(IMAGE_TARGET).join("release").join(bin);
    if !path.is_file() {
        bail!("cargo build succeeded but {} is missing", path.display());
    }
    Ok(path)
}

/// Adds the driver domain as domain 0: its module, and `dom0=` in front of
/// the hypervisor command line.
pub fn add_driver_domain(
    modules: &mut Vec<crate::modules::Module>,
    cmdline: &mut String,
) -> Result<()> {
    modules.push(driver_domain_module()?);
    *cmdline = with_driver_domain(cmdline);
    Ok(())
}

/// `cmdline` with `dom0=` in front.
pub fn with_driver_domain(cmdline: &str) -> String {
    format!("dom0={DRIVER_DOMAIN_MODULE} {cmdline}")
        .trim()
        .to_string()
}

/// The driver domain as a boot module.
pub fn driver_domain_module() -> Result<crate::modules::Module> {
    let path = driver_domain()?;
    let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(crate::modules::Module {
        name: DRIVER_DOMAIN_MODULE.into(),
        data,
    })
}

/// The test guest's module name on the hypervisor's command line.
pub const TEST_GUEST_MODULE: &str = "test-guest.elf";

/// Builds the in-tree test guest (kernel/tests/guest) and returns its ELF.
pub fn test_guest() -> Result<PathBuf> {
    guest_binary("test-guest", "test-guest", "the test guest")
}

/// The test guest as a boot module.
pub fn test_guest_module() -> Result<crate::modules::Module> {
    let path = test_guest()?;
    let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(crate::modules::Module {
        name: TEST_GUEST_MODULE.into(),
        data,
    })
}
