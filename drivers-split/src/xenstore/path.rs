//! XenStore path rules: characters, relative paths, length limits (xenstore.txt, xenstored `canonicalize`).

use super::wire::Errno;
use alloc::format;
use alloc::string::String;

/// `XENSTORE_ABS_PATH_MAX` (xs_wire.h).
pub const ABS_PATH_MAX: usize = 3072;
/// `XENSTORE_REL_PATH_MAX` (xs_wire.h): limit on the part below a domain's home.
pub const REL_PATH_MAX: usize = 2048;

/// Special watch paths (xenstore.txt "Special watches").
pub const INTRODUCE_DOMAIN: &str = "@introduceDomain";
pub const RELEASE_DOMAIN: &str = "@releaseDomain";

/// A domain's home, the base of its relative paths: `/local/domain/<domid>`.
pub fn home(domid: u16) -> String {
    format!("/local/domain/{domid}")
}

/// xenstored `valid_chars`: ASCII letters, digits and `-/_@` (xenstore.txt;
/// no `.`).
fn valid_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'/' | b'_' | b'@')
}

/// A path from a request, made absolute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canonical {
    /// Absolute path (or a special `@…` name).
    pub abs: String,
    /// It was given relative to the caller's home.
    pub relative: bool,
}

/// xenstored `canonicalize`: validate `raw` and make it absolute for `domid`.
/// `allow_special` admits `@…` names (watches only).
pub fn canonicalize(domid: u16, raw: &[u8], allow_special: bool) -> Result<Canonical, Errno> {
    if raw.is_empty() || !raw.iter().all(|&c| valid_char(c)) {
        return Err(Errno::Einval);
    }
    // valid_char admits only ASCII, so this cannot fail.
    let s = core::str::from_utf8(raw).map_err(|_| Errno::Einval)?;
    if s.starts_with('@') {
        // Special names: only the two xenstored knows, and only for watches.
        if allow_special && (s == INTRODUCE_DOMAIN || s == RELEASE_DOMAIN) {
            return Ok(Canonical {
                abs: String::from(s),
                relative: false,
            });
        }
        return Err(Errno::Einval);
    }
    let relative = !s.starts_with('/');
    if relative && s.len() > REL_PATH_MAX {
        return Err(Errno::Einval);
    }
    let abs = if relative {
        format!("{}/{}", home(domid), s)
    } else {
        String::from(s)
    };
    if (abs.ends_with('/') && abs != "/") || abs.contains("//") || abs.len() > ABS_PATH_MAX {
        return Err(Errno::Einval);
    }
    if below_home_len(&abs).is_some_and(|n| n > REL_PATH_MAX) {
        return Err(Errno::Einval);
    }
    Ok(Canonical { abs, relative })
}

/// Length of the part of `abs` below `/local/domain/<n>/`, if it is there
/// (xenstored checks this against the path-max quota).
fn below_home_len(abs: &str) -> Option<usize> {
    let rest = abs.strip_prefix("/local/domain/")?;
    let slash = rest.find('/')?;
    let id = &rest[..slash];
    (!id.is_empty() && id.len() <= 5 && id.bytes().all(|c| c.is_ascii_digit()))
        .then(|| rest.len() - slash - 1)
}

/// xenstored `get_parent`: "/" for top-level nodes. `abs` must not be "/".
pub fn parent(abs: &str) -> &str {
    match abs.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &abs[..i],
    }
}

/// The last component of a non-root absolute path.
pub fn basename(abs: &str) -> &str {
    abs.rsplit('/').next().unwrap_or(abs)
}

/// The absolute path of `child` below `dir`.
pub fn join(dir: &str, child: &str) -> String {
    if dir == "/" {
        format!("/{child}")
    } else {
        format!("{dir}/{child}")
    }
}

/// watch.c `is_child` without depth: `child` is `parent` or lies below it.
pub fn is_at_or_below(child: &str, parent: &str) -> bool {
    if parent == "/" {
        return child.starts_with('/');
    }
    child
        .strip_prefix(parent)
        .is_some_and(|r| r.is_empty() || r.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn canon(d: u16, s: &str) -> Result<String, Errno> {
        canonicalize(d, s.as_bytes(), false).map(|c| c.abs)
    }

    #[test]
    fn relative_and_absolute() {
        assert_eq!(
            canon(5, "device/vbd").unwrap(),
            "/local/domain/5/device/vbd"
        );
        assert!(canonicalize(5, b"device", false).unwrap().relative);
        assert_eq!(canon(5, "/vm").unwrap(), "/vm");
        assert_eq!(canon(5, "/").unwrap(), "/");
        assert!(!canonicalize(5, b"/vm", false).unwrap().relative);
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in [
            "", "a//b", "/a/", "a/", "//", "a.b", "a b", "/x\u{e9}", "@foo", "a\0b",
        ] {
            assert_eq!(canon(1, bad), Err(Errno::Einval), "{bad:?}");
        }
        assert_eq!(canonicalize(1, b"@foo", true), Err(Errno::Einval));
        assert_eq!(
            canonicalize(1, b"@releaseDomain", true).unwrap().abs,
            "@releaseDomain"
        );
        assert_eq!(canon(1, "@introduceDomain"), Err(Errno::Einval));
        assert!(canon(1, "x-_@Y9/z").is_ok());
    }

    #[test]
    fn length_limits() {
        let rel = vec![b'a'; REL_PATH_MAX];
        assert!(canonicalize(1, &rel, false).is_ok());
        let rel = vec![b'a'; REL_PATH_MAX + 1];
        assert_eq!(canonicalize(1, &rel, false), Err(Errno::Einval));
        let mut abs = vec![b'/'];
        abs.extend(vec![b'a'; ABS_PATH_MAX - 1]);
        assert!(canonicalize(1, &abs, false).is_ok());
        abs.push(b'a');
        assert_eq!(canonicalize(1, &abs, false), Err(Errno::Einval));
        // Absolute paths below a home are held to the relative limit too.
        let mut p = b"/local/domain/7/".to_vec();
        p.extend(vec![b'a'; REL_PATH_MAX + 1]);
        assert_eq!(canonicalize(1, &p, false), Err(Errno::Einval));
    }

    #[test]
    fn helpers() {
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/a/b/c"), "/a/b");
        assert_eq!(basename("/a/b/c"), "c");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        assert!(is_at_or_below("/a/b", "/a"));
        assert!(is_at_or_below("/a", "/a"));
        assert!(!is_at_or_below("/ab", "/a"));
        assert!(is_at_or_below("/x", "/"));
    }
}
