#!/usr/bin/env bash
# A 20,000-rule `_redirects` (`/p$i/* /q$i/:splat 301`): the memory each
# such deployment adds once loaded, and request latency on it against a
# site without rules, both under wrk. Goals: <= 20 MB per deployment,
# p99 <= 1.1x the site without rules.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RULES=${RULES_COUNT:-20000}
SITES=${RULES_SITES:-5}
DURATION=${RULES_DURATION:-8s}
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
done
after=$(rss_kb "$U_PID")
result rules_rss_per_deployment_mb "$(awk -v a="$before" -v b="$after" -v n="$SITES" 'BEGIN { printf "%.1f", (b - a) / 1024 / n }')"

# Latency: a redirect decided by the last rule, a static file no rule
# matches, and the same file on the site without rules.
lat() { # host path -> p99 ms
    taskset -c 0 wrk -t1 -c16 -d"$DURATION" --latency -H "Host: $1" "http://127.0.0.1:$U_EDGE$2" >"$WORK/wrk.txt"
    awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub("us", "", v); v /= 1000 } else if (v ~ /ms$/) { sub("ms", "", v) } else if (v ~ /s$/) { sub("s", "", v); v *= 1000 }; print v }' "$WORK/wrk.txt"
}
lat plain.localhost / >/dev/null # warm-up
plain=$(lat plain.localhost /)
hit=$(lat rules1.localhost "/p$((RULES - 1))/a/b")
miss=$(lat rules1.localhost /)
result rules_plain_p99_ms "$plain"
result rules_last_rule_p99_ms "$hit"
result rules_no_match_p99_ms "$miss"
result rules_last_rule_vs_plain "$(ratio "$hit" "$plain")"
result rules_no_match_vs_plain "$(ratio "$miss" "$plain")"
