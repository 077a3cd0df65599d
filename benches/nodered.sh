# The Node-RED peer of benches/e2e.sh (sourced by it; uses its helpers and variables).
#
# Node-RED and node-red-contrib-influxdb come from npm into a directory outside the repo
# ($NODERED_DIR, default ~/.cache/citysense-bench/node-red). The flow does what citysensed does
# with the JSON format: `mqtt in` (QoS as given, payload parsed as JSON) -> a function node that
# keeps count, sum, min, max, last, mean and stddev (Welford) per sensor, quantity and clock-
# aligned 10-second window, closes windows 1 s after their end on a 200 ms inject tick, and
# sends each close as one array of points -> `influxdb batch` (InfluxDB 2.0 API, ms precision)
# to VictoriaMetrics' /api/v2/write. Node-RED has no windowed aggregation node, hence the
# function. It computes no percentiles (citysensed also writes p50 and p95): less work for the
# peer. Two HTTP endpoints of the same function serve the benchmark: GET /count (messages
# received) and POST /flush (close every open window, as citysensed does on SIGTERM).

NODERED_DIR=${NODERED_DIR:-$HOME/.cache/citysense-bench/node-red}

nodered_install() {
    if [ ! -f "$NODERED_DIR/node_modules/node-red/red.js" ] ||
        [ ! -d "$NODERED_DIR/node_modules/node-red-contrib-influxdb" ]; then
        echo "== npm install node-red node-red-contrib-influxdb into $NODERED_DIR"
        mkdir -p "$NODERED_DIR"
        (cd "$NODERED_DIR" && npm install --no-audit --no-fund --omit=dev \
            node-red@4 node-red-contrib-influxdb@0.7 >npm.log 2>&1) ||
            { tail -20 "$NODERED_DIR/npm.log" >&2; exit 1; }
    fi
    NODERED_VERSION=$(grep -m1 '"version"' "$NODERED_DIR/node_modules/node-red/package.json" | cut -d'"' -f4)
    echo "== node-red $NODERED_VERSION, node $(node --version)"
}

# The aggregating function (Node-RED function-node JavaScript). LABEL is replaced per run.
nodered_function() {
    cat <<'EOF'
const W = 10000, GRACE = 1000, QS = ['pm2_5', 'pm10'];
let st = context.get('st');
if (!st) {
    st = { open: new Map(), closedBefore: Math.floor((Date.now() - GRACE) / W), count: 0, late: 0 };
    context.set('st', st);
}
if (msg.req) {
    if (msg.req.path === '/count') {
        msg.payload = String(st.count) + ' ' + String(st.late);
        return [null, msg];
    }
    msg.flush = true;
}
if (msg.topic !== 'tick' && !msg.flush) {
    st.count++;
    const p = msg.payload;
    if (typeof p !== 'object' || p === null) return null;
    const w = Math.floor((typeof p.ts === 'number' ? p.ts : Date.now()) / W);
    if (w < st.closedBefore) { st.late++; return null; }
    const sensor = msg.topic.split('/')[1];
    const key = w + '|' + sensor;
    let a = st.open.get(key);
    if (!a) { a = { w: w, sensor: sensor, q: {} }; st.open.set(key, a); }
    for (const q of QS) {
        const v = p[q];
        if (typeof v !== 'number') continue;
        let s = a.q[q];
        if (!s) s = a.q[q] = { n: 0, sum: 0, min: v, max: v, last: v, mean: 0, m2: 0 };
        s.n++; s.sum += v; s.last = v;
        if (v < s.min) s.min = v;
        if (v > s.max) s.max = v;
        const d = v - s.mean; s.mean += d / s.n; s.m2 += d * (v - s.mean);
    }
    return null;
}
const due = msg.flush ? Infinity : Math.floor((Date.now() - GRACE) / W);
if (due <= st.closedBefore) return null;
if (!msg.flush) st.closedBefore = due;
const points = [];
for (const [key, a] of st.open) {
    if (a.w >= due) continue;
    const fields = {};
    for (const q in a.q) {
        const s = a.q[q];
        fields[q + '_count'] = s.n + 'i';
        fields[q + '_sum'] = s.sum;
        fields[q + '_mean'] = s.mean;
        fields[q + '_min'] = s.min;
        fields[q + '_max'] = s.max;
        fields[q + '_last'] = s.last;
        fields[q + '_stddev'] = s.n > 1 ? Math.sqrt(s.m2 / (s.n - 1)) : 0;
    }
    points.push({ measurement: 'air_quality', tags: { gateway: 'LABEL', sensor: a.sensor }, fields: fields, timestamp: a.w * W });
    st.open.delete(key);
}
if (msg.flush) { msg.payload = String(points.length); }
return [points.length ? { payload: points } : null, msg.flush ? msg : null];
EOF
}

# flows.json for one run: $1 label, $2 qos.
nodered_flow() {
    local func
    func=$(nodered_function | sed "s/LABEL/$1/" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>process.stdout.write(JSON.stringify(s)))')
    cat <<EOF
[
 {"id":"tab","type":"tab","label":"bench"},
 {"id":"broker","type":"mqtt-broker","name":"","broker":"127.0.0.1","port":"$MQTT_PORT","clientid":"nodered-$1","autoConnect":true,"usetls":false,"protocolVersion":"4","keepalive":"60","cleansession":true},
 {"id":"influx","type":"influxdb","hostname":"127.0.0.1","port":"$VM_PORT","protocol":"http","database":"","name":"vm","usetls":false,"influxdbVersion":"2.0","url":"$VM","timeout":"10","rejectUnauthorized":false},
 {"id":"in","type":"mqtt in","z":"tab","name":"","topic":"bench/+/reading","qos":"$2","datatype":"json","broker":"broker","nl":false,"rap":true,"rh":0,"inputs":0,"wires":[["agg"]]},
 {"id":"tick","type":"inject","z":"tab","name":"","props":[{"p":"topic","vt":"str"}],"repeat":"0.2","crontab":"","once":true,"onceDelay":"0.1","topic":"tick","wires":[["agg"]]},
 {"id":"count","type":"http in","z":"tab","name":"","url":"/count","method":"get","upload":false,"swaggerDoc":"","wires":[["agg"]]},
 {"id":"flush","type":"http in","z":"tab","name":"","url":"/flush","method":"post","upload":false,"swaggerDoc":"","wires":[["agg"]]},
 {"id":"agg","type":"function","z":"tab","name":"aggregate per window","func":$func,"outputs":2,"timeout":0,"noerr":0,"initialize":"","finalize":"","libs":[],"wires":[["out"],["resp"]]},
 {"id":"out","type":"influxdb batch","z":"tab","influxdb":"influx","precision":"","retentionPolicy":"","name":"","database":"","precisionV18FluxV20":"ms","retentionPolicyV18Flux":"","org":"bench","bucket":"bench","wires":[]},
 {"id":"resp","type":"http response","z":"tab","name":"","statusCode":"","headers":{},"wires":[]}
]
EOF
}

# One Node-RED run; prints the same columns as run_citysensed.
run_nodered() {
    local rate=$1 run=$2 label="nr-$1-$2-$RANDOM"
    local dir="$WORK/$label" port
    port=$(free_port)
    mkdir -p "$dir"
    nodered_flow "$label" "$QOS" >"$dir/flows.json"
    echo '{"influx":{"token":"bench"}}' >"$dir/flows_cred.json"
    cat >"$dir/settings.js" <<EOF
module.exports = {
    uiHost: "127.0.0.1", uiPort: $port, userDir: "$dir", flowFile: "flows.json",
    credentialSecret: false, httpAdminRoot: false,
    logging: { console: { level: "warn", metrics: false, audit: false } },
    functionExternalModules: false, contextStorage: { default: { module: "memory" } }
};
EOF
    local t0 t1 pid
    t0=$(now_ms)
    node "$NODERED_DIR/node_modules/node-red/red.js" --settings "$dir/settings.js" >"$dir/nodered.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/count" 60
    t1=$(now_ms)
    sleep 1.5 # the mqtt node connects and subscribes after the flows start
    local dropped0
    dropped0=$(broker_dropped)
    sampler "$pid" "$dir/samples" &
    local spid=$! c0 s0 c1 s1
    c0=$(cpu_ticks "$pid")
    b0=$(cpu_ticks "$BROKER_PID")
    s0=$(date +%s%N)
    "$LOADGEN" --port "$MQTT_PORT" --rate "$rate" --seconds "$SECONDS_LOAD" --sensors "$SENSORS" \
        --qos "$QOS" --format json >"$dir/loadgen.json" 2>"$dir/loadgen.err"
    local sent got
    sent=$(grep -o '"sent":[0-9]*' "$dir/loadgen.json" | cut -d: -f2)
    wait_drained "$sent" "$pid" nodered_count "$port"
    local hwm
    hwm=$(hwm_kib "$pid")
    curl -fsS -X POST "http://127.0.0.1:$port/flush" >/dev/null
    sleep 2 # the batch node writes asynchronously
    kill -TERM "$pid"
    wait "$pid" || true
    kill "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    sleep 1.2
    local dropped1
    dropped1=$(broker_dropped)
    curl -fsS "$VM/internal/force_flush" >/dev/null || true
    sleep 1
    local stored
    stored=$(vm_scalar "sum(sum_over_time(air_quality_pm2_5_count{gateway=\"$label\"}[1d]))")
    awk -v rate="$rate" -v sent="$sent" -v got="$got" -v stored="$stored" \
        -v s0="$s0" -v s1="$s1" -v c0="$c0" -v c1="$c1" -v tck="$TCK" -v hwm="$hwm" \
        -v d0="$dropped0" -v d1="$dropped1" -v ready=$((t1 - t0)) -v secs="$SECONDS_LOAD" \
        -v b0="$b0" -v b1="$b1" 'BEGIN {
            el = (s1 - s0) / 1e9
            printf "%d %.0f %.2f %.1f %d %d %d %.0f %.2f\n", sent / secs, got / el, (c1 - c0) / tck / el,
                hwm / 1024, sent - stored, d1 - d0, ready, 0, (b1 - b0) / tck / el
        }'
}

# The flow's count of messages received (for wait_drained).
nodered_count() { curl -fsS "http://127.0.0.1:$1/count" | cut -d' ' -f1; }
