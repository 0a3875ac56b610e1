//! The Linux guest kit: Debian's kernels and busybox fetched once into `<target>/guest-kit/`, and the initramfs made from them.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::{build, bzimage, deb, initramfs, xz};

/// The kernel ABI the kit is pinned to; `uname -r` in the guest prints it.
pub const KERNEL_RELEASE: &str = "6.1.0-56-amd64";
const KERNEL_PACKAGE: &str = "linux-image-6.1.0-56-amd64";
const BUSYBOX_PACKAGE: &str = "busybox-static";
/// Debian 12's cloud kernel (what `linux-image-cloud-amd64` installs), the
/// same 6.1 source and ABI as [`KERNEL_RELEASE`]: kept as its vmlinuz is
/// shipped, LZ4-compressed (CONFIG_KERNEL_LZ4), for the smoke test that
/// boots a distro kernel as it comes. Its ext4, jbd2, crc16 and crc32c are
/// built in; xen-blkfront and xen-netfront are modules the kit does not carry
/// for it (the kit's are the standard kernel's), so it boots without them.
pub const CLOUD_KERNEL_RELEASE: &str = "6.1.0-56-cloud-amd64";
const CLOUD_KERNEL_PACKAGE: &str = "linux-image-6.1.0-56-cloud-amd64";
/// The modules the kit carries, under lib/modules/<release>/kernel/: the
/// Xen front-end drivers, ext4 and what it needs (Debian builds them all as
/// modules), and virtio-blk for the benchmark's direct-QEMU baseline.
/// /init loads them in this order, so dependencies come first.
const FRONTENDS: [&str; 13] = [
    "drivers/block/xen-blkfront.ko",
    "drivers/net/xen-netfront.ko",
    "lib/crc16.ko",
    "crypto/crc32c_generic.ko",
    "fs/mbcache.ko",
    "fs/jbd2/jbd2.ko",
    "fs/ext4/ext4.ko",
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/block/virtio_blk.ko",
];

/// The largest kernel module unpacked (ext4.ko, the largest, is 2 MB).
const MAX_MODULE: usize = 64 << 20;

/// The kit's files.
pub struct Kit {
    /// The vmlinux ELF unpacked from the package's vmlinuz.
    pub vmlinux: PathBuf,
    pub initramfs: PathBuf,
}

/// Where the kit lives: `<target>/guest-kit/`.
pub fn dir() -> Result<PathBuf> {
    Ok(build::target_dir()?.join("guest-kit"))
}

/// Writes through a temporary name, so an interrupted run never leaves a
/// half-written file that a later run would take as cached.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// Makes sure the kit is complete, fetching and unpacking only what is
/// missing, and returns its files. The initramfs is rebuilt from the cached
/// parts every time (it takes milliseconds), so a changed /init script
/// always reaches the guest; it is rewritten only when its bytes change.
pub fn ensure() -> Result<Kit> {
    let dir = dir()?;
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let debs = dir.join("debs");
    let vmlinux = dir.join(format!("vmlinux-{KERNEL_RELEASE}"));
    let busybox = dir.join("busybox");
    let frontends: Vec<PathBuf> = FRONTENDS.iter().map(|f| dir.join(file_name(f))).collect();
    let mut fetched = false;
    if !vmlinux.is_file() || frontends.iter().any(|f| !f.is_file()) {
        unpack_kernel(&deb::fetch(KERNEL_PACKAGE, &debs)?, &dir, &vmlinux)?;
        fetched = true;
    }
    if !busybox.is_file() {
        let deb = deb::fetch(BUSYBOX_PACKAGE, &debs)?;
        eprintln!(
            "xtask: guest kit: extracting /bin/busybox from {}",
            deb.display()
        );
        let mut files = deb::extract(&deb, &["bin/busybox"])?;
        let Some(data) = files.remove("bin/busybox") else {
            bail!("{} has no /bin/busybox", deb.display());
        };
        write_atomic(&busybox, &data)?;
        fetched = true;
    }
    let mut modules = Vec::new();
    for (front, path) in FRONTENDS.iter().zip(&frontends) {
        let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        modules.push((file_name(front).to_string(), data));
    }
    let busybox_bytes =
        fs::read(&busybox).with_context(|| format!("reading {}", busybox.display()))?;
    let entries = initramfs::entries(&busybox_bytes, &modules);
    let image = initramfs::pack(&entries)?;
    let initramfs = dir.join("initramfs.cpio");
    if fs::read(&initramfs).ok().as_deref() != Some(&image[..]) {
        eprintln!("xtask: guest kit: writing {}:", initramfs.display());
        for line in initramfs::listing(&entries) {
            eprintln!("xtask:   {line}");
        }
        write_atomic(&initramfs, &image)?;
    }
    eprintln!(
        "xtask: guest kit{}: Linux {KERNEL_RELEASE} and busybox initramfs ({} KiB) in {}",
        if fetched { " ready" } else { " (cached)" },
        image.len() / 1024,
        dir.display()
    );
    Ok(Kit { vmlinux, initramfs })
}

/// The cloud kernel's vmlinuz as Debian ships it, fetched and taken out of
/// its package once; `<target>/guest-kit/vmlinuz-<CLOUD_KERNEL_RELEASE>`.
pub fn cloud_vmlinuz() -> Result<PathBuf> {
    let dir = dir()?;
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let vmlinuz = dir.join(format!("vmlinuz-{CLOUD_KERNEL_RELEASE}"));
    if vmlinuz.is_file() {
        return Ok(vmlinuz);
    }
    let deb = deb::fetch(CLOUD_KERNEL_PACKAGE, &dir.join("debs"))?;
    let member = format!("boot/vmlinuz-{CLOUD_KERNEL_RELEASE}");
    eprintln!(
        "xtask: guest kit: extracting /{member} from {}",
        deb.display()
    );
    let Some(data) = deb::extract(&deb, &[&member])?.remove(&member) else {
        bail!("{} has no /{member}", deb.display());
    };
    write_atomic(&vmlinuz, &data)?;
    Ok(vmlinuz)
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Takes vmlinuz and the front-end modules out of the kernel package: keeps
/// vmlinuz as shipped, unpacks vmlinux from it, and stores the modules
/// uncompressed (a kernel may ship them as .ko.xz; busybox insmod wants .ko).
fn unpack_kernel(deb: &Path, dir: &Path, vmlinux: &Path) -> Result<()> {
    let vmlinuz_member = format!("boot/vmlinuz-{KERNEL_RELEASE}");
    let module_members: Vec<String> = FRONTENDS
        .iter()
        .flat_map(|f| {
            let base = format!("lib/modules/{KERNEL_RELEASE}/kernel/{f}");
            [format!("{base}.xz"), base]
        })
        .collect();
    let mut wanted = vec![vmlinuz_member.as_str()];
    wanted.extend(module_members.iter().map(String::as_str));
    eprintln!(
        "xtask: guest kit: extracting vmlinuz and the Xen front-end modules from {}",
        deb.display()
    );
    let mut files = deb::extract(deb, &wanted)?;
    let Some(vmlinuz) = files.remove(&vmlinuz_member) else {
        bail!("{} has no /{vmlinuz_member}", deb.display());
    };
    for front in FRONTENDS {
        let base = format!("lib/modules/{KERNEL_RELEASE}/kernel/{front}");
        let data = match (files.remove(&base), files.remove(&format!("{base}.xz"))) {
            (Some(plain), _) => plain,
            (None, Some(packed)) => {
                xz::decode_stream(&packed, MAX_MODULE)
                    .with_context(|| format!("decompressing /{base}.xz"))?
                    .0
            }
            (None, None) => bail!("{} has neither /{base} nor /{base}.xz", deb.display()),
        };
        write_atomic(&dir.join(file_name(front)), &data)?;
    }
    eprintln!("xtask: guest kit: unpacking vmlinux from the bzImage's XZ payload");
    write_atomic(&dir.join(format!("vmlinuz-{KERNEL_RELEASE}")), &vmlinuz)?;
    let elf = bzimage::vmlinux_from_bzimage(&vmlinuz)
        .with_context(|| format!("unpacking /{vmlinuz_member}"))?;
    write_atomic(vmlinux, &elf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontend_names() {
        let names: Vec<&str> = FRONTENDS.iter().map(|f| file_name(f)).collect();
        assert_eq!(&names[..2], ["xen-blkfront.ko", "xen-netfront.ko"]);
        assert!(names.contains(&"ext4.ko"));
        assert!(KERNEL_PACKAGE.ends_with(KERNEL_RELEASE));
        assert!(CLOUD_KERNEL_PACKAGE.ends_with(CLOUD_KERNEL_RELEASE));
        // One kernel source for both: the ABI number before the flavour matches.
        assert_eq!(CLOUD_KERNEL_RELEASE.replace("-cloud", ""), KERNEL_RELEASE);
    }

    #[test]
    fn atomic_writes_leave_no_temporary() {
        let dir = std::env::temp_dir().join(format!("xtask-kit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vmlinux-x");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(dir).unwrap();
    }
}
