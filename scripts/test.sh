#!/usr/bin/env bash
# Runs every check and test of citysense on a fresh Debian machine.
# Installs the real servers the integration tests start (mosquitto, influxd 1.x,
# VictoriaMetrics, nginx, socat, systemd-analyze, chromium and chromium-driver) when they are missing; needs root for that (apt-get),
# and for the Raspberry Pi build chroot (scripts/packages.sh: debootstrap, chroot, mount) and
# the VM test (tests/vm/run.sh: its image, qemu-system-x86).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v influxd >/dev/null 2>&1 || need+=(influxdb)
command -v victoria-metrics >/dev/null 2>&1 || need+=(victoria-metrics)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# nginx terminates mutual TLS in front of VictoriaMetrics (tests/it/store_tls.rs).
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
# cargo fuzz builds libFuzzer from C++ source (scripts/fuzz-smoke.sh).
command -v g++ >/dev/null 2>&1 || need+=(g++)
# systemd-analyze (tests/it/systemd_unit.rs) checks the unit offline; no running systemd needed.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# Headless Chromium and its WebDriver for the status page test (tests/it/status_page.rs).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
# The Raspberry Pi build chroot (scripts/cross/chroot.sh).
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
    echo "== installing test servers: ${need[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "need root to apt-get install ${need[*]} (run with sudo)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The packages enable system services; tests start their own servers on free ports.
for svc in mosquitto influxdb victoria-metrics nginx; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
        systemctl stop "$svc" || true
    fi
done

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --all-targets --locked
echo "== Raspberry Pi builds: amd64, arm64, armhf built, tested and packaged (scripts/packages.sh)"
bash scripts/packages.sh
echo "== VM test: the amd64 package on a real systemd, and power cuts (tests/vm/run.sh)"
# 5 power cuts keep the suite's time down; the README's figures come from 10.
CITYSENSE_VM_CUTS=${CITYSENSE_VM_CUTS:-5} bash tests/vm/run.sh target/packages/citysense_*_amd64.deb
echo "== fuzz smoke (every fuzz target for a few seconds over its seeds)"
bash scripts/fuzz-smoke.sh
