//! The guest kit's /init script, whose output lines the Linux smoke tests judge.

/// The script (xtask/src/guest_init.sh), run by the kernel as /init.
pub const INIT_SCRIPT: &str = include_str!("guest_init.sh");

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

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
        let start = INIT_SCRIPT.find("# --- disk functions").unwrap();
        let end = INIT_SCRIPT.find("# --- end of disk functions").unwrap();
        let dir = std::env::temp_dir().join(format!(
            "xtask-disk-{}-{}",
            std::process::id(),
            damage.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let run = |tail: &str| {
            let script = format!(
                "{}
{tail}
",
                &INIT_SCRIPT[start..end]
            );
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

    /// Runs the script's check functions with `dmesg` replaced by `log`
    /// and returns what `check NAME FUNCTION` printed.
    fn run_check(name: &str, function: &str, log: &str) -> String {
        let start = INIT_SCRIPT.find("# --- check functions").unwrap();
        let end = INIT_SCRIPT.find("# --- end of check functions").unwrap();
        let script = format!(
            "dmesg() {{ printf '%s\\n' \"$LOG\"; }}\npassed=0\nfailed=0\n{}\ncheck {name} {function}\n",
            &INIT_SCRIPT[start..end]
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
}
