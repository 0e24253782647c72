#!/usr/bin/env bash
# Policy at a decision point: a 50-rule Rego module evaluated POLICY_ROUNDS
# times through the server's own evaluation path (the time inside the
# server, and the whole HTTP round trip), and promotes with and without
# the module in force. Goal: evaluation p99 <= 1 ms.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROUNDS=${POLICY_ROUNDS:-2000}
echo "== policy: a 50-rule module, $ROUNDS evaluations =="
cpu_note
start_helix P taskset -c 1
taskset -c 0 "$HB" policy --api "http://127.0.0.1:$P_API" --token-file "$P_DATA/admin.token" --rounds "$ROUNDS" \
    | tee "$WORK/policy.json"
result policy_eval_p50_ms "$(jq .eval_ms.p50 "$WORK/policy.json")"
result policy_eval_p99_ms "$(jq .eval_ms.p99 "$WORK/policy.json")"
result policy_promote_p50_ms "$(jq -r '"\(.promote_with_policy_ms.p50) (without: \(.promote_without_policy_ms.p50))"' "$WORK/policy.json")"
result policy_promote_p99_ms "$(jq -r '"\(.promote_with_policy_ms.p99) (without: \(.promote_without_policy_ms.p99))"' "$WORK/policy.json")"
