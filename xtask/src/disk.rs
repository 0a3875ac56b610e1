//! Disk images for the block tests: an ext4 image made on the host, and after a run, its files checked against the sums the guest printed.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::setup::{self, Need};

/// Where the guest's files go on the disk (guest_init.sh `disk_write`).
pub const DATA_DIR: &str = "data";

/// Makes `path` a fresh ext4 file system of `mib` MiB holding one small
/// file, made with `mkfs.ext4 -d`.
pub fn make_ext4(path: &Path, mib: u64) -> Result<()> {
    setup::ensure(&[Need::E2fsprogs])?;
    let seed = path.with_extension("seed");
    let _ = fs::remove_dir_all(&seed);
    fs::create_dir_all(&seed)?;
    fs::write(
        seed.join("hello.txt"),
        "made by cargo xtask with mkfs.ext4 -d\n",
    )?;
    let _ = fs::remove_file(path);
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "xenolith", "-d"])
        .arg(&seed)
        .arg(path)
        .arg(format!("{mib}M"))
        .output()
        .context("running mkfs.ext4")?;
    fs::remove_dir_all(&seed)?;
    if !out.status.success() {
        bail!(
            "mkfs.ext4 failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The `DISK SUM <sha256> <name>` lines domain 1 printed, as (sum, name).
pub fn printed_sums(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("(d1) DISK SUM "))
        .filter_map(|rest| {
            let mut w = rest.split_whitespace();
            let (Some(sum), Some(name), None) = (w.next(), w.next(), w.next()) else {
                return None;
            };
            let ok = sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit());
            let safe = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric());
            (ok && safe).then(|| (sum.to_string(), name.to_string()))
        })
        .collect()
}

/// Checks the image on the host: `e2fsck -fn` finds nothing, and every
/// file the guest listed reads back (debugfs `dump`) with its sum.
/// Returns the problems found.
pub fn verify(image: &Path, sums: &[(String, String)], want_files: usize) -> Result<Vec<String>> {
    setup::ensure(&[Need::E2fsprogs])?;
    let mut problems = Vec::new();
    if sums.len() != want_files {
        problems.push(format!(
            "the guest listed {} files with sums, expected {want_files}",
            sums.len()
        ));
    }
    let fsck = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(image)
        .output()
        .context("running e2fsck")?;
    if !fsck.status.success() {
        problems.push(format!(
            "e2fsck -fn {} exited with {}: {}",
            image.display(),
            fsck.status,
            String::from_utf8_lossy(&fsck.stdout).trim()
        ));
    }
    let dir = image.with_extension("check");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    for (sum, name) in sums {
        let out = dir.join(name);
        let dump = Command::new("debugfs")
            .arg("-R")
            .arg(format!("dump /{DATA_DIR}/{name} {}", out.display()))
            .arg(image)
            .output()
            .context("running debugfs")?;
        let Ok(bytes) = fs::read(&out) else {
            problems.push(format!(
                "/{DATA_DIR}/{name} is not on the image: {}",
                String::from_utf8_lossy(&dump.stderr).trim()
            ));
            continue;
        };
        let got = sha256(&out)?;
        if &got != sum {
            problems.push(format!(
                "/{DATA_DIR}/{name} ({} bytes) has sum {got}, the guest wrote {sum}",
                bytes.len()
            ));
        }
    }
    fs::remove_dir_all(&dir)?;
    Ok(problems)
}

fn sha256(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("running sha256sum")?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().next() {
        Some(sum) if out.status.success() => Ok(sum.to_string()),
        _ => bail!("sha256sum {} failed", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_come_from_domain_one_only_and_well_formed() {
        let h = "a".repeat(64);
        let lines: Vec<String> = [
            format!("(d1) DISK SUM {h}  f512"),
            format!("(d2) DISK SUM {h}  f1"),
            format!("(d1) DISK SUM {h}  ../etc"),
            "(d1) DISK SUM abc  f1".to_string(),
            format!("(d1) DISK SUM {h}  f4096"),
        ]
        .into();
        assert_eq!(
            printed_sums(&lines),
            [(h.clone(), "f512".to_string()), (h, "f4096".to_string())]
        );
    }

    #[test]
    fn an_image_round_trips_through_debugfs() {
        if !setup::on_path("mkfs.ext4") || !setup::on_path("debugfs") {
            eprintln!("skipped: e2fsprogs not installed");
            return;
        }
        let dir = std::env::temp_dir().join(format!("xtask-disk-img-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let img = dir.join("t.img");
        make_ext4(&img, 8).unwrap();
        // The seed file is there; a file that is not is reported.
        let hello = "made by cargo xtask with mkfs.ext4 -d\n";
        let f = dir.join("h");
        fs::write(&f, hello).unwrap();
        let sum = sha256(&f).unwrap();
        let p = verify(&img, &[(sum, "nothere".into())], 1).unwrap();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("/data/nothere is not on the image"), "{p:?}");
        fs::remove_dir_all(dir).unwrap();
    }
}
