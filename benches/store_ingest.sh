#!/usr/bin/env bash
# How long VictoriaMetrics itself takes to answer one window close's request, sent by curl
# rather than by citysensed: the floor under `citysense_stage_duration_seconds{stage=
# "uplink_request"}` (BENCHMARKS.md, "Close -> store latency").
#
#   bash benches/store_ingest.sh [POINTS...]     # default: 1000 5000 (= 2k and 10k series)
#
# Each point has the shape the e2e benchmark writes: 2 quantities x 9 statistics plus the air
# quality indices (22 fields), one point per sensor, all in one 10-second window. The body is
# gzipped like the daemon's (level 1). A fresh window timestamp per attempt, so every request
# creates new samples; 5 attempts per size, prints the median and the range. Installs
# victoria-metrics, gzip and curl if missing.
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"
need_tools victoria-metrics:victoria-metrics curl:curl gzip:gzip
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000 5000)
TRIES=${TRIES:-5}

w=$(mktemp -d /tmp/citysense-ingest.XXXXXX)
port=$((20000 + RANDOM % 40000))
victoria-metrics -httpListenAddr="127.0.0.1:$port" -storageDataPath="$w/vm" \
    -retentionPeriod=100y >"$w/vm.log" 2>&1 &
vm=$!
trap 'kill $vm 2>/dev/null; wait $vm 2>/dev/null; rm -rf "$w"' EXIT
until curl -fsS -o /dev/null "http://127.0.0.1:$port/health" 2>/dev/null; do sleep 0.1; done

body() { # points window -> gzipped line protocol on stdout
    awk -v n="$1" -v w="$2" 'BEGIN {
        ts = w * 10 * 1000000000
        for (i = 0; i < n; i++) {
            printf "air_quality,gateway=ingest,sensor=s%05d ", i
            for (q = 0; q < 2; q++) {
                name = q ? "pm10" : "pm2_5"; v = 10 + (i * 7 + q * 13) % 90
                printf "%s_mean=%.2f,%s_min=%.1f,%s_max=%.1f,%s_count=120i,%s_sum=%.1f,", name, v,
                    name, v - 3, name, v + 4, name, name, v * 120
                printf "%s_last=%.1f,%s_stddev=%.3f,%s_p50=%.1f,%s_p95=%.1f,", name, v + 1,
                    name, 1.234, name, v, name, v + 3
            }
            printf "eaqi=3i,eaqi_pollutant=\"pm10\",lki=4i,aqi_period_s=10i %d\n", ts
        }
    }' | gzip -1
}

printf '%8s %8s %10s %12s %16s\n' points series "body(KiB)" "median(ms)" "min-max(ms)"
win=170000000
for n in "${SIZES[@]}"; do
    times=()
    for _ in $(seq "$TRIES"); do
        win=$((win + 1))
        body "$n" "$win" >"$w/body.gz"
        t=$(curl -fsS -o /dev/null -w '%{time_total}' -H 'Content-Encoding: gzip' \
            --data-binary @"$w/body.gz" "http://127.0.0.1:$port/api/v2/write?bucket=b&precision=ns")
        times+=("$(awk -v t="$t" 'BEGIN {printf "%.1f", t * 1000}')")
    done
    sorted=$(printf '%s\n' "${times[@]}" | sort -g)
    printf '%8d %8d %10d %12s %16s\n' "$n" $((n * 2)) $(($(stat -c %s "$w/body.gz") / 1024)) \
        "$(echo "$sorted" | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')" \
        "$(echo "$sorted" | head -1)-$(echo "$sorted" | tail -1)"
done
