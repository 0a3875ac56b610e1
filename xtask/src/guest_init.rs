//! The guest kit's /init script, whose output lines the Linux smoke tests judge.

/// The script (xtask/src/guest_init.sh), run by the kernel as /init.
pub const INIT_SCRIPT: &str = include_str!("guest_init.sh");

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The script's `# --- NAME functions` section.
    fn section(name: &str) -> &'static str {
        let start = INIT_SCRIPT
            .find(&format!("# --- {name} functions"))
            .unwrap();
        let end = INIT_SCRIPT
            .find(&format!("# --- end of {name} functions"))
            .unwrap();
        &INIT_SCRIPT[start..end]
    }

    #[test]
    fn init_script_is_valid_sh_and_keeps_the_contract() {
        let status = Command::new("sh")
            .args(["-n", "-c", INIT_SCRIPT])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(INIT_SCRIPT.starts_with("#!/bin/busybox sh\n"));
        for needle in [
            "echo XENOLITH-INIT-OK",
            "uname -r",
            "xenolith.test=1",
            "CHECKS DONE $passed passed, $failed failed",
            "poweroff -f",
            // The network lines crate::net_test and bench_net judge.
            "echo \"NET eth0 $(cat /sys/class/net/eth0/address) $1\"",
            "echo \"NET PING $1 sent $2 received $3 loss $4% avg $5\"",
            "echo \"NET TCP SENT $(net_sum \"$NET_DIR/data\")\"",
            "echo \"NET TCP RECV $sum $bytes\"",
            "echo \"NET TCP DONE\"",
            "echo \"BENCH net mib=$3 xen_cs=$((t1 - t0)) loop_cs=$((t3 - t2)) rtt_avg_ms=$rtt\"",
            "echo \"BENCH net-recv done\"",
            // The disk bench's line, which crate::bench_blk parses.
            "echo \"BENCH blk mib=128 write_us=$((t1 - t0)) read_us=$((t2 - t1)) reads=500 random_us=$((t3 - t2))\"",
        ] {
            assert!(INIT_SCRIPT.contains(needle), "{needle}");
        }
        for check in crate::linux_judge::CHECKS {
            assert!(INIT_SCRIPT.contains(&format!("check {check} ")), "{check}");
        }
    }

    /// Runs the script's disk functions: `disk_write` into a fresh
    /// directory, then `disk_verify` after `damage` ran there.
    fn disk_round_trip(damage: &str) -> (String, String) {
        let dir = std::env::temp_dir().join(format!(
            "xtask-disk-{}-{}",
            std::process::id(),
            damage.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let run = |tail: &str| {
            let script = format!("{}\n{tail}\n", section("disk"));
            let out = Command::new("sh")
                .args(["-c", &script])
                .env("D", &dir)
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        let wrote = run("disk_write \"$D\"");
        let checked = run(&format!("cd \"$D\" && {damage}; disk_verify \"$D\""));
        std::fs::remove_dir_all(&dir).unwrap();
        (wrote, checked)
    }

    #[test]
    fn disk_files_and_their_sums() {
        let (wrote, checked) = disk_round_trip("true");
        let sums: Vec<&str> = wrote.lines().collect();
        assert_eq!(sums.len(), 14, "{wrote}");
        assert!(sums
            .iter()
            .all(|l| l.starts_with("DISK SUM ") && l.split_whitespace().count() == 4));
        assert!(wrote.contains(" f3145728\n"));
        assert_eq!(checked.trim(), "DISK VERIFY ok 14 files");
        let (_, checked) = disk_round_trip("printf x >>f4096");
        assert!(checked.starts_with("DISK VERIFY FAIL"), "{checked}");
        assert!(checked.contains("f4096"), "{checked}");
    }

    /// Runs `disk_trim` in a fresh directory with `fstrim` replaced by a
    /// function that prints `said` and returns `rc`.
    fn disk_trim(said: &str, rc: u8) -> String {
        let dir = std::env::temp_dir().join(format!(
            "xtask-trim-{}-{rc}-{}",
            std::process::id(),
            said.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let script = format!(
            "fstrim() {{ [ \"$1\" = -v ] && [ ! -e \"$2/trim-me\" ] && printf '%s\\n' \"$SAID\"; return {rc}; }}\n{}\ndisk_trim \"$D\"\n",
            section("disk")
        );
        let out = Command::new("sh")
            .args(["-c", &script])
            .env("D", &dir)
            .env("SAID", said)
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn fstrim_reports_are_read_and_judged() {
        // busybox's and util-linux's wording, after the file is gone.
        assert_eq!(
            disk_trim("/mnt: 52428800 bytes trimmed", 0),
            "DISK TRIM 52428800 bytes\n"
        );
        assert_eq!(
            disk_trim("/mnt: 50 MiB (52428800 bytes) trimmed", 0),
            "DISK TRIM 52428800 bytes\n"
        );
        // Less than the deleted file, a failure, or words it cannot read.
        assert!(disk_trim("/mnt: 4096 bytes trimmed", 0)
            .starts_with("DISK FAIL fstrim trimmed too little"));
        assert_eq!(
            disk_trim("fstrim: FITRIM: Operation not supported", 1),
            "DISK FAIL fstrim: fstrim: FITRIM: Operation not supported\n"
        );
        assert!(disk_trim("done", 0).starts_with("DISK FAIL"));
    }

    /// Runs the script's check functions with `dmesg` replaced by `log`
    /// and returns what `check NAME FUNCTION` printed.
    fn run_check(name: &str, function: &str, log: &str) -> String {
        let script = format!(
            "dmesg() {{ printf '%s\\n' \"$LOG\"; }}\npassed=0\nfailed=0\n{}\ncheck {name} {function}\n",
            section("check")
        );
        let out = Command::new("sh")
            .args(["-c", &script])
            .env("LOG", log)
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .trim_end()
            .to_string()
    }

    #[test]
    fn the_fifo_abi_is_recognised_in_dmesg() {
        let fifo =
            "[    0.000000] Linux version 6.1.0\n[    0.153826] xen:events: Using FIFO-based ABI";
        assert_eq!(
            run_check("evtchn-fifo", "evtchn_fifo", fifo),
            "CHECK evtchn-fifo: ok"
        );
        assert_eq!(
            run_check("evtchn-fifo", "evtchn_fifo", "[    0.000000] Linux version 6.1.0"),
            "CHECK evtchn-fifo: FAIL no \"Using FIFO-based ABI\" in dmesg: event channels are 2-level"
        );
    }

    #[test]
    fn xen_is_recognised_in_dmesg() {
        for line in [
            "[    0.000000] Hypervisor detected: Xen HVM",
            "[    0.010000] Booting paravirtualized kernel on Xen PVH",
            "[    0.020000] Xen HVM callback vector for event delivery is enabled",
            "[    0.030000] xen: --> pirq=16 -> irq=9",
        ] {
            let log = format!("[    0.000000] Linux version 6.1.0\n{line}");
            assert_eq!(
                run_check("xen", "xen_detected", &log),
                "CHECK xen: ok",
                "{line}"
            );
        }
        assert_eq!(
            run_check(
                "xen",
                "xen_detected",
                "[    0.000000] Booting paravirtualized kernel on bare hardware"
            ),
            "CHECK xen: FAIL no Xen line in dmesg"
        );
    }

    #[test]
    fn dmesg_reports_fail_but_advisories_do_not() {
        let advisory = "[    0.262680] Speculative Return Stack Overflow: WARNING: See \
            https://kernel.org/doc/html/latest/admin-guide/hw-vuln/srso.html for mitigation options.\n\
            [    0.3] x86/cpu: DEBUG_PAGEALLOC is off";
        assert_eq!(
            run_check("dmesg-clean", "dmesg_clean", advisory),
            "CHECK dmesg-clean: ok"
        );
        for report in [
            "[    1.000000] WARNING: CPU: 0 PID: 1 at arch/x86/xen/enlighten.c:100 xen_foo+0x10/0x20",
            "[    1.000000] BUG: kernel NULL pointer dereference, address: 0000000000000000",
            "[    1.000000] kernel BUG at mm/slub.c:100!",
            "[    1.000000] Call Trace:",
        ] {
            let log = format!("{advisory}\n{report}\n[    1.1] more");
            assert_eq!(
                run_check("dmesg-clean", "dmesg_clean", &log),
                format!("CHECK dmesg-clean: FAIL {report}")
            );
        }
    }

    #[test]
    fn xenbus_complaints_fail_the_check() {
        for line in [
            "[    5.1] xenbus_probe_frontend: Waiting for devices to initialise: 25s...",
            "[    1.0] xen:manage: Failed to set shutdown watcher",
            "[    1.0] xen:cpu_hotplug: Unable to read cpu state",
            "[    1.3] xenbus_probe_frontend: Device with no driver: device/vkbd/0",
        ] {
            assert_eq!(
                run_check("xenbus", "xenbus_up", line),
                format!("CHECK xenbus: FAIL {line}")
            );
        }
        // A disk waiting for /init to load xen-blkfront is no complaint (the
        // host has no xenwatch thread, which is the failure left).
        assert_eq!(
            run_check(
                "xenbus",
                "xenbus_up",
                "[    1.3] xenbus_probe_frontend: Device with no driver: device/vbd/51712"
            ),
            "CHECK xenbus: FAIL no xenwatch thread: xenbus never connected to a XenStore"
        );
        // The host has no xenwatch thread: a clean dmesg alone is not enough.
        assert_eq!(
            run_check(
                "xenbus",
                "xenbus_up",
                "[    0.5] xen:balloon: Initialising balloon driver"
            ),
            "CHECK xenbus: FAIL no xenwatch thread: xenbus never connected to a XenStore"
        );
    }

    #[test]
    fn hvc_is_found_in_dmesg() {
        let log = "[    0.5] printk: console [hvc0] enabled";
        assert_eq!(run_check("hvc", "hvc_console", log), "CHECK hvc: ok");
    }

    #[test]
    fn now_us_reads_timer_list_or_falls_back_to_uptime() {
        let dir = std::env::temp_dir().join(format!("xtask-now-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let uptime = dir.join("uptime");
        std::fs::write(&uptime, "12.34 56.78\n").unwrap();
        let with_now = dir.join("with-now");
        std::fs::write(
            &with_now,
            "Timer List Version: v0.10\nHRTIMER_MAX_CLOCK_BASES: 8\n\
             now at 16664368838763 nsecs\n\ncpu: 0\n now at 1 nsecs\n",
        )
        .unwrap();
        let without_now = dir.join("without-now");
        std::fs::write(&without_now, "Timer List Version: v0.10\ncpu: 0\n").unwrap();
        let now_us = |timer_list: &Path, uptime: &str| {
            let script = section("timing")
                .replace("/proc/timer_list", timer_list.to_str().unwrap())
                .replace("/proc/uptime", uptime);
            let out = Command::new("sh")
                .args(["-c", &format!("{script}\nnow_us")])
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        let up = uptime.to_str().unwrap();
        assert_eq!(now_us(&with_now, up), "16664368838\n");
        assert_eq!(now_us(&without_now, up), "12340000\n");
        assert_eq!(now_us(&dir.join("absent"), up), "12340000\n");
        std::fs::remove_dir_all(&dir).unwrap();
        // The host's own files (or the fallback, where /proc/timer_list is masked).
        let host = || -> u64 {
            now_us(Path::new("/proc/timer_list"), "/proc/uptime")
                .trim()
                .parse()
                .unwrap()
        };
        let (a, b) = (host(), host());
        assert!(a > 0 && b >= a, "{a} then {b}");
    }

    /// Runs `tail` after the timing and net functions under `shell` with
    /// `path` as PATH, `log` as dmesg's output and a fresh NET_DIR; returns
    /// stdout.
    fn run_net(shell: &Path, path: &str, log: &str, tail: &str) -> String {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xtask-net-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let script = format!(
            "dmesg() {{ printf '%s\\n' \"$LOG\"; }}\n{}\n{}\nNET_DIR=\"$D\"\n{tail}\n",
            section("timing"),
            section("net")
        );
        let out = Command::new(shell)
            .args(["-c", &script])
            .env("PATH", path)
            .env("LOG", log)
            .env("D", &dir)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        String::from_utf8(out.stdout).unwrap()
    }

    /// [`run_net`] under the host's sh.
    fn run_sh(log: &str, tail: &str) -> String {
        let path = std::env::var("PATH").unwrap_or_default();
        run_net(Path::new("sh"), &path, log, tail)
    }

    #[test]
    fn ping_summaries_parse() {
        let stats = |out: &str| run_sh("", &format!("printf '%s\\n' '{out}' | ping_stats"));
        let good = "PING 10.0.0.2 (10.0.0.2): 56 data bytes\n\
            64 bytes from 10.0.0.2: seq=0 ttl=64 time=1.234 ms\n\
            \n\
            --- 10.0.0.2 ping statistics ---\n\
            100 packets transmitted, 100 packets received, 0% packet loss\n\
            round-trip min/avg/max = 0.512/1.873/9.001 ms";
        assert_eq!(stats(good), "100 100 0 1.873\n");
        let lossy = "3 packets transmitted, 2 packets received, 1 duplicates, 33% packet loss\n\
            round-trip min/avg/max = 1/2/3 ms";
        assert_eq!(stats(lossy), "3 2 33 2\n");
        let none = "--- 10.0.0.2 ping statistics ---\n\
            10 packets transmitted, 0 packets received, 100% packet loss";
        assert_eq!(stats(none), "10 0 100 -\n");
        assert_eq!(stats("ping: sendto: Network is unreachable"), "- - - -\n");
        // As net_ping prints it.
        let line = run_sh(
            "",
            &format!(
                "net_wait_peer() {{ :; }}\nping() {{ printf '%s\\n' '{good}'; }}\nnet_ping 10.0.0.2 100"
            ),
        );
        assert_eq!(
            line,
            "NET PING 10.0.0.2 sent 100 received 100 loss 0% avg 1.873\n"
        );
    }

    #[test]
    fn net_words_reach_their_functions() {
        let stubs = "net_ping() { echo \"ping $1 $2\"; }\n\
            net_recv_start() { echo \"recv $1\"; }\n\
            net_send() { echo \"send $1 $2 $3\"; }\n\
            net_listen() { echo \"listen $1\" >&2; }\n\
            bench_net_send() { echo \"bench $1 $2 $3\"; }\n";
        let words = [
            "ping:10.0.0.2:100",
            "tcp-recv:5001",
            "tcp-send:10.0.0.1:5001:64",
            "net-recv:5001",
            "net-send:10.0.0.1:5001:256",
            "ping:10.0.0.2",
            "udp:1",
        ]
        .map(|w| format!("net_word {w}"))
        .join("\n");
        let out = run_sh("", &format!("{stubs}{words}"));
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            [
                "ping 10.0.0.2 100",
                "recv 5001",
                "send 10.0.0.1 5001 64",
                "BENCH net-recv done",
                "bench 10.0.0.1 5001 256",
                "NET FAIL cannot read the word ping with 1 arguments",
                "NET FAIL cannot read the word udp with 1 arguments",
            ]
        );
    }

    #[test]
    fn netfront_complaints_fail_the_net_words() {
        for fine in [
            "[    9.1] xen_netfront: Initialising Xen virtual ethernet driver",
            "[    9.2] xen_netfront: backend supports XDP headroom",
        ] {
            assert_eq!(run_sh(fine, "net_finish && echo clean"), "clean\n");
        }
        for bad in [
            "[   12.0] vif vif-0 eth0: Missing extra info",
            "[   12.0] vif vif-0: 2 writing tx ring-ref",
            "[   12.0] xen_netfront: can't alloc rx grant refs: error",
            "[   30.0] NETDEV WATCHDOG: eth0 (vif): transmit queue 0 timed out",
        ] {
            let log = format!("[    9.1] xen_netfront: Initialising\n{bad}");
            assert_eq!(run_sh(&log, "net_finish"), format!("NET FAIL {bad}\n"));
        }
    }

    /// A directory with the guest kit's busybox and links for the applets
    /// the net functions use, or None before the kit was fetched.
    fn kit_busybox(tag: &str) -> Option<PathBuf> {
        let kit = crate::kit::dir().ok()?.join("busybox");
        if !kit.is_file() {
            eprintln!("no guest kit busybox at {}: skipped", kit.display());
            return None;
        }
        let dir = std::env::temp_dir().join(format!("xtask-bb-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let busybox = dir.join("busybox");
        std::fs::copy(&kit, &busybox).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&busybox, std::fs::Permissions::from_mode(0o755)).unwrap();
        for applet in [
            "sh",
            "nc",
            "sha256sum",
            "tee",
            "wc",
            "mkfifo",
            "mkdir",
            "head",
            "tail",
            "sleep",
            "ping",
            "dd",
            "grep",
            "printf",
            "cat",
        ] {
            std::os::unix::fs::symlink("busybox", dir.join(applet)).unwrap();
        }
        Some(dir)
    }

    /// A port of its own for each test run, so parallel runs do not meet.
    fn port(offset: u32) -> u32 {
        20000 + (std::process::id() % 10000) * 4 + offset
    }

    #[test]
    fn tcp_words_carry_the_bytes_over_loopback() {
        let Some(bb) = kit_busybox("tcp") else {
            return;
        };
        let p = port(0);
        // The sender starts first: it retries until the receiver listens.
        let out = run_net(
            &bb.join("sh"),
            bb.to_str().unwrap(),
            "",
            &format!(
                "net_word tcp-send:127.0.0.1:{p}:2 &\nnet_word tcp-recv:{p}\nwait\nnet_finish"
            ),
        );
        std::fs::remove_dir_all(&bb).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        let sent = lines[0].strip_prefix("NET TCP SENT ").unwrap();
        assert!(sent.ends_with(" 2097152"), "{out}");
        assert_eq!(lines[1], "NET TCP DONE");
        assert_eq!(lines[2], format!("NET TCP RECV {sent}"));
    }

    #[test]
    fn the_net_bench_runs_over_loopback() {
        let Some(bb) = kit_busybox("bench") else {
            return;
        };
        let can_ping = Command::new(bb.join("ping"))
            .args(["-c", "1", "-W", "1", "127.0.0.1"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !can_ping {
            eprintln!("busybox ping 127.0.0.1 does not work here: skipped");
            std::fs::remove_dir_all(&bb).unwrap();
            return;
        }
        let (p, lp) = (port(1), port(2));
        let out = run_net(
            &bb.join("sh"),
            bb.to_str().unwrap(),
            "",
            &format!(
                "NET_LOOP_PORT={lp}\n(net_word net-recv:{p}) &\nnet_word net-send:127.0.0.1:{p}:8\nwait"
            ),
        );
        std::fs::remove_dir_all(&bb).unwrap();
        let mut lines: Vec<&str> = out.lines().collect();
        lines.sort();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with("BENCH net mib=8 xen_cs="), "{out}");
        assert!(lines[0].contains(" loop_cs="), "{out}");
        assert!(lines[0].contains(" rtt_avg_ms="), "{out}");
        assert_eq!(lines[1], "BENCH net-recv done");
    }
}
