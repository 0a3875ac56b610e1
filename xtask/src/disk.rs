//! Disk images for the block tests: an ext4 image made on the host, and after a run, its files checked against the sums the guest printed.

use std::fs;
use std::ops::Range;
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

/// Bytes of data the image file may still hold in free blocks after an
/// fstrim: host pages only partly free (a 1 KiB-block file system frees
/// pieces of 4 KiB pages, which no hole punch can return).
const TRIM_SLACK: u64 = 1 << 20;

/// Checks that the guest's fstrim reached the image: after it, the file
/// holds (almost) no data in blocks the file system has free. Without
/// discards the file guest_init.sh `disk_trim` deleted would still be
/// there. On a host file system that cannot punch holes there is nothing
/// to see, and it says so. Returns the problems found.
pub fn check_trimmed(image: &Path) -> Result<Vec<String>> {
    let out = Command::new("dumpe2fs")
        .arg(image)
        .output()
        .context("running dumpe2fs")?;
    let Some((block, free)) = free_blocks(&String::from_utf8_lossy(&out.stdout)) else {
        bail!(
            "dumpe2fs {} printed no block size or free blocks",
            image.display()
        );
    };
    let free: Vec<Range<u64>> = free
        .into_iter()
        .map(|r| r.start * block..r.end * block)
        .collect();
    let data = data_ranges(image)?;
    let stale = overlap(&free, &data);
    let free_bytes: u64 = free.iter().map(|r| r.end - r.start).sum();
    if stale <= TRIM_SLACK {
        println!(
            "    host: {} KiB of data left in the file system's {} KiB of free blocks: the guest's fstrim reached the image",
            stale >> 10,
            free_bytes >> 10
        );
        return Ok(Vec::new());
    }
    let dir = image.parent().unwrap_or(Path::new("."));
    if !punches_holes(dir)? {
        println!(
            "    host: {} cannot punch holes, so whether fstrim reached the image is not visible here",
            dir.display()
        );
        return Ok(Vec::new());
    }
    Ok(vec![format!(
        "the image holds {} KiB of data in the file system's free blocks: the guest's discards did not reach the file",
        stale >> 10
    )])
}

/// The block size and each group's free blocks (as ranges of block
/// numbers) from `dumpe2fs` without `-h`: "  Free blocks: 4385-8192, 9000".
fn free_blocks(dump: &str) -> Option<(u64, Vec<Range<u64>>)> {
    let mut size = None;
    let mut free = Vec::new();
    for line in dump.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match (line.starts_with(' '), key.trim()) {
            (false, "Block size") => size = value.trim().parse::<u64>().ok(),
            (true, "Free blocks") => {
                for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    let (a, b) = item.split_once('-').unwrap_or((item, item));
                    let (a, b) = (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?);
                    free.push(a..b.checked_add(1)?);
                }
            }
            _ => {}
        }
    }
    Some((size?, free))
}

/// The byte ranges of `path` that hold data, by `lseek` SEEK_DATA and
/// SEEK_HOLE (a file system without holes reports one range).
fn data_ranges(path: &Path) -> Result<Vec<Range<u64>>> {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut out = Vec::new();
    let mut at = 0u64;
    while at < len {
        // SAFETY: lseek on a descriptor this function owns; no memory is passed.
        let data = unsafe { libc::lseek(f.as_raw_fd(), at as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            break; // ENXIO: only a hole from here on.
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(f.as_raw_fd(), data, libc::SEEK_HOLE) };
        if hole <= data {
            bail!("lseek SEEK_HOLE on {} failed", path.display());
        }
        out.push(data as u64..hole as u64);
        at = hole as u64;
    }
    Ok(out)
}

/// Bytes in both `a` and `b`, each sorted and non-overlapping in itself.
fn overlap(a: &[Range<u64>], b: &[Range<u64>]) -> u64 {
    let (mut i, mut j, mut sum) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        let (lo, hi) = (a[i].start.max(b[j].start), a[i].end.min(b[j].end));
        sum += hi.saturating_sub(lo);
        if a[i].end < b[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    sum
}

/// Whether files in `dir` can have holes punched (`fallocate -p`), which
/// is what QEMU's `discard=unmap` does to a raw image.
fn punches_holes(dir: &Path) -> Result<bool> {
    let probe = dir.join(format!(".punch-probe-{}", std::process::id()));
    fs::write(&probe, vec![0x5a; 64 << 10])?;
    let ok = Command::new("fallocate")
        .args(["-p", "-o", "0", "-l", "65536"])
        .arg(&probe)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let held = fs::metadata(&probe).map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512);
    fs::remove_file(&probe)?;
    Ok(ok && held? < 64 << 10)
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
    fn free_blocks_come_from_every_group() {
        let d = "Block count:              65536\nBlock size:               1024\n\nGroup 0: (Blocks 1-8192)\n  Free blocks: 4385-8192, 9000\n  Free inodes: 12-2048\nGroup 1: (Blocks 8193-16384)\n  Free blocks: \n";
        assert_eq!(free_blocks(d), Some((1024, vec![4385..8193, 9000..9001])));
        assert_eq!(free_blocks("  Free blocks: 1-2\n"), None);
        assert_eq!(free_blocks("Block size: 1024\n  Free blocks: 1-x\n"), None);
    }

    #[test]
    // One-range lists are lists of ranges here, not ranges of numbers.
    #[allow(clippy::single_range_in_vec_init)]
    fn overlaps_of_sorted_ranges() {
        assert_eq!(overlap(&[0..10, 20..30], &[5..25]), 10);
        assert_eq!(overlap(&[0..10], &[10..20]), 0);
        assert_eq!(overlap(&[0..100], &[1..2, 3..4, 99..200]), 3);
        assert_eq!(overlap(&[], &[0..1]), 0);
    }

    #[test]
    fn trimmed_and_untrimmed_images_are_told_apart() {
        if !setup::on_path("mkfs.ext4") || !setup::on_path("dumpe2fs") {
            eprintln!("skipped: e2fsprogs not installed");
            return;
        }
        let dir = std::env::temp_dir().join(format!("xtask-trim-img-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        if !punches_holes(&dir).unwrap() {
            eprintln!("skipped: {} cannot punch holes", dir.display());
            return;
        }
        let img = dir.join("t.img");
        make_ext4(&img, 16).unwrap();
        assert_eq!(check_trimmed(&img).unwrap(), Vec::<String>::new());
        // 4 MiB of data past the file system's end of use, in free
        // blocks, as a deleted file leaves it when no discard arrives.
        let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &vec![0xa5; 4 << 20], 10 << 20).unwrap();
        let p = check_trimmed(&img).unwrap();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("did not reach the file"), "{p:?}");
        fs::remove_dir_all(dir).unwrap();
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
