#!/usr/bin/env bash
# Functions (the runtime plane) beside bare node, in one run:
#  - a hello-world function through the edge vs the same handler in a bare
#    `node:http` server: req/s (goal >= 0.8x) and p99 (goal <= bare + 1 ms);
#    servers pinned to core 1 (function instances inherit it), wrk to core 0;
#  - a cold start (pool miss → first byte, from a spare) vs a bare `node`
#    start → first response (goal <= 0.5x), and the first request to a
#    newly promoted deployment's function;
#  - 100 distinct functions each called once a second: memory (PSS) of
#    the server and every process under it, instances alive, cold starts.
# Needs root (bubblewrap, cgroups), node, wrk.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DURATION=${FN_DURATION:-10s}
WARMUP=${FN_WARMUP:-3s}
COLD_RUNS=${FN_COLD_RUNS:-9}
MANY=${FN_MANY:-100}
MANY_SECONDS=${FN_MANY_SECONDS:-30}
PROBE="node $BENCH_DIR/fn-probe.mjs"

echo "== functions: hello world through the edge vs bare node:http (core 1; wrk -t1 -c64 on core 0) =="
cpu_note
start_helix F taskset -c 1
site=$WORK/fn
mkdir -p "$site/public" "$site/api"
echo home >"$site/public/index.html"
handler="(req, res) => res.end('hello world')"
echo "export default $handler" >"$site/api/hello.js"
helix_cli F deploy "$site" --publish-dir public --project fn --prod --json >/dev/null
[[ $(curl -s -H "Host: fn.localhost" "http://127.0.0.1:$F_EDGE/api/hello") == "hello world" ]] \
    || { echo "the function does not answer" >&2; exit 1; }

bare_port=$(free_port)
echo "import http from 'node:http'; http.createServer($handler).listen($bare_port, '127.0.0.1')" >"$WORK/bare.mjs"
env -i PATH="$PATH" taskset -c 1 node "$WORK/bare.mjs" &
PIDS+=($!)
wait_http "http://127.0.0.1:$bare_port/"

for server in helix node; do
    port=$F_EDGE
    [[ $server == node ]] && port=$bare_port
    wrk_run "$port" /api/hello "$WARMUP" fn.localhost >/dev/null
    read -r rps p99 bad err < <(wrk_run "$port" /api/hello "$DURATION" fn.localhost)
    printf '  %-6s %10.0f req/s   p99 %7.2f ms   non-2xx %d   socket errors %d\n' "$server" "$rps" "$p99" "$bad" "$err"
    declare "${server}_rps=$rps" "${server}_p99=$p99"
done
result fn_hello_helix_rps "$helix_rps"
result fn_hello_node_rps "$node_rps"
result fn_hello_ratio "$(ratio "$helix_rps" "$node_rps")"
result fn_hello_helix_p99_ms "$helix_p99"
result fn_hello_node_p99_ms "$node_p99"
result fn_hello_p99_over_node_ms "$(awk -v a="$helix_p99" -v b="$node_p99" 'BEGIN { printf "%.2f", a - b }')"
helix_cli F functions --project fn

echo
echo "== cold start: pool miss → first byte vs a bare node start → first response ($COLD_RUNS runs, medians) =="
bare=$($PROBE bare-start "$(free_port)" "$COLD_RUNS")
bare_ms=$(echo "$bare" | jq .median_ms)
colds=()
for i in $(seq 1 "$COLD_RUNS"); do
    echo "export default (req, res) => res.end('cold $i')" >"$site/api/hello.js"
    helix_cli F deploy "$site" --publish-dir public --project "cold$i" --prod --json >/dev/null
    sleep 1.5 # the spare taken by the previous run is started again
    colds+=("$($PROBE first-byte "$F_EDGE" "cold$i.localhost" /api/hello | jq .ms)")
done
cold_ms=$(printf '%s\n' "${colds[@]}" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
echo "  helix cold starts (ms): ${colds[*]}"
echo "  bare node starts (ms):  $(echo "$bare" | jq -c .all)"
result fn_cold_helix_ms "$cold_ms"
result fn_cold_node_start_ms "$bare_ms"
result fn_cold_ratio "$(ratio "$cold_ms" "$bare_ms")"

# The first request after a promote: v2 deployed beside production, then promoted.
echo "export default (req, res) => res.end('v1')" >"$site/api/hello.js"
helix_cli F deploy "$site" --publish-dir public --project promo --prod --json >/dev/null
echo "export default (req, res) => res.end('v2')" >"$site/api/hello.js"
v2=$(helix_cli F deploy "$site" --publish-dir public --project promo --json | jq -r .id)
sleep 1.5
helix_cli F promote "$v2" >/dev/null
first=$($PROBE first-byte "$F_EDGE" promo.localhost /api/hello | jq .ms)
result fn_first_after_promote_ms "$first"

echo
echo "== $MANY functions, each called once a second for ${MANY_SECONDS}s =="
many=$WORK/many
mkdir -p "$many/public" "$many/api"
echo many >"$many/public/index.html"
for i in $(seq 0 $((MANY - 1))); do
    echo "export default (req, res) => res.end('f$i')" >"$many/api/f$i.js"
done
helix_cli F deploy "$many" --publish-dir public --project many --prod --json >/dev/null
load=$($PROBE many "$F_EDGE" many.localhost "$MANY" "$MANY_SECONDS")
echo "  $load"
server_pid=${PIDS[0]}
# The server and every process under it (sandboxes, slirp4netns, node
# instances): proportional set size, so shared pages count once.
descendants=$(ps -e -o pid=,ppid= | awk -v root="$server_pid" '
    { parent[$1] = $2 }
    END { for (p in parent) { q = p; while (q != "" && q != root && q in parent && q != 1) q = parent[q]; if (q == root) print p } }')
pss_kb=0
for pid in $descendants; do
    kb=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
    pss_kb=$((pss_kb + ${kb:-0}))
done
nodes=$(for pid in $descendants; do cat "/proc/$pid/comm" 2>/dev/null; done | grep -c '^node$' || true)
stats=$(helix_cli F functions --project many --json)
result fn_many_pss_mib "$(awk -v k="$pss_kb" 'BEGIN { printf "%.0f", k / 1024 }')"
result fn_many_node_processes "$nodes"
result fn_many_instances "$(echo "$stats" | jq '[.functions[].instances] | add')"
result fn_many_cold_starts "$(echo "$stats" | jq '[.functions[].cold_starts] | add')"
result fn_many_p99_ms "$(echo "$load" | jq .p99_ms)"
result fn_many_non_200 "$(echo "$load" | jq .non_200)"
