//! The hypervisor command line: `key=value` words separated by spaces.

/// The value of the last `key=value` word, as Linux and Xen let a later word win.
pub fn option<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|word| word.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .next_back()
}

/// Every `key=value` word, in order.
pub fn options<'a>(cmdline: &'a str, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|word| word.split_once('='))
        .filter(move |(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// A `guest=<module>[:<word>[,<word>...]]` value: the module to boot and its
/// command line (commas become spaces, as the hypervisor's own command line
/// splits on spaces).
pub fn guest_spec(value: &str) -> (&str, impl Iterator<Item = &str>) {
    let (module, args) = value.split_once(':').unwrap_or((value, ""));
    (module, args.split(',').filter(|w| !w.is_empty()))
}

/// A size such as `512M`, `4G`, `65536` or `64k` in bytes; `None` if malformed or overflowing.
pub fn parse_size(text: &str) -> Option<u64> {
    let (digits, shift) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 10),
        b'm' | b'M' => (&text[..text.len() - 1], 20),
        b'g' | b'G' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    value.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_last_value() {
        assert_eq!(option("a=1 mem=4M b mem=8M", "mem"), Some("8M"));
        assert_eq!(option("memx=1 b", "mem"), None);
        assert_eq!(option("", "mem"), None);
    }

    #[test]
    fn guests() {
        let all: Vec<&str> = options("guest=a.elf guest=b.elf:oob,x=1 mem=1G", "guest").collect();
        assert_eq!(all, ["a.elf", "b.elf:oob,x=1"]);
        let (module, args) = guest_spec("b.elf:oob,x=1");
        assert_eq!(module, "b.elf");
        assert_eq!(args.collect::<Vec<_>>(), ["oob", "x=1"]);
        let (module, args) = guest_spec("a.elf");
        assert_eq!((module, args.count()), ("a.elf", 0));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4M"), Some(4 << 20));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("-1M"), None);
        assert_eq!(parse_size("99999999999999G"), None);
        assert_eq!(parse_size(""), None);
    }
}
