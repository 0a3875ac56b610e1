//! The COM1 text protocol: cleaning lines and parsing the banner, module, capability and exit lines.

use anyhow::{bail, Context, Result};

/// Removes what a terminal would hide: carriage returns and ANSI escape
/// sequences (GRUB's serial terminal emits them before the banner).
pub fn clean_line(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\x1b' => {
                // CSI: ESC '[' parameters... final byte in '@'..='~'.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    // Two-byte escape such as ESC 'c'.
                    chars.next();
                }
            }
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// How the image says it was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootPath {
    Pvh,
    Multiboot2,
}

/// Parses `Xenolith <version> booted via pvh|multiboot2`.
pub fn parse_banner(line: &str) -> Option<(String, BootPath)> {
    let rest = line.strip_prefix("Xenolith ")?;
    let (version, via) = rest.split_once(" booted via ")?;
    let path = match via {
        "pvh" => BootPath::Pvh,
        "multiboot2" => BootPath::Multiboot2,
        _ => return None,
    };
    Some((version.to_string(), path))
}

/// A `module:` line as the hypervisor printed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleLine {
    pub name: String,
    pub size: u64,
    pub fnv1a: u64,
}

/// Parses `module: name=<name> size=<bytes> fnv1a=<16 hex digits>`.
pub fn parse_module(line: &str) -> Option<Result<ModuleLine>> {
    let rest = line.strip_prefix("module: ")?;
    Some(parse_module_fields(rest).with_context(|| format!("malformed module line {line:?}")))
}

fn parse_module_fields(rest: &str) -> Result<ModuleLine> {
    let fields: Vec<&str> = rest.split(' ').collect();
    let [name, size, fnv] = fields[..] else {
        bail!("expected name=, size= and fnv1a= fields");
    };
    let name = name.strip_prefix("name=").context("no name=")?;
    let size = size.strip_prefix("size=").context("no size=")?;
    let fnv = fnv.strip_prefix("fnv1a=").context("no fnv1a=")?;
    if fnv.len() != 16
        || !fnv
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        bail!("fnv1a must be 16 lowercase hex digits");
    }
    Ok(ModuleLine {
        name: name.to_string(),
        size: size.parse().context("size is not a number")?,
        fnv1a: u64::from_str_radix(fnv, 16)?,
    })
}

/// The capability line's keys, in the order the hypervisor prints them.
pub const CAP_KEYS: &[&str] = &[
    "vendor",
    "vmx",
    "svm",
    "ept",
    "npt",
    "vpid",
    "asids",
    "unrestricted",
    "nrips",
    "x2apic",
    "xsave",
    "invtsc",
    "tsc_khz",
    "apic_timer_khz",
    "spec",
];

/// The words `spec=` may list (kernel/src/spec_ctrl.rs, Mitigations' Display).
pub const SPEC_WORDS: &[&str] = &["ibrs", "eibrs", "ibpb", "rsb", "l1d", "verw"];

/// What kind of value a capability key carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CapKind {
    Text,
    Flag,
    Number,
    /// Comma-separated words from [`SPEC_WORDS`], each at most once, or `none`.
    SpecList,
}

fn cap_kind(key: &str) -> CapKind {
    match key {
        "vendor" => CapKind::Text,
        "vpid" | "asids" | "tsc_khz" | "apic_timer_khz" => CapKind::Number,
        "spec" => CapKind::SpecList,
        _ => CapKind::Flag,
    }
}

/// The parsed capability line: every key of [`CAP_KEYS`] with its value, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caps(pub Vec<(String, String)>);

impl Caps {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether a line is the capability line (which may still be malformed).
pub fn is_caps_line(line: &str) -> bool {
    line.starts_with("cpu: ")
}

/// Parses the capability line, checking every key is there, in order, with a
/// value of the right kind.
pub fn parse_caps(line: &str) -> Result<Caps> {
    let rest = line
        .strip_prefix("cpu: ")
        .context("capability line must start with \"cpu: \"")?;
    let fields: Vec<&str> = rest.split(' ').filter(|f| !f.is_empty()).collect();
    if fields.len() != CAP_KEYS.len() {
        bail!(
            "capability line has {} fields, expected {} ({})",
            fields.len(),
            CAP_KEYS.len(),
            CAP_KEYS.join(" ")
        );
    }
    let mut out = Vec::with_capacity(fields.len());
    for (field, &want) in fields.iter().zip(CAP_KEYS) {
        let (key, value) = field
            .split_once('=')
            .with_context(|| format!("capability field {field:?} is not key=value"))?;
        if key != want {
            bail!("capability key {key:?} where {want:?} was expected");
        }
        let ok = match cap_kind(key) {
            CapKind::Text => !value.is_empty(),
            CapKind::Flag => value == "yes" || value == "no",
            CapKind::Number => value.parse::<u64>().is_ok(),
            CapKind::SpecList => spec_list_ok(value),
        };
        if !ok {
            bail!("capability {key} has a bad value {value:?}");
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(Caps(out))
}

fn spec_list_ok(value: &str) -> bool {
    if value == "none" {
        return true;
    }
    let words: Vec<&str> = value.split(',').collect();
    words
        .iter()
        .enumerate()
        .all(|(i, w)| SPEC_WORDS.contains(w) && !words[..i].contains(w))
}

/// How the hypervisor said it finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvExit {
    Success,
    Failure,
}

/// Parses the final `xenolith: exit success|failure` line.
pub fn parse_exit(line: &str) -> Option<HvExit> {
    match line {
        "xenolith: exit success" => Some(HvExit::Success),
        "xenolith: exit failure" => Some(HvExit::Failure),
        _ => None,
    }
}

/// The exit the log ends with: its last non-empty line, if that is an exit line.
pub fn final_exit(lines: &[String]) -> Option<HvExit> {
    lines
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| parse_exit(l))
}

/// QEMU's isa-debug-exit turns the value v the image writes into status (v << 1) | 1.
pub fn qemu_exit(code: Option<i32>) -> Option<HvExit> {
    match code {
        Some(33) => Some(HvExit::Success),
        Some(35) => Some(HvExit::Failure),
        _ => None,
    }
}

/// Lines that mean something went badly wrong inside the hypervisor.
pub fn is_fatal(line: &str) -> bool {
    line.starts_with("xenolith: fatal:")
        || line.starts_with("xenolith: PANIC")
        || line.starts_with("xenolith: EXCEPTION")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: &str = "cpu: vendor=AuthenticAMD vmx=no svm=yes ept=no npt=yes vpid=0 asids=16 \
        unrestricted=yes nrips=no x2apic=no xsave=yes invtsc=no tsc_khz=2000000 apic_timer_khz=1000000 \
        spec=ibpb,rsb";

    #[test]
    fn cleans_grub_noise() {
        assert_eq!(
            clean_line("\x1b[H\x1b[J\x1b[1;1H  Booting `x'\r"),
            "  Booting `x'"
        );
        assert_eq!(
            clean_line("\rXenolith 0.1.0 booted via pvh\r"),
            "Xenolith 0.1.0 booted via pvh"
        );
        assert_eq!(clean_line("plain"), "plain");
    }

    #[test]
    fn banner() {
        assert_eq!(
            parse_banner("Xenolith 0.1.0 booted via pvh"),
            Some(("0.1.0".into(), BootPath::Pvh))
        );
        assert_eq!(
            parse_banner("Xenolith 0.1.0-dev booted via multiboot2"),
            Some(("0.1.0-dev".into(), BootPath::Multiboot2))
        );
        assert_eq!(parse_banner("Xenolith 0.1.0 booted via floppy"), None);
        assert_eq!(parse_banner("hello"), None);
    }

    #[test]
    fn module_line() {
        let line = "module: name=alpha.bin size=1000 fnv1a=00ff00ff00ff00ff";
        assert_eq!(
            parse_module(line).unwrap().unwrap(),
            ModuleLine {
                name: "alpha.bin".into(),
                size: 1000,
                fnv1a: 0x00ff_00ff_00ff_00ff
            }
        );
        assert!(parse_module("hello").is_none());
        for bad in [
            "module: name=a size=1 fnv1a=ff",
            "module: name=a size=1 fnv1a=00FF00FF00FF00FF",
            "module: name=a size=x fnv1a=00ff00ff00ff00ff",
            "module: name=a fnv1a=00ff00ff00ff00ff",
            "module: size=1 name=a fnv1a=00ff00ff00ff00ff",
        ] {
            assert!(parse_module(bad).unwrap().is_err(), "{bad}");
        }
    }

    #[test]
    fn caps_line() {
        let caps = parse_caps(CAPS).unwrap();
        assert_eq!(caps.0.len(), CAP_KEYS.len());
        assert_eq!(caps.get("vendor"), Some("AuthenticAMD"));
        assert_eq!(caps.get("asids"), Some("16"));
        assert_eq!(caps.get("spec"), Some("ibpb,rsb"));
        assert_eq!(caps.get("nope"), None);
        assert!(is_caps_line(CAPS));
    }

    #[test]
    fn caps_line_rejects_wrong_shapes() {
        let swapped = CAPS.replace("vmx=no svm=yes", "svm=yes vmx=no");
        assert!(parse_caps(&swapped).is_err());
        assert!(parse_caps(&CAPS.replace("svm=yes", "svm=1")).is_err());
        assert!(parse_caps(&CAPS.replace("vpid=0", "vpid=many")).is_err());
        assert!(parse_caps(&CAPS.replace(" apic_timer_khz=1000000", "")).is_err());
        assert!(parse_caps(&CAPS.replace(" spec=ibpb,rsb", "")).is_err());
        for bad in ["", "rsb,rsb", "rsb,", "retpoline", "none,rsb"] {
            assert!(parse_caps(&CAPS.replace("ibpb,rsb", bad)).is_err(), "{bad}");
        }
        for good in ["none", "rsb", "eibrs,ibpb,rsb,verw", "ibrs,ibpb,rsb,l1d"] {
            assert!(
                parse_caps(&CAPS.replace("ibpb,rsb", good)).is_ok(),
                "{good}"
            );
        }
        assert!(parse_caps(&format!("{CAPS} extra=1")).is_err());
        assert!(parse_caps("cpu vendor=x").is_err());
    }

    #[test]
    fn exits() {
        let lines: Vec<String> = ["a", "xenolith: exit success", "", "  "]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(final_exit(&lines), Some(HvExit::Success));
        let lines = vec!["xenolith: exit failure".to_string()];
        assert_eq!(final_exit(&lines), Some(HvExit::Failure));
        let lines = vec!["xenolith: exit success".to_string(), "junk".to_string()];
        assert_eq!(final_exit(&lines), None);
        assert_eq!(final_exit(&[]), None);
    }

    #[test]
    fn qemu_exit_codes() {
        assert_eq!(qemu_exit(Some(33)), Some(HvExit::Success));
        assert_eq!(qemu_exit(Some(35)), Some(HvExit::Failure));
        assert_eq!(qemu_exit(Some(0)), None);
        assert_eq!(qemu_exit(Some(1)), None);
        assert_eq!(qemu_exit(None), None);
    }

    #[test]
    fn fatal_lines() {
        assert!(is_fatal("xenolith: fatal: bad module archive: x"));
        assert!(is_fatal("xenolith: PANIC at src/main.rs:1"));
        assert!(is_fatal("xenolith: EXCEPTION #GP"));
        assert!(!is_fatal("xenolith: exit failure"));
    }
}
