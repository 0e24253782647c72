#!/usr/bin/env bash
# A 20,000-rule `_redirects` (`/p$i/* /q$i/:splat 301`): the memory each
# such deployment adds once loaded, and request latency on it against a
# site without rules, both under wrk. Goals: <= 20 MB per deployment,
# p99 <= 1.1x the site without rules.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RULES=${RULES_COUNT:-20000}
SITES=${RULES_SITES:-5}
DURATION=${RULES_DURATION:-4s}
echo "== a $RULES-rule _redirects: memory per deployment, latency vs no rules =="
cpu_note
rss_kb() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }

mkdir -p "$WORK/plain" "$WORK/rules"
echo '<p>plain</p>' >"$WORK/plain/index.html"
echo '<p>rules</p>' >"$WORK/rules/index.html"
"$HB" gen-rules "$WORK/rules/_redirects" --rules "$RULES"

start_helix U taskset -c 1
U_PID=${PIDS[-1]}
helix_cli U deploy "$WORK/plain" --project plain --prod --json >/dev/null
for i in $(seq 1 "$SITES"); do
    # One line more each time: a distinct table per deployment.
    echo "/extra$i /x 301" >>"$WORK/rules/_redirects"
    helix_cli U deploy "$WORK/rules" --project "rules$i" --prod --compat netlify --json >/dev/null
done
# A fresh process, so what the deploys' compiles left behind does not
# count: then the sites load on their first request.
kill "$U_PID"
wait "$U_PID" 2>/dev/null || true
HELIX_LOG=warn taskset -c 1 "$HELIX" server --data-dir "$U_DATA" --api-addr "127.0.0.1:$U_API" \
    --edge-addr "127.0.0.1:$U_EDGE" --gc-interval-secs 0 2>>"$WORK/U.log" &
PIDS+=($!)
U_PID=$!
wait_http "http://127.0.0.1:$U_API/healthz"
curl -s -o /dev/null -H "Host: plain.localhost" "http://127.0.0.1:$U_EDGE/"
before=$(rss_kb "$U_PID")
for i in $(seq 1 "$SITES"); do
    curl -s -o /dev/null -H "Host: rules$i.localhost" "http://127.0.0.1:$U_EDGE/p1/a"
    [[ $i == 1 ]] && first=$(rss_kb "$U_PID")
done
after=$(rss_kb "$U_PID")
result rules_rss_per_deployment_mb "$(awk -v a="$before" -v b="$after" -v n="$SITES" 'BEGIN { printf "%.1f", (b - a) / 1024 / n }')"
# The first load also sets up the loading threads' heaps; each next one:
result rules_rss_each_further_mb "$(awk -v a="$first" -v b="$after" -v n="$SITES" 'BEGIN { if (n > 1) printf "%.1f", (b - a) / 1024 / (n - 1); else print "n/a" }')"

# Latency: a redirect decided by the last rule, a static file no rule
# matches, and the same file on the site without rules.
lat() { # host path -> "p50 p99" in ms
    taskset -c 0 wrk -t1 -c16 -d"$DURATION" --latency -H "Host: $1" "http://127.0.0.1:$U_EDGE$2" >"$WORK/wrk.txt"
    awk 'function ms(v) { if (v ~ /us$/) { sub("us", "", v); return v / 1000 } if (v ~ /ms$/) { sub("ms", "", v); return v } sub("s", "", v); return v * 1000 }
         $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) } END { print p50, p99 }' "$WORK/wrk.txt"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
targets=("plain.localhost /" "rules1.localhost /p$((RULES - 1))/a/b" "rules1.localhost /")
for t in "${targets[@]}"; do lat $t >/dev/null; done # warm-up, each target
: >"$WORK/lat.txt"
for round in 1 2 3; do # interleaved, so drift falls on all three
    for k in 0 1 2; do echo "$k $(lat ${targets[$k]})" >>"$WORK/lat.txt"; done
done
plain=$(awk '$1 == 0 { print $3 }' "$WORK/lat.txt" | median)
hit=$(awk '$1 == 1 { print $3 }' "$WORK/lat.txt" | median)
miss=$(awk '$1 == 2 { print $3 }' "$WORK/lat.txt" | median)
plain50=$(awk '$1 == 0 { print $2 }' "$WORK/lat.txt" | median)
hit50=$(awk '$1 == 1 { print $2 }' "$WORK/lat.txt" | median)
miss50=$(awk '$1 == 2 { print $2 }' "$WORK/lat.txt" | median)
result rules_last_rule_p50_vs_plain "$(ratio "$hit50" "$plain50")"
result rules_no_match_p50_vs_plain "$(ratio "$miss50" "$plain50")"
result rules_plain_p99_ms "$plain"
result rules_last_rule_p99_ms "$hit"
result rules_no_match_p99_ms "$miss"
result rules_last_rule_vs_plain "$(ratio "$hit" "$plain")"
result rules_no_match_vs_plain "$(ratio "$miss" "$plain")"
