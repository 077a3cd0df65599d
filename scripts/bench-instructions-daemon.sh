# The whole-daemon part of scripts/bench-instructions.sh (sourced, not run): citysensed under
# callgrind, fed JSON by citysense-loadgen through a local mosquitto. Its figure adds what the
# in-process feed leaves out: the MQTT client (rumqttc), the tokio runtime and the channel
# hand-off (user space only: callgrind does not count the kernel's socket work).
# Needs: $work (a temp dir) and valgrind; mosquitto and curl.

free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || {
            echo "$p"
            return
        }
    done
}
# Sum of one metric's samples on a Prometheus text page.
metric() { curl -fsS "$1" 2>/dev/null | awk -v m="$2" '$1 ~ "^" m { s += $2 } END { print s + 0 }'; }
at_least() { [ "$(metric "$1" "$2")" -ge "$3" ]; } # url metric value
wait_for() { # seconds command...: polls the command until it succeeds
    local deadline=$(($(date +%s) + $1))
    shift
    until "$@" 2>/dev/null; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1"); }

# Ir of citysensed receiving $1 JSON messages from 1000 sensors (QoS 1), then stopped with
# SIGTERM, which flushes the one open window: windows are 3600 s so that both runs close the
# same 2000 series once (a run crossing the hour would close twice: rerun).
daemon_ir() {
    local n=$1 rel=$2 mport pid url
    mport=$(free_port)
    cat >"$work/d.toml" <<EOF
[gateway]
id = "gw-bench"
[aggregation]
window_secs = 3600
[[mqtt]]
host = "127.0.0.1"
port = $MQTT_PORT
client_id = "citysense-ir-$n"
clean_session = true
[[mqtt.subscription]]
qos = 1
$("$rel/citysense-loadgen" --print-subscription --format json)
[output]
api = "stdout"
[metrics]
listen = "127.0.0.1:$mport"
[clock]
sync = "assume"
EOF
    valgrind --tool=callgrind --callgrind-out-file="$work/d.out" \
        "$rel/citysensed" run -c "$work/d.toml" >/dev/null 2>"$work/d.log" &
    pid=$!
    url=http://127.0.0.1:$mport/metrics
    if ! wait_for 120 at_least "$url" citysense_source_up 1; then
        tail "$work/d.log" >&2
        kill "$pid"
        return 1
    fi
    "$rel/citysense-loadgen" --port "$MQTT_PORT" --qos 1 --format json --sensors 1000 \
        --rate "$RATE" --count "$n" --seconds $((n / RATE + 120)) >/dev/null
    if ! wait_for 300 at_least "$url" citysense_source_messages_total "$n"; then
        echo "bench-instructions: the daemon did not receive $n messages" >&2
        kill "$pid"
        return 1
    fi
    kill -TERM "$pid"
    wait "$pid"
    awk '/^totals:/ { print $2 }' "$work/d.out"
}

daemon() {
    local rel=${CARGO_TARGET_DIR:-target}/release m=${DAEMON_MESSAGES:-10000} a b broker
    RATE=${DAEMON_RATE:-1000}
    [ -n "${NO_BUILD:-}" ] || nice -n 5 cargo build --release --locked --bins >&2
    broker=$(command -v mosquitto || echo /usr/sbin/mosquitto)
    MQTT_PORT=$(free_port)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n' \
        "$MQTT_PORT" >"$work/mosquitto.conf"
    "$broker" -c "$work/mosquitto.conf" >/dev/null 2>&1 &
    BROKER=$!
    trap 'kill "$BROKER" 2>/dev/null; rm -rf "$work"' EXIT
    wait_for 10 port_open "$MQTT_PORT"
    a=$(daemon_ir "$m" "$rel")
    b=$(daemon_ir $((2 * m)) "$rel")
    printf '%-8s %9s %14s %14s %10s\n' case "M msgs" "Ir (M)" "Ir (2M)" "Ir/msg"
    awk -v m="$m" -v a="$a" -v b="$b" \
        'BEGIN { printf "%-8s %9d %14d %14d %10.0f\n", "daemon", m, a, b, (b - a) / m }'
    echo
    echo "Ir/msg: (Ir(2M) - Ir(M)) / M; user space only, JSON over MQTT QoS 1, 1000 sensors."
}
