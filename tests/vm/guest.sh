#!/bin/bash
# Runs inside the VM test's guest (vm-runner.service, from the 9p share; tests/vm/run.sh).
# Mode "main": checks a-g on the installed .deb, one result line each in out/results with
# its evidence in out/evidence. Modes "cut-N": start spooling with the store down and wait
# for the host to cut the power. Mode "final": the store up, everything spooled delivered.
set -u
S=/mnt/share
OUT=$S/out
mode=$(cat "$S/mode")
exec >>"$OUT/guest.log" 2>&1
CONF=/etc/citysense/citysense.toml
METRICS=http://127.0.0.1:9273/metrics
VM=http://127.0.0.1:8428
TOKEN=vmtest-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')

say() { echo "[$(date -u +%T)] $*"; }
ev() { printf '%s\n' "$*" >>"$OUT/evidence"; say "$*"; }
result() { echo "$1 $2: $3" >>"$OUT/results"; ev "$1 $2: $3"; }
metric() { curl -fsS "$METRICS" 2>/dev/null | awk -v m="$1" '$1 == m { print $2; exit }'; }
# Value of the first sample whose name and labels start with $1.
metric_like() { curl -fsS "$METRICS" 2>/dev/null | awk -v m="$1" 'index($1, m) == 1 { print $2; exit }'; }
# One CSV line per point: sensor,value,unix seconds.
store_csv() {
    curl -fsS -X POST "$VM/internal/force_flush" >/dev/null 2>&1
    curl -fsS "$VM/api/v1/export/csv" --data-urlencode "match[]=$1" \
        --data-urlencode "format=sensor,__value__,__timestamp__:unix_s" \
        --data-urlencode "start=0" --data-urlencode "end=$(($(date +%s) + 86400))" 2>/dev/null
}
wait_for() { # seconds, command...
    local limit=$1 i
    shift
    for ((i = 0; i < limit * 2; i++)); do "$@" && return 0; sleep 0.5; done
    return 1
}
pub() { mosquitto_pub -h 127.0.0.1 -q 1 -t "$1/sensor/$2/state" -m "$3"; }
main_pid() { systemctl show -p MainPID --value citysense; }

config() { # window secs, clock sync, [extra TOML]
    cat >"$CONF" <<EOF
[gateway]
id = "vm-gw"

[aggregation]
window_secs = $1

[clock]
sync = "$2"

[[mqtt]]
name = "local"
host = "127.0.0.1"
port = 1883

[[mqtt.subscription]]
topic = "{sensor}/sensor/{quantity}/state"
format = "plain"

${3:-}

[output]
api = "v2"
url = "http://127.0.0.1:8428"
org = "citysense"
bucket = "citysense"
token_file = "influx-token"
max_backoff_secs = 1

[spool]
dir = "/var/lib/citysense/spool"

[metrics]
listen = "127.0.0.1:9273"
EOF
}
SERIAL='[[serial]]
name = "pm-uart"
port = "/dev/ttyS1"
profile = "sds011"'

check_a() {
    local out states="" s last="" pid status
    out=$(dpkg -i "$S/citysense.deb" 2>&1)
    ev "dpkg -i: $(echo "$out" | grep -E 'Setting up|citysense:' | paste -sd ' ')"
    if ! dpkg-query -W -f='${Status}' citysense | grep -q 'install ok installed'; then
        result FAIL a-install "dpkg -i failed: $out"
        return 1
    fi
    result PASS a-install "$(dpkg-query -W -f='${Package} ${Version}' citysense) installed; enabled: $(systemctl is-enabled citysense), active: $(systemctl is-active citysense)"
    # The shipped config (api = "stdout") has no token: /etc/citysense/influx-token is missing.
    if systemctl start citysense; then
        result PASS d-no-token "the shipped config (api = \"stdout\", no token) starts right after install: $(systemctl is-active citysense); /etc/citysense/influx-token: $(stat -c '%a %U %s bytes' /etc/citysense/influx-token 2>&1)"
    else
        result FAIL d-no-token "the shipped config does not start without /etc/citysense/influx-token: $(journalctl -b -u citysense -o cat | tail -n 3 | paste -sd '|')"
        # Go on with the other checks as an operator would: with a token file.
        install -m 0600 /dev/null /etc/citysense/influx-token
        systemctl reset-failed citysense
    fi
    systemctl stop citysense
    # Type=notify: watch the states while it starts; "activating" with the main process
    # already running means systemd waited for its READY=1.
    systemctl start --no-block citysense
    local until=$((SECONDS + 30))
    while [ "$SECONDS" -lt "$until" ]; do
        s=$(systemctl show -p ActiveState -p SubState -p MainPID citysense | sort | paste -sd ' ')
        [ "$s" != "$last" ] && states="$states [$s]" && last=$s
        [[ "$s" == *ActiveState=active* || "$s" == *ActiveState=failed* ]] && break
    done
    ev "start states:$states"
    # STATUS= comes with the first watchdog ping, at half of WatchdogSec=.
    wait_for 30 sh -c "systemctl status citysense --no-pager | grep -q 'Status: \"'"
    status=$(systemctl status citysense --no-pager 2>&1 | grep -E 'Active:|Status:')
    ev "systemctl status: $(echo "$status" | paste -sd '|')"
    if echo "$states" | grep -Eq 'ActiveState=activating MainPID=[1-9][0-9]* SubState=start\]'; then
        if [[ "$last" == *"ActiveState=active"*"SubState=running"* ]] && echo "$status" | grep -q 'Status: "'; then
            result PASS a-ready "active (running) only after READY=1: activating with the main process up, then active; $(echo "$status" | grep Status: | sed 's/^ *//')"
            return 0
        fi
    fi
    result FAIL a-ready "states:$states; status: $status"
}

check_device_policy() {
    local deny allow
    deny=$(systemd-run --wait --pipe -q -p DynamicUser=yes -p SupplementaryGroups=dialout \
        -p DevicePolicy=closed -p DeviceAllow="char-ttyUSB rw" \
        sh -c 'exec 3</dev/ttyS1 && echo opened' 2>&1)
    allow=$(systemd-run --wait --pipe -q -p DynamicUser=yes -p SupplementaryGroups=dialout \
        -p DevicePolicy=closed -p DeviceAllow="char-ttyS rw" \
        sh -c 'exec 3</dev/ttyS1 && echo opened' 2>&1)
    ev "ttyS1: $(ls -l /dev/ttyS1); without char-ttyS: $deny; with it: $allow"
    if [[ "$deny" != *opened* && "$allow" == *opened* ]]; then
        result PASS b-device-policy "DeviceAllow= is enforced: /dev/ttyS1 refused without char-ttyS ($deny), opened with it"
    else
        result FAIL b-device-policy "without: $deny; with: $allow"
    fi
}

start_full() {
    echo "$TOKEN" >/etc/citysense/influx-token
    chmod 0600 /etc/citysense/influx-token
    config 5 auto "$SERIAL"
    systemctl restart citysense
}

# g: the clock is days behind and unsynchronised: readings are held; then set as NTP would.
check_g() {
    local behind held t_pub now csv bad
    behind=$(cat "$S/clock_behind_secs")
    # Published until the daemon has taken one: its MQTT session may not be subscribed yet.
    # The evidence says how long it took.
    t_pub=$(date +%s)
    local taken=
    for _ in $(seq 1 45); do
        pub held pm2_5 7.5
        sleep 1
        [ "$(metric_like 'citysense_source_messages_total{kind="mqtt"')" -ge 1 ] 2>/dev/null && { taken=1; break; }
    done
    local t_last=$(date +%s)
    ev "first MQTT message taken after $((t_last - t_pub)) s: ${taken:-no}"
    # The UART's readings are held too once the SDS011's 30 s warm-up after the port opened
    # is over: the MQTT reading and at least one frame's two.
    wait_for 60 sh -c "[ \"\$(curl -fsS $METRICS | awk '\$1 == \"citysense_clock_held_readings\" { print \$2 }')\" -ge 3 ] 2>/dev/null"
    sleep 6
    held=$(metric citysense_clock_held_readings)
    csv=$(store_csv '{__name__=~"air_quality_.*"}')
    ev "clock before: $(date -u +%FT%TZ) synchronized=$(metric citysense_clock_synchronized) held=$held store points=$(echo -n "$csv" | grep -c .)"
    if [ "${held:-0}" -lt 3 ] || [ -n "$csv" ]; then
        result FAIL g-held "held=$held, store: $(echo "$csv" | head -n 3)"
    else
        result PASS g-held "clock 3 days behind and unsynchronised: $held readings held, nothing in the store"
    fi
    now=$(date +%s)
    date -s "@$((now + behind))" >/dev/null
    # The store runs on this machine and steps with it; a real one keeps the right time.
    # VictoriaMetrics reads its clock once a second and answers 204 to points more than
    # 2 days ahead of that reading while skipping them: windows sent within a second of the
    # step would be lost by the store, not by the daemon. Give it that second first.
    sleep 2
    adjtimex -S 0 -m 100000 -e 1000
    # The flag systemd-timesyncd creates on its first sync: the unit's ProtectClock= refuses
    # the daemon's adjtimex, so clock.sync = "auto" reads this (and the start log says so).
    mkdir -p /run/systemd/timesync
    touch /run/systemd/timesync/synchronized
    local authority
    authority=$(journalctl -b -u citysense -o cat --no-pager | grep 'clock sync check' | tail -n 1)
    ev "clock set as NTP would: $(date -u +%FT%TZ), adjtimex status=$(adjtimex -p | awk '/status/ {print $2}'); daemon: $authority"
    if [[ "$authority" == *"timesyncd's flag"*"refuses adjtimex"* ]]; then
        result PASS g-authority "under ProtectClock= the daemon reads timesyncd's flag: $authority"
    else
        result FAIL g-authority "start log: '$authority'"
    fi
    wait_for 60 sh -c "curl -fsS -X POST $VM/internal/force_flush >/dev/null; curl -fsS '$VM/api/v1/export/csv?match%5B%5D=air_quality_pm2_5_mean%7Bsensor%3D%22held%22%7D&format=__value__&start=0' | grep -q ."
    csv=$(store_csv '{__name__=~"air_quality_pm2_5_mean"}')
    ev "held windows in the store: $(echo "$csv" | head -n 4 | paste -sd ' ')"
    local true_pub=$((t_pub + behind)) held_ts
    held_ts=$(echo "$csv" | awk -F, '$1 == "held" { print $3; exit }')
    # No point stamped with the wrong date: every point after the true boot time.
    bad=$(echo "$csv" | awk -F, -v lo="$((true_pub - 600))" '$3 < lo' | wc -l)
    # The first UART window held: its readings came at least 6 s before the clock was set.
    local uart_ts
    uart_ts=$(echo "$csv" | awk -F, '$1 == "pm-uart" { print $3 }' | sort -n | head -n 1)
    local skipped
    skipped=$(journalctl -b -u victoria-metrics -o cat --no-pager | grep -c 'too big timestamp' || true)
    ev "placed: $(journalctl -b -u citysense -o cat --no-pager | grep 'placing readings held' | tail -n 1); dropped by the daemon: $(curl -fsS $METRICS | grep '^citysense_readings_dropped_total' | paste -sd ' '); store rows skipped as too far ahead: $skipped"
    if [ -n "$held_ts" ] && [ "$held_ts" -le $((t_last + behind)) ] && [ "$held_ts" -gt $((true_pub - 10)) ] &&
        [ -n "$uart_ts" ] && [ "$uart_ts" -le $((now + behind - 6)) ] && [ "$bad" -eq 0 ]; then
        result PASS g-sync "held windows landed at their true times: MQTT reading published at true $(date -u -d "@$true_pub" +%T) in window $(date -u -d "@$held_ts" +%T); first UART window $(date -u -d "@$uart_ts" +%T), clock set at $(date -u -d "@$((now + behind))" +%T); 0 points at the wrong date"
    else
        result FAIL g-sync "held_ts=$held_ts (published $true_pub..$((t_last + behind))) uart_ts=$uart_ts (set at $((now + behind))) bad=$bad store skipped $skipped; csv=$(echo "$csv" | head -n 5 | paste -sd ' ')"
    fi
}

check_b() {
    local pid st start csv uart mq
    pid=$(main_pid)
    st=$(grep -E '^(Uid|Gid|Groups|CapEff|CapBnd|NoNewPrivs|Seccomp):' "/proc/$pid/status" | tr -s '\t ' ' ' | paste -sd ';')
    ev "main process $pid: $st; user $(ps -o user= -p "$pid")"
    local uid caps nnp sec
    uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
    caps=$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")
    nnp=$(awk '/^NoNewPrivs:/ {print $2}' "/proc/$pid/status")
    sec=$(awk '/^Seccomp:/ {print $2}' "/proc/$pid/status")
    if [ "$uid" -ge 61184 ] && [ "$uid" -le 65519 ] && [ "$caps" = 0000000000000000 ] &&
        [ "$nnp" = 1 ] && [ "$sec" = 2 ] && grep -q '^Groups:.*\b20\b' "/proc/$pid/status"; then
        result PASS b-user "dynamic user uid $uid, groups with dialout (20), no capabilities, NoNewPrivs, seccomp filter"
    else
        result FAIL b-user "$st"
    fi
    # MQTT: three readings in one 5 s window, published just after it starts.
    wait_for 10 sh -c '[ $(( $(date +%s) % 5 )) -eq 1 ]'
    pub mqtt-1 pm2_5 10
    pub mqtt-1 pm2_5 20
    pub mqtt-1 pm2_5 30
    start=$(($(date +%s) / 5 * 5))
    wait_for 30 sh -c "curl -fsS -X POST $VM/internal/force_flush >/dev/null; curl -fsS '$VM/api/v1/export/csv?match%5B%5D=air_quality_pm2_5_count%7Bsensor%3D%22mqtt-1%22%7D&format=__value__&start=0' | grep -q ."
    mq=$(for f in mean min max count; do store_csv "air_quality_pm2_5_$f{sensor=\"mqtt-1\"}" | awk -F, -v f=$f '{ printf "%s=%s@%s ", f, $2, $3 }'; done)
    uart=$(for f in pm2_5_mean pm10_mean pm2_5_min pm10_max; do store_csv "air_quality_$f{sensor=\"pm-uart\"}" | awk -F, -v f=$f '{ v[$2]++ } END { printf "%s:", f; for (k in v) printf " %s(x%d)", k, v[k]; printf "; " }'; done)
    ev "store, MQTT window at $start: $mq"
    ev "store, UART windows: $uart"
    if [ "$mq" = "mean=20@$start min=10@$start max=30@$start count=3@$start " ]; then
        result PASS b-mqtt "MQTT 10, 20, 30 in one window -> mean 20, min 10, max 30, count 3 in VictoriaMetrics"
    else
        result FAIL b-mqtt "$mq"
    fi
    if [[ "$uart" == "pm2_5_mean: 12.3("*"); pm10_mean: 45.6("*"); pm2_5_min: 12.3("*"); pm10_max: 45.6("*"); " ]]; then
        result PASS b-uart "SDS011 frames on /dev/ttyS1 -> PM2.5 12.3 and PM10 45.6 in every window: $uart"
    else
        result FAIL b-uart "$uart"
    fi
}

check_c() {
    local line
    line=$(systemd-analyze security citysense --no-pager 2>&1 | tail -n 1)
    ev "systemd-analyze security: $line ($(systemctl --version | head -n 1))"
    if [[ "$line" == *"exposure level for citysense.service: 1.3 "* ]]; then
        result PASS c-security "$line"
    else
        result FAIL c-security "README quotes 1.3, got: $line"
    fi
}

check_d() {
    local pid cred n
    sed -i 's/^CITYSENSE_LOG=.*/CITYSENSE_LOG=trace/' /etc/default/citysense
    systemctl restart citysense
    sleep 1
    pub token-probe pm2_5 1
    wait_for 30 test "$(metric_like citysense_uplink_points_sent_total{)" != "0" || true
    sleep 6
    pid=$(main_pid)
    cred=$(ls -l /run/credentials/citysense.service/ 2>&1 | tail -n +2 | paste -sd ' ')
    n=$(journalctl -b --no-pager -o verbose | grep -c "$TOKEN")
    ev "credentials: $cred; token file $(stat -c '%a %U' /etc/citysense/influx-token); journal lines with the token at trace: $n of $(journalctl -b --no-pager -o cat | wc -l); sent: $(metric_like citysense_uplink_points_sent_total{)"
    sed -i 's/^CITYSENSE_LOG=.*/CITYSENSE_LOG=info/' /etc/default/citysense
    systemctl restart citysense
    if [[ "$cred" == *influx-token* ]] && [ "$n" -eq 0 ]; then
        result PASS d-token "token through LoadCredential= (/run/credentials/citysense.service/influx-token), in no journal line at trace"
    else
        result FAIL d-token "cred=$cred lines=$n"
    fi
}

check_e() {
    local pid1 pid2 ok hash want csv
    pid1=$(main_pid)
    config 5 auto "$SERIAL
[[mqtt.subscription]]
topic = \"tele/{sensor}/SENSOR\"
format = \"tasmota\""
    systemctl reload citysense
    pid2=$(main_pid)
    ok=$(metric_like 'citysense_config_reloads_total{result="ok"}')
    hash=$(curl -fsS "$METRICS" | sed -n 's/^citysense_config_info{hash="\([0-9a-f]*\)".*/\1/p')
    want=$(sha256sum "$CONF" | cut -c1-16)
    ev "reload: pid $pid1 -> $pid2, reloads ok=$ok, config hash $hash (sha256sum $want)"
    if [ "$pid1" = "$pid2" ] && [ "${ok:-0}" = 1 ] && [ "$hash" = "$want" ]; then
        result PASS e-reload "systemctl reload applied the new config in the same process ($pid2), hash $hash"
    else
        result FAIL e-reload "pid $pid1 -> $pid2 ok=$ok hash=$hash want=$want"
    fi
    # Stop with the store down: the open window goes to the spool; the next start sends it.
    systemctl stop victoria-metrics
    sleep 1
    pub stopmark pm2_5 77.7
    sleep 0.5
    local pid t_stop=$SECONDS
    pid=$(main_pid)
    systemctl stop --no-block citysense
    sleep 4
    if systemctl is-active -q citysense; then
        ev "still stopping after 4 s: $(for t in /proc/$pid/task/*; do echo "$(cat $t/comm):$(cat $t/wchan)"; done | sort | uniq -c | paste -sd ' ')"
        for t in /proc/$pid/task/*; do grep -q . $t/stack 2>/dev/null && { echo "== $(cat $t/comm)"; cat $t/stack; }; done | head -n 40
    fi
    wait_for 60 sh -c 'case $(systemctl is-active citysense) in inactive|failed) exit 0 ;; esac; exit 1'
    local stop_secs=$((SECONDS - t_stop))
    ev "stop took $stop_secs s"
    local flushed inspect
    flushed=$(journalctl -b -u citysense -o cat --no-pager | grep 'flushed open windows at shutdown' | tail -n 1)
    inspect=$(citysensed spool inspect -c "$CONF" 2>&1 | head -n 3 | paste -sd ' ')
    ev "stop: $flushed; spool: $inspect"
    systemctl start victoria-metrics
    sleep 3
    systemctl start citysense
    wait_for 40 sh -c "curl -fsS -X POST $VM/internal/force_flush >/dev/null; curl -fsS '$VM/api/v1/export/csv?match%5B%5D=air_quality_pm2_5_mean%7Bsensor%3D%22stopmark%22%7D&format=__value__&start=0' | grep -q ."
    csv=$(store_csv 'air_quality_pm2_5_mean{sensor="stopmark"}')
    ev "after the next start, store: $csv"
    # The serial port's output never drains here (run.sh): a close that waited for it would
    # take the kernel's 30 s closing_wait.
    if [ "$stop_secs" -gt 10 ]; then
        result FAIL e-stop-time "stop took $stop_secs s with the UART's output undrained"
    else
        result PASS e-stop-time "stop took $stop_secs s (at most 10) with the UART's output undrained"
    fi
    if [ -n "$flushed" ] && [[ "$csv" == stopmark,77.7,* ]]; then
        result PASS e-stop "stop flushed the open window into the spool ($flushed); the next start sent it (77.7)"
    else
        result FAIL e-stop "flushed='$flushed' csv='$csv'"
    fi
}

check_f() {
    local n0 n1 wd csv
    mkdir -p /etc/systemd/system/citysense.service.d
    printf '[Service]\nEnvironment=CITYSENSE_TEST_WEDGE_AFTER_SECS=5\n' >/etc/systemd/system/citysense.service.d/wedge.conf
    systemctl daemon-reload
    systemctl restart citysense
    n0=$(systemctl show -p NRestarts --value citysense)
    sleep 8
    # The next start (by the watchdog's restart) runs without the switch.
    rm /etc/systemd/system/citysense.service.d/wedge.conf
    systemctl daemon-reload
    wait_for 90 sh -c "[ \$(systemctl show -p NRestarts --value citysense) -gt $n0 ] && systemctl is-active -q citysense"
    n1=$(systemctl show -p NRestarts --value citysense)
    wd=$(journalctl -b -u citysense --no-pager -o cat | grep -E 'Watchdog timeout|hangs now' | tail -n 2 | paste -sd '|')
    sleep 2
    pub after-wd pm2_5 5.5
    wait_for 30 sh -c "curl -fsS -X POST $VM/internal/force_flush >/dev/null; curl -fsS '$VM/api/v1/export/csv?match%5B%5D=air_quality_pm2_5_mean%7Bsensor%3D%22after-wd%22%7D&format=__value__&start=0' | grep -q ."
    csv=$(store_csv 'air_quality_pm2_5_mean{sensor="after-wd"}')
    ev "watchdog: NRestarts $n0 -> $n1; journal: $wd; after: $csv"
    if [ "$n1" -gt "$n0" ] && [[ "$wd" == *"Watchdog timeout"* ]] && [[ "$csv" == after-wd,5.5,* ]]; then
        result PASS f-watchdog "a wedged pipeline was killed by the watchdog and restarted (NRestarts $n0 -> $n1, \"Watchdog timeout\"), data flows again"
    else
        result FAIL f-watchdog "NRestarts $n0 -> $n1; $wd; $csv"
    fi
}

# The power-cut phase: 2 s windows, the store down, the service started at every boot.
prepare_cuts() {
    config 2 assume ""
    sed -i 's/^CITYSENSE_LOG=.*/CITYSENSE_LOG=info,citysense::sinks::events=debug/' /etc/default/citysense
    systemctl disable -q --now victoria-metrics
    systemctl enable -q citysense
    systemctl restart citysense
    rm -rf /var/lib/private/citysense/spool/*
    sync
}

run_main() {
    : >"$OUT/evidence"
    ev "boot: $(systemd-analyze time 2>/dev/null | head -n 1); $(uname -r); $(systemctl --version | head -n 1)"
    check_a || { echo "DONE main" >>"$OUT/results"; return; }
    check_device_policy
    start_full
    check_g
    check_b
    check_c
    check_d
    check_e
    check_f
    journalctl -b --no-pager -o short-precise -u citysense >"$OUT/journal-main.txt"
    prepare_cuts
    echo "DONE main" >>"$OUT/results"
}

run_cut() {
    local n=${mode#cut-} t0 i active="" v=0
    t0=$(awk '{print $1}' /proc/uptime)
    for ((i = 0; i < 120; i++)); do
        systemctl is-active -q citysense && { active=1; break; }
        sleep 0.5
    done
    local up rw spool
    up=$(awk '{print $1}' /proc/uptime)
    rw=$(findmnt -no OPTIONS / | cut -d, -f1)
    spool=$(journalctl -b -u citysense -o cat --no-pager | grep -iE 'spool|torn|truncat' | head -n 3 | paste -sd '|')
    echo "boot $mode: root $rw, $(dmesg | grep -E 'EXT4-fs \(vda\)' | sed 's/^\[[ 0-9.]*\] //' | paste -sd '|'); service ${active:+active} at uptime ${up}s; $spool" >>"$OUT/cut-evidence"
    if [ -z "$active" ] || [ "$rw" != rw ]; then
        echo "FAIL h-boot-$n: service active=$active root=$rw" >>"$OUT/results"
        journalctl -b -u citysense -o cat --no-pager | tail -n 20
    fi
    journalctl -b -u citysense -f -o cat --no-pager | grep --line-buffered 'batch spooled' >>"$OUT/acks-$n.log" &
    wait_for 60 systemctl is-active -q mosquitto
    touch "$OUT/ready-cut-$n"
    while :; do
        v=$((v + 1))
        pub cut pm2_5 "$v" && echo "$(date +%s.%N)" >>"$OUT/pub-$n.log"
        sleep 0.5
    done
}

run_final() {
    systemctl enable -q --now victoria-metrics
    wait_for 60 systemctl is-active -q citysense
    wait_for 120 sh -c "[ \"\$(curl -fsS $METRICS | awk '\$1 == \"citysense_spool_points\" { print \$2 }')\" = 0 ] && [ \"\$(curl -fsS $METRICS | awk 'index(\$1, \"citysense_uplink_up{\") == 1 { print \$2 }')\" = 1 ]"
    store_csv 'air_quality_pm2_5_count{sensor="cut"}' >"$OUT/final-store.csv"
    store_csv '{sensor="cut"}' >"$OUT/final-store-all.csv"
    journalctl -b --no-pager -o short-precise -u citysense -u victoria-metrics >"$OUT/journal-final.txt"
    echo "final: spool points $(metric citysense_spool_points), sent $(metric_like citysense_uplink_points_sent_total{), store has $(wc -l <"$OUT/final-store.csv") cut windows" >>"$OUT/cut-evidence"
}

# A short boot for looking at a stop with the serial port open (CITYSENSE_VM_PROBE=1).
run_probe() {
    dpkg -i "$S/citysense.deb" >/dev/null 2>&1
    config 5 assume "$SERIAL"
    probe_stop "plain"
    check_device_policy
    probe_stop "after the systemd-run opens"
    date -s "@$(($(date +%s) + 259200))" >/dev/null
    probe_stop "after a clock step"
}
probe_stop() {
    local pid t0
    systemctl start citysense
    sleep 8
    pid=$(main_pid)
    t0=$SECONDS
    systemctl stop --no-block citysense
    sleep 3
    echo "== $1: $(systemctl is-active citysense) after 3 s"
    for t in /proc/$pid/task/*; do echo "$(cat $t/comm 2>/dev/null):$(cat $t/wchan 2>/dev/null)"; done | sort | uniq -c
    for t in /proc/$pid/task/*; do case "$(cat $t/wchan 2>/dev/null)" in futex_wait_queue|do_epoll_wait|0|"") ;; *) cat $t/stack 2>/dev/null ;; esac; done | head -n 30
    sed -n 3p /proc/tty/driver/serial
    wait_for 60 sh -c 'case $(systemctl is-active citysense) in inactive|failed) exit 0 ;; esac; exit 1'
    echo "== $1: stop took $((SECONDS - t0)) s"
    journalctl -b -u citysense -o cat --no-pager | tail -n 5
}

say "guest.sh $mode: waiting for the system"
# A power-cut boot only needs the daemon and the broker: it starts as soon as they are up.
[[ "$mode" == cut-* ]] || systemctl is-system-running --wait >/dev/null
case "$mode" in
main) run_main ;;
cut-*) run_cut ;;
final) run_final ;;
probe) run_probe ;;
esac
sync
systemctl poweroff
