#!/usr/bin/env bash
# Memory per series of citysensed (see BENCHMARKS.md, "Series scaling"): one daemon per series
# count, fed by citysense-loadgen through mosquitto, writing to VictoriaMetrics.
#
#   bash benches/rss.sh [BIN_DIR] [SENSORS...]      # default: target/release, 5 5000 50000
#   SMAPS=1 bash benches/rss.sh DIR 5      # also resident KiB by mapping (binary, heap, anon, ...)
#   WRAP="heaptrack -o /tmp/ht" bash benches/rss.sh DIR 5000   # heap profile (unstripped build)
#
# Series = 2 x sensors (pm2_5, pm10). Each run: 60k msg/s (RATE) for 10 s (SECS), then 12 s
# more so both windows the load touched close; prints VmHWM / VmRSS of the daemon and its
# series / windows / points counters. Same config as benches/e2e.sh (10-second windows, nine
# stats incl. p50 and p95), plus `clock.sync = "assume"` so an unsynchronised VM still closes.
# Builds target/release when it has no binaries; installs mosquitto and victoria-metrics if missing.
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"
need_tools mosquitto:mosquitto victoria-metrics:victoria-metrics curl:curl
BIN=${1:-target/release}
shift || true
SENSORS=("$@")
[ ${#SENSORS[@]} -gt 0 ] || SENSORS=(5 5000 50000)
if [ ! -x "$BIN/citysensed" ] && [ "$BIN" = target/release ]; then
    cargo build --release --locked --bins
fi
RATE=${RATE:-60000}
# The window statistics, as TOML strings; e.g. STATS='"mean", "max"' for no percentiles.
STATS=${STATS:-'"mean", "min", "max", "count", "sum", "last", "stddev", "p50", "p95"'}
SECS=${SECS:-10}

# Resident KiB by mapping: the binary's own pages, heap (brk), other anonymous (malloc arenas,
# mmapped blocks, thread stacks), shared libraries.
smaps() {
    awk -v bin="citysensed" '
        /^[0-9a-f]+-[0-9a-f]+ / {
            name = $6; kind = "other"
            if (name == "") kind = "anon"
            else if (name == "[heap]") kind = "heap"
            else if (index(name, bin)) kind = "binary"
            else if (name ~ /\.so/) kind = "libs"
            else if (name ~ /^\[stack/) kind = "stack"
        }
        /^Rss:/ { kb[kind] += $2 }
        END { for (k in kb) printf "    %-7s %7d KiB\n", k, kb[k] }' "/proc/$1/smaps"
}

run() {
    local sensors=$1 w mp vp hp dpid mpid vpid
    w=$(mktemp -d /tmp/citysense-rss.XXXXXX)
    mp=$((20000 + RANDOM % 10000)) vp=$((mp + 1)) hp=$((mp + 2))
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n' "$mp" \
        >"$w/m.conf"
    mosquitto -c "$w/m.conf" >"$w/m.log" 2>&1 &
    mpid=$!
    victoria-metrics -httpListenAddr="127.0.0.1:$vp" -storageDataPath="$w/vm" \
        -dedup.minScrapeInterval=1ms >"$w/vm.log" 2>&1 &
    vpid=$!
    sleep 1
    cat >"$w/c.toml" <<EOT
[gateway]
id = "rss"
[aggregation]
window_secs = 10
grace_secs = 1
stats = [$STATS]
[[mqtt]]
host = "127.0.0.1"
port = $mp
client_id = "citysense-rss"
clean_session = true
[[mqtt.subscription]]
qos = 0
$("$BIN/citysense-loadgen" --print-subscription --format json)
[clock]
sync = "assume"
[output]
api = "v2"
url = "http://127.0.0.1:$vp"
org = "bench"
bucket = "bench"
token = "bench"
[spool]
dir = "$w/spool"
[metrics]
listen = "127.0.0.1:$hp"
EOT
    # shellcheck disable=SC2086
    ${WRAP:-} "$BIN/citysensed" run -c "$w/c.toml" >"$w/d.log" 2>&1 &
    dpid=$!
    until curl -fsS -o /dev/null "http://127.0.0.1:$hp/healthz" 2>/dev/null; do sleep 0.05; done
    sleep 1
    local pid
    pid=$(pgrep -n -f "citysensed run -c $w/c.toml")
    "$BIN/citysense-loadgen" --port "$mp" --rate "$RATE" --seconds "$SECS" --sensors "$sensors" \
        --qos 0 --format json >"$w/loadgen.json" 2>"$w/loadgen.err"
    sleep 12
    printf '%7d series: %s | %s\n' $((sensors * 2)) \
        "$(grep -E 'VmHWM|VmRSS' "/proc/$pid/status" | tr -s ' \t\n' ' ')" \
        "$(curl -fsS "http://127.0.0.1:$hp/metrics" |
            grep -E '^citysense_(series|windows_closed_total|points_emitted_total) ' | tr '\n' ' ')"
    [ -z "${SMAPS:-}" ] || smaps "$pid"
    kill -TERM "$pid" # the daemon itself, not a WRAP process in front of it
    wait "$dpid" || true
    kill "$mpid" "$vpid"
    wait "$mpid" "$vpid" 2>/dev/null || true
    rm -rf "$w"
}

for s in "${SENSORS[@]}"; do
    run "$s"
done
