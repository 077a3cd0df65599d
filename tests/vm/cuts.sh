#!/usr/bin/env bash
# The power-cut figures of the VM test (tests/vm/run.sh): from what the guest logged through
# the share before each cut (windows acknowledged as spooled, readings published) and what
# the store holds at the end. Fails if a window acknowledged before a cut is not in the store,
# or if a lost window is not one of those still open (not yet acknowledged) at its cut.
# Usage: cuts.sh <out-dir> <cuts>
set -euo pipefail
out=$1 cuts=$2
W=2
store=$(cut -d, -f3 "$out/final-store.csv" 2>/dev/null | sort -n | uniq)
[ -n "$store" ] || { echo "FAIL h-store: no cut windows in the store at the end" >>"$out/results"; exit 1; }
total_acked=0 total_lost=0 total_open=0 bad=0 max_open=0 max_lost=0
for ((n = 1; n <= cuts; n++)); do
    [ -s "$out/pub-$n.log" ] || continue
    all_acked=$(sed -n 's/.*min_ts=\([0-9]*\).*max_ts=\([0-9]*\).*/\1 \2/p' "$out/acks-$n.log" 2>/dev/null |
        awk -v w=$W '{ for (t = int($1 / 1e9); t <= int($2 / 1e9); t += w) print t }' | sort -n | uniq)
    acked=$all_acked
    published=$(awk -v w=$W '{ print int($1 / w) * w }' "$out/pub-$n.log" | sort -n | uniq)
    # A batch holds the health points too: only windows with published readings count.
    acked=$(comm -12 <(echo "$acked" | sed '/^$/d') <(echo "$published"))
    last_ack=$(echo "$acked" | tail -n 1)
    last_ack=${last_ack:-0}
    missing=$(comm -23 <(echo "$acked" | sed '/^$/d') <(echo "$store"))
    lost=$(comm -23 <(echo "$published") <(echo "$store"))
    open=$(echo "$published" | awk -v a="$last_ack" '$1 > a')
    unexplained=$(comm -23 <(echo "$lost" | sed '/^$/d') <(echo "$open" | sed '/^$/d'))
    na=$(echo "$acked" | sed '/^$/d' | wc -l)
    nl=$(echo "$lost" | sed '/^$/d' | wc -l)
    no=$(echo "$open" | sed '/^$/d' | wc -l)
    printf '  cut %2d: %3d windows acknowledged as spooled, %d open at the cut, %d lost%s%s\n' \
        "$n" "$na" "$no" "$nl" "${missing:+, MISSING acknowledged: $(echo $missing)}" \
        "${unexplained:+, lost but not open: $(echo $unexplained)}"
    [ -z "$missing" ] && [ -z "$unexplained" ] || bad=1
    total_acked=$((total_acked + na)) total_lost=$((total_lost + nl)) total_open=$((total_open + no))
    [ "$no" -gt "$max_open" ] && max_open=$no
    [ "$nl" -gt "$max_lost" ] && max_lost=$nl
done
recover=$(sed -n 's/.*service active at uptime \([0-9.]*\)s.*/\1/p' "$out/cut-evidence" | sort -n |
    awk '{ v[NR] = $1 } END { if (NR) printf "%ss-%ss (median %ss)", v[1], v[NR], v[int((NR + 1) / 2)] }')
summary="$cuts cuts: $total_acked windows acknowledged as spooled, all in the store; $total_lost lost (at most $max_lost per cut), all still open at their cut ($total_open open in all, at most $max_open per cut); service active again at boot uptime $recover"
# No acknowledged window at all would make the checks above vacuous.
[ "$total_acked" -gt 0 ] || bad=1
if [ "$bad" -eq 0 ]; then
    echo "PASS h-power-cuts: $summary" >>"$out/results"
else
    echo "FAIL h-power-cuts: $summary" >>"$out/results"
    exit 1
fi
