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
# A vbd or vif has no driver until /init loads the kit's front-end modules.
xenbus_up() {
    bad=$(dmesg | grep -E 'xenbus|xen:manage|xen:cpu_hotplug|xen_balloon: Failed|Waiting for devices|Timeout connecting|Device with no driver' |
        grep -v -E 'Device with no driver: device/(vbd|vif)/[0-9]+$' | head -n 1)
    if [ -n "$bad" ]; then
        echo "$bad"
        return 1
    fi
    cat /proc/[0-9]*/comm 2>/dev/null | grep -qx xenwatch && return 0
    echo "no xenwatch thread: xenbus never connected to a XenStore"
    return 1
}

# --- end of check functions ---

# --- disk functions (unit-tested on the host by xtask/src/guest_init.rs) ---

# Sizes of the files disk_write makes: around sector and page edges, and
# about 6.5 MiB in all.
DISK_SIZES="0 1 511 512 513 4095 4096 4097 65535 65536 131073 1048576 2097155 3145728"

# disk_write DIR: files of DISK_SIZES random bytes in DIR and their SHA-256
# sums in DIR/SUMS; prints one "DISK SUM <hash> <name>" line per file.
disk_write() {
    mkdir -p "$1" || return 1
    for size in $DISK_SIZES; do
        head -c "$size" /dev/urandom >"$1/f$size" || return 1
    done
    (cd "$1" && sha256sum f*) >"$1/SUMS" || return 1
    sed 's/^/DISK SUM /' "$1/SUMS"
}

# disk_verify DIR: checks the files against DIR/SUMS; prints
# "DISK VERIFY ok N files", or the files that differ.
disk_verify() {
    if [ ! -s "$1/SUMS" ]; then
        echo "DISK VERIFY FAIL no $1/SUMS"
        return 1
    fi
    n=$(wc -l <"$1/SUMS")
    if out=$(cd "$1" && sha256sum -c SUMS 2>&1); then
        echo "DISK VERIFY ok $n files"
        return 0
    fi
    echo "DISK VERIFY FAIL $(printf '%s\n' "$out" | grep -v ': OK$' | tr '\n' ' ')"
    return 1
}

# --- end of disk functions ---

# wait_for_block DEV: a front-end driver connects to its backend after
# insmod returns; waits for the disk node to appear (the handshake), 30 s
# at most.
wait_for_block() {
    i=0
    while [ ! -b "$1" ]; do
        i=$((i + 1))
        [ $i -gt 300 ] && return 1
        sleep 0.1
    done
    return 0
}

# disk_test MODE (xenolith.disk=write|verify|both): ext4 on /dev/xvda through
# xen-blkfront; writes files and their sums, checks them, or both with a
# remount between; then unbinds the frontend, which closes the device.
disk_test() {
    for m in xen-blkfront crc16 crc32c_generic mbcache jbd2 ext4; do
        if ! insmod "/lib/modules/$m.ko"; then
            echo "DISK FAIL insmod $m"
            return 1
        fi
    done
    if ! wait_for_block /dev/xvda; then
        echo "DISK FAIL no /dev/xvda after 30 s"
        return 1
    fi
    echo "DISK xvda $(cat /sys/block/xvda/size) sectors"
    mkdir -p /mnt
    if ! mount -t ext4 /dev/xvda /mnt; then
        echo "DISK FAIL mount"
        return 1
    fi
    case $1 in
    write | both)
        disk_write /mnt/data || { echo "DISK FAIL write"; return 1; }
        sync
        ;;
    esac
    if [ "$1" = both ]; then
        umount /mnt && echo 3 >/proc/sys/vm/drop_caches && mount -t ext4 /dev/xvda /mnt ||
            { echo "DISK FAIL remount"; return 1; }
    fi
    case $1 in
    verify | both) disk_verify /mnt/data || return 1 ;;
    esac
    umount /mnt || { echo "DISK FAIL umount"; return 1; }
    bad=$(dmesg | grep -E 'EXT4-fs (error|warning)|I/O error|blk_update_request|blkfront.*(fail|error)' | head -n 1)
    if [ -n "$bad" ]; then
        echo "DISK FAIL $bad"
        return 1
    fi
    # The backend sees the frontend close and goes Closing, then Closed.
    echo vbd-51712 >/sys/bus/xen/drivers/vbd/unbind
    echo "DISK DONE $1"
}

# centiseconds since boot, from /proc/uptime.
now_cs() {
    read -r up _ </proc/uptime
    echo $((${up%.*} * 100 + 1${up#*.} - 100))
}

# bench_blk KIND (xenolith.bench=blk-xen|blk-virtio): 64 MiB written and
# read back in 1 MiB direct I/O, then 500 random 4 KiB direct reads (one
# dd each, so process start-up is in that number), on xvda through
# blkfront or on vda through virtio-blk; prints one BENCH line.
bench_blk() {
    if [ "$1" = blk-xen ]; then
        insmod /lib/modules/xen-blkfront.ko
        dev=/dev/xvda
    else
        for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do
            insmod "/lib/modules/$m.ko"
        done
        dev=/dev/vda
    fi
    if ! wait_for_block $dev; then
        echo "BENCH FAIL no $dev"
        return 1
    fi
    t0=$(now_cs)
    dd if=/dev/zero of=$dev bs=1M count=64 oflag=direct 2>/dev/null || { echo "BENCH FAIL write"; return 1; }
    t1=$(now_cs)
    dd if=$dev of=/dev/null bs=1M count=64 iflag=direct 2>/dev/null || { echo "BENCH FAIL read"; return 1; }
    t2=$(now_cs)
    n=0
    seed=12345
    while [ $n -lt 500 ]; do
        seed=$(((seed * 1103515245 + 12345) % 2147483648))
        dd if=$dev of=/dev/null bs=4k count=1 skip=$((seed % 16384)) iflag=direct 2>/dev/null ||
            { echo "BENCH FAIL random read"; return 1; }
        n=$((n + 1))
    done
    t3=$(now_cs)
    echo "BENCH blk mib=64 write_cs=$((t1 - t0)) read_cs=$((t2 - t1)) reads=500 random_cs=$((t3 - t2))"
    [ "$1" = blk-xen ] && echo vbd-51712 >/sys/bus/xen/drivers/vbd/unbind
    return 0
}

for word in $(cat /proc/cmdline); do
    case $word in
    xenolith.bench=blk*)
        bench_blk "${word#xenolith.bench=}"
        poweroff -f
        ;;
    esac
done

case " $(cat /proc/cmdline) " in
*" xenolith.test=1 "*)
    check xen xen_detected
    check clocksource xen_clocksource
    check hvc hvc_console
    check dmesg-clean dmesg_clean
    check xenbus xenbus_up
    echo "CHECKS DONE $passed passed, $failed failed"
    for word in $(cat /proc/cmdline); do
        case $word in
        xenolith.disk=*) disk_test "${word#xenolith.disk=}" ;;
        esac
    done
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
