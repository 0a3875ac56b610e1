//! Boot modules: loading them, the generated test set, FNV-1a digests and newc cpio packing.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// One module handed to the hypervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// The module's name: its cpio path, or its GRUB module command line.
    pub name: String,
    pub data: Vec<u8>,
}

impl Module {
    /// The digest the hypervisor prints for this module.
    pub fn fnv1a(&self) -> u64 {
        fnv1a64(&self.data)
    }
}

/// 64-bit FNV-1a, as the hypervisor computes it over each module.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

/// Names must survive both a cpio path and a grub.cfg word unquoted, so keep
/// them to a conservative character set.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    if !ok {
        bail!("module name {name:?} must be non-empty, not start with '.', and use only [A-Za-z0-9._+-]");
    }
    Ok(())
}

/// Reads module files; each is named by its file name.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Module>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for path in paths {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("module path {} has no usable file name", path.display()))?
            .to_string();
        check_name(&name)?;
        if !seen.insert(name.clone()) {
            bail!("two modules are named {name}");
        }
        let data = fs::read(path).with_context(|| format!("reading module {}", path.display()))?;
        out.push(Module { name, data });
    }
    Ok(out)
}

/// The smoke tests' modules: deterministic pseudo-random bytes, one smaller
/// than a page and one spanning many pages, so offsets and sizes both matter.
pub fn test_set() -> Vec<Module> {
    vec![
        Module {
            name: "alpha.bin".into(),
            data: pseudo_random(1000, 0x5eed_0001),
        },
        Module {
            name: "beta.bin".into(),
            data: pseudo_random(70_000, 0x5eed_0002),
        },
    ]
}

/// xorshift64*: cheap, deterministic, and good enough that no two pages look alike.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Packs modules as a newc cpio archive, the PVH initrd format the hypervisor reads.
pub fn cpio_bytes(modules: &[Module]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for (ino, module) in modules.iter().enumerate() {
        let size = u32::try_from(module.data.len())
            .with_context(|| format!("module {} is too large for cpio", module.name))?;
        let builder = cpio::newc::Builder::new(&module.name)
            .ino(ino as u32 + 1)
            .mode(0o100_644)
            .nlink(1);
        let mut writer = builder.write(&mut out, size);
        writer.write_all(&module.data)?;
        writer.finish()?;
    }
    cpio::newc::trailer(&mut out)?;
    Ok(out)
}

/// Writes the cpio archive of `modules` to `path`.
pub fn write_cpio(modules: &[Module], path: &Path) -> Result<()> {
    fs::write(path, cpio_bytes(modules)?).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn fnv1a_known_values() {
        // Reference values from the FNV specification's test suite.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn test_set_is_deterministic_and_sized() {
        let a = test_set();
        assert_eq!(a, test_set());
        assert_eq!(a[0].data.len(), 1000);
        assert_eq!(a[1].data.len(), 70_000);
        assert_ne!(a[0].data[..100], a[1].data[..100]);
    }

    #[test]
    fn cpio_round_trips() {
        let modules = test_set();
        let bytes = cpio_bytes(&modules).unwrap();
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(bytes.len() % 4, 0);
        let mut rest: &[u8] = &bytes;
        let mut found = Vec::new();
        loop {
            let mut reader = cpio::newc::Reader::new(rest).unwrap();
            if reader.entry().is_trailer() {
                break;
            }
            let name = reader.entry().name().to_string();
            assert_eq!(reader.entry().mode(), 0o100_644);
            let mut data = Vec::new();
            reader.read_to_end(&mut data).unwrap();
            found.push(Module { name, data });
            rest = reader.finish().unwrap();
        }
        assert_eq!(found, modules);
    }

    #[test]
    fn empty_cpio_is_just_a_trailer() {
        let bytes = cpio_bytes(&[]).unwrap();
        let reader = cpio::newc::Reader::new(&bytes[..]).unwrap();
        assert!(reader.entry().is_trailer());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("alpha.bin").is_ok());
        assert!(check_name("vmlinuz-6.1+x").is_ok());
        for bad in ["", ".hidden", "a b", "a/b", "quote\"", "x;y"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
