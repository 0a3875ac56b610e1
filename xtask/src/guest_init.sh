#!/bin/busybox sh
# /init of the Xenolith Linux guest kit (packed by cargo xtask, xtask/src/initramfs.rs).
# Prints XENOLITH-INIT-OK and the kernel release; then, with xenolith.test=1
# on the kernel command line, runs the check list and powers off, else gives
# the console an interactive shell. The host judges the lines it prints, so
# their wording is part of the test contract (xtask/src/linux_judge.rs).

/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root

# Late boot messages (the TSC recalibration about 2 s in, say) could land in
# the middle of a line the host matches, so the console shows only errors
# while /init reports; the interactive shell gets the level back.
read -r console_level _ </proc/sys/kernel/printk
echo 4 >/proc/sys/kernel/printk

echo XENOLITH-INIT-OK
uname -r

passed=0
failed=0

# --- check functions (unit-tested on the host by xtask/src/guest_init.rs) ---

# check NAME FUNCTION: runs FUNCTION, which prints why when it fails, and
# reports the verdict on one line.
check() {
    if detail=$($2 2>&1); then
        echo "CHECK $1: ok"
        passed=$((passed + 1))
    else
        detail=$(printf '%s' "$detail" | tr '\n' ' ')
        echo "CHECK $1: FAIL ${detail:-no detail}"
        failed=$((failed + 1))
    fi
}

# The kernel found Xen: its pv banner, hypervisor detection, the HVM callback
# vector, or Xen's own "xen: ..." log lines.
xen_detected() {
    dmesg | grep -q -E 'kernel on Xen|Hypervisor detected: Xen|Xen HVM callback vector|(^|\] )xen: ' && return 0
    echo "no Xen line in dmesg"
    return 1
}

# The time source is Xen's PV clock.
xen_clocksource() {
    cs=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>&1)
    [ "$cs" = xen ] && return 0
    echo "current clocksource is ${cs:-unknown}"
    return 1
}

# The console is Xen's hvc0.
hvc_console() {
    grep -q hvc0 /proc/consoles 2>/dev/null && return 0
    dmesg | grep -q hvc0 && return 0
    echo "no hvc0 in /proc/consoles or dmesg"
    return 1
}

# Nothing went wrong in the kernel on the way here: no BUG or WARNING report
# (they start the message, as in "WARNING: CPU: 0 PID: 1 at ..."), no stack
# trace. Advisories that merely contain the word, such as "Speculative
# Return Stack Overflow: WARNING: See ...", are not reports.
dmesg_clean() {
    bad=$(dmesg | grep -E '(^|\] )(BUG|WARNING)[: ]|kernel BUG at|Call Trace' | head -n 1)
    [ -z "$bad" ] && return 0
    echo "$bad"
    return 1
}

# XenStore is served (by the driver domain): xenbus started its watch
# thread, and no xenbus client complained or waited for devices in dmesg.
xenbus_up() {
    bad=$(dmesg | grep -E 'xenbus|xen:manage|xen:cpu_hotplug|xen_balloon: Failed|Waiting for devices|Timeout connecting|Device with no driver' | head -n 1)
    if [ -n "$bad" ]; then
        echo "$bad"
        return 1
    fi
    cat /proc/[0-9]*/comm 2>/dev/null | grep -qx xenwatch && return 0
    echo "no xenwatch thread: xenbus never connected to a XenStore"
    return 1
}

# --- end of check functions ---

case " $(cat /proc/cmdline) " in
*" xenolith.test=1 "*)
    check xen xen_detected
    check clocksource xen_clocksource
    check hvc hvc_console
    check dmesg-clean dmesg_clean
    check xenbus xenbus_up
    echo "CHECKS DONE $passed passed, $failed failed"
    case " $(cat /proc/cmdline) " in
    *" xenolith.crash_driver=1 "*)
        # The driver domain ends itself on seeing this line (its crash-on=
        # test option) and this guest must run on without it. Little output
        # may follow: nobody drains the 2 KiB console ring any more.
        echo XENOLITH-CRASH-DRIVER-DOMAIN
        i=0
        while [ $i -lt 20000 ]; do i=$((i + 1)); done
        ;;
    esac
    poweroff -f
    echo "poweroff -f returned; falling back to a shell"
    ;;
esac

# cttyhack opens the real console device (hvc0, ttyS0) as the controlling
# terminal, so the shell gets job control and ^C.
echo "$console_level" >/proc/sys/kernel/printk
echo "Xenolith guest shell; leaving it powers the guest off"
setsid cttyhack sh
poweroff -f
