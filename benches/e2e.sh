#!/usr/bin/env bash
# End-to-end benchmark of citysensed (see BENCHMARKS.md): one command from a fresh clone.
#
#   bash benches/e2e.sh [--rates "10000 30000 60000 100000 130000"] [--runs 3] [--seconds 10]
#                       [--format json|plain|tasmota|ttn] [--qos 0|1] [--sensors 1000] [--peer]
#                       [--outputs 1] [--no-scaling]
#
# Builds the release binaries, starts mosquitto and VictoriaMetrics on free 127.0.0.1 ports in
# a temp dir, and for each rate and run: starts a fresh citysensed (10-second windows, writing
# to VictoriaMetrics through /api/v2/write), drives it with citysense-loadgen, samples the
# daemon's CPU and RSS every second from /proc, stops it (SIGTERM flushes the open windows),
# and checks in the store that the sum of all `pm2_5_count` fields equals the messages sent.
# With --peer, Node-RED (npm, installed into a temp dir outside the repo) runs the same flow at
# the same rates. Installs missing servers with apt-get only (needs root, like scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

RATES="10000 30000 60000 100000 130000"
RUNS=3
SECONDS_LOAD=10
FORMAT=json
QOS=0
SENSORS=1000
PEER=0
PERF=0
OUTPUTS=1 # [[output]] tables, all to the same VictoriaMetrics (its dedup keeps one copy)
SCALING=1
while [ $# -gt 0 ]; do
    case "$1" in
        --rates) RATES=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --seconds) SECONDS_LOAD=$2; shift 2 ;;
        --format) FORMAT=$2; shift 2 ;;
        --qos) QOS=$2; shift 2 ;;
        --sensors) SENSORS=$2; shift 2 ;;
        --peer) PEER=1; shift ;;
        --perf) PERF=1; shift ;; # perf record (cpu-clock) of the daemon into each run's dir
        --outputs) OUTPUTS=$2; shift 2 ;; # the cost of fan-out: N outputs from one spool
        --no-scaling) SCALING=0; shift ;; # skip the series scaling runs

        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

# --- prerequisites ---------------------------------------------------------------------------
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
need_tools mosquitto:mosquitto mosquitto_sub:mosquitto-clients victoria-metrics:victoria-metrics \
    curl:curl
[ "$PEER" = 0 ] || need_tools node:nodejs npm:npm
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

echo "== building release binaries"
cargo build --release --locked --bins
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/citysense-bench.XXXXXX)
# Copies: a rebuild while the benchmark runs must not swap the binaries under it.
cp "$TARGET/release/citysensed" "$TARGET/release/citysense-loadgen" "$WORK/"
DAEMON=$WORK/citysensed
LOADGEN=$WORK/citysense-loadgen
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# A port nothing listens on (bash's /dev/tcp: connect refused = free).
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}
now_ms() { date +%s%3N; }
wait_http() { # url timeout_s
    local deadline=$(($(date +%s) + $2))
    until curl -fsS -o /dev/null "$1" 2>/dev/null; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "timeout waiting for $1" >&2; return 1; }
        sleep 0.02
    done
}

# --- servers -----------------------------------------------------------------------------------
MQTT_PORT=$(free_port)
cat >"$WORK/mosquitto.conf" <<EOF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 1000000
max_inflight_messages 1000
sys_interval 1
log_dest file $WORK/mosquitto.log
user root
EOF
"$MOSQUITTO" -c "$WORK/mosquitto.conf" >/dev/null 2>&1 &
BROKER_PID=$!
PIDS+=("$BROKER_PID")
VM_PORT=$(free_port)
victoria-metrics -storageDataPath="$WORK/vm" -httpListenAddr="127.0.0.1:$VM_PORT" \
    -retentionPeriod=100y -search.latencyOffset=0 -dedup.minScrapeInterval=1ms \
    >"$WORK/vm.log" 2>&1 &
PIDS+=($!)
VM=http://127.0.0.1:$VM_PORT
wait_http "$VM/health" 30
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null && break; sleep 0.05; done

# Broker counter from $SYS (retained, refreshed every sys_interval).
broker_dropped() {
    mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -C 1 -W 3 \
        -t '$SYS/broker/publish/messages/dropped' 2>/dev/null || echo 0
}
# One number from an instant query (0 when empty).
vm_scalar() {
    curl -fsS "$VM/api/v1/query" --data-urlencode "query=$1" |
        grep -o '"value":\[[^]]*\]' | head -1 | sed 's/.*,"\(.*\)"\]/\1/' | grep . || echo 0
}
metric() { # url name: sum of the samples of one metric in a Prometheus text page
    curl -fsS "$1" 2>/dev/null | awk -v n="$2" '$1 == n || index($1, n "{") == 1 {s += $2} END {print s + 0}'
}
# CPU ticks (utime + stime) of a pid; the command name may contain spaces, so cut after ")".
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
TCK=$(getconf CLK_TCK)

# Samples CPU% and RSS of $1 each second into $2 until the pid is gone.
sampler() {
    local pid=$1 out=$2 prev cur
    prev=$(cpu_ticks "$pid" 2>/dev/null) || return 0
    while sleep 1; do
        cur=$(cpu_ticks "$pid" 2>/dev/null) || break
        echo "$(( (cur - prev) * 100 / TCK )) $(rss_kib "$pid" 2>/dev/null || echo 0)" >>"$out"
        prev=$cur
    done
}

# The output tables: one [output], or --outputs N [[output]] tables to the same store.
outputs_toml() {
    if [ "$OUTPUTS" = 1 ]; then
        printf '[output]\napi = "v2"\nurl = "%s"\norg = "bench"\nbucket = "bench"\ntoken = "bench"\n' "$VM"
        return
    fi
    for i in $(seq "$OUTPUTS"); do
        printf '[[output]]\nname = "o%s"\napi = "v2"\nurl = "%s"\norg = "bench"\nbucket = "bench%s"\ntoken = "bench"\n' \
            "$i" "$VM" "$i"
    done
}

# --- one citysensed run ------------------------------------------------------------------------
# Prints: offered sustained cpu_cores peak_rss_mib loss broker_dropped ready_ms latency_ms broker_cpu
# (latency: largest window close -> store 2xx while running; 0 when no window closed)
run_citysensed() {
    local rate=$1 run=$2 label="cs-$1-$2-$RANDOM"
    local dir="$WORK/$label"
    mkdir -p "$dir"
    local mport t0 t1 pid attempt
    # A port found free can be taken by someone else before the daemon binds it: retry.
    for attempt in 1 2 3; do
        mport=$(free_port)
        cat >"$dir/citysense.toml" <<EOF
[gateway]
id = "$label"
[aggregation]
window_secs = 10
grace_secs = 1
stats = ["mean", "min", "max", "count", "sum", "last", "stddev", "p50", "p95"]
[[mqtt]]
host = "127.0.0.1"
port = $MQTT_PORT
client_id = "citysense-$label"
clean_session = true
[[mqtt.subscription]]
qos = $QOS
$("$LOADGEN" --print-subscription --format "$FORMAT")
$(outputs_toml)
[spool]
dir = "$dir/spool"
[metrics]
listen = "127.0.0.1:$mport"
# Build VMs often report an unsynchronised kernel clock; the benchmark measures throughput.
[clock]
sync = "assume"
EOF
        t0=$(now_ms)
        RUST_LOG=info "$DAEMON" run -c "$dir/citysense.toml" >"$dir/daemon.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        until curl -fsS -o /dev/null "http://127.0.0.1:$mport/healthz" 2>/dev/null; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.01
        done
        kill -0 "$pid" 2>/dev/null && break
        echo "citysensed did not start (attempt $attempt): $(tail -1 "$dir/daemon.log")" >&2
    done
    t1=$(now_ms)
    # Wait for the subscription: the broker drops QoS0 messages nobody is subscribed to yet.
    for _ in $(seq 200); do
        [ "$(metric "http://127.0.0.1:$mport/metrics" citysense_source_up)" = 1 ] && break
        sleep 0.02
    done
    sleep 0.3
    local dropped0
    dropped0=$(broker_dropped)
    sampler "$pid" "$dir/samples" &
    local spid=$! c0 s0 c1 s1 ppid=""
    if [ "$PERF" = 1 ]; then
        # DWARF call graphs: the release build has no frame pointers, so `-g` loses user stacks.
        perf record -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$pid" -o "$dir/perf.data" >/dev/null 2>&1 &
        ppid=$!
    fi
    c0=$(cpu_ticks "$pid")
    b0=$(cpu_ticks "$BROKER_PID")
    s0=$(date +%s%N)
    "$LOADGEN" --port "$MQTT_PORT" --rate "$rate" --seconds "$SECONDS_LOAD" --sensors "$SENSORS" \
        --qos "$QOS" --format "$FORMAT" >"$dir/loadgen.json" 2>"$dir/loadgen.err"
    local sent
    sent=$(grep -o '"sent":[0-9]*' "$dir/loadgen.json" | cut -d: -f2)
    local got
    wait_drained "$sent" "$pid" metric "http://127.0.0.1:$mport/metrics" \
        citysense_source_messages_total
    [ -z "$ppid" ] || { kill -INT "$ppid"; wait "$ppid" || true; }
    local hwm lat
    hwm=$(hwm_kib "$pid")
    curl -fsS "http://127.0.0.1:$mport/metrics" >"$dir/metrics.txt" || true
    lat=$(metric "http://127.0.0.1:$mport/metrics" citysense_window_store_latency_max_seconds)
    # What the latency is made of: close, spool append and store request (ms), for the largest
    # and for the last close. The first close of a run creates every series in the store
    # (slow in VictoriaMetrics); the last one writes to series the store knows already.
    [ ! -s "$dir/metrics.txt" ] || awk -v rate="$rate" -v n="$SENSORS" '
        /^citysense_stage_duration(_max)?_seconds\{/ { split($1, a, "\""); v[$1 ~ /_max/, a[2]] = $2 * 1000 }
        /^citysense_window_store_latency(_max)?_seconds / { lat[$1 ~ /_max/] = $2 * 1000 }
        END { printf "%s %d %.0f %.1f %.1f %.1f %.0f %.1f %.1f %.1f\n", rate, n * 2,
            lat[1], v[1, "close"], v[1, "spool_append"], v[1, "uplink_request"],
            lat[0], v[0, "close"], v[0, "spool_append"], v[0, "uplink_request"] }' \
        "$dir/metrics.txt" >>"$WORK/stages.txt"
    kill -TERM "$pid"
    wait "$pid" || true
    kill "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    sleep 1.2 # let the broker publish $SYS once more
    local dropped1
    dropped1=$(broker_dropped)
    curl -fsS "$VM/internal/force_flush" >/dev/null || true
    sleep 1
    local stored
    stored=$(vm_scalar "sum(sum_over_time(air_quality_pm2_5_count{gateway=\"$label\"}[1d]))")
    awk -v rate="$rate" -v sent="$sent" -v got="$got" -v stored="$stored" \
        -v s0="$s0" -v s1="$s1" -v c0="$c0" -v c1="$c1" -v tck="$TCK" -v hwm="$hwm" \
        -v d0="$dropped0" -v d1="$dropped1" -v ready=$((t1 - t0)) -v secs="$SECONDS_LOAD" \
        -v lat="$lat" -v b0="$b0" -v b1="$b1" 'BEGIN {
            el = (s1 - s0) / 1e9
            printf "%d %.0f %.2f %.1f %d %d %d %.0f %.2f\n", sent / secs, got / el, (c1 - c0) / tck / el,
                hwm / 1024, sent - stored, d1 - d0, ready, lat * 1000, (b1 - b0) / tck / el
        }'
}

# wait_drained SENT PID COUNT_CMD...: waits until the system under test (PID) has counted SENT
# messages (COUNT_CMD prints its count), or its count stops moving for 2 s. Sets the caller's
# got, and s1/c1/b1: time, its CPU and the broker's CPU when the count last moved.
wait_drained() {
    local sent=$1 pid=$2 last=-1 still=0
    shift 2
    got=0
    while :; do
        got=$("$@")
        if [ "$got" != "$last" ]; then
            still=0
            s1=$(date +%s%N)
            c1=$(cpu_ticks "$pid")
            b1=$(cpu_ticks "$BROKER_PID")
        else
            still=$((still + 1))
        fi
        [ "$got" -lt "$sent" ] || break
        [ "$still" -lt 20 ] || break
        last=$got
        sleep 0.1
    done
}

median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

# Prints the table of medians for one system from its result file (one line per run).
header() {
    printf '%-11s %9s %10s %10s %9s %9s %8s %9s %8s %8s\n' system offered sustained "cpu(cores)" \
        "rss(MiB)" loss "brk-drop" "ready(ms)" "lat(ms)" "brk-cpu"
}
table() { # name file
    for rate in $RATES; do
        local rows
        rows=$(grep "^$rate " "$2" | cut -d' ' -f2-) || continue
        local cols=()
        for i in 1 2 3 4 5 6 7 8 9; do cols+=("$(echo "$rows" | cut -d' ' -f$i | median)"); done
        printf '%-11s %9s %10s %10s %9s %9s %8s %9s %8s %8s\n' "$1" "${cols[@]}"
    done
}

if [ "$PEER" = 1 ]; then
    [ "$FORMAT" = json ] || { echo "--peer runs the json flow only" >&2; exit 2; }
    # shellcheck source=benches/nodered.sh
    source "$ROOT/benches/nodered.sh"
    nodered_install
fi

: >"$WORK/citysensed.txt"
: >"$WORK/stages.txt"
: >"$WORK/nodered.txt"
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -m | awk '/Mem:/ {print $2}') MiB"
echo "== rates: $RATES msg/s, $RUNS runs of ${SECONDS_LOAD}s, format $FORMAT, QoS $QOS, $SENSORS sensors, $OUTPUTS output(s)"
for run in $(seq "$RUNS"); do
    for rate in $RATES; do
        r=$(run_citysensed "$rate" "$run")
        echo "citysensed rate=$rate run=$run: $r"
        echo "$rate $r" >>"$WORK/citysensed.txt"
        if [ "$PEER" = 1 ]; then
            r=$(run_nodered "$rate" "$run")
            echo "node-red   rate=$rate run=$run: $r"
            echo "$rate $r" >>"$WORK/nodered.txt"
        fi
    done
done

echo
echo "== medians of $RUNS runs (offered = loadgen publish rate, sustained = messages the system"
echo "   received per second until drained, loss = messages sent - sum of pm2_5_count in the store)"
header
table citysensed "$WORK/citysensed.txt"
[ "$PEER" = 0 ] || table node-red "$WORK/nodered.txt"

echo
echo "== series scaling: citysensed at ${SCALE_RATE:=60000} msg/s, 2 quantities per sensor"
header
[ "$SCALING" = 0 ] || for sensors in 5 5000 50000; do
    r=$(SENSORS=$sensors run_citysensed "$SCALE_RATE" scale)
    printf '%-11s %9s %10s %10s %9s %9s %8s %9s %8s %8s\n' "$((sensors * 2))-series" $r
done

echo
echo "== window close -> store by step (ms): largest in the run, and the run's last close"
printf '%9s %8s | %7s %7s %7s %8s | %7s %7s %7s %8s\n' offered series "max:all" close spool \
    request "last:all" close spool request
sort -n -k2 -k1 "$WORK/stages.txt" |
    awk '{printf "%9s %8s | %7s %7s %7s %8s | %8s %7s %7s %8s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10}'

echo
echo "== static figures"
cp "$DAEMON" "$WORK/citysensed.stripped" && strip "$WORK/citysensed.stripped" 2>/dev/null || true
echo "stripped release binary: $(stat -c %s "$WORK/citysensed.stripped") bytes"
