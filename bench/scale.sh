#!/usr/bin/env bash
# Many deployments on one server: SCALE_DEPLOYMENTS tiny deployments over
# SCALE_PROJECTS projects, made through the API. Reports the server's RSS
# with them all (before and after their production sites are requested),
# and the time from a restart to the first 200 of a production site.
# Goals: RSS <= 300 MB, restart -> first 200 <= 1 s.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DEPLOYMENTS=${SCALE_DEPLOYMENTS:-100000}
PROJECTS=${SCALE_PROJECTS:-1000}
echo "== $DEPLOYMENTS deployments over $PROJECTS projects on one server =="
cpu_note

rss_mb() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

start_helix S
S_PID=${PIDS[-1]}
"$HB" populate --api "http://127.0.0.1:$S_API" --token-file "$S_DATA/admin.token" \
    --deployments "$DEPLOYMENTS" --projects "$PROJECTS" | tee "$WORK/populate.json"
result scale_populate_s "$(jq -r '.seconds | floor' "$WORK/populate.json")"
result scale_rss_mb "$(rss_mb "$S_PID")"
for p in $(seq 0 50 $((PROJECTS - 1))); do
    curl -s -o /dev/null -H "Host: p$p.localhost" "http://127.0.0.1:$S_EDGE/"
done
result scale_rss_after_requests_mb "$(rss_mb "$S_PID")"

# Restart on the same data and ports: time until a production site answers.
kill "$S_PID"
wait "$S_PID" 2>/dev/null || true
started=$(now)
HELIX_LOG=warn "$HELIX" server --data-dir "$S_DATA" --api-addr "127.0.0.1:$S_API" \
    --edge-addr "127.0.0.1:$S_EDGE" --gc-interval-secs 0 2>>"$WORK/S.log" &
PIDS+=($!)
R_PID=$!
until [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Host: p7.localhost" "http://127.0.0.1:$S_EDGE/" 2>/dev/null) == 200 ]]; do
    sleep 0.005
done
result scale_restart_first_200_s "$(elapsed "$started" "$(now)")"
result scale_rss_after_restart_mb "$(rss_mb "$R_PID")"
