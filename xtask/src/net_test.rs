//! The network tests: two Linux guests on the driver domain's switch, what their /init is told to do, and judging the lines they print.

use crate::domain_config::{kit_domain, Config, Domain, Kernel};

/// The Linux guests' domain names (domains 1 and 2) and addresses (a /24).
pub const NAMES: [&str; 2] = ["linux1", "linux2"];
pub const ADDRS: [&str; 2] = ["10.0.0.1", "10.0.0.2"];
/// The TCP port linux1 receives on.
pub const PORT: u16 = 5001;
/// The hostile netfront: the test guest as domain 3, after the Linux
/// guests (as the disk test puts its hostile frontend last).
pub const HOSTILE_NAME: &str = "test-guest";
pub const HOSTILE_CMDLINE: &str = "net-garbage";
/// The test guest needs far less RAM than Linux (as in the disk test).
const HOSTILE_MIB: u64 = 8;

/// One network smoke test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetTest {
    /// Each Linux guest's RAM.
    pub mem_mib: u64,
    /// Pings each way, all of which must come back.
    pub pings: u32,
    /// MiB linux2 sends linux1 over TCP.
    pub mib: u32,
    /// The test guest with `net-garbage` and one NIC as domain 3.
    pub garbage: bool,
}

/// Two kit Linux guests with one NIC each (a generated MAC), linux1 then
/// linux2, each with `base` and its own words on its command line.
pub fn two_linux(mem_mib: u64, base: &str, words: [String; 2]) -> Config {
    let domains = NAMES
        .iter()
        .zip(words)
        .map(|(name, words)| kit_domain(name, mem_mib, format!("{base} {words}"), 1))
        .collect();
    Config { domains }
}

impl NetTest {
    /// /init's words: linux1 pings linux2, then listens; linux2 pings
    /// linux1, then sends it `mib` MiB, retrying until linux1 listens. So
    /// linux2 cannot power off before linux1's pings are answered.
    pub fn guest_words(&self) -> [String; 2] {
        let [a, b] = ADDRS;
        let (pings, mib) = (self.pings, self.mib);
        [
            format!(
                "xenolith.ip={a}/24 xenolith.net=ping:{b}:{pings} xenolith.net=tcp-recv:{PORT}"
            ),
            format!(
                "xenolith.ip={b}/24 xenolith.net=ping:{a}:{pings} xenolith.net=tcp-send:{a}:{PORT}:{mib}"
            ),
        ]
    }

    /// The domains, the Linux guests' command lines starting with `base`.
    pub fn config(&self, base: &str) -> Config {
        let mut config = two_linux(self.mem_mib, base, self.guest_words());
        if self.garbage {
            config.domains.push(Domain {
                name: HOSTILE_NAME.into(),
                memory_mib: HOSTILE_MIB,
                maxmem_mib: None,
                kernel: Kernel::TestGuest,
                ramdisk: None,
                cmdline: Some(HOSTILE_CMDLINE.into()),
                disks: Vec::new(),
                nics: vec![Default::default()],
            });
        }
        config
    }

    fn bytes(&self) -> u64 {
        u64::from(self.mib) << 20
    }
}

/// Domain `n`'s console lines, without their `(dN) ` prefix.
fn console(lines: &[String], n: u16) -> Vec<&str> {
    let prefix = format!("(d{n}) ");
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix))
        .collect()
}

/// The hash and byte count of a `NET TCP <what> <sha256> <bytes>` line.
fn tcp_line<'a>(guest: &[&'a str], what: &str) -> Option<(&'a str, u64)> {
    let prefix = format!("NET TCP {what} ");
    guest.iter().find_map(|l| {
        let (sum, bytes) = l.strip_prefix(&prefix)?.split_once(' ')?;
        Some((sum, bytes.trim().parse().ok()?))
    })
}

/// Whether `line` is /init's ping summary for `peer` with every one of the
/// `count` pings answered. busybox `ping -c N` sometimes sends one more
/// before the last reply ends it (seen here under load: "sent 101 received
/// 100 loss 0%"), so N + 1 sent with N received counts as all answered.
fn all_answered(line: &str, peer: &str, count: u32) -> bool {
    let Some(rest) = line.strip_prefix(&format!("NET PING {peer} sent ")) else {
        return false;
    };
    let words: Vec<&str> = rest.split_ascii_whitespace().collect();
    match words.as_slice() {
        [sent, "received", received, "loss", ..] => {
            let (Ok(sent), Ok(received)) = (sent.parse::<u32>(), received.parse::<u32>()) else {
                return false;
            };
            received == count && (sent == count || sent == count + 1)
        }
        _ => false,
    }
}

/// What the two Linux guests and the driver domain printed about the
/// network (COM1, numbered): eth0 up, every ping answered, the bytes
/// linux2 sent are the bytes linux1 received, both vifs connected.
pub fn problems(lines: &[String], net: NetTest) -> Vec<String> {
    let mut problems = Vec::new();
    let guests = [console(lines, 1), console(lines, 2)];
    for (i, guest) in guests.iter().enumerate() {
        let n = i + 1;
        let peer = ADDRS[1 - i];
        for fail in guest.iter().filter(|l| l.starts_with("NET FAIL")).take(5) {
            problems.push(format!("domain {n}: {fail}"));
        }
        if !guest.iter().any(|l| l.starts_with("NET eth0 ")) {
            problems.push(format!("domain {n}: no \"NET eth0 <mac> <addr>\" line"));
        }
        let want = format!(
            "NET PING {peer} sent {p} received {p} loss 0% ",
            p = net.pings
        );
        if !guest.iter().any(|l| all_answered(l, peer, net.pings)) {
            match guest.iter().find(|l| l.starts_with("NET PING ")) {
                Some(got) => problems.push(format!("domain {n}: {got:?}, expected {want:?}…")),
                None => problems.push(format!("domain {n}: no \"NET PING {peer} …\" line")),
            }
        }
        let connected = format!("(d0) domain {n}: vif0 connected");
        if !lines.iter().any(|l| l.starts_with(&connected)) {
            problems.push(format!("no {connected:?} line from the driver domain"));
        }
    }
    match (tcp_line(&guests[0], "RECV"), tcp_line(&guests[1], "SENT")) {
        (Some(got), Some(sent)) if got == sent && sent.1 == net.bytes() => {}
        (Some(got), Some(sent)) => problems.push(format!(
            "domain 1 received {} bytes with SHA-256 {}; domain 2 sent {} bytes with {} ({} expected)",
            got.1,
            got.0,
            sent.1,
            sent.0,
            net.bytes()
        )),
        (None, _) => problems.push("no \"(d1) NET TCP RECV <sha256> <bytes>\" line".into()),
        (_, None) => problems.push("no \"(d2) NET TCP SENT <sha256> <bytes>\" line".into()),
    }
    if !guests[1].contains(&"NET TCP DONE") {
        problems.push("no \"(d2) NET TCP DONE\" line".into());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU: NetTest = NetTest {
        mem_mib: 256,
        pings: 100,
        mib: 64,
        garbage: false,
    };

    const SUM: &str = "9e1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

    fn good() -> Vec<String> {
        [
            "(d0) domain 1: vif0 connected, mac 00:16:3e:aa:bb:01".to_string(),
            "(d0) domain 2: vif0 connected, mac 00:16:3e:aa:bb:02".into(),
            "(d1) NET eth0 00:16:3e:aa:bb:01 10.0.0.1/24".into(),
            "(d2) NET eth0 00:16:3e:aa:bb:02 10.0.0.2/24".into(),
            format!("(d2) NET TCP SENT {SUM} 67108864"),
            "(d2) NET PING 10.0.0.1 sent 100 received 100 loss 0% avg 1.234".into(),
            "(d1) NET PING 10.0.0.2 sent 100 received 100 loss 0% avg 2.5".into(),
            "(d2) NET TCP DONE".into(),
            format!("(d1) NET TCP RECV {SUM} 67108864"),
        ]
        .to_vec()
    }

    #[test]
    fn a_good_run_passes() {
        assert_eq!(problems(&good(), QEMU), Vec::<String>::new());
    }

    #[test]
    fn one_extra_ping_sent_is_all_answered() {
        let mut lines = good();
        lines[6] = "(d1) NET PING 10.0.0.2 sent 101 received 100 loss 0% avg 2.5".into();
        assert_eq!(problems(&lines, QEMU), Vec::<String>::new());
        lines[6] = "(d1) NET PING 10.0.0.2 sent 102 received 100 loss 1% avg 2.5".into();
        assert_eq!(problems(&lines, QEMU).len(), 1);
        lines[6] = "(d1) NET PING 10.0.0.2 sent 101 received 99 loss 1% avg 2.5".into();
        assert_eq!(problems(&lines, QEMU).len(), 1);
    }

    #[test]
    fn lost_pings_bytes_and_vifs_are_reported() {
        let mut lines = good();
        lines[0] = "(d0) domain 1: vif0 closed".into();
        lines[6] = "(d1) NET PING 10.0.0.2 sent 100 received 97 loss 3% avg 2.5".into();
        lines[8] = format!("(d1) NET TCP RECV {SUM} 67108000");
        lines.push("(d2) NET FAIL tcp-send: connection refused 60 times".into());
        let got = problems(&lines, QEMU);
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got[0].contains("received 97 loss 3%"), "{got:?}");
        assert!(got[1].contains("(d0) domain 1: vif0 connected"), "{got:?}");
        assert_eq!(
            got[2],
            "domain 2: NET FAIL tcp-send: connection refused 60 times"
        );
        assert!(
            got[3].contains("domain 1 received 67108000 bytes"),
            "{got:?}"
        );
    }

    #[test]
    fn missing_lines_are_named() {
        let got = problems(&[], QEMU);
        assert!(got.iter().any(|p| p.contains("domain 2: no \"NET eth0")));
        assert!(got.iter().any(|p| p.contains("no \"(d1) NET TCP RECV")));
        assert!(got.iter().any(|p| p.contains("no \"(d2) NET TCP DONE\"")));
        // The sums must agree, and on the size asked for.
        let mut lines = good();
        lines[4] = format!("(d2) NET TCP SENT {} 67108864", SUM.replace('9', "8"));
        assert_eq!(problems(&lines, QEMU).len(), 1);
        let small = NetTest { mib: 1, ..QEMU };
        assert_eq!(problems(&good(), small).len(), 1);
    }

    #[test]
    fn guests_get_their_words_and_one_nic_each() {
        let words = QEMU.guest_words();
        assert_eq!(
            words[0],
            "xenolith.ip=10.0.0.1/24 xenolith.net=ping:10.0.0.2:100 xenolith.net=tcp-recv:5001"
        );
        assert_eq!(
            words[1],
            "xenolith.ip=10.0.0.2/24 xenolith.net=ping:10.0.0.1:100 xenolith.net=tcp-send:10.0.0.1:5001:64"
        );
        let cfg = QEMU.config("console=hvc0");
        assert_eq!(cfg.hv_cmdline(""), "guest=linux1 guest=linux2");
        assert_eq!(cfg.vif_words(), ["vif=linux1", "vif=linux2"]);
        assert_eq!(
            cfg.domains[1].cmdline.as_deref(),
            Some(format!("console=hvc0 {}", words[1]).as_str())
        );
        let garbage = NetTest {
            garbage: true,
            ..QEMU
        }
        .config("console=hvc0");
        assert_eq!(
            garbage.hv_cmdline(""),
            "guest=linux1 guest=linux2 guest=test-guest"
        );
        assert_eq!(
            garbage.vif_words(),
            ["vif=linux1", "vif=linux2", "vif=test-guest"]
        );
        assert_eq!(garbage.machine_mib(), 2 * 256 + 8 + 768);
    }
}
