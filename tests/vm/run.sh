#!/usr/bin/env bash
# The VM test: boots a real Debian bookworm with systemd under qemu (TCG, no network),
# installs the given amd64 .deb and checks the service as an operator would see it
# (tests/vm/guest.sh runs the checks inside), then cuts the power of the guest (SIGKILL of
# qemu) 10 times while it spools with its store down and checks what the store holds at the
# end. Usage, as root: bash tests/vm/run.sh target/packages/citysense_<ver>_amd64.deb
#
# The guest image is cached in $CITYSENSE_BUILD_CACHE (tests/vm/image.sh). The .deb and the
# guest script go in, and the results come out, through a 9p share; the guest's second serial
# port (/dev/ttyS1) is a socket here, into which this script plays SDS011 frames.
set -euo pipefail
cd "$(dirname "$0")/../.."
src=$PWD
# shellcheck source=scripts/cross/chroot.sh
source scripts/cross/chroot.sh
# shellcheck source=tests/vm/image.sh
source tests/vm/image.sh

deb=${1:?usage: tests/vm/run.sh <path-to-amd64.deb>}
[ -f "$deb" ] || { echo "no such .deb: $deb" >&2; exit 1; }
if [ "$(id -u)" -ne 0 ]; then
    echo "tests/vm/run.sh needs root (debootstrap, chroot, mount)" >&2
    exit 1
fi
CUTS=${CITYSENSE_VM_CUTS:-10}
# How far behind the guest's clock starts in the main boot (no RTC, check g): 3 days.
CLOCK_BEHIND_SECS=259200
started=$(date +%s)

# qemu-system-x86 from the machine's own release. A qemu-utils from backports (as on a fresh
# CI machine) holds qemu's shared parts at its version: then take qemu-system-x86 of that
# version from backports, through a copy of the machine's source lists with backports added,
# so the machine's own configuration is left untouched.
install_qemu() {
    command -v qemu-system-x86_64 >/dev/null 2>&1 && return
    echo "== installing qemu-system-x86"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    local utils parts
    utils=$(dpkg-query -W -f='${Status} ${Version}' qemu-utils 2>/dev/null | sed -n 's/^install ok installed //p')
    if [[ "$utils" != *bpo* ]]; then
        apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null
        return
    fi
    parts=$(mktemp -d)
    cp -a /etc/apt/sources.list.d/. "$parts/"
    (
        . /etc/os-release
        echo "deb ${DEBIAN_MIRROR:-http://deb.debian.org/debian} ${VERSION_CODENAME}-backports main" \
            >"$parts/citysense-vm-backports.list"
    )
    local opts=(-o "Dir::Etc::SourceParts=$parts")
    apt-get update -qq "${opts[@]}"
    # -t: its dependencies (seabios) come from backports too where the release's are too old.
    apt-get install -y -qq --no-install-recommends "${opts[@]}" \
        -t "$(. /etc/os-release && echo "$VERSION_CODENAME")-backports" "qemu-system-x86=$utils" >/dev/null
    rm -rf "$parts"
    apt-get update -qq
}
install_qemu
command -v socat >/dev/null 2>&1 || apt-get install -y -qq socat >/dev/null

t0=$(date +%s)
img=$(vm_image)
t_image=$(($(date +%s) - t0))
work=$(mktemp -d /var/tmp/citysense-vm.XXXXXX)
feeder=
qemu_pid=
# What the guest wrote (results, evidence, journals) is kept for a look after the run.
keep=${CITYSENSE_VM_OUT:-/var/tmp/citysense-vm-last}
cleanup() {
    [ -n "$feeder" ] && kill "$feeder" 2>/dev/null || true
    [ -n "$qemu_pid" ] && kill -9 "$qemu_pid" 2>/dev/null || true
    if [ -d "$work/share/out" ]; then
        rm -rf "$keep"
        cp -r "$work/share/out" "$keep"
        cp "$work"/console-*.log "$keep/" 2>/dev/null || true
        echo "(guest output kept in $keep)"
    fi
    rm -rf "$work"
}
trap cleanup EXIT
share=$work/share
mkdir -p "$share/out"
cp --sparse=always "$img/rootfs.img" "$work/disk.img"
cp "$deb" "$share/citysense.deb"
cp tests/vm/guest.sh "$share/guest.sh"

# Starts qemu in the background: $1 = mode for guest.sh, $2 = -rtc base.
boot() {
    local mode=$1 rtc=$2
    echo "$mode" >"$share/mode"
    rm -f "$work/sds011.sock"
    qemu-system-x86_64 -accel tcg -m 1024 -smp 2 -display none -monitor none -no-reboot \
        -kernel "$img/vmlinuz" -initrd "$img/initrd.img" \
        -append "root=/dev/vda console=ttyS0 quiet" \
        -drive "file=$work/disk.img,format=raw,if=virtio" \
        -virtfs "local,path=$share,mount_tag=share,security_model=none,id=share" \
        -serial "file:$work/console-$mode.log" \
        -chardev "socket,id=sds011,path=$work/sds011.sock,server=on,wait=off" \
        -serial chardev:sds011 \
        -rtc "base=$rtc" -nic none &
    qemu_pid=$!
}

# SDS011 frames into the guest's /dev/ttyS1, one a second as the sensor sends them:
# PM2.5 12.3 and PM10 45.6 ug/m3 (0x007b, 0x01c8), device id 0x3412, checksum 0x8a.
# Nothing reads what the daemon sends (its init commands): the guest's UART never drains,
# as with a sensor that is wired receive-only or an adapter that is stuck. Closing the port
# then waited the kernel's closing_wait (30 s, as long as TimeoutStopSec=) until the daemon
# discarded unsent output before close; check e-stop holds the stop to 10 s.
feed_sds011() {
    local i
    for i in $(seq 1 100); do [ -S "$work/sds011.sock" ] && break; sleep 0.1; done
    while :; do
        printf '\xaa\xc0\x7b\x00\xc8\x01\x12\x34\x8a\xab'
        sleep 1
    done | socat -u - "UNIX-CONNECT:$work/sds011.sock" >/dev/null 2>&1 &
    feeder=$!
}

wait_qemu() {
    local limit=$1 i
    for ((i = 0; i < limit; i++)); do
        kill -0 "$qemu_pid" 2>/dev/null || { wait "$qemu_pid" || true; qemu_pid=; return 0; }
        sleep 1
    done
    echo "qemu still running after ${limit}s: killed" >&2
    kill -9 "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
    qemu_pid=
    return 1
}

show_failure() {
    echo "---- guest log"
    cat "$share/out/guest.log" 2>/dev/null || true
    echo "---- console ($1)"
    tail -n 60 "$work/console-$1.log" 2>/dev/null || true
}

if [ -n "${CITYSENSE_VM_PROBE:-}" ]; then
    boot probe utc
    feed_sds011
    wait_qemu 300 || true
    cat "$share/out/guest.log"
    exit 0
fi

echo "== VM test: main boot (checks a-g), clock $((CLOCK_BEHIND_SECS / 86400)) days behind"
echo "$CLOCK_BEHIND_SECS" >"$share/clock_behind_secs"
t0=$(date +%s)
boot main "$(date -u -d "@$(($(date +%s) - CLOCK_BEHIND_SECS))" +%Y-%m-%dT%H:%M:%S)"
feed_sds011
wait_qemu 900 || true
kill "$feeder" 2>/dev/null || true
feeder=
t_main=$(($(date +%s) - t0))
sed -n 's/^/  /p' "$share/out/evidence" 2>/dev/null || true
if ! grep -q '^DONE main' "$share/out/results" 2>/dev/null; then
    show_failure main
fi

echo "== VM test: $CUTS power cuts (SIGKILL of qemu) while spooling with the store down"
t0=$(date +%s)
for ((n = 1; n <= CUTS; n++)); do
    boot "cut-$n" "utc"
    ready=
    for ((i = 0; i < 720; i++)); do
        [ -e "$share/out/ready-cut-$n" ] && { ready=1; break; }
        kill -0 "$qemu_pid" 2>/dev/null || break
        sleep 0.25
    done
    if [ -z "$ready" ]; then
        echo "FAIL h-boot-$n: the service did not come up after cut $((n - 1))" >>"$share/out/results"
        show_failure "cut-$n"
        kill -9 "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
        qemu_pid=
        continue
    fi
    # A random moment while windows are being closed and spooled (2 s windows).
    delay=$((3 + RANDOM % 7)).$((RANDOM % 10))
    sleep "$delay"
    date +%s.%N >"$share/out/cut-time-$n"
    kill -9 "$qemu_pid"
    wait "$qemu_pid" 2>/dev/null || true
    qemu_pid=
    echo "  cut $n after ${delay}s of spooling"
done
boot final utc
wait_qemu 300 || show_failure final
t_cuts=$(($(date +%s) - t0))

echo "== VM test: results"
sed -n 's/^/  /p' "$share/out/cut-evidence" 2>/dev/null || true
bash tests/vm/cuts.sh "$share/out" "$CUTS" || echo "FAIL h-figures: see above" >>"$share/out/results"
cat "$share/out/results" 2>/dev/null || true
echo "== VM test times: image ${t_image}s (cached: $img), main boot ${t_main}s," \
    "power cuts ${t_cuts}s, total $(($(date +%s) - started))s"
fails=$(grep -c '^FAIL' "$share/out/results" 2>/dev/null || true)
passes=$(grep -c '^PASS' "$share/out/results" 2>/dev/null || true)
if [ "${fails:-0}" -ne 0 ] || [ "${passes:-0}" -eq 0 ] || ! grep -q '^DONE main' "$share/out/results"; then
    echo "VM test failed: ${fails:-0} failed, ${passes:-0} passed" >&2
    exit 1
fi
echo "VM test ok: $passes checks passed"
