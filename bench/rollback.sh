#!/usr/bin/env bash
# Rollback under load: deploy v1 and v2 to production, keep 16 keep-alive
# clients on GET / of the production host, POST the rollback, and measure
# how long after sending it v2 was still served, and every non-2xx or failed
# request of the run. Repeated ROUNDS times (v2 is promoted again between
# rounds, outside the measured window).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROUNDS=${ROLLBACK_ROUNDS:-5}
CLIENTS=${ROLLBACK_CLIENTS:-16}
echo "== rollback under load: $CLIENTS keep-alive clients on GET /, $ROUNDS rounds =="
cpu_note
for v in v1 v2; do
    mkdir -p "$WORK/$v"
    printf '<!doctype html><title>%s</title><p>helix-bench-site-%s</p>\n' "$v" "$v" >"$WORK/$v/index.html"
done

start_helix R
HOST=rb.localhost
helix_cli R deploy "$WORK/v1" --project rb --prod --json >/dev/null
v2=$(helix_cli R deploy "$WORK/v2" --project rb --prod --json | jq -r .id)

# Waits until production serves MARKER.
wait_serving() {
    local i
    for i in $(seq 1 200); do
        if curl -s -H "Host: $HOST" "http://127.0.0.1:$R_EDGE/" | grep -q "$1"; then return 0; fi
        sleep 0.05
    done
    echo "production never served $1" >&2
    return 1
}

: >"$WORK/rounds.json"
for round in $(seq 1 "$ROUNDS"); do
    if ((round > 1)); then helix_cli R promote "$v2" --json >/dev/null; fi
    wait_serving helix-bench-site-v2
    "$HB" rollback --edge "127.0.0.1:$R_EDGE" --host "$HOST" --api "127.0.0.1:$R_API" \
        --token-file "$R_DATA/admin.token" --project rb --clients "$CLIENTS" \
        --old-marker helix-bench-site-v1 --new-marker helix-bench-site-v2 | tee -a "$WORK/rounds.json" | jq -r \
        '"  round: switch \(.switch_ms) ms (API answered in \(.api_ms) ms, first v1 at \(.first_old_ms) ms)  \(.requests) requests \(.req_per_s | floor) req/s  non-2xx \(.non_2xx)  errors \(.transport_errors)  flip-backs \(.flip_backs)"'
done

jq -s '{
    switch_max: (map(.switch_ms) | max),
    switch_median: (map(.switch_ms) | sort | .[(length - 1) / 2 | floor]),
    bad: (map(.non_2xx + .transport_errors + .neither_content + .flip_backs + .old_before_rollback) | add),
    all_switched: (map(.saw_old) | all)
}' "$WORK/rounds.json" >"$WORK/summary.json"
[[ $(jq .all_switched "$WORK/summary.json") == true ]] || echo "  WARNING: some round never served v1" >&2
result rollback_switch_median_ms "$(jq .switch_median "$WORK/summary.json")"
result rollback_switch_max_ms "$(jq .switch_max "$WORK/summary.json")"
result rollback_bad_responses "$(jq .bad "$WORK/summary.json")"
