//! Debian packages for the guest kit: `apt-get download` into a cache, and files out of a .deb.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::setup;

/// The cached .deb of `package` in `dir`, if one was downloaded before.
fn cached(package: &str, dir: &Path) -> Result<Option<PathBuf>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(None);
    };
    let prefix = format!("{package}_");
    let mut found = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(&prefix) && name.ends_with(".deb") {
            found.push(path);
        }
    }
    // Normally one; after a manual download of a newer revision, take the newest.
    found.sort_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    Ok(found.pop())
}

/// The .deb of `package` in `dir`, downloaded with `apt-get download` unless
/// it is already there.
pub fn fetch(package: &str, dir: &Path) -> Result<PathBuf> {
    if let Some(deb) = cached(package, dir)? {
        return Ok(deb);
    }
    // apt writes the final name directly; a staging directory keeps an
    // interrupted download from looking like a cached package.
    let staging = dir.join(".download");
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    eprintln!(
        "xtask: guest kit: downloading Debian package {package} (apt-get download) into {}",
        dir.display()
    );
    if !apt_download(package, &staging)? {
        if setup::is_root() {
            // The usual cause is an empty or stale package list.
            eprintln!("xtask: guest kit: apt-get download failed; updating the package lists and retrying");
            setup::apt_update_once()?;
        }
        if !apt_download(package, &staging)? {
            bail!(
                "apt-get download {package} failed (see its message above). The guest kit needs \
                 Debian 12's archive, including bookworm-security, in the apt sources; try \
                 `apt-get update`, or pass --kernel FILE and --initrd FILE instead"
            );
        }
    }
    let Some(deb) = cached(package, &staging)? else {
        bail!("apt-get download {package} succeeded but left no {package}_*.deb");
    };
    let dest = dir.join(deb.file_name().context("deb has a file name")?);
    fs::rename(&deb, &dest)?;
    fs::remove_dir_all(&staging)?;
    Ok(dest)
}

/// Runs `apt-get download` in `dir`; false when apt says no.
fn apt_download(package: &str, dir: &Path) -> Result<bool> {
    let mut cmd = Command::new("apt-get");
    cmd.current_dir(dir).arg("-q");
    if setup::is_root() {
        // Root downloads into a root-owned directory; apt's sandbox user could not write there.
        cmd.args(["-o", "APT::Sandbox::User=root"]);
    }
    let status = cmd
        .args(["download", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .context("running apt-get (is this a Debian or Ubuntu machine?)")?;
    Ok(status.success())
}

/// A tar member name as the package lists it, without its leading "./".
fn member_name(raw: &[u8]) -> String {
    let name = String::from_utf8_lossy(raw);
    name.strip_prefix("./").unwrap_or(&name).to_string()
}

/// Reads the regular files named in `wanted` (paths without a leading "/")
/// out of the .deb's data archive; names the package lacks are simply absent
/// from the result.
pub fn extract(deb: &Path, wanted: &[&str]) -> Result<BTreeMap<String, Vec<u8>>> {
    // dpkg-deb knows every compression a data.tar may use.
    let mut child = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("running dpkg-deb")?;
    let stdout = child.stdout.take().context("dpkg-deb has a stdout")?;
    let mut found = BTreeMap::new();
    let mut archive = tar::Archive::new(stdout);
    let read: Result<()> = (|| {
        for entry in archive.entries()? {
            let mut entry = entry?;
            let name = member_name(&entry.path_bytes());
            if entry.header().entry_type().is_file() && wanted.contains(&name.as_str()) {
                let mut data = Vec::new();
                entry.read_to_end(&mut data)?;
                found.insert(name, data);
            }
        }
        Ok(())
    })();
    // Reading to the end lets dpkg-deb finish normally, so its status means something.
    // A read error here only repeats one already in `read`.
    let mut rest = archive.into_inner();
    let _ = std::io::copy(&mut rest, &mut std::io::sink());
    let status = child.wait()?;
    read.with_context(|| format!("reading the data archive of {}", deb.display()))?;
    if !status.success() {
        bail!(
            "dpkg-deb --fsys-tarfile {} failed ({status})",
            deb.display()
        );
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_lose_their_dot_slash() {
        assert_eq!(member_name(b"./bin/busybox"), "bin/busybox");
        assert_eq!(member_name(b"boot/vmlinuz"), "boot/vmlinuz");
    }

    #[test]
    fn finds_the_newest_cached_deb() {
        let dir = std::env::temp_dir().join(format!("xtask-deb-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(cached("busybox-static", &dir).unwrap(), None);
        fs::write(dir.join("busybox_1.35_amd64.deb"), b"").unwrap();
        fs::write(dir.join("busybox-static_1.35_amd64.deb.part"), b"").unwrap();
        assert_eq!(cached("busybox-static", &dir).unwrap(), None);
        fs::write(dir.join("busybox-static_1%3a1.35_amd64.deb"), b"").unwrap();
        assert_eq!(
            cached("busybox-static", &dir).unwrap(),
            Some(dir.join("busybox-static_1%3a1.35_amd64.deb"))
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
