#!/usr/bin/env bash
# Read-your-writes: promotes answer only once the edge serves them. Reports
# the API's answer time and the part spent waiting for the edge after the
# commit, over RYW_ROUNDS promotes. Goal: the edge wait <= 10 ms (p99).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROUNDS=${RYW_ROUNDS:-200}
echo "== read-your-writes: $ROUNDS promotes =="
cpu_note
start_helix W
"$HB" promotes --api "http://127.0.0.1:$W_API" --token-file "$W_DATA/admin.token" --rounds "$ROUNDS" \
    | tee "$WORK/ryw.json"
result ryw_promote_api_p50_ms "$(jq .api_ms.p50 "$WORK/ryw.json")"
result ryw_promote_api_p99_ms "$(jq .api_ms.p99 "$WORK/ryw.json")"
result ryw_edge_wait_p50_ms "$(jq .edge_wait_ms.p50 "$WORK/ryw.json")"
result ryw_edge_wait_p99_ms "$(jq .edge_wait_ms.p99 "$WORK/ryw.json")"
