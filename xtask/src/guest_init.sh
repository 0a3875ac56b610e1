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

# --- timing functions (unit-tested on the host by xtask/src/guest_init.rs) ---

# wait_until SECONDS CMD...: runs CMD every 0.1 s until it succeeds, false
# after SECONDS (a front-end driver connects to its backend after insmod
# returns, so its device shows up a while later).
wait_until() {
    limit=$(($1 * 10))
    shift
    waited=0
    until "$@"; do
        waited=$((waited + 1))
        [ $waited -gt $limit ] && return 1
        sleep 0.1
    done
    return 0
}

# centiseconds since boot, from /proc/uptime.
now_cs() {
    read -r up _ </proc/uptime
    echo $((${up%.*} * 100 + 1${up#*.} - 100))
}

# microseconds since boot, from the "now at N nsecs" line near the top of
# /proc/timer_list; now_cs times 10000 where that file cannot be read or
# has no such line.
now_us() {
    if [ -r /proc/timer_list ]; then
        while read -r w1 w2 ns unit; do
            [ "$w1 $w2 $unit" = "now at nsecs" ] || continue
            case $ns in
            '' | *[!0-9]*) break ;;
            esac
            echo $((ns / 1000))
            return 0
        done </proc/timer_list
    fi
    echo $(($(now_cs) * 10000))
}

# --- end of timing functions ---

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

# disk_trim MNT: writes TRIM_MIB MiB, deletes it and runs fstrim on MNT;
# prints "DISK TRIM <bytes> bytes", or DISK FAIL if fstrim failed or
# trimmed less than it (the file's blocks are free, so at least that).
TRIM_MIB=4
disk_trim() {
    head -c $((TRIM_MIB << 20)) /dev/urandom >"$1/trim-me" && sync && rm "$1/trim-me" && sync ||
        { echo "DISK FAIL writing and deleting $1/trim-me"; return 1; }
    if ! out=$(fstrim -v "$1" 2>&1); then
        echo "DISK FAIL fstrim: $out"
        return 1
    fi
    # busybox and util-linux both print "MNT: N bytes trimmed" (util-linux
    # adds a "(size)" before "trimmed").
    n=$(printf '%s\n' "$out" | sed -n 's/^.*[ (]\([0-9][0-9]*\) bytes.*trimmed$/\1/p')
    if [ -z "$n" ] || [ "$n" -lt $((TRIM_MIB << 20)) ]; then
        echo "DISK FAIL fstrim trimmed too little: $out"
        return 1
    fi
    echo "DISK TRIM $n bytes"
}

# --- end of disk functions ---

# --- net functions (unit-tested on the host by xtask/src/guest_init.rs) ---

# Where receivers keep their state, and the FIFO their nc reads as stdin.
NET_DIR=/tmp/net
# The port of bench_net_send's loopback receiver.
NET_LOOP_PORT=5002

# ping_stats: busybox ping's output on stdin to "SENT RECEIVED LOSS AVG",
# from "S packets transmitted, R packets received, [D duplicates, ]L% packet
# loss" and "round-trip min/avg/max = a/b/c ms"; "-" for what is missing.
ping_stats() {
    sent=- received=- loss=- avg=-
    while read -r line; do
        case $line in
        *" packets transmitted, "*)
            sent=${line%% packets transmitted*}
            received=${line#*transmitted, }
            received=${received%% packets received*}
            loss=${line%\% packet loss*}
            loss=${loss##* }
            ;;
        "round-trip "*)
            avg=${line#*= }
            avg=${avg#*/}
            avg=${avg%%/*}
            ;;
        esac
    done
    echo "$sent $received $loss $avg"
}

# net_wait_peer HOST: until HOST answers a ping, 60 tries of a second at
# most (ARP and the peer's own boot take a while). No pause between tries:
# the peer may be done soon after it answers, and its pings must not be
# left waiting for ours.
net_wait_peer() {
    tries=0
    until ping -c 1 -W 1 "$1" >/dev/null 2>&1; do
        tries=$((tries + 1))
        [ $tries -ge 60 ] && return 1
    done
    return 0
}

# net_ping HOST COUNT: waits for HOST, then COUNT pings back to back;
# prints "NET PING HOST sent S received R loss L% avg A".
net_ping() {
    if ! net_wait_peer "$1"; then
        echo "NET FAIL ping: $1 never answered"
        return 1
    fi
    set -- "$1" $(ping -c "$2" -A "$1" 2>&1 | ping_stats)
    echo "NET PING $1 sent $2 received $3 loss $4% avg $5"
}

# net_retry CMD...: runs CMD until it succeeds, 60 tries 0.5 s apart at
# most: nc gives up at once, reading nothing, while nobody listens yet.
net_retry() {
    tries=0
    until "$@" 2>"$NET_DIR/err"; do
        tries=$((tries + 1))
        [ $tries -ge 60 ] && return 1
        sleep 0.5
    done
    return 0
}

# net_listen PORT: receives one TCP connection on PORT to stdout. busybox
# nc shuts its sending side at EOF on stdin and exits when its peer does,
# so a receiver whose stdin ended would make the sender stop after its
# first buffer: this one's stdin is a FIFO it holds open itself, which
# never ends.
net_listen() {
    [ -p "$NET_DIR/hold" ] || mkfifo "$NET_DIR/hold" || return 1
    nc -l -p "$1" <>"$NET_DIR/hold"
}

# net_listening PORT: whether a socket listens on PORT: /proc/net/tcp or,
# for nc's dual-stack socket, tcp6 has it with no remote end, in state 0A
# (LISTEN).
net_listening() {
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -q -E ":$(printf %04X "$1") 0+:0000 0A "
}

# net_sum FILE: "<sha256> <bytes>" of FILE.
net_sum() {
    set -- "$1" $(sha256sum <"$1")
    echo "$2 $(($(wc -c <"$1")))"
}

# net_recv_start PORT (xenolith.net=tcp-recv:PORT): receives one connection
# on PORT in the background, hashing and counting the bytes (tee feeds wc
# through a FIFO); net_finish prints the result.
net_recv_start() {
    dir=$NET_DIR/recv-$1
    mkdir -p "$dir" && mkfifo "$dir/count" || { echo "NET FAIL tcp-recv: no $dir"; return 1; }
    (
        wc -c <"$dir/count" >"$dir/bytes" &
        net_listen "$1" 2>"$dir/err" | tee "$dir/count" | sha256sum >"$dir/sum"
        wait
        : >"$dir/done"
    ) </dev/null >/dev/null 2>&1 &
    return 0
}

# net_recv_finish DIR: waits (5 minutes at most) for the receiver in DIR;
# prints "NET TCP RECV <sha256> <bytes>".
net_recv_finish() {
    if ! wait_until 300 [ -e "$1/done" ]; then
        echo "NET FAIL tcp-recv: nothing complete after 300 s $(cat "$1/err" 2>/dev/null)"
        return 1
    fi
    read -r sum _ <"$1/sum"
    read -r bytes <"$1/bytes"
    echo "NET TCP RECV $sum $bytes"
}

# net_send_file HOST PORT: sends $NET_DIR/data.
net_send_file() {
    nc "$1" "$2" <"$NET_DIR/data"
}

# net_send HOST PORT MIB (xenolith.net=tcp-send:HOST:PORT:MIB): MIB MiB of
# random bytes to HOST; prints "NET TCP SENT <sha256> <bytes>" first, then
# "NET TCP DONE" once the receiver has everything.
net_send() {
    if ! head -c $(($3 * 1048576)) /dev/urandom >"$NET_DIR/data"; then
        echo "NET FAIL tcp-send: cannot make $3 MiB of data"
        return 1
    fi
    echo "NET TCP SENT $(net_sum "$NET_DIR/data")"
    if ! net_retry net_send_file "$1" "$2"; then
        echo "NET FAIL tcp-send: $(tail -n 1 "$NET_DIR/err")"
        return 1
    fi
    echo "NET TCP DONE"
}

# net_zeros HOST PORT MIB: MIB MiB of zeros to HOST in 64 KiB writes.
net_zeros() {
    dd if=/dev/zero bs=64k count=$(($3 * 16)) 2>/dev/null | nc "$1" "$2"
}

# bench_net_send HOST PORT MIB (xenolith.bench=net-send:HOST:PORT:MIB): the
# ping time to HOST, MIB MiB to its receiver, then the same through
# loopback in this guest, the ceiling of what nc and the stack manage here;
# prints one BENCH line.
bench_net_send() {
    if ! net_wait_peer "$1"; then
        echo "BENCH FAIL $1 never answered"
        return 1
    fi
    set -- "$1" "$2" "$3" $(ping -c 20 -A "$1" 2>&1 | ping_stats)
    rtt=$7
    t0=$(now_cs)
    net_retry net_zeros "$1" "$2" "$3" || { echo "BENCH FAIL send: $(tail -n 1 "$NET_DIR/err")"; return 1; }
    t1=$(now_cs)
    net_listen $NET_LOOP_PORT >/dev/null 2>&1 &
    wait_until 30 net_listening $NET_LOOP_PORT || { echo "BENCH FAIL no loopback listener"; return 1; }
    t2=$(now_cs)
    net_zeros 127.0.0.1 $NET_LOOP_PORT "$3" || { echo "BENCH FAIL loopback send"; return 1; }
    t3=$(now_cs)
    echo "BENCH net mib=$3 xen_cs=$((t1 - t0)) loop_cs=$((t3 - t2)) rtt_avg_ms=$rtt"
}

# net_word WORD: one xenolith.net= (ping:HOST:COUNT, tcp-recv:PORT,
# tcp-send:HOST:PORT:MIB) or xenolith.bench= (net-recv:PORT,
# net-send:HOST:PORT:MIB) word.
net_word() {
    mkdir -p "$NET_DIR"
    kind=${1%%:*}
    saved_ifs=$IFS
    IFS=:
    set -- ${1#*:}
    IFS=$saved_ifs
    case $kind:$# in
    ping:2) net_ping "$1" "$2" ;;
    tcp-recv:1) net_recv_start "$1" ;;
    tcp-send:3) net_send "$1" "$2" "$3" ;;
    net-recv:1) net_listen "$1" >/dev/null && echo "BENCH net-recv done" || echo "BENCH FAIL net-recv" ;;
    net-send:3) bench_net_send "$1" "$2" "$3" ;;
    *) echo "NET FAIL cannot read the word $kind with $# arguments" ;;
    esac
}

# net_finish: after the last word, the background receivers' results, then
# netfront's complaints in dmesg, if any (its "xen_netfront:" lines, its
# device's "vif vif-N" ones, xenbus errors as "vif vif-N: <errno> <what>"),
# and transmit timeouts.
net_finish() {
    for dir in "$NET_DIR"/recv-*; do
        [ -d "$dir" ] && net_recv_finish "$dir"
    done
    bad=$(dmesg | grep -i -E '(xen_netfront|netfront|vif vif-[0-9]).*(error|fail|bad|invalid|missing|too many|slots|offset|rocket|fatal)|vif vif-[0-9]+: [0-9]+ |NETDEV WATCHDOG' |
        head -n 1)
    if [ -n "$bad" ]; then
        echo "NET FAIL $bad"
        return 1
    fi
    return 0
}

# --- end of net functions ---

# net_up ADDR/LEN (xenolith.ip=): loads xen-netfront, waits for eth0 and
# its carrier (the backend connected), gives it the address; prints
# "NET eth0 <mac> <addr>".
net_up() {
    net_used=1
    if ! insmod /lib/modules/xen-netfront.ko; then
        echo "NET FAIL insmod xen-netfront"
        return 1
    fi
    if ! wait_until 30 [ -e /sys/class/net/eth0 ]; then
        echo "NET FAIL no eth0 after 30 s"
        return 1
    fi
    ip link set lo up && ip addr add "$1" dev eth0 && ip link set eth0 up ||
        { echo "NET FAIL ip could not set up eth0 with $1"; return 1; }
    if ! wait_until 30 grep -q -x 1 /sys/class/net/eth0/carrier 2>/dev/null; then
        echo "NET FAIL eth0 has no carrier after 30 s: its vif never connected"
        return 1
    fi
    echo "NET eth0 $(cat /sys/class/net/eth0/address) $1"
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
    if ! wait_until 30 [ -b /dev/xvda ]; then
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
        disk_trim /mnt || return 1
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

# bench_blk KIND (xenolith.bench=blk-xen|blk-virtio): 128 MiB written and
# read back in 1 MiB direct I/O, then 500 random 4 KiB direct reads within
# those 128 MiB (one dd each, so process start-up is in that number), timed
# in microseconds (now_us), on xvda through
# blkfront or on vda through virtio-blk; prints one BENCH line. blkfront
# gets 1 MiB requests (256 indirect segments; its default of 32 makes
# 128 KiB ones) and a 16-page ring, its own module parameters.
bench_blk() {
    if [ "$1" = blk-xen ]; then
        insmod /lib/modules/xen-blkfront.ko max_indirect_segments=256 max_ring_page_order=4
        dev=/dev/xvda
    else
        for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do
            insmod "/lib/modules/$m.ko"
        done
        dev=/dev/vda
    fi
    if ! wait_until 30 [ -b $dev ]; then
        echo "BENCH FAIL no $dev"
        return 1
    fi
    t0=$(now_us)
    dd if=/dev/zero of=$dev bs=1M count=128 oflag=direct 2>/dev/null || { echo "BENCH FAIL write"; return 1; }
    t1=$(now_us)
    dd if=$dev of=/dev/null bs=1M count=128 iflag=direct 2>/dev/null || { echo "BENCH FAIL read"; return 1; }
    t2=$(now_us)
    n=0
    seed=12345
    while [ $n -lt 500 ]; do
        seed=$(((seed * 1103515245 + 12345) % 2147483648))
        dd if=$dev of=/dev/null bs=4k count=1 skip=$((seed % 32768)) iflag=direct 2>/dev/null ||
            { echo "BENCH FAIL random read"; return 1; }
        n=$((n + 1))
    done
    t3=$(now_us)
    echo "BENCH blk mib=128 write_us=$((t1 - t0)) read_us=$((t2 - t1)) reads=500 random_us=$((t3 - t2))"
    [ "$1" = blk-xen ] && echo vbd-51712 >/sys/bus/xen/drivers/vbd/unbind
    return 0
}

# mem_total: MemTotal from /proc/meminfo, in kB.
mem_total() {
    while read -r key value _; do
        [ "$key" = MemTotal: ] && echo "$value" && return 0
    done </proc/meminfo
    return 1
}

# wait_mem_total below|above KB: polls MemTotal until it is at most (below)
# or at least (above) KB, for up to 300 polls a second apart; prints it.
wait_mem_total() {
    i=0
    while [ $i -lt 300 ]; do
        now=$(mem_total)
        case $1 in
        below) [ "$now" -le "$2" ] && echo "$now" && return 0 ;;
        above) [ "$now" -ge "$2" ] && echo "$now" && return 0 ;;
        esac
        i=$((i + 1))
        sleep 1
    done
    echo "$now"
    return 1
}

# balloon_test MIB (xenolith.balloon=MIB): says it is ready, then waits for
# the toolstack to lower memory/target (xl mem-set) and the balloon driver
# to give MIB MiB back (MemTotal falls), then for the target to come back
# and MemTotal with it. The host types the mem-set commands on the driver
# domain's console when it sees these lines (the balloon smoke).
balloon_test() {
    start=$(mem_total)
    echo "BALLOON-READY MemTotal=$start kB"
    if ! now=$(wait_mem_total below $((start - $1 * 1024))); then
        echo "BALLOON-FAIL MemTotal stayed at $now kB"
        return 1
    fi
    echo "BALLOON-SHRUNK MemTotal=$now kB"
    if ! now=$(wait_mem_total above "$start"); then
        echo "BALLOON-FAIL MemTotal came back only to $now kB"
        return 1
    fi
    echo "BALLOON-GROWN MemTotal=$now kB"
}

# run_words [test]: the xenolith.ip=, xenolith.net=, xenolith.bench= and
# (with the check list only) xenolith.disk= words, in command-line order;
# then the network's results. A benchmark powers off when done.
run_words() {
    net_used=
    for word in $(cat /proc/cmdline); do
        case $word in
        xenolith.disk=*) [ "$1" = test ] && disk_test "${word#xenolith.disk=}" ;;
        xenolith.ip=*) net_up "${word#xenolith.ip=}" ;;
        xenolith.balloon=*) balloon_test "${word#xenolith.balloon=}" ;;
        xenolith.net=*)
            net_used=1
            net_word "${word#xenolith.net=}"
            ;;
        xenolith.bench=blk*)
            bench_blk "${word#xenolith.bench=}"
            poweroff -f
            ;;
        xenolith.bench=net-*)
            net_word "${word#xenolith.bench=}"
            poweroff -f
            ;;
        esac
    done
    [ -n "$net_used" ] && net_finish
    return 0
}

case " $(cat /proc/cmdline) " in
*" xenolith.test=1 "*)
    check xen xen_detected
    check clocksource xen_clocksource
    check hvc hvc_console
    check dmesg-clean dmesg_clean
    check xenbus xenbus_up
    echo "CHECKS DONE $passed passed, $failed failed"
    run_words test
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
*) run_words ;;
esac

# cttyhack opens the real console device (hvc0, ttyS0) as the controlling
# terminal, so the shell gets job control and ^C.
echo "$console_level" >/proc/sys/kernel/printk
echo "Xenolith guest shell; leaving it powers the guest off"
setsid cttyhack sh
poweroff -f
