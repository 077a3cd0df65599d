#!/usr/bin/env bash
# Instructions per ingested message, counted with valgrind's callgrind on this machine
# (x86_64) as a proxy for the cost on ARM gateways, where emulated timings mean nothing.
# BENCHMARKS.md ("Size and cost on ARM") has the figures and what they mean.
#
# usage: bash scripts/bench-instructions.sh [case ...]
#        bash scripts/bench-instructions.sh --daemon
#   cases: json plain tasmota ttn sds011 (default: all)
#   --daemon: the whole citysensed under callgrind, fed JSON over a local mosquitto by
#     citysense-loadgen: (Ir(2M msgs) - Ir(M msgs)) / M (scripts/bench-instructions-daemon.sh);
#     DAEMON_MESSAGES (M, default 10000) and DAEMON_RATE (msg/s, default 1000) tune it.
#   NO_BUILD=1 uses the binaries already built in target/release/.
#
# Each case is five runs of `examples/ingest_cost.rs` (the daemon's own mapping or decoding,
# series lookup and aggregator, fed in process on a simulated clock; no broker or port), each
# under `valgrind --tool=callgrind`, whose total instruction count (Ir) is the figure:
#   A = K windows of messages, last window open    B = 2K windows, last open
#   C = K windows, last window closed too          G(K), G(2K) = making the messages only
# (B - A) - (G(2K) - G(K)) is K windows of messages plus K window closes (all-in);
# C - A is one window close (every sensor's point encoded to line protocol);
# start-up, config parsing and the feed's own work cancel out in the differences.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || {
    echo "bench-instructions: needs valgrind (apt-get install valgrind)" >&2
    exit 1
}
bin=${CARGO_TARGET_DIR:-target}/release/examples/ingest_cost
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Total Ir of one run of ingest_cost with these arguments; its JSON line stays in last.json.
ir() {
    if ! valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$bin" "$@" \
        >"$work/last.json" 2>"$work/vg.log"; then
        cat "$work/vg.log" >&2
        exit 1
    fi
    awk '/^totals:/ { print $2 }' "$work/cg.out"
}
field() { grep -o "\"$1\":[0-9]*" "$work/last.json" | cut -d: -f2; }

# case -> sensors, seconds between messages of one sensor, K (60 s windows per run A).
params() {
    case $1 in
    json | plain | tasmota | ttn) echo "1000 10 1" ;; # 1000 devices reporting every 10 s
    sds011) echo "8 1 5" ;;                           # 8 ports, the sensor's 1 Hz output
    *)
        echo "bench-instructions: unknown case $1" >&2
        exit 2
        ;;
    esac
}

if [ "${1:-}" = --daemon ]; then
    # shellcheck source=scripts/bench-instructions-daemon.sh
    . scripts/bench-instructions-daemon.sh
    daemon
    exit 0
fi

cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(json plain tasmota ttn sds011)
[ -n "${NO_BUILD:-}" ] || nice -n 5 cargo build --release --locked --example ingest_cost >&2

printf '%-8s %7s %9s %14s %10s %10s %12s %10s\n' \
    case sensors "N msgs" "total Ir (B)" "Ir/msg" "ingest" "Ir/close" "per sensor"
for c in "${cases[@]}"; do
    read -r sensors interval k <<<"$(params "$c")"
    args=(--input "$c" --sensors "$sensors" --interval-secs "$interval")
    a=$(ir "${args[@]}" --windows "$k")
    n=$(field messages)
    [ "$(field readings)" = "$(field accepted)" ] || {
        echo "bench-instructions: $c: readings dropped" >&2
        exit 1
    }
    b=$(ir "${args[@]}" --windows $((2 * k)))
    closed=$(ir "${args[@]}" --windows "$k" --close-last)
    ga=$(ir "${args[@]}" --windows "$k" --generate-only)
    gb=$(ir "${args[@]}" --windows $((2 * k)) --generate-only)
    awk -v c="$c" -v s="$sensors" -v n="$n" -v k="$k" -v a="$a" -v b="$b" -v cl="$closed" \
        -v ga="$ga" -v gb="$gb" 'BEGIN {
        all = (b - a) - (gb - ga); one = cl - a
        printf "%-8s %7d %9d %14d %10.0f %10.0f %12d %10.0f\n",
            c, s, n, b, all / n, (all - k * one) / n, one, one / s
    }'
done
cat <<'EOF'

N msgs: messages in K windows; total Ir (B): run B's whole count, start-up included;
Ir/msg: (B - A) - (G(2K) - G(K)) over N, i.e. per message with the window closes amortised;
ingest: the same without the closes (map/decode, series lookup, aggregator insert);
Ir/close: one window close of all sensors (C - A); per sensor: that over the sensors.
EOF
